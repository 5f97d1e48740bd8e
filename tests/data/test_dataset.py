"""Dataset and DatasetDict: construction, indexing, transforms, formats, saving; `datasets` as the oracle."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import torch

from peluk.data import (ClassLabel, Dataset, DatasetDict, Features, Sequence, Value, concatenate_datasets,
                        load_dataset, load_from_disk)
from peluk.errors import DatasetError, DatasetNotFoundError
from tests.data.conftest import write

DATA = {"text": ["b", "a", "c", "a", "d", "b"], "label": ["pos", "neg", "pos", "neu", "neg", "pos"],
        "n": [3, 1, 2, 5, 4, 0], "ids": [[1, 2], [3, 4], [5, 6], [7, 8], [9, 10], [11, 12]],
        "ragged": [[1], [2, 3], [], [4], [5, 6, 7], [8]], "score": [0.5, 1.5, 2.5, 3.5, 4.5, 5.5]}


@pytest.fixture
def ds():
    return Dataset.from_dict(DATA)


@pytest.fixture
def theirs(hf):
    return hf.Dataset.from_dict(DATA)


def test_construction_and_inspection(ds):
    assert len(ds) == ds.num_rows == 6 and ds.shape == (6, 6)
    assert ds.column_names == list(DATA)
    assert ds.features == Features({"text": Value("string"), "label": Value("string"), "n": Value("int64"),
                                    "ids": Sequence(Value("int64")), "ragged": Sequence(Value("int64")),
                                    "score": Value("float64")})
    assert Dataset.from_list([dict(zip(DATA, row)) for row in zip(*DATA.values())]).to_dict() == DATA
    assert Dataset.from_pandas(pd.DataFrame({"a": [1, 2], "b": ["x", "y"]})).to_dict() == {"a": [1, 2], "b": ["x", "y"]}
    assert ds.to_pandas()["n"].tolist() == DATA["n"]
    assert "num_rows: 6" in repr(ds)


def test_indexing_matches_datasets(ds, theirs):
    for key in (0, -1, 3):
        assert ds[key] == theirs[key]
    for key in (slice(1, 4), slice(None, None, 2), slice(4, 100), slice(5, 2), [4, 0, 4]):
        assert ds[key] == theirs[key], key
    assert ds["text"] == list(theirs["text"])
    assert [dict(r) for r in ds] == [dict(r) for r in theirs]
    with pytest.raises(IndexError):
        ds[6]
    with pytest.raises(DatasetError, match="no column 'nope'"):
        ds["nope"]


@pytest.mark.filterwarnings("ignore::FutureWarning")  # datasets' own sort() on pyarrow >= 25
def test_transforms_match_datasets(ds, theirs):
    pairs = [
        (ds.select([5, 0, 2]), theirs.select([5, 0, 2])),
        (ds.select(range(2, 5)), theirs.select(range(2, 5))),
        (ds.shuffle(seed=42), theirs.shuffle(seed=42)),
        (ds.shuffle(seed=1).select([0, 1]), theirs.shuffle(seed=1).select([0, 1])),
        (ds.sort("n"), theirs.sort("n")),
        (ds.sort("text", reverse=True), theirs.sort("text", reverse=True)),
        (ds.sort(["text", "n"]), theirs.sort(["text", "n"])),
        (ds.rename_column("text", "t"), theirs.rename_column("text", "t")),
        (ds.rename_columns({"text": "t", "n": "m"}), theirs.rename_columns({"text": "t", "n": "m"})),
        (ds.remove_columns(["ids", "ragged"]), theirs.remove_columns(["ids", "ragged"])),
        (ds.select_columns(["n", "text"]), theirs.select_columns(["n", "text"])),
        (ds.add_column("x", list(range(6))), theirs.add_column("x", list(range(6)))),
        (ds.shuffle(seed=3).add_column("x", list(range(6))), theirs.shuffle(seed=3).add_column("x", list(range(6)))),
        (ds.filter(lambda r: r["n"] > 2), theirs.filter(lambda r: r["n"] > 2)),
        (ds.map(lambda r, i: {"k": i * r["n"]}, with_indices=True), theirs.map(lambda r, i: {"k": i * r["n"]},
                                                                              with_indices=True)),
    ]
    for ours, reference in pairs:
        assert ours.to_list() == reference.to_list()
        assert ours.column_names == reference.column_names
    assert ds.unique("text") == theirs.unique("text")
    # the same values; the order is first appearance in the dataset's rows (datasets uses the table's order)
    assert sorted(ds.shuffle(seed=2).unique("label")) == sorted(theirs.shuffle(seed=2).unique("label"))
    assert ds.shuffle(seed=2).unique("label") == list(dict.fromkeys(ds.shuffle(seed=2)["label"]))
    assert ds.shuffle(seed=0).flatten_indices().to_list() == theirs.shuffle(seed=0).flatten_indices().to_list()


def test_transforms_do_not_change_the_original(ds):
    before = ds.to_list()
    ds.shuffle(seed=0), ds.select([1]), ds.sort("n"), ds.rename_column("n", "m"), ds.map(lambda r: {"n": 0})
    ds.with_format("torch"), ds.remove_columns("n"), ds.class_encode_column("label")
    assert ds.to_list() == before and ds.format["type"] is None


def test_cast_and_class_encode_match_datasets(ds, theirs):
    ours, reference = ds.class_encode_column("label"), theirs.class_encode_column("label")
    assert ours["label"] == list(reference["label"])
    assert ours.features["label"].names == reference.features["label"].names == ["neg", "neu", "pos"]
    numbers = Dataset.from_dict({"y": [10, 2, 2, 10, 1]}).class_encode_column("y")
    assert numbers.features["y"].names == ["1", "10", "2"] and numbers["y"] == [1, 2, 2, 1, 0]  # sorted as strings
    label = numbers.features["y"]
    assert (label.num_classes, label.str2int("10"), label.int2str(2), label.int2str([0, 1])) == (3, 1, "2", ["1", "10"])
    with pytest.raises(DatasetError, match="'7' is not a class name"):
        label.str2int("7")
    cast = ds.cast_column("n", Value("float32"))
    assert cast.features["n"] == Value("float32") and cast["n"] == [3.0, 1.0, 2.0, 5.0, 4.0, 0.0]
    named = ds.cast_column("label", ClassLabel(names=["neg", "neu", "pos"]))
    assert named["label"] == ours["label"]
    with pytest.raises(DatasetError, match="'pos' is not a class name"):
        ds.cast_column("label", ClassLabel(names=["neg", "neu"]))
    with pytest.raises(DatasetError, match="already a ClassLabel"):
        ours.class_encode_column("label")
    # encoding after a filter: names come from the rows that are left, as in datasets
    assert ds.filter(lambda r: r["label"] != "neu").class_encode_column("label").features["label"].names == ["neg", "pos"]


def test_dataset_dict_class_encode_shares_names_across_splits():
    splits = DatasetDict({"train": Dataset.from_dict({"y": ["a", "b"]}), "test": Dataset.from_dict({"y": ["b"]})})
    encoded = splits.class_encode_column("y")
    assert encoded["test"]["y"] == [1] and encoded["test"].features["y"].names == ["a", "b"]


def test_train_test_split_matches_datasets(ds, theirs):
    for kwargs in ({"test_size": 0.33, "seed": 1}, {"test_size": 2, "seed": 0}, {"train_size": 0.5, "seed": 5},
                   {"test_size": 0.2, "train_size": 0.6, "seed": 3}, {"test_size": 0.5, "shuffle": False}):
        ours, reference = ds.train_test_split(**kwargs), theirs.train_test_split(**kwargs)
        for split in ("train", "test"):
            assert ours[split].to_list() == reference[split].to_list(), kwargs
    with pytest.raises(DatasetError, match="test_size"):
        ds.train_test_split(test_size=1.5)


def test_stratified_split_keeps_class_proportions(hf):
    labels = [0] * 60 + [1] * 30 + [2] * 10
    ours = Dataset.from_dict({"y": labels, "i": list(range(100))}).cast_column("y", ClassLabel(num_classes=3))
    split = ours.train_test_split(test_size=0.2, seed=0, stratify_by_column="y")
    assert np.bincount(split["test"]["y"]).tolist() == [12, 6, 2]
    assert np.bincount(split["train"]["y"]).tolist() == [48, 24, 8]
    assert sorted(split["train"]["i"] + split["test"]["i"]) == list(range(100))
    reference = hf.Dataset.from_dict({"y": labels, "i": list(range(100))}).cast_column("y", hf.ClassLabel(num_classes=3))
    expected = reference.train_test_split(test_size=0.2, seed=0, stratify_by_column="y")
    assert split["test"]["i"] == list(expected["test"]["i"]) and split["train"]["i"] == list(expected["train"]["i"])
    with pytest.raises(DatasetError, match="ClassLabel"):
        Dataset.from_dict({"y": labels}).train_test_split(stratify_by_column="y")


def test_map_batched_and_shapes(ds, theirs):
    def upper(batch):
        return {"text": [t.upper() for t in batch["text"]], "len": [len(t) for t in batch["text"]]}

    ours = ds.map(upper, batched=True, batch_size=4)
    assert ours.to_list() == theirs.map(upper, batched=True, batch_size=4).to_list()
    assert ours.column_names == ["text", "label", "n", "ids", "ragged", "score", "len"]

    def explode(batch):  # more rows out than in
        return {"token": [t for text in batch["text"] for t in (text, text)]}

    exploded = ds.map(explode, batched=True, batch_size=4, remove_columns=ds.column_names)
    assert exploded.to_list() == theirs.map(explode, batched=True, batch_size=4,
                                            remove_columns=theirs.column_names).to_list()
    with pytest.raises(DatasetError, match="returned 12 rows for a batch of 6"):
        ds.map(explode, batched=True, batch_size=None)
    with pytest.raises(DatasetError, match="must return a dict"):
        ds.map(lambda r: 3)

    def in_place(batch):
        batch["n"] = [x * 10 for x in batch["n"]]
        return batch

    updated = ds.map(in_place, batched=True, remove_columns=["ragged"])
    assert updated["n"] == [x * 10 for x in DATA["n"]] and "ragged" not in updated.column_names
    assert updated["ids"] == DATA["ids"]  # untouched columns come through as they were
    assert ds.map(lambda r: None)["n"] == DATA["n"]
    assert ds.map(lambda r, k: {"m": r["n"] + k}, fn_kwargs={"k": 100})["m"] == [x + 100 for x in DATA["n"]]
    assert ds.map(lambda b: {"x": [1] * len(b["n"])}, batched=True, batch_size=4, drop_last_batch=True).num_rows == 4


def test_map_keeps_classlabel_and_uses_small_int_types_for_token_columns(ds):
    encoded = ds.class_encode_column("label")
    tokens = encoded.map(lambda b: {"input_ids": b["ids"], "attention_mask": [[1, 1]] * len(b["ids"])}, batched=True)
    assert isinstance(tokens.features["label"], ClassLabel)
    assert tokens.features["input_ids"] == Sequence(Value("int32"))
    assert tokens.features["attention_mask"] == Sequence(Value("int8"))
    assert tokens.with_format("torch")[0]["input_ids"].dtype == torch.int64  # models get int64, as in datasets


def test_filter_batched_and_with_indices(ds):
    assert ds.filter(lambda b: [x % 2 == 0 for x in b["n"]], batched=True, batch_size=4)["n"] == [2, 4, 0]
    assert ds.filter(lambda r, i: i in (1, 4), with_indices=True)["n"] == [1, 4]
    assert ds.shuffle(seed=0).filter(lambda r: r["n"] < 3).sort("n")["n"] == [0, 1, 2]


def test_formats_match_datasets(ds, theirs):
    for kind in ("numpy", "torch"):
        ours, reference = ds.with_format(kind), theirs.with_format(kind)
        for key in (0, slice(0, 3), [1, 2]):
            mine, expected = ours[key], reference[key]
            assert list(mine) == list(expected)
            for name in mine:
                _assert_same(mine[name], expected[name], f"{kind} {key} {name}")
        for name in ("n", "ids", "text"):
            _assert_same(ours[name], list(reference[name]) if name != "n" or kind == "numpy" else reference[name][:],
                         f"{kind} column {name}")
    torch_ds = ds.with_format("torch")
    assert torch_ds["ids"].shape == (6, 2) and torch_ds["score"].dtype == torch.float32
    assert isinstance(torch_ds["ragged"], list) and torch_ds["ragged"][1].tolist() == [2, 3]
    assert isinstance(torch_ds[0:2]["text"], list)
    frame = ds.with_format("pandas")
    assert isinstance(frame[0:2], pd.DataFrame) and isinstance(frame["n"], pd.Series)
    assert frame[1]["text"].tolist() == ["a"]
    only = ds.with_format("torch", columns=["n"])
    assert list(only[0]) == ["n"] and only["text"] == DATA["text"]
    assert set(ds.with_format("torch", columns=["n"], output_all_columns=True)[0]) == set(DATA)
    assert [row["n"].item() for row in torch_ds.select([0, 1])] == [3, 1]
    ds.set_format("numpy")
    assert isinstance(ds["n"], np.ndarray) and ds.format["type"] == "numpy"
    ds.reset_format()
    assert ds["n"] == DATA["n"]
    with pytest.raises(DatasetError, match="unknown format"):
        ds.with_format("tensorflow")


def _assert_same(mine, expected, where):
    if isinstance(expected, torch.Tensor):
        assert isinstance(mine, torch.Tensor) and mine.dtype == expected.dtype and torch.equal(mine, expected), where
    elif isinstance(expected, np.ndarray) and expected.dtype != object:
        assert isinstance(mine, np.ndarray) and np.array_equal(mine, expected), where
    elif isinstance(expected, (list, np.ndarray)):
        assert len(mine) == len(expected), where
        for a, b in zip(mine, expected):
            _assert_same(a, b, where)
    else:
        assert mine == expected, where


def test_map_under_a_format_gets_formatted_batches(ds):
    seen = []
    ds.with_format("torch").map(lambda b: seen.append(type(b["n"])) or {}, batched=True)
    assert seen == [torch.Tensor]
    out = ds.with_format("numpy").map(lambda b: {"double": b["n"] * 2}, batched=True)
    assert out.with_format(None)["double"] == [x * 2 for x in DATA["n"]] and out.format["type"] == "numpy"


def test_save_and_load_round_trip(tmp_path, ds, hf):
    encoded = ds.class_encode_column("label").shuffle(seed=0).with_format("torch", columns=["n"])
    encoded.save_to_disk(tmp_path / "one")
    back = load_from_disk(tmp_path / "one")
    assert back.with_format(None).to_list() == encoded.with_format(None).to_list()
    assert back.features == encoded.features and back.format == encoded.format
    assert back.fingerprint == encoded.fingerprint
    # datasets reads what peluk wrote, and peluk reads what datasets wrote
    theirs = hf.load_from_disk(str(tmp_path / "one"))
    assert theirs.with_format(None).to_list() == back.with_format(None).to_list()
    assert theirs.features["label"].names == ["neg", "neu", "pos"]
    hf.Dataset.from_dict(DATA).class_encode_column("label").save_to_disk(str(tmp_path / "theirs"))
    assert load_from_disk(tmp_path / "theirs").features["label"] == ClassLabel(names=["neg", "neu", "pos"])
    splits = DatasetDict({"train": ds, "test": ds.select([0])})
    splits.save_to_disk(tmp_path / "dict")
    loaded = load_from_disk(tmp_path / "dict")
    assert isinstance(loaded, DatasetDict) and loaded.num_rows == {"train": 6, "test": 1}
    with pytest.raises(DatasetNotFoundError, match="not a saved dataset"):
        load_from_disk(tmp_path)


def test_loaded_from_disk_maps_into_its_folder(tmp_path, ds):
    ds.save_to_disk(tmp_path / "saved")
    mapped = load_from_disk(tmp_path / "saved").map(lambda r: {"m": r["n"] + 1})
    assert mapped.cache_files[0]["filename"].startswith(str(tmp_path / "saved"))


def test_dataset_dict_transforms(tmp_path):
    write(tmp_path / "train.csv", "text,label\na,x\nb,y\nc,x\n")
    write(tmp_path / "test.csv", "text,label\nd,y\n")
    splits = load_dataset(str(tmp_path))
    assert splits.column_names == {"train": ["text", "label"], "test": ["text", "label"]}
    assert splits.shape == {"train": (3, 2), "test": (1, 2)}
    mapped = splits.map(lambda b: {"u": [t.upper() for t in b["text"]]}, batched=True).remove_columns("label")
    assert mapped["test"].to_list() == [{"text": "d", "u": "D"}]
    assert splits.filter(lambda r: r["label"] == "x").num_rows == {"train": 2, "test": 0}
    assert splits.rename_column("text", "t").column_names["train"] == ["t", "label"]
    assert splits.sort("text", reverse=True)["train"]["text"] == ["c", "b", "a"]
    assert splits.unique("label") == {"train": ["x", "y"], "test": ["y"]}
    torch_splits = splits.select_columns(["label"]).class_encode_column("label").with_format("torch")
    assert torch_splits["train"]["label"].tolist() == [0, 1, 0]
    assert splits.shuffle(seed=0)["train"].num_rows == 3


def test_concatenate_and_errors(ds):
    both = concatenate_datasets([ds.select([0]), ds.shuffle(seed=0).select([1, 2])])
    assert both.num_rows == 3 and both[0] == ds[0]
    with pytest.raises(DatasetError, match="columns differ"):
        concatenate_datasets([ds, ds.remove_columns("n")])
    with pytest.raises(DatasetError, match="no column"):
        ds.remove_columns("nope")
    with pytest.raises(DatasetError, match="already exists"):
        ds.add_column("n", [0] * 6)
    with pytest.raises(DatasetError, match="6 rows"):
        ds.add_column("z", [0])
    with pytest.raises(DatasetError, match="not unique"):
        ds.rename_columns({"text": "n"})


def test_doctests():
    import doctest

    import peluk.data.cache
    import peluk.data.dataset
    import peluk.data.features
    import peluk.data.io

    for module in (peluk.data.features, peluk.data.cache, peluk.data.dataset, peluk.data.io):
        result = doctest.testmod(module, optionflags=doctest.NORMALIZE_WHITESPACE | doctest.ELLIPSIS)
        assert result.failed == 0, module.__name__


def test_map_takes_numpy_and_torch_outputs(ds):
    out = ds.map(lambda b: {"t": torch.tensor(b["n"]) * 2, "a": np.ones((len(b["n"]), 3), dtype=np.float32),
                            "l": [torch.arange(k) for k in b["n"]]}, batched=True)
    assert out["t"] == [x * 2 for x in DATA["n"]]
    assert out.features["a"] == Sequence(Value("float32")) and out["a"][0] == [1.0, 1.0, 1.0]
    assert out["l"][0] == [0, 1, 2]
    with pytest.raises(DatasetError, match="column 'bad'"):
        ds.map(lambda b: {"bad": [1, "x"] * 3}, batched=True)


def test_iter_batches_and_data(ds):
    batches = list(ds.with_format("torch").iter(batch_size=4))
    assert [len(b["n"]) for b in batches] == [4, 2] and isinstance(batches[0]["n"], torch.Tensor)
    assert len(list(ds.iter(batch_size=4, drop_last_batch=True))) == 1
    assert ds.shuffle(seed=0).data.num_rows == 6 and ds.cache_files == []


def test_torch_rows_of_nested_lists(hf):
    data = {"m": [[[1, 2], [3, 4]], [[1], [2, 3]]]}
    ours, theirs = Dataset.from_dict(data).with_format("torch"), hf.Dataset.from_dict(data).with_format("torch")
    assert torch.equal(ours[0]["m"], theirs[0]["m"]) and ours[0]["m"].shape == (2, 2)
    assert isinstance(ours[1]["m"], list) and [t.tolist() for t in ours[1]["m"]] == [[1], [2, 3]]
    assert [t.tolist() for t in ours[1]["m"]] == [t.tolist() for t in theirs[1]["m"]]
