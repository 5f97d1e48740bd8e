"""Tokenizer.pad and the collators against transformers' own."""

from __future__ import annotations

import pytest
import torch

import peluk
from peluk.data.collate import (DataCollatorForSeq2Seq, DataCollatorForTokenClassification,
                                DataCollatorWithPadding, default_data_collator)

TEXTS = ["Saya seorang siswa.", "I am a student of the university", "ok"]


@pytest.fixture(scope="module")
def toks(minilm_dir):
    import transformers

    return peluk.AutoTokenizer.from_pretrained(minilm_dir), transformers.AutoTokenizer.from_pretrained(minilm_dir)


def rows(tok, labels=False):
    out = []
    for i, text in enumerate(TEXTS):
        enc = tok(text)
        row = {"input_ids": enc["input_ids"], "attention_mask": enc["attention_mask"],
               "token_type_ids": enc["token_type_ids"], "label": i % 2}
        if labels:
            row["labels"] = [i] * len(enc["input_ids"])
            del row["label"]
        out.append(row)
    return out


@pytest.mark.parametrize("kwargs", [{}, {"pad_to_multiple_of": 8}, {"padding": "max_length", "max_length": 16},
                                    {"padding_side": "left"}])
def test_pad_matches_transformers(toks, kwargs):
    ours, theirs = toks
    data = [{k: v for k, v in r.items() if k != "label"} for r in rows(ours)]
    a = ours.pad(data, return_tensors="pt", **kwargs)
    b = theirs.pad(data, return_tensors="pt", **kwargs)
    assert set(a) == set(b)
    for key in b:
        assert torch.equal(a[key], b[key]), key
    # a dict of lists pads the same way, and without tensors stays lists
    columns = {k: [r[k] for r in data] for k in data[0]}
    assert ours.pad(columns, **kwargs)["input_ids"] == theirs.pad(columns, **kwargs)["input_ids"]


def test_collator_with_padding_matches_transformers(toks):
    import transformers

    ours, theirs = toks
    a = DataCollatorWithPadding(ours)(rows(ours))
    b = transformers.DataCollatorWithPadding(theirs)(rows(ours))
    assert set(a) == set(b)
    for key in b:
        assert torch.equal(a[key], b[key]), key


def test_token_classification_collator_matches_transformers(toks):
    import transformers

    ours, theirs = toks
    a = DataCollatorForTokenClassification(ours)(rows(ours, labels=True))
    b = transformers.DataCollatorForTokenClassification(theirs)(rows(ours, labels=True))
    for key in b:
        assert torch.equal(a[key], b[key]), key
    assert (a["labels"] == -100).any()


def test_seq2seq_collator_pads_labels_with_ignore_index(toks):
    ours, _ = toks
    data = [{"input_ids": ours(t)["input_ids"], "labels": list(range(5, 8 + i))} for i, t in enumerate(TEXTS)]
    batch = DataCollatorForSeq2Seq(ours)(data)
    assert batch["labels"].shape == (3, 5) and batch["labels"][0, 3:].eq(-100).all()
    assert batch["input_ids"].shape[1] == max(len(d["input_ids"]) for d in data)


def test_default_collator_stacks_and_renames():
    batch = default_data_collator([{"x": [1.0, 2.0], "label": 1, "text": "a"}, {"x": [3.0, 4.0], "label": 0, "text": "b"}])
    assert batch["labels"].tolist() == [1, 0] and batch["labels"].dtype == torch.long
    assert batch["x"].shape == (2, 2) and "text" not in batch
