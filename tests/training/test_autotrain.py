"""`peluk train`: a labelled file in, a model + model card out, loadable by the pipeline and by transformers."""

from __future__ import annotations

import json
import random

import pytest

import peluk
from peluk.cli import main
from peluk.errors import TrainingError

POS = ["bagus", "enak", "mantap", "nyaman", "ramah"]
NEG = ["buruk", "mahal", "kotor", "lambat", "kecewa"]
FILL = ["makanan", "tempat", "ini", "sangat", "pelayanan", "dan", "harga"]


def write_tsv(path, n, seed, header=True):
    rng = random.Random(seed)
    lines = ["text\tlabel"] if header else []
    for i in range(n):
        label = ["negative", "positive"][i % 2]
        words = rng.sample(FILL, 3) + [rng.choice(POS if label == "positive" else NEG)]
        rng.shuffle(words)
        lines.append(" ".join(words) + "\t" + label)
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


@pytest.mark.parametrize("lora", [False, True])
def test_cli_trains_text_classification(tiny_dir, tmp_path, capsys, lora):
    base = tiny_dir("bert", "base")
    train, dev = write_tsv(tmp_path / "train.tsv", 64, 0), write_tsv(tmp_path / "dev.tsv", 16, 1)
    out = tmp_path / "model"
    argv = ["train", "text-classification", "--data", str(train), "--validation", str(dev), "--model", str(base),
            "--output", str(out), "--epochs", "20", "--lr", "3e-3", "--batch-size", "16", "--json"]
    assert main(argv + (["--lora", "--lr", "1e-2"] if lora else [])) == 0
    result = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert result["labels"] == ["negative", "positive"]
    assert result["metrics"]["eval_accuracy"] >= (0.8 if lora else 0.9)  # a tiny random base: LoRA has little to adapt
    card = (out / "README.md").read_text()
    assert card.startswith("---\nbase_model:") and "pipeline_tag: text-classification" in card
    assert "Limitations and bias" in card and "| accuracy |" in card
    assert not list(out.glob("checkpoint-*"))
    clf = peluk.pipeline("sentiment-analysis", model=str(out))  # the saved model, loaded back (merged if LoRA)
    rows = [line.split("\t") for line in dev.read_text().splitlines()[1:]]
    predicted = clf([text for text, _ in rows])
    accuracy = sum(p["label"] == label for p, (_, label) in zip(predicted, rows)) / len(rows)
    assert accuracy == result["metrics"]["eval_accuracy"]
    if lora:
        assert (out / "adapter_model.safetensors").exists() and not (out / "model.safetensors").exists()


def test_train_errors(tiny_dir, tmp_path):
    from peluk.training.autotrain import train_text_classification

    base = tiny_dir("bert", "base")
    path = write_tsv(tmp_path / "t.tsv", 8, 0)
    with pytest.raises(TrainingError, match="no column 'review'"):
        train_text_classification(str(path), model=str(base), output=str(tmp_path / "o"), text_column="review")
    one = tmp_path / "one.tsv"
    one.write_text("text\tlabel\na\tpositive\nb\tpositive\n")
    with pytest.raises(TrainingError, match="fewer than two"):
        train_text_classification(str(one), model=str(base), output=str(tmp_path / "o"))


def test_cli_trains_token_classification(tiny_dir, tmp_path, capsys):
    base = tiny_dir("bert", "base")
    rng = random.Random(0)
    lines = []
    for _ in range(40):
        for w in rng.sample(["budi", "ani", "pergi", "ke", "jakarta", "bandung", "pasar"], 4):
            tag = {"budi": "B-PER", "ani": "B-PER", "jakarta": "B-LOC", "bandung": "B-LOC"}.get(w, "O")
            lines.append(f"{w} {tag}")
        lines.append("")
    data = tmp_path / "train.txt"
    data.write_text("\n".join(lines))
    out = tmp_path / "ner"
    assert main(["train", "token-classification", "--data", str(data), "--model", str(base), "--output", str(out),
                 "--epochs", "15", "--lr", "5e-3", "--batch-size", "8", "--json"]) == 0
    result = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert result["labels"] == ["O", "B-LOC", "B-PER"]
    assert result["metrics"]["eval_f1"] > 0.8
    assert (out / "README.md").exists()
