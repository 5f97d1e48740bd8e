"""The map/filter cache: fingerprints, hits without calling the function, atomic files, num_proc."""

from __future__ import annotations

import functools
import json
import logging
import threading
from pathlib import Path

import pyarrow as pa
import pytest

from peluk.data import Dataset, load_dataset
from peluk.data.cache import ArrowWriter, Unhashable, cache_home, fingerprint, read_arrow
from tests.data.conftest import write

SCALE = 3  # a global the functions below read: part of their fingerprint


def counted(path: str) -> int:
    """Append one line to ``path`` (a call counter that does not change any function's fingerprint)."""
    with open(path, "a") as f:
        f.write("x\n")
    return 0


def calls(path: Path) -> int:
    return len(path.read_text().splitlines()) if path.exists() else 0


def times_scale(batch, log):
    counted(log)
    return {"y": [x * SCALE for x in batch["x"]]}


@pytest.fixture
def data(tmp_path):
    path = write(tmp_path / "numbers.jsonl", "".join(json.dumps({"x": i, "t": f"row {i}"}) + "\n" for i in range(2500)))
    return load_dataset("json", data_files=path, split="train")


def test_cache_home_follows_the_environment(monkeypatch, tmp_path):
    monkeypatch.delenv("PELUK_DATASETS_CACHE")
    monkeypatch.setenv("PELUK_HOME", str(tmp_path / "home"))
    assert cache_home() == tmp_path / "home" / "datasets"
    monkeypatch.delenv("PELUK_HOME")
    assert cache_home() == Path("~/.cache/peluk/datasets").expanduser()


def test_second_map_reads_the_cache_without_calling_the_function(data, tmp_path):
    log = tmp_path / "calls.log"
    first = data.map(times_scale, batched=True, batch_size=500, fn_kwargs={"log": str(log)})
    assert calls(log) == 5 and first["y"][:3] == [0, 3, 6]
    [cache_file] = first.cache_files
    assert Path(cache_file["filename"]).parent == Path(data.cache_files[0]["filename"]).parent
    again = data.map(times_scale, batched=True, batch_size=500, fn_kwargs={"log": str(log)})
    assert calls(log) == 5, "the cached result must be read, not recomputed"
    assert again.fingerprint == first.fingerprint and again.to_list() == first.to_list()
    # the same function loaded again from files gives the same fingerprints
    reloaded = load_dataset("json", data_files=str(tmp_path / "numbers.jsonl"), split="train")
    reloaded.map(times_scale, batched=True, batch_size=500, fn_kwargs={"log": str(log)})
    assert calls(log) == 5
    # load_from_cache_file=False recomputes
    data.map(times_scale, batched=True, batch_size=500, fn_kwargs={"log": str(log)}, load_from_cache_file=False)
    assert calls(log) == 10


def test_changed_function_arguments_or_globals_miss(data, tmp_path, monkeypatch):
    log = tmp_path / "calls.log"
    base = data.map(times_scale, batched=True, batch_size=500, fn_kwargs={"log": str(log)})

    def other(batch, log):  # different code
        counted(log)
        return {"y": [x * SCALE + 1 for x in batch["x"]]}

    assert data.map(other, batched=True, batch_size=500, fn_kwargs={"log": str(log)})["y"][0] == 1
    assert calls(log) == 10
    data.map(times_scale, batched=True, batch_size=250, fn_kwargs={"log": str(log)})  # other batch size
    assert calls(log) == 20
    monkeypatch.setattr(__import__(__name__, fromlist=["SCALE"]), "SCALE", 4)  # a global the function reads
    changed = data.map(times_scale, batched=True, batch_size=500, fn_kwargs={"log": str(log)})
    assert calls(log) == 25 and changed["y"][1] == 4 and changed.fingerprint != base.fingerprint
    # a transform before map changes the input fingerprint
    data.select(range(100)).map(times_scale, batched=True, batch_size=500, fn_kwargs={"log": str(log)})
    assert calls(log) == 26


def test_fingerprint_of_functions():
    def make(k):
        return lambda x: x + k

    assert fingerprint(make(1)) == fingerprint(make(1))  # closure values count
    assert fingerprint(make(1)) != fingerprint(make(2))
    assert fingerprint(lambda x, k=1: x + k) != fingerprint(lambda x, k=2: x + k)  # defaults count

    def outer(x):
        def inner(y):
            return y * SCALE
        return inner(x)

    assert fingerprint(outer) == fingerprint(outer)
    assert fingerprint(functools.partial(times_scale, log="a")) != fingerprint(functools.partial(times_scale, log="b"))
    assert fingerprint({"a": 1, "s": {3, 1, 2}}) == fingerprint({"a": 1, "s": {2, 3, 1}})
    lock = threading.Lock()
    with pytest.raises(Unhashable):
        fingerprint(lambda x: lock)


def test_unhashable_function_gets_a_random_fingerprint(data, tmp_path, caplog):
    log = tmp_path / "calls.log"
    lock = threading.Lock()

    def uses_lock(batch):
        with lock:
            counted(str(log))
        return {"y": batch["x"]}

    with caplog.at_level(logging.DEBUG, logger="peluk"):
        first = data.map(uses_lock, batched=True, batch_size=2500)
    assert "random fingerprint" in caplog.text
    second = data.map(uses_lock, batched=True, batch_size=2500)
    assert calls(log) == 2 and first.fingerprint != second.fingerprint


class Crash(RuntimeError):
    pass


