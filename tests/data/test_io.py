"""load_dataset: every loader against `datasets` (the oracle), directories, splits, bad rows, streaming."""

from __future__ import annotations

import csv
import json

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from peluk.data import ClassLabel, Dataset, DatasetDict, Features, IterableDataset, Value, load_dataset
from peluk.errors import DatasetError, DatasetNotFoundError
from tests.data.conftest import write

CSV = 'text,label\nhello,1\n"a, quoted\nnewline",0\n"she said ""hi""",1\n,0\nNA,1\n'


def rows_of(ds) -> list[dict]:
    return [dict(row) for row in ds]


def test_csv_matches_datasets(tmp_path, hf, hf_cache):
    path = write(tmp_path / "train.csv", CSV)
    ours = load_dataset("csv", data_files=path)
    theirs = hf.load_dataset("csv", data_files=path, cache_dir=hf_cache)
    assert list(ours) == ["train"] and isinstance(ours, DatasetDict)
    assert ours["train"].to_list() == theirs["train"].to_list()
    assert ours["train"].column_names == theirs["train"].column_names


def test_tsv_and_column_names_match_datasets(tmp_path, hf, hf_cache):
    path = write(tmp_path / "data.tsv", "good film\tpositive\nbad \"film\tnegative\nok\tneutral\n")
    ours = load_dataset("csv", data_files=path, delimiter="\t", column_names=["text", "label"], split="train",
                        quoting=csv.QUOTE_NONE)
    theirs = hf.load_dataset("csv", data_files=path, delimiter="\t", column_names=["text", "label"], split="train",
                             cache_dir=hf_cache, quoting=csv.QUOTE_NONE)
    assert ours.to_list() == theirs.to_list()
    assert ours[1] == {"text": 'bad "film', "label": "negative"}


def test_json_lines_list_and_field_match_datasets(tmp_path, hf, hf_cache):
    lines = write(tmp_path / "a.jsonl", '{"a": 1, "b": [1, 2]}\n\n{"a": 2, "b": [3]}\n')
    listed = write(tmp_path / "b.json", json.dumps([{"a": 1, "s": "x"}, {"a": 2, "s": "y"}], indent=2))
    nested = write(tmp_path / "c.json", json.dumps({"version": 1, "data": [{"q": "x"}, {"q": "y"}]}))
    for path, kwargs in ((lines, {}), (listed, {}), (nested, {"field": "data"})):
        ours = load_dataset("json", data_files=path, split="train", **kwargs)
        theirs = hf.load_dataset("json", data_files=path, split="train", cache_dir=hf_cache, **kwargs)
        assert ours.to_list() == theirs.to_list(), path


def test_json_rows_with_different_keys_keep_every_key(tmp_path):
    path = write(tmp_path / "a.jsonl", '{"a": 1}\n{"a": "two", "b": true}\n')  # mixed types: pyarrow refuses
    with pytest.raises(DatasetError, match="a.jsonl"):
        load_dataset("json", data_files=path)
    path = write(tmp_path / "b.jsonl", '{"a": 1}\n{"b": true}\n')
    assert load_dataset("json", data_files=path, split="train").to_list() == [{"a": 1, "b": None}, {"a": None, "b": True}]


def test_parquet_matches_datasets(tmp_path, hf, hf_cache):
    path = str(tmp_path / "x.parquet")
    pq.write_table(pa.table({"a": [1, 2, 3], "t": ["x", "y", None], "l": [[1], [], [2, 3]]}), path)
    ours = load_dataset("parquet", data_files=path, split="train")
    theirs = hf.load_dataset("parquet", data_files=path, split="train", cache_dir=hf_cache)
    assert ours.to_list() == theirs.to_list()
    assert load_dataset("parquet", data_files=path, split="train", columns=["a"]).column_names == ["a"]


def test_text_matches_datasets(tmp_path, hf, hf_cache):
    path = write(tmp_path / "t.txt", b"first line\r\nsecond\r\n\r\nfourth \xc3\xa9\n")
    for sample_by in ("line", "paragraph", "document"):
        ours = load_dataset("text", data_files=path, split="train", sample_by=sample_by)
        theirs = hf.load_dataset("text", data_files=path, split="train", cache_dir=hf_cache, sample_by=sample_by)
        assert ours.to_list() == theirs.to_list(), sample_by
    assert load_dataset("text", data_files=path, split="train")["text"] == ["first line", "second", "", "fourth é"]


