"""Metrics and the CoNLL reader."""

from __future__ import annotations

import numpy as np
import pytest

from peluk.data.conll import align_labels, read_conll, tag_names
from peluk.errors import DatasetError
from peluk.training.metrics import classification_metrics, entities, entity_f1
from peluk.training.trainer import EvalPrediction


def test_classification_metrics():
    logits = np.array([[2, 0, 0], [0, 2, 0], [0, 2, 0], [0, 0, 2]], dtype=float)
    m = classification_metrics(EvalPrediction(logits, np.array([0, 1, 2, 2])))
    assert m["accuracy"] == 0.75
    # per class F1: 1.0, 2/3, 2/3 -> macro 7/9
    assert m["f1_macro"] == pytest.approx(7 / 9)


def test_entities_follow_conlleval():
    tags = ["B-PER", "I-PER", "O", "I-LOC", "I-LOC", "B-LOC", "I-ORG", "O"]
    assert entities(tags) == {("PER", 0, 2), ("LOC", 3, 5), ("LOC", 5, 6), ("ORG", 6, 7)}
    scores = entity_f1([["B-PER", "I-PER", "O", "B-LOC"]], [["B-PER", "I-PER", "O", "B-ORG"]])
    assert scores["precision"] == 0.5 and scores["recall"] == 0.5 and scores["f1"] == 0.5


def test_read_conll(tmp_path, shared_data):
    path = tmp_path / "a.txt"
    path.write_text("-DOCSTART- -X- -X- O\n\nEU NNP B-NP B-ORG\nrejects VBZ B-VP O\n\nPeter NNP B-NP B-PER\n")
    rows = read_conll(path)
    assert rows == [{"tokens": ["EU", "rejects"], "ner_tags": ["B-ORG", "O"]},
                    {"tokens": ["Peter"], "ner_tags": ["B-PER"]}]
    assert tag_names(rows) == ["O", "B-ORG", "B-PER"]
    assert align_labels([None, 0, 0, 1, None], [3, 4]) == [-100, 3, -100, 4, -100]
    bad = tmp_path / "bad.txt"
    bad.write_bytes(b"EU B-ORG\nlonely\n")
    with pytest.raises(DatasetError, match="bad.txt line 2"):
        read_conll(bad)
    bad.write_bytes(b"EU B-ORG\n\xff\xfe O\n")
    with pytest.raises(DatasetError, match="line 2: not UTF-8"):
        read_conll(bad)
    train = read_conll(shared_data / "conll2003" / "train.txt")
    assert len(train) == 14041