def test_a_crash_mid_write_leaves_no_complete_looking_file(data, tmp_path):
    log = tmp_path / "calls.log"

    def fragile(batch, log, crash_at):
        counted(log)
        if batch["x"][0] == crash_at:
            raise Crash("killed")
        return {"y": [x + 1 for x in batch["x"]]}

    directory = Path(data.cache_files[0]["filename"]).parent
    before = set(directory.iterdir())
    with pytest.raises(Crash):
        data.map(fragile, batched=True, batch_size=500, fn_kwargs={"log": str(log), "crash_at": 1500})
    assert calls(log) == 4
    assert set(directory.iterdir()) == before, "a failed map leaves no file behind"
    # the partial result was never published, so the next run computes everything
    result = data.map(fragile, batched=True, batch_size=500, fn_kwargs={"log": str(log), "crash_at": -1})
    assert result["y"] == [x + 1 for x in range(2500)] and calls(log) == 9


def test_writer_publishes_only_complete_files(tmp_path):
    target = tmp_path / "out.arrow"
    with pytest.raises(Crash):
        with ArrowWriter(target) as writer:
            writer.write(pa.table({"x": [1, 2]}))
            assert not target.exists() and len(list(tmp_path.iterdir())) == 1  # only the temporary file
            raise Crash()
    assert list(tmp_path.iterdir()) == []
    with ArrowWriter(target) as writer:
        writer.write(pa.table({"x": [1, 2]}))
        writer.write(pa.table({"x": [3]}))
    assert read_arrow(target)["x"].to_pylist() == [1, 2, 3] and list(tmp_path.iterdir()) == [target]


@pytest.mark.parametrize("batched", [True, False])
def test_num_proc_equals_one_process(data, batched):
    def fn(example):
        if batched:
            return {"y": [x * 2 for x in example["x"]], "w": [t.split() for t in example["t"]]}
        return {"y": example["x"] * 2, "w": example["t"].split()}

    one = data.map(fn, batched=batched, batch_size=300)
    two = data.map(fn, batched=batched, batch_size=300, num_proc=2)
    assert two.to_list() == one.to_list() and len(two.cache_files) == 2
    three = Dataset.from_dict(data.to_dict()).map(fn, batched=batched, num_proc=3)  # in memory: no cache files
    assert three.to_list() == one.to_list() and three.cache_files == []
    kept = data.filter(lambda r: r["x"] % 7 == 0, num_proc=2)
    assert kept["x"] == [x for x in range(2500) if x % 7 == 0]
    # with_indices gives global row numbers in every shard
    assert data.map(lambda r, i: {"i": i}, with_indices=True, num_proc=2)["i"] == list(range(2500))


def test_num_proc_result_is_cached_per_shard(data, tmp_path):
    log = tmp_path / "calls.log"
    data.map(times_scale, batched=True, batch_size=500, fn_kwargs={"log": str(log)}, num_proc=2)
    assert calls(log) == 6  # 1250 rows per shard: 3 batches each
    again = data.map(times_scale, batched=True, batch_size=500, fn_kwargs={"log": str(log)}, num_proc=2)
    assert calls(log) == 6 and again["y"][-1] == 2499 * SCALE


def test_in_memory_datasets_are_not_cached(tmp_path, peluk_cache):
    log = tmp_path / "calls.log"
    ds = Dataset.from_dict({"x": [1, 2, 3]})
    ds.map(times_scale, batched=True, fn_kwargs={"log": str(log)})
    ds.map(times_scale, batched=True, fn_kwargs={"log": str(log)})
    assert calls(log) == 2 and not peluk_cache.exists()


def test_filter_is_cached(data, tmp_path):
    log = tmp_path / "calls.log"

    def even(row, log):
        if row["x"] == 0:
            counted(log)
        return row["x"] % 2 == 0

    first = data.filter(even, fn_kwargs={"log": str(log)})
    second = data.filter(even, fn_kwargs={"log": str(log)})
    assert calls(log) == 1 and second["x"] == first["x"] == list(range(0, 2500, 2))


def test_a_killed_run_leaves_nothing_that_reads_as_complete(data, tmp_path):
    import subprocess
    import sys

    source = str(tmp_path / "numbers.jsonl")
    script = f"""
import os, signal
from peluk.data import load_dataset
ds = load_dataset("json", data_files={source!r}, split="train")
def dies(batch):
    if batch["x"][0] == 1000:
        os.kill(os.getpid(), signal.SIGKILL)  # no cleanup, no exception handlers: like a power cut
    return {{"y": [x + 1 for x in batch["x"]]}}
ds.map(dies, batched=True, batch_size=500)
"""
    run = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True)
    assert run.returncode == -9, run.stderr
    directory = Path(data.cache_files[0]["filename"]).parent
    leftovers = [p.name for p in directory.iterdir() if p.name.startswith("cache-")]
    assert leftovers == [], "only a temporary file may remain after a kill"
    assert any(p.name.startswith(".tmp-") for p in directory.iterdir())


def test_a_tokenizer_keeps_its_fingerprint_after_use(minilm_dir):
    import peluk

    tokenizer = peluk.AutoTokenizer.from_pretrained(minilm_dir)

    def tokenize(batch):
        return tokenizer(batch["text"], truncation=True, max_length=16)

    before = fingerprint(tokenize)
    tokenize({"text": ["a sentence long enough to be truncated, with many many many words in it"]})
    tokenizer(["x", "longer one"], padding=True)
    assert fingerprint(tokenize) == before  # padding/truncation settings left behind by calls do not count
    other = peluk.AutoTokenizer.from_pretrained(minilm_dir)
    other.add_tokens(["<new>"])

    def using(tok):
        return lambda batch: tok(batch["text"])

    assert fingerprint(using(other)) != fingerprint(using(tokenizer))  # a changed vocabulary does count
    assert fingerprint(using(tokenizer)) == fingerprint(using(tokenizer))