def test_data_files_dict_and_split_slices(tmp_path, hf, hf_cache):
    train = write(tmp_path / "tr.csv", "x\n" + "".join(f"{i}\n" for i in range(10)))
    test = write(tmp_path / "te.csv", "x\n7\n8\n")
    splits = load_dataset("csv", data_files={"train": train, "test": [test]})
    assert splits.num_rows == {"train": 10, "test": 2}
    for spec in ("train[:3]", "train[2:5]", "train[-2:]", "train[:25%]", "train[35%:]", "train[-15%:]", "train+test",
                 "test[:1]+train[9:]"):
        ours = load_dataset("csv", data_files={"train": train, "test": test}, split=spec)
        theirs = hf.load_dataset("csv", data_files={"train": train, "test": test}, split=spec, cache_dir=hf_cache)
        assert ours["x"] == theirs["x"], spec
    swapped = load_dataset("csv", data_files={"train": test, "test": train})  # same files, other splits
    assert swapped.num_rows == {"train": 2, "test": 10}
    with pytest.raises(DatasetNotFoundError, match="unknown split 'validation'"):
        load_dataset("csv", data_files=train, split="validation")


def test_directory_splits_by_file_name(tmp_path, hf, hf_cache):
    for name in ("train_preprocess.tsv", "dev.tsv", "my-test-1.tsv", "notes.tsv"):
        write(tmp_path / "d" / name, f"t\tl\n{name}\t1\n")
    write(tmp_path / "d" / "README.md", "# not data\n")
    ours = load_dataset(str(tmp_path / "d"))
    theirs = hf.load_dataset(str(tmp_path / "d"), cache_dir=hf_cache)
    assert list(ours) == list(theirs) == ["train", "validation", "test"]
    for split in ours:
        assert ours[split].to_list() == theirs[split].to_list()
    # no split names: everything is train; a single file path works too
    write(tmp_path / "e" / "a.csv", "x\n1\n")
    write(tmp_path / "e" / "b.csv", "x\n2\n")
    assert load_dataset(str(tmp_path / "e"))["train"]["x"] == [1, 2]
    assert load_dataset(str(tmp_path / "e" / "a.csv"), split="train")["x"] == [1]
    assert load_dataset("csv", data_dir=str(tmp_path / "e"), split="train")["x"] == [1, 2]


def test_folder_names_and_sharded_names(tmp_path):
    write(tmp_path / "f" / "train" / "part.jsonl", '{"a": 1}\n')
    write(tmp_path / "f" / "test" / "part.jsonl", '{"a": 2}\n')
    assert load_dataset(str(tmp_path / "f")).num_rows == {"train": 1, "test": 1}
    write(tmp_path / "g" / "data" / "train-00000-of-00002.jsonl", '{"a": 1}\n')
    write(tmp_path / "g" / "data" / "train-00001-of-00002.jsonl", '{"a": 2}\n')
    write(tmp_path / "g" / "data" / "extra-00000-of-00001.jsonl", '{"a": 3}\n')
    assert load_dataset(str(tmp_path / "g")).num_rows == {"train": 2, "extra": 1}


def test_missing_things_raise_not_found(tmp_path, monkeypatch):
    with pytest.raises(DatasetNotFoundError, match="does not exist"):
        load_dataset("csv", data_files=str(tmp_path / "nope.csv"))
    monkeypatch.setenv("PELUK_OFFLINE", "1")
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path / "hub-cache"))
    with pytest.raises(DatasetNotFoundError, match="dataset 'someone/some-dataset' at revision 'main' is not in the"):
        load_dataset("someone/some-dataset")
    with pytest.raises(DatasetNotFoundError, match="no such data file or directory"):
        load_dataset(str(tmp_path / "missing" / "train.csv"))
    (tmp_path / "empty").mkdir()
    with pytest.raises(DatasetNotFoundError, match="no data files"):
        load_dataset(str(tmp_path / "empty"))
    with pytest.raises(DatasetError, match="takes no option"):
        load_dataset("csv", data_files=write(tmp_path / "a.csv", "x\n1\n"), field="data")


def test_features_cast_on_load(tmp_path):
    path = write(tmp_path / "a.csv", "text,label\nx,pos\ny,neg\n")
    features = Features({"text": Value("string"), "label": ClassLabel(names=["neg", "pos"])})
    ds = load_dataset("csv", data_files=path, features=features, split="train")
    assert ds["label"] == [1, 0] and ds.features["label"].names == ["neg", "pos"]


