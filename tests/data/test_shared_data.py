"""The real data sets in ../shared/data, read by peluk and by `datasets`: the same rows."""

from __future__ import annotations

import pytest

from peluk.data import load_dataset
from peluk.errors import DatasetError


def test_sst2_directory_and_tsv(shared_data, hf, hf_cache):
    splits = load_dataset(str(shared_data / "sst2"))
    assert splits.num_rows == {"train": 67349, "validation": 872}  # dev.tsv is the validation split
    train = load_dataset("csv", data_files=str(shared_data / "sst2" / "train.tsv"), delimiter="\t", split="train")
    theirs = hf.load_dataset("csv", data_files=str(shared_data / "sst2" / "train.tsv"), delimiter="\t",
                             split="train", cache_dir=hf_cache)
    assert train.column_names == ["sentence", "label"]
    assert train["sentence"] == theirs["sentence"][:] and train["label"] == theirs["label"][:]
    assert train[0] == {"sentence": "hide new secretions from the parental units ", "label": 0}
    assert sum(train["label"]) == 37569


def test_smsa_without_header(shared_data, hf, hf_cache):
    path = str(shared_data / "indonlu_smsa" / "train_preprocess.tsv")
    ours = load_dataset("csv", data_files=path, delimiter="\t", column_names=["text", "label"], split="train")
    theirs = hf.load_dataset("csv", data_files=path, delimiter="\t", column_names=["text", "label"], split="train",
                             cache_dir=hf_cache)
    assert len(ours) == 11000 and ours.to_list() == theirs.to_list()
    encoded = ours.class_encode_column("label")
    assert encoded.features["label"].names == ["negative", "neutral", "positive"]
    split = encoded.train_test_split(test_size=0.1, seed=0, stratify_by_column="label")
    counts = [split["test"]["label"].count(i) for i in range(3)]
    assert all(abs(c - n / 10) <= 1 for c, n in zip(counts, (3436, 1148, 6416))), counts  # a tenth of each class
    reference = theirs.class_encode_column("label").train_test_split(test_size=0.1, seed=0, stratify_by_column="label")
    assert split["test"]["text"] == reference["test"]["text"][:]


def test_ag_news_quoted_csv(shared_data, hf, hf_cache):
    path = str(shared_data / "ag_news" / "test.csv")
    names = ["label", "title", "description"]
    ours = load_dataset("csv", data_files=path, column_names=names, split="train")
    theirs = hf.load_dataset("csv", data_files=path, column_names=names, split="train", cache_dir=hf_cache)
    assert len(ours) == 7600 and ours.to_list() == theirs.to_list()
    quoted = load_dataset("csv", data_files=str(shared_data / "ag_news" / "train_subset_alps_dev.tsv"),
                          delimiter="\t", column_names=["description", "label"], split="train")
    assert len(quoted) == 10001


def test_json_lines_and_json_field(shared_data, hf, hf_cache):
    path = str(shared_data / "indosum" / "dev.01.jsonl")
    ours = load_dataset("json", data_files=path, split="train")
    theirs = hf.load_dataset("json", data_files=path, split="train", cache_dir=hf_cache)
    assert len(ours) == 750 and ours.to_list() == theirs.to_list()
    squad = load_dataset("json", data_files=str(shared_data / "squad_v1.1" / "dev-v1.1.json"), field="data",
                         split="train")
    assert len(squad) == 48 and sum(len(p["qas"]) for a in squad["paragraphs"] for p in a) == 10570


def test_text_lines_with_crlf(shared_data, hf, hf_cache):
    path = str(shared_data / "en_id_panl_bppt" / "PANL-BPPT-SPO-EN-100Kw.txt")
    ours = load_dataset("text", data_files=path, split="train")
    theirs = hf.load_dataset("text", data_files=path, split="train", cache_dir=hf_cache)
    assert ours["text"] == theirs["text"][:] and not any("\r" in line for line in ours["text"])


def test_latin1_byte_in_bbc_article_is_reported(shared_data):
    path = shared_data / "bbc_news_summary" / "BBC News Summary" / "News Articles" / "sport" / "199.txt"
    with pytest.raises(DatasetError, match=r"199\.txt line \d+: byte 0xa3 at column \d+ is not UTF-8"):
        load_dataset("text", data_files=str(path))
