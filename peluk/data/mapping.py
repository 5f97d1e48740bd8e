"""How ``map`` and ``filter`` run: batch by batch through the function, written as they come.

:func:`run` answers from the cache when every file of the result exists; otherwise it splits
the rows into ``num_proc`` contiguous shards, each mapped by :func:`run_shard` (in forked
worker processes when there are several) into its own Arrow file, so memory holds one batch
at a time. A :class:`Job` is what happens to one batch: the function called on a lazily
converted batch (or row by row), its output merged with the input columns it left alone.
"""

from __future__ import annotations

import logging
import multiprocessing
import os
import tempfile
from collections.abc import Mapping
from pathlib import Path
from typing import Any, Callable

import numpy as np
import pyarrow as pa

from peluk.data.cache import ArrowWriter, read_arrow
from peluk.data.formatting import LazyBatch, column_converter, format_table, to_arrow
from peluk.errors import DatasetError

logger = logging.getLogger("peluk")

_FORKED_JOB = None  # (dataset, job), inherited by forked workers; see _run_parallel


def run(dataset, job: Job, fp: str, num_proc: int | None, load: bool, desc: str) -> tuple[pa.Table, list[Path]]:
    """Run ``job`` over all rows, from the cache when it holds the result: (table, its files)."""
    n = dataset.num_rows
    num_proc = max(1, min(num_proc or 1, n))
    if dataset._cache_dir is not None:
        paths = [dataset._cache_dir / f"cache-{fp}.arrow"] if num_proc == 1 else \
            [dataset._cache_dir / f"cache-{fp}_{i:05d}_of_{num_proc:05d}.arrow" for i in range(num_proc)]
        if load and all(p.exists() for p in paths):
            logger.info("%s: reusing the cached result %s", desc, paths[0] if num_proc == 1 else paths)
            return _concat([read_arrow(p) for p in paths]), paths
    else:
        paths = [None] * num_proc
    # contiguous shards, the first n % num_proc one row longer (as datasets' shard())
    bounds = np.cumsum([0] + [n // num_proc + (i < n % num_proc) for i in range(num_proc)])
    shards = [(int(bounds[i]), int(bounds[i + 1])) for i in range(num_proc)]
    from tqdm.auto import tqdm

    with tqdm(total=n, desc=desc, unit=" examples", disable=None if n > 1000 else True) as bar:
        if num_proc == 1:
            table = run_shard(dataset, job, *shards[0], paths[0], bar.update)
            return table, [p for p in paths if p]
        return _run_parallel(dataset, job, shards, paths, bar)


def _run_parallel(dataset, job: Job, shards, paths, bar) -> tuple[pa.Table, list[Path]]:
    global _FORKED_JOB
    if "fork" not in multiprocessing.get_all_start_methods():
        # Without fork the function would have to be picklable; running the shards here
        # gives the same result, only slower.
        logger.debug("num_proc > 1 needs the 'fork' start method; mapping in one process")
        tables = [run_shard(dataset, job, start, stop, path, bar.update) for (start, stop), path in zip(shards, paths)]
        return _concat(tables), [p for p in paths if p]
    with tempfile.TemporaryDirectory() as scratch:
        # an in-memory dataset's workers hand their shards back through files too
        targets = [p or Path(scratch) / f"shard-{i}.arrow" for i, p in enumerate(paths)]
        _FORKED_JOB = (dataset, job)
        # The tokenizers library turns its thread pool off in forked children (it would
        # deadlock) and warns about it; saying so before forking keeps the warning away.
        parallelism = os.environ.get("TOKENIZERS_PARALLELISM")
        os.environ["TOKENIZERS_PARALLELISM"] = "false"
        try:
            pool = multiprocessing.get_context("fork").Pool(len(shards))
        finally:
            if parallelism is None:
                del os.environ["TOKENIZERS_PARALLELISM"]
            else:
                os.environ["TOKENIZERS_PARALLELISM"] = parallelism
        try:
            with pool:
                work = [(start, stop, str(target)) for (start, stop), target in zip(shards, targets)]
                for rows in pool.imap_unordered(_forked_shard, work):
                    bar.update(rows)
        finally:
            _FORKED_JOB = None
        if paths[0] is not None:
            return _concat([read_arrow(p) for p in paths]), list(paths)
        # read into memory: the scratch files are deleted on leaving this block
        tables = []
        for target in targets:
            with pa.OSFile(str(target)) as source:
                tables.append(pa.ipc.open_stream(source).read_all())
        return _concat(tables), []


def run_shard(dataset, job: Job, start: int, stop: int, path: Path | None, progress: Callable) -> pa.Table:
    """Apply ``job`` to rows ``start:stop``, writing each output batch as it is made."""
    empty = pa.schema([("indices", pa.uint64())]) if job.kind == "filter" else \
        pa.schema([f for f in dataset._table.schema if f.name not in job.remove])
    convert = column_converter(job.format_type)
    with ArrowWriter(path, dataset._features) as writer:
        for lo in range(start, stop, job.batch_size):
            hi = min(lo + job.batch_size, stop)
            if hi - lo < job.batch_size and job.drop_last_batch:
                break
            writer.write(job.apply(dataset._slice(lo, hi), lo, convert, dataset._format))
            progress(hi - lo)
        writer.close(empty)
    return writer.result()


def _forked_shard(work: tuple[int, int, str]) -> int:
    """In a forked worker: map one shard to its file; the dataset and job come from the parent."""
    dataset, job = _FORKED_JOB
    start, stop, path = work
    run_shard(dataset, job, start, stop, Path(path), lambda rows: None)
    return stop - start


class Job:
    """The settings of one ``map`` or ``filter`` call, and what it does to each batch of rows."""

    def __init__(self, kind, function, batched, batch_size, with_indices, fn_kwargs, remove, drop_last_batch,
                 format_type):
        self.kind, self.function, self.batched, self.batch_size = kind, function, batched, batch_size
        self.with_indices, self.fn_kwargs, self.remove = with_indices, fn_kwargs, remove
        self.drop_last_batch, self.format_type = drop_last_batch, format_type

    def call(self, value, indices):
        args = (value, indices) if self.with_indices else (value,)
        return self.function(*args, **self.fn_kwargs)

    def apply(self, table: pa.Table, offset: int, convert: Callable, fmt: dict) -> pa.Table:
        n = table.num_rows
        if self.batched:
            batch = LazyBatch(table, convert)
            out = self.call(batch, list(range(offset, offset + n)))
            if self.kind == "filter":
                return _kept(out, offset, n)
            return self._merge(table, batch, out)
        rows = table.to_pylist() if self.format_type is None else \
            [format_table(table.slice(i, 1), {**fmt, "columns": None}, "row") for i in range(n)]
        outs = []
        for i, row in enumerate(rows):
            out = self.call(row, offset + i)
            if self.kind == "map":
                if out is not None and not isinstance(out, Mapping):
                    raise DatasetError(f"map: the function must return a dict or None, got {type(out).__name__} "
                                       f"for row {offset + i}")
                # None: nothing to update; the input row updated in place: removed columns stay removed
                out = {} if out is None else {k: v for k, v in out.items() if k not in self.remove} \
                    if out is row else out
            outs.append(out)
        if self.kind == "filter":
            return _kept(outs, offset, n)
        names = list(dict.fromkeys(k for out in outs for k in out))
        for i, out in enumerate(outs):
            if len(out) != len(names):
                raise DatasetError(f"map: row {offset + i} returned columns {sorted(out)}, other rows "
                                   f"{sorted(names)}; return the same columns for every row")
        return self._merge(table, None, {name: [out[name] for out in outs] for name in names})

    def _merge(self, table: pa.Table, batch: LazyBatch | None, out) -> pa.Table:
        """Input columns (minus removed ones) updated by the function's output ``out``."""
        if out is None:
            out = {}
        if not isinstance(out, Mapping):
            raise DatasetError(f"map: the function must return a dict or None, got {type(out).__name__}")
        returned_batch = batch is not None and out is batch
        new: dict[str, Any] = {}
        for name in list(out.keys()):
            if returned_batch and name in self.remove:
                continue
            if returned_batch and not batch.touched(name):
                new[name] = table.column(name)  # never read: copy the Arrow data as is
            else:
                new[name] = to_arrow(out[name], name)
        lengths = {name: len(array) for name, array in new.items()}
        if len(set(lengths.values())) > 1:
            raise DatasetError(f"map: the function returned columns of different lengths: {lengths}")
        n_out = next(iter(lengths.values()), table.num_rows)
        kept = [c for c in table.column_names if c not in self.remove]
        if n_out != table.num_rows and any(c not in new for c in kept):
            raise DatasetError(f"map: the function returned {n_out} rows for a batch of {table.num_rows}; to change "
                               f"the number of rows, remove the input columns (remove_columns=dataset.column_names)")
        order = kept + [c for c in new if c not in kept]
        return pa.Table.from_arrays([new[c] if c in new else table.column(c) for c in order], names=order)


def _kept(mask, offset: int, n: int) -> pa.Table:
    """The filter output of one batch: the indices of the rows whose mask entry is true."""
    if hasattr(mask, "detach"):
        mask = mask.detach().cpu().numpy()
    mask = np.asarray(mask)
    if mask.shape != (n,):
        raise DatasetError(f"filter: the function must return one bool per row ({n}), got shape {mask.shape}")
    return pa.table({"indices": pa.array(np.flatnonzero(mask.astype(bool)) + offset, pa.uint64())})


def _concat(tables: list[pa.Table]) -> pa.Table:
    tables = [t for t in tables if t.num_columns or t.num_rows] or tables[:1]
    return pa.concat_tables(tables, promote_options="default") if len(tables) > 1 else tables[0]