def test_second_load_reads_the_cache_and_changed_files_are_reread(tmp_path, peluk_cache):
    path = tmp_path / "a.csv"
    write(path, "x\n1\n2\n")
    first = load_dataset("csv", data_files=str(path), split="train")
    assert first.cache_files[0]["filename"].startswith(str(peluk_cache))
    again = load_dataset("csv", data_files=str(path), split="train")
    assert again.fingerprint == first.fingerprint and again.cache_files == first.cache_files
    write(path, "x\n1\n2\n3\n")
    assert load_dataset("csv", data_files=str(path), split="train")["x"] == [1, 2, 3]


# --- bad rows: file name and line number ------------------------------------------------------------
@pytest.mark.parametrize("streaming", [False, True])
def test_csv_wrong_column_count_names_file_and_line(tmp_path, streaming):
    path = write(tmp_path / "train.csv", 'a,b\n1,2\n"multi\nline",3\n4,5\n6,7,8\n9,10\n')
    with pytest.raises(DatasetError, match=r"train\.csv line 6: expected 2 columns, got 3"):
        rows_of(load_dataset("csv", data_files=path, split="train", streaming=streaming))


def test_tsv_wrong_column_count_with_column_names(tmp_path):
    path = write(tmp_path / "train.tsv", "a\t1\nb\t2\nc\n")
    with pytest.raises(DatasetError, match=r"train\.tsv line 3: expected 2 columns, got 1"):
        load_dataset("csv", data_files=path, delimiter="\t", column_names=["text", "label"])


def test_csv_conversion_error_while_streaming_names_the_line(tmp_path):
    text = "a,b\n" + "".join(f"{i},x\n" for i in range(200_000)) + "oops,x\n"
    path = write(tmp_path / "big.csv", text)
    with pytest.raises(DatasetError, match=r"big\.csv line 200002: column 1 value 'oops'"):
        rows_of(load_dataset("csv", data_files=path, split="train", streaming=True))
    assert len(load_dataset("csv", data_files=path, split="train")) == 200_001  # whole-file inference: strings


@pytest.mark.parametrize("streaming", [False, True])
def test_not_utf8_names_file_line_and_byte(tmp_path, streaming):
    csv_path = write(tmp_path / "latin.csv", b"a,b\n1,caf\xc3\xa9\n2,caf\xe9\n")
    with pytest.raises(DatasetError, match=r"latin\.csv line 3: byte 0xe9 at column 6 is not UTF-8"):
        rows_of(load_dataset("csv", data_files=csv_path, split="train", streaming=streaming))
    text_path = write(tmp_path / "latin.txt", b"ok\nstill ok\n\xa3 5\n")
    with pytest.raises(DatasetError, match=r"latin\.txt line 3: byte 0xa3"):
        rows_of(load_dataset("text", data_files=text_path, split="train", streaming=streaming))
    json_path = write(tmp_path / "latin.jsonl", b'{"a": "x"}\n{"a": "\xe9"}\n')
    with pytest.raises(DatasetError, match=r"latin\.jsonl line 2: byte 0xe9"):
        rows_of(load_dataset("json", data_files=json_path, split="train", streaming=streaming))


@pytest.mark.parametrize("streaming", [False, True])
def test_bad_json_line_names_file_and_line(tmp_path, streaming):
    path = write(tmp_path / "train.jsonl", '{"a": 1}\n\n{"a": 2}\n{"a": 3\n{"a": 4}\n')
    with pytest.raises(DatasetError, match=r"train\.jsonl line 4: invalid JSON"):
        rows_of(load_dataset("json", data_files=path, split="train", streaming=streaming))
    path = write(tmp_path / "doc.json", '[\n  {"a": 1},\n  {"a": 2,}\n]\n')
    with pytest.raises(DatasetError, match=r"doc\.json line 3: invalid JSON"):
        load_dataset("json", data_files=path)
    path = write(tmp_path / "list.jsonl", '{"a": 1}\n[1, 2]\n')
    with pytest.raises(DatasetError, match=r"list\.jsonl line 2: expected a JSON object"):
        load_dataset("json", data_files=path)


def test_files_of_one_split_with_different_columns(tmp_path):
    a = write(tmp_path / "a.csv", "x\n1\n")
    b = write(tmp_path / "b.csv", "y\nz\n")
    with pytest.raises(DatasetError, match=r"b\.csv"):
        load_dataset("csv", data_files=[a, b])


