"""The peluk command: human output by default, JSON with --json, clear errors."""

from __future__ import annotations

import json

from peluk.cli import main


def test_demo_json(capsys):
    assert main(["demo", "--json"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert out["dimension"] == 384 and len(out["similarity"]) == len(out["sentences"])
    assert abs(out["similarity"][0][0] - 1) < 1e-4


def test_demo_human(capsys):
    assert main(["demo"]) == 0
    assert "closest" in capsys.readouterr().out


def test_run_similarity(capsys):
    assert main(["run", "sentence-similarity", "I like coffee", "I love coffee", "It is raining", "--json"]) == 0
    scores = json.loads(capsys.readouterr().out)
    assert len(scores) == 2 and scores[0] > scores[1]
    assert main(["run", "sentence-similarity", "I like coffee", "I love coffee"]) == 0
    assert "I love coffee" in capsys.readouterr().out


def test_run_classification_with_model(tiny_dir, capsys):
    path = tiny_dir("bert", "sequence-classification")
    assert main(["run", "sentiment-analysis", "bagus sekali", "jelek", "--model", str(path), "--json"]) == 0
    result = json.loads(capsys.readouterr().out)
    assert len(result) == 2 and {"label", "score"} <= set(result[0])
    assert main(["run", "sentiment-analysis", "bagus sekali", "--model", str(path), "--top-k", "2"]) == 0
    assert "bagus sekali" in capsys.readouterr().out


def test_run_without_model_names_what_to_pass(capsys):
    assert main(["run", "ner", "Budi tinggal di Jakarta"]) == 2
    assert "token-classification (NER) model" in capsys.readouterr().err


def test_info(minilm_dir, capsys):
    assert main(["info", str(minilm_dir), "--json"]) == 0
    info = json.loads(capsys.readouterr().out)
    assert info["model_type"] == "bert" and info["parameters"] == 22713216
    assert info["tokenizer"]["vocab_size"] == 30522 and "model.safetensors" in info["files"]
    assert main(["info", str(minilm_dir)]) == 0
    assert "22,713,216" in capsys.readouterr().out