# --- streaming ------------------------------------------------------------------------------------------
def test_streaming_reads_the_same_rows(tmp_path):
    paths = {"csv": write(tmp_path / "a.csv", CSV),
             "json": write(tmp_path / "a.jsonl", "".join(json.dumps({"i": i, "t": str(i)}) + "\n" for i in range(50))),
             "text": write(tmp_path / "a.txt", "".join(f"line {i}\n" for i in range(50)))}
    pq.write_table(pa.table({"i": list(range(50))}), tmp_path / "a.parquet")
    paths["parquet"] = str(tmp_path / "a.parquet")
    for builder, path in paths.items():
        eager = load_dataset(builder, data_files=path, split="train")
        lazy = load_dataset(builder, data_files=path, split="train", streaming=True)
        assert isinstance(lazy, IterableDataset)
        assert rows_of(lazy) == eager.to_list(), builder


def test_streaming_transforms(tmp_path):
    path = write(tmp_path / "a.jsonl", "".join(json.dumps({"i": i}) + "\n" for i in range(20)))
    ds = load_dataset("json", data_files=path, split="train", streaming=True)
    assert [r["i"] for r in ds.take(3)] == [0, 1, 2]
    assert [r["i"] for r in ds.skip(17)] == [17, 18, 19]
    assert [r["sq"] for r in ds.map(lambda r: {"sq": r["i"] ** 2}).take(4)] == [0, 1, 4, 9]
    doubled = ds.map(lambda b: {"j": [i * 2 for i in b["i"]]}, batched=True, batch_size=3, remove_columns="i")
    assert rows_of(doubled.take(2)) == [{"j": 0}, {"j": 2}]
    repeated = ds.map(lambda b: {"j": b["i"] + b["i"]}, batched=True, batch_size=3, remove_columns="i")
    assert [r["j"] for r in repeated.take(7)] == [0, 1, 2, 0, 1, 2, 3]  # more rows out than in
    assert [r["i"] for r in ds.filter(lambda r: r["i"] % 5 == 0)] == [0, 5, 10, 15]
    assert [r["i"] for r in ds.filter(lambda b: [i > 16 for i in b["i"]], batched=True, batch_size=4)] == [17, 18, 19]
    with_idx = ds.map(lambda r, i: {"k": i}, with_indices=True).skip(5).take(1)
    assert rows_of(with_idx) == [{"i": 5, "k": 5}]
    assert next(ds.iter(batch_size=4)) == {"i": [0, 1, 2, 3]}
    assert ds.column_names == ["i"]
    streamed = load_dataset("json", data_files=path, split="train[5:8]", streaming=True)
    assert [r["i"] for r in streamed] == [5, 6, 7]


def test_streaming_shuffle_is_a_seeded_buffer_shuffle(tmp_path):
    path = write(tmp_path / "a.jsonl", "".join(json.dumps({"i": i}) + "\n" for i in range(300)))
    ds = load_dataset("json", data_files=path, split="train", streaming=True)
    ours = ds.shuffle(seed=7, buffer_size=64)
    order = [r["i"] for r in ours]
    assert sorted(order) == list(range(300)) and order != list(range(300))
    assert order == [r["i"] for r in ours]  # iterating again gives the same order
    assert order == [r["i"] for r in ds.shuffle(seed=7, buffer_size=64)]
    assert order != [r["i"] for r in ds.shuffle(seed=8, buffer_size=64)]
    assert max(order[:32]) < 64  # a buffer, not a global shuffle: early rows come from the first buffer
    ours.set_epoch(1)
    assert [r["i"] for r in ours] != order
    assert [r["i"] for r in ds.shuffle(seed=7, buffer_size=1)] == list(range(300))


def test_streaming_dict(tmp_path):
    a = write(tmp_path / "a.csv", "x\n1\n2\n")
    b = write(tmp_path / "b.csv", "x\n3\n")
    splits = load_dataset("csv", data_files={"train": a, "test": b}, streaming=True)
    assert sorted(splits) == ["test", "train"]
    assert rows_of(splits.map(lambda r: {"y": r["x"] * 2})["test"]) == [{"x": 3, "y": 6}]


def test_dataset_from_loaded_and_in_memory_agree(tmp_path):
    path = write(tmp_path / "a.csv", "x,y\n1,a\n2,b\n")
    assert load_dataset("csv", data_files=path, split="train").to_list() == \
        Dataset.from_dict({"x": [1, 2], "y": ["a", "b"]}).to_list()


def test_imports_stay_lazy():
    import subprocess
    import sys

    code = ("import sys, peluk; a = [m in sys.modules for m in ('pyarrow', 'pandas')]; "
            "from peluk import load_dataset, Dataset; b = [m in sys.modules for m in ('torch', 'pandas')]; print(a, b)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout.strip()
    assert out == "[False, False] [False, False]"  # import peluk reads no Arrow; datasets need no torch until used
