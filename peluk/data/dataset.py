"""Dataset and DatasetDict: Arrow tables with the `datasets` API.

A ``Dataset`` is four things:

* an Arrow **table**, memory-mapped from the cache for data loaded from files (so a large
  dataset costs page cache, not RAM), or held in memory for ``from_dict``/``from_pandas``;
* an optional **indices mapping** (row ``i`` of the dataset is row ``indices[i]`` of the
  table): ``select``, ``shuffle``, ``filter``, ``sort`` and ``train_test_split`` only write
  these 8 bytes per row, never a copy of the data (``flatten_indices`` makes one on purpose);
* a **fingerprint**, chained through every transform, that names cache files
  (see :mod:`peluk.data.cache`); ``map`` and ``filter`` results are written batch by batch
  as Arrow files under it (:mod:`peluk.data.mapping`), so running the same ``map`` again
  reads them back instead;
* a **format** (:mod:`peluk.data.formatting`): how rows come out (Python, numpy, torch, pandas).

Transforms return new datasets and never change the one they are called on (``set_format``
excepted, as in `datasets`).
"""

from __future__ import annotations

import copy
import logging
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any, Callable, Iterable, Iterator

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from peluk.data.cache import ArrowWriter, fingerprint, random_fingerprint, read_arrow
from peluk.data.features import ClassLabel, Features, arrow_type_of
from peluk.data.formatting import check_format, format_table, to_arrow
from peluk.data.mapping import Job, run
from peluk.errors import DatasetError

logger = logging.getLogger("peluk")

_ROWS_PER_READ = 1000  # rows converted per step when iterating or mapping row by row


class Dataset:
    """A table of rows with named, typed columns.

    >>> ds = Dataset.from_dict({"text": ["a", "b", "c"], "label": [0, 1, 0]})
    >>> ds
    Dataset({
        features: ['text', 'label'],
        num_rows: 3
    })
    >>> ds[0], ds["label"], ds[1:3]
    ({'text': 'a', 'label': 0}, [0, 1, 0], {'text': ['b', 'c'], 'label': [1, 0]})
    """

    def __init__(self, table: pa.Table, *, features: Features | None = None, indices: pa.Array | None = None,
                 fingerprint: str | None = None, cache_dir: str | os.PathLike | None = None,
                 files: list[Path] | None = None, split: str | None = None):
        self._table = table
        self._features = Features.from_arrow_schema(table.schema, features)
        self._indices = indices
        self._fingerprint = fingerprint or random_fingerprint()
        self._cache_dir = Path(cache_dir) if cache_dir is not None else None
        self._files = list(files or [])
        self._format = {"type": None, "columns": None, "output_all_columns": False}
        self.split = split

    # --- construction ----------------------------------------------------------------------
    @classmethod
    def from_dict(cls, mapping: Mapping[str, Any], features: Features | None = None) -> "Dataset":
        """A dataset from ``{column: values}`` (lists, numpy arrays or Arrow arrays).

        ``features`` fixes the column types; a ``ClassLabel`` column may be given class names.

        >>> Dataset.from_dict({"label": ["pos", "neg"]}, Features({"label": ClassLabel(names=["neg", "pos"])}))["label"]
        [1, 0]
        """
        table = pa.table({name: to_arrow(values, name) for name, values in mapping.items()})
        return cls(cast_table(table, features) if features else table, features=features)

    @classmethod
    def from_list(cls, rows: list[dict], features: Features | None = None) -> "Dataset":
        """A dataset from a list of dict rows (columns: every key seen, in first-seen order).

        >>> Dataset.from_list([{"a": 1}, {"a": 2, "b": "x"}]).to_list()
        [{'a': 1, 'b': None}, {'a': 2, 'b': 'x'}]
        """
        names = list(dict.fromkeys(key for row in rows for key in row))
        return cls.from_dict({name: [row.get(name) for row in rows] for name in names}, features)

    @classmethod
    def from_pandas(cls, df, features: Features | None = None, preserve_index: bool | None = None) -> "Dataset":
        """A dataset from a pandas DataFrame (a default RangeIndex is not kept as a column).

        >>> import pandas as pd
        >>> Dataset.from_pandas(pd.DataFrame({"a": [1, 2]})).column_names
        ['a']
        """
        table = pa.Table.from_pandas(df, preserve_index=preserve_index).replace_schema_metadata(None)
        return cls(cast_table(table, features) if features else table, features=features)

    # --- what it is -------------------------------------------------------------------------
    @property
    def features(self) -> Features:
        return self._features

    @property
    def column_names(self) -> list[str]:
        return self._table.column_names

    @property
    def num_rows(self) -> int:
        return len(self._indices) if self._indices is not None else self._table.num_rows

    @property
    def num_columns(self) -> int:
        return self._table.num_columns

    @property
    def shape(self) -> tuple[int, int]:
        return self.num_rows, self.num_columns

    @property
    def fingerprint(self) -> str:
        return self._fingerprint

    @property
    def format(self) -> dict:
        return dict(self._format)

    @property
    def cache_files(self) -> list[dict[str, str]]:
        """The Arrow files the table is memory-mapped from (empty for an in-memory dataset)."""
        return [{"filename": str(path)} for path in self._files]

    @property
    def data(self) -> pa.Table:
        """The rows as an Arrow table (with the indices mapping applied)."""
        return self._slice(0, self.num_rows)

    def __len__(self) -> int:
        return self.num_rows

    def __repr__(self) -> str:
        return f"Dataset({{\n    features: {self.column_names},\n    num_rows: {self.num_rows}\n}})"

    # --- reading rows -----------------------------------------------------------------------
    def _slice(self, start: int, stop: int) -> pa.Table:
        """Rows ``start:stop`` as a table."""
        if self._indices is None:
            return self._table.slice(start, stop - start)
        if stop - start == 1:  # one row (ds[i]): a zero-copy slice is cheaper than a take
            return self._table.slice(self._indices[start].as_py(), 1)
        return self._table.take(self._indices.slice(start, stop - start))

    def _take(self, rows) -> pa.Table:
        rows = self._check_rows(rows)
        return self._table.take(pa.array(rows) if self._indices is None else self._indices.take(pa.array(rows)))

    def _check_rows(self, rows) -> np.ndarray:
        rows = np.asarray(rows if not isinstance(rows, range) else np.arange(rows.start, rows.stop, rows.step))
        if rows.size == 0:
            return rows.astype(np.int64)
        if rows.dtype.kind not in "iu":
            raise DatasetError(f"row indices must be integers, got {rows.dtype}")
        rows = np.where(rows < 0, rows + self.num_rows, rows).astype(np.int64)
        if rows.min() < 0 or rows.max() >= self.num_rows:
            raise IndexError(f"row index out of range for a dataset of {self.num_rows} rows")
        return rows

    def _column(self, name: str) -> pa.ChunkedArray:
        self._check_columns([name])
        column = self._table.column(name)
        return column if self._indices is None else column.take(self._indices)

    def __getitem__(self, key):
        """``ds[i]`` a row, ``ds[a:b]`` / ``ds[[i, j]]`` a batch (dict of lists), ``ds["col"]`` a column."""
        if isinstance(key, str):
            return format_table(pa.table({key: self._column(key)}), self._format, "column")
        if isinstance(key, (int, np.integer)):
            i = int(key) + self.num_rows if key < 0 else int(key)
            if not 0 <= i < self.num_rows:
                raise IndexError(f"row {key} is out of range for a dataset of {self.num_rows} rows")
            return format_table(self._slice(i, i + 1), self._format, "row")
        if isinstance(key, slice):
            start, stop, step = key.indices(self.num_rows)
            table = self._slice(start, max(start, stop)) if step == 1 else self._take(range(start, stop, step))
            return format_table(table, self._format, "batch")
        if isinstance(key, (list, tuple, range, np.ndarray)):
            return format_table(self._take(key), self._format, "batch")
        raise DatasetError(f"cannot index a Dataset with {type(key).__name__}; use an int, slice, list or column name")

    def __iter__(self) -> Iterator:
        """Rows one by one (dicts, formatted by the current format)."""
        for start in range(0, self.num_rows, _ROWS_PER_READ):
            table = self._slice(start, min(start + _ROWS_PER_READ, self.num_rows))
            if self._format["type"] is None and self._format["columns"] is None:
                yield from table.to_pylist()
            else:
                for i in range(table.num_rows):
                    yield format_table(table.slice(i, 1), self._format, "row")

    def iter(self, batch_size: int, drop_last_batch: bool = False) -> Iterator:
        """Batches of ``batch_size`` rows (dicts of lists, or formatted)."""
        for start in range(0, self.num_rows, batch_size):
            stop = min(start + batch_size, self.num_rows)
            if stop - start < batch_size and drop_last_batch:
                return
            yield format_table(self._slice(start, stop), self._format, "batch")

    def to_list(self) -> list[dict]:
        return self.data.to_pylist()

    def to_dict(self) -> dict[str, list]:
        return self.data.to_pydict()

    def to_pandas(self):
        return self.data.to_pandas()

    def unique(self, column: str) -> list:
        """The distinct values of ``column``, in order of first appearance.

        >>> Dataset.from_dict({"a": [2, 1, 2]}).unique("a")
        [2, 1]
        """
        return pc.unique(self._column(column)).to_pylist()

    # --- formats ----------------------------------------------------------------------------
    def set_format(self, type: str | None = None, columns: list[str] | None = None,
                   output_all_columns: bool = False) -> None:
        """Set, in place, how rows come out: ``None`` (Python), ``"numpy"``, ``"torch"``, ``"pandas"``, ``"arrow"``.

        Args:
            columns: only these columns come out (formatted); the others too, as Python
                values, when ``output_all_columns`` is true.
        """
        if columns is not None:
            columns = [columns] if isinstance(columns, str) else list(columns)
            self._check_columns(columns)
        self._format = {"type": check_format(type), "columns": columns, "output_all_columns": output_all_columns}

    def reset_format(self) -> None:
        self.set_format(None)

    def with_format(self, type: str | None = None, columns: list[str] | None = None,
                    output_all_columns: bool = False) -> "Dataset":
        """A copy with another format (see :meth:`set_format`).

        >>> ds = Dataset.from_dict({"ids": [[1, 2], [3, 4]], "text": ["a", "b"]}).with_format("torch")
        >>> ds[0]
        {'ids': tensor([1, 2]), 'text': 'a'}
        >>> ds["ids"].shape
        torch.Size([2, 2])
        """
        new = self._copy()
        new.set_format(type, columns, output_all_columns)
        return new

    # --- transforms that only touch the indices mapping ----------------------------------
    def select(self, indices: Iterable[int]) -> "Dataset":
        """The rows at ``indices``, in that order (a mapping, no copy of the data).

        >>> Dataset.from_dict({"a": [10, 20, 30]}).select([2, 0])["a"]
        [30, 10]
        """
        if isinstance(indices, range) and indices.step == 1 and self._indices is None \
                and 0 <= indices.start <= indices.stop <= self.num_rows:
            # a contiguous block: a zero-copy slice of the table instead of a mapping
            table = self._table.slice(indices.start, len(indices))
            return self._copy(table=table, fingerprint=self._fingerprint_of("select", indices))
        rows = self._check_rows(list(indices) if not isinstance(indices, (np.ndarray, range)) else indices)
        return self._with_rows(rows, self._fingerprint_of("select", rows))

    def _with_rows(self, rows: np.ndarray, fingerprint: str) -> "Dataset":
        mapping = pa.array(rows, pa.uint64()) if self._indices is None else self._indices.take(pa.array(rows))
        return self._copy(indices=mapping, fingerprint=fingerprint)

    def shuffle(self, seed: int | None = None, generator: np.random.Generator | None = None) -> "Dataset":
        """Rows in a random order: ``np.random.default_rng(seed).permutation``, as `datasets` does,
        so the same seed gives the same order in both.

        >>> Dataset.from_dict({"a": list(range(5))}).shuffle(seed=42)["a"]
        [4, 2, 3, 1, 0]
        """
        rng = generator if generator is not None else np.random.default_rng(_seed(seed))
        rows = rng.permutation(self.num_rows)
        key = ("shuffle", seed) if seed is not None and generator is None else ("shuffle", rows)
        return self._with_rows(rows, self._fingerprint_of(*key))

    def sort(self, column: str | list[str], reverse: bool | list[bool] = False,
             null_placement: str = "at_end") -> "Dataset":
        """Rows sorted by ``column`` (or several), stable, descending where ``reverse``.

        >>> Dataset.from_dict({"a": [3, 1, 2]}).sort("a", reverse=True)["a"]
        [3, 2, 1]
        """
        columns = [column] if isinstance(column, str) else list(column)
        reverse = [reverse] * len(columns) if isinstance(reverse, bool) else list(reverse)
        keys = pa.table({name: self._column(name) for name in columns})
        sort_keys = [(c, "descending" if r else "ascending") for c, r in zip(columns, reverse)]
        if null_placement != "at_end":  # pyarrow's default; other placements go with each key
            sort_keys = [(c, order, null_placement) for c, order in sort_keys]
        order = pc.sort_indices(keys, sort_keys=sort_keys)
        return self._with_rows(order.to_numpy(), self._fingerprint_of("sort", columns, reverse, null_placement))

    def train_test_split(self, test_size: float | int | None = None, train_size: float | int | None = None,
                         shuffle: bool = True, seed: int | None = None, stratify_by_column: str | None = None,
                         generator: np.random.Generator | None = None) -> "DatasetDict":
        """Split into ``{"train", "test"}``, the same way (and with the same rows per seed) as `datasets`.

        Args:
            test_size, train_size: a fraction (float) or a row count (int); the missing one is
                the rest; both missing means ``test_size=0.25``.
            stratify_by_column: a ``ClassLabel`` column whose class proportions both sides keep.

        >>> ds = Dataset.from_dict({"a": list(range(10))})
        >>> {k: len(v) for k, v in ds.train_test_split(test_size=0.2, seed=0).items()}
        {'train': 8, 'test': 2}
        """
        n = self.num_rows
        n_train, n_test = _split_sizes(n, test_size, train_size)
        rng = generator if generator is not None else np.random.default_rng(_seed(seed)) if shuffle else None
        if not shuffle:
            if stratify_by_column is not None:
                raise DatasetError("train_test_split: stratify_by_column needs shuffle=True")
            train, test = np.arange(n_train), np.arange(n_train, n_train + n_test)
        elif stratify_by_column is not None:
            if not isinstance(self._features.get(stratify_by_column), ClassLabel):
                raise DatasetError(f"train_test_split: stratify_by_column={stratify_by_column!r} must be a ClassLabel "
                                   "column; make it one with class_encode_column first")
            train, test = _stratified_split(self._column(stratify_by_column).to_numpy(), n_train, n_test, rng)
        else:
            permutation = rng.permutation(n)
            test, train = permutation[:n_test], permutation[n_test:n_test + n_train]
        key = ("train_test_split", n_train, n_test, shuffle, seed, stratify_by_column)
        random = seed is None and shuffle
        return DatasetDict({
            "train": self._with_rows(train, random_fingerprint() if random else self._fingerprint_of(*key, "train")),
            "test": self._with_rows(test, random_fingerprint() if random else self._fingerprint_of(*key, "test")),
        })

    # --- transforms of columns ----------------------------------------------------------------
    def rename_column(self, original: str, new: str) -> "Dataset":
        """The same rows with column ``original`` called ``new``."""
        return self.rename_columns({original: new})

    def rename_columns(self, mapping: dict[str, str]) -> "Dataset":
        """The same rows with columns renamed by ``{old: new}``.

        >>> Dataset.from_dict({"a": [1]}).rename_columns({"a": "b"}).column_names
        ['b']
        """
        self._check_columns(list(mapping))
        names = [mapping.get(name, name) for name in self.column_names]
        if len(set(names)) != len(names):
            raise DatasetError(f"rename_columns: the new names {names} are not unique")
        features = Features({mapping.get(k, k): v for k, v in self._features.items()})
        new = self._copy(table=self._table.rename_columns(names), features=features,
                         fingerprint=self._fingerprint_of("rename", mapping))
        if new._format["columns"] is not None:
            new._format["columns"] = [mapping.get(c, c) for c in new._format["columns"]]
        return new

    def remove_columns(self, column_names: str | list[str]) -> "Dataset":
        """The same rows without ``column_names``."""
        names = self._check_columns(column_names)
        return self.select_columns([c for c in self.column_names if c not in names])

    def select_columns(self, column_names: str | list[str]) -> "Dataset":
        """Only ``column_names``, in that order.

        >>> Dataset.from_dict({"a": [1], "b": [2]}).select_columns(["b"]).column_names
        ['b']
        """
        names = self._check_columns(column_names)
        new = self._copy(table=self._table.select(names), fingerprint=self._fingerprint_of("select_columns", names))
        if new._format["columns"] is not None:
            new._format["columns"] = [c for c in new._format["columns"] if c in names]
        return new

    def cast_column(self, column: str, feature) -> "Dataset":
        """Column ``column`` converted to ``feature``'s type (a ``ClassLabel`` also takes class names).

        >>> ds = Dataset.from_dict({"y": ["neg", "pos"]}).cast_column("y", ClassLabel(names=["neg", "pos"]))
        >>> ds["y"], ds.features["y"]
        ([0, 1], ClassLabel(names=['neg', 'pos']))
        """
        self._check_columns([column])
        features = Features({**self._features, column: feature})
        table = cast_table(self._table, Features({column: feature}))
        return self._copy(table=table, features=features, fingerprint=self._fingerprint_of("cast", column, repr(feature)))

    def cast(self, features: Features) -> "Dataset":
        """Every column converted to ``features`` (which must name exactly this dataset's columns)."""
        if set(features) != set(self.column_names):
            raise DatasetError(f"cast: features name {sorted(features)}, the dataset has {sorted(self.column_names)}")
        table = cast_table(self._table, features).select(list(features))
        return self._copy(table=table, features=Features(features), fingerprint=self._fingerprint_of("cast", repr(features)))

    def class_encode_column(self, column: str, include_nulls: bool = False) -> "Dataset":
        """Turn a column of labels into a ``ClassLabel``: names are the sorted distinct values
        (as strings, like `datasets`), values their ids.

        >>> ds = Dataset.from_dict({"y": ["pos", "neg", "pos"]}).class_encode_column("y")
        >>> ds["y"], ds.features["y"].names
        ([1, 0, 1], ['neg', 'pos'])
        """
        names = sorted(str(v) for v in self.unique(column) if include_nulls or v is not None)
        return self._class_encode(column, ClassLabel(names=names), include_nulls)

    def _class_encode(self, column: str, label: ClassLabel, include_nulls: bool = False) -> "Dataset":
        if isinstance(self._features[column], ClassLabel):
            raise DatasetError(f"class_encode_column: {column!r} is already a ClassLabel column")
        values = self._table.column(column)
        if not (pa.types.is_string(values.type) or pa.types.is_large_string(values.type)) or include_nulls:
            values = pa.array([str(v) if v is not None or include_nulls else None for v in values.to_pylist()], pa.string())
        # ids over the whole table: rows the indices mapping hides may hold other values (-> null)
        ids = pc.index_in(values, value_set=pa.array(label.names, values.type)).cast(pa.int64())
        table = self._table.set_column(self.column_names.index(column), column, ids)
        features = Features({**self._features, column: label})
        return self._copy(table=table, features=features, fingerprint=self._fingerprint_of("class_encode", column, label.names))

    def add_column(self, name: str, column: list | np.ndarray | pa.Array) -> "Dataset":
        """A copy with one more column, aligned with the rows.

        >>> Dataset.from_dict({"a": [1, 2]}).add_column("b", ["x", "y"])[1]
        {'a': 2, 'b': 'y'}
        """
        if name in self.column_names:
            raise DatasetError(f"add_column: column {name!r} already exists")
        array = to_arrow(column, name)
        if len(array) != self.num_rows:
            raise DatasetError(f"add_column: {name!r} has {len(array)} values for {self.num_rows} rows")
        base = self.flatten_indices() if self._indices is not None else self
        table = base._table.append_column(name, array)
        return base._copy(table=table, fingerprint=self._fingerprint_of("add_column", name, array.to_pylist()))

    def flatten_indices(self) -> "Dataset":
        """The rows the indices mapping points at, written out as a table of their own."""
        if self._indices is None:
            return self
        fp = self._fingerprint_of("flatten_indices")
        path = self._cache_dir / f"cache-{fp}.arrow" if self._cache_dir else None
        if path is None or not path.exists():
            with ArrowWriter(path, self._features) as writer:
                for start in range(0, self.num_rows, _ROWS_PER_READ * 10):
                    writer.write(self._slice(start, min(start + _ROWS_PER_READ * 10, self.num_rows)))
                writer.close(self._table.schema)
            table = writer.result()
        else:
            table = read_arrow(path)
        return self._copy(table=table, indices=None, fingerprint=fp, files=[path] if path else [])

    # --- map and filter ------------------------------------------------------------------------
    def map(self, function: Callable | None = None, with_indices: bool = False, batched: bool = False,
            batch_size: int | None = 1000, remove_columns: str | list[str] | None = None, num_proc: int | None = None,
            fn_kwargs: dict | None = None, load_from_cache_file: bool = True, desc: str | None = None,
            drop_last_batch: bool = False) -> "Dataset":
        """Apply ``function`` to every row (or batch) and keep what it returns as columns.

        ``function(row)`` (or ``function(batch)`` with ``batched=True``; plus the row indices with
        ``with_indices``; plus ``**fn_kwargs``) returns a dict of new or updated columns, or ``None``.
        A batched function may return more or fewer rows than it got if the input columns
        are removed (``remove_columns=ds.column_names``).

        For data loaded from files the result is written, batch by batch, to an Arrow file in
        the cache named by the fingerprint of this dataset and of ``function`` (its code,
        constants, closure and globals); the same call later reads it back without calling
        ``function``, unless ``load_from_cache_file=False``.

        Args:
            batch_size: rows per batch (``None`` or <= 0: the whole dataset as one batch).
            remove_columns: input columns to drop (before the function's columns are added).
            num_proc: split the rows into this many contiguous shards, mapped in parallel
                processes; the result equals ``num_proc=1``'s.
            desc: the progress bar's label (a bar is shown for more than 1000 rows on a terminal).

        Raises:
            DatasetError: unknown columns, a function returning something other than a dict,
                columns of different lengths, or values with no common type.

        >>> ds = Dataset.from_dict({"text": ["a b", "c"]})
        >>> ds.map(lambda row: {"n": len(row["text"].split())})["n"]
        [2, 1]
        >>> ds.map(lambda b: {"upper": [t.upper() for t in b["text"]]}, batched=True, remove_columns="text")[0]
        {'upper': 'A B'}
        """
        remove = self._check_columns(remove_columns or [])
        if batched and (batch_size is None or batch_size <= 0):
            batch_size = max(self.num_rows, 1)
        job = Job("map", function or (lambda _: None), batched, batch_size if batched else _ROWS_PER_READ,
                  with_indices, dict(fn_kwargs or {}), remove, drop_last_batch and batched, self._format["type"])
        fp = self._fingerprint_of("map", job.function, batched, job.batch_size, with_indices, job.fn_kwargs,
                                  remove, job.drop_last_batch, job.format_type)
        table, files = run(self, job, fp, num_proc, load_from_cache_file, desc or "Map")
        kept = Features({k: v for k, v in self._features.items() if k not in remove})
        new = Dataset(table, features=kept, fingerprint=fp, cache_dir=self._cache_dir, files=files, split=self.split)
        new._format = {**self._format, "columns": None if self._format["columns"] is None
                       else [c for c in self._format["columns"] if c in new.column_names]}
        return new

    def filter(self, function: Callable, with_indices: bool = False, batched: bool = False, batch_size: int | None = 1000,
               num_proc: int | None = None, fn_kwargs: dict | None = None, load_from_cache_file: bool = True,
               desc: str | None = None) -> "Dataset":
        """The rows for which ``function(row)`` is true (``function(batch)`` returns a list of bools when
        ``batched``). Cached and parallel like :meth:`map`; the result is an indices mapping.

        >>> Dataset.from_dict({"a": [1, 2, 3, 4]}).filter(lambda row: row["a"] % 2 == 0)["a"]
        [2, 4]
        """
        if batched and (batch_size is None or batch_size <= 0):
            batch_size = max(self.num_rows, 1)
        job = Job("filter", function, batched, batch_size if batched else _ROWS_PER_READ, with_indices,
                  dict(fn_kwargs or {}), [], False, self._format["type"])
        fp = self._fingerprint_of("filter", function, batched, job.batch_size, with_indices, job.fn_kwargs, job.format_type)
        table, _ = run(self, job, fp, num_proc, load_from_cache_file, desc or "Filter")
        return self._with_rows(table.column("indices").to_numpy(), fp)

    # --- saving ------------------------------------------------------------------------------
    def save_to_disk(self, path: str | os.PathLike) -> None:
        """Write the dataset to a directory that :func:`load_from_disk` (or `datasets`) reads back."""
        from peluk.data.io import save_to_disk

        save_to_disk(self, path)

    # --- helpers -----------------------------------------------------------------------------
    def _copy(self, **changes) -> "Dataset":
        new = copy.copy(self)
        new._format = dict(self._format)
        for key in ("table", "indices", "fingerprint", "files"):
            if key in changes:
                setattr(new, "_" + key, changes[key])
        if "table" in changes or "features" in changes:
            new._features = Features.from_arrow_schema(new._table.schema, changes.get("features", self._features))
        return new

    def _check_columns(self, names: str | list[str]) -> list[str]:
        names = [names] if isinstance(names, str) else list(names)
        missing = [n for n in names if n not in self._table.column_names]
        if missing:
            raise DatasetError(f"no column {', '.join(map(repr, missing))}; the columns are {self.column_names}")
        return names

    def _fingerprint_of(self, *transform) -> str:
        """The fingerprint after ``transform``, or a random one if some argument cannot be hashed."""
        try:
            return fingerprint(self._fingerprint, *transform)
        except Exception as e:  # Unhashable, or anything an exotic object raises while hashed
            logger.debug("%s: cannot fingerprint the arguments (%s); the result gets a random fingerprint "
                         "and will not be reused from the cache", transform[0], e)
            return random_fingerprint()


def _seed(seed: int | None) -> int:
    """``seed``, or one drawn from numpy's global state (so ``np.random.seed`` makes runs repeatable)."""
    if seed is not None:
        return seed
    _, state, pos, *_ = np.random.get_state()
    value = state[pos] if pos < 624 else state[0]
    np.random.random()  # advance the global state, so the next call draws another seed
    return int(value)


def _split_sizes(n: int, test_size, train_size) -> tuple[int, int]:
    """Train and test row counts, computed as `datasets` does (ceil for test, floor for train)."""
    import math

    if test_size is None and train_size is None:
        test_size = 0.25
    for name, size in (("test_size", test_size), ("train_size", train_size)):
        if size is None:
            continue
        if isinstance(size, float) and not 0 < size < 1 or isinstance(size, int) and not 0 < size < n:
            raise DatasetError(f"train_test_split: {name}={size} must be a fraction in (0, 1) or a row count in "
                               f"(0, {n})")
    n_test = math.ceil(test_size * n) if isinstance(test_size, float) else test_size
    n_train = math.floor(train_size * n) if isinstance(train_size, float) else train_size
    n_train = n - n_test if n_train is None else n_train
    n_test = n - n_train if n_test is None else n_test
    if n_train + n_test > n or n_train == 0:
        raise DatasetError(f"train_test_split: {n_train} train + {n_test} test rows do not fit in {n} rows")
    return int(n_train), int(n_test)


def _stratified_split(labels: np.ndarray, n_train: int, n_test: int, rng) -> tuple[np.ndarray, np.ndarray]:
    """Scikit-learn's StratifiedShuffleSplit, first split, as `datasets` implements it."""
    classes, y = np.unique(labels, return_inverse=True)
    counts = np.bincount(y)
    if counts.min() < 2:
        raise DatasetError("train_test_split: the least populated class has only 1 row; stratifying needs 2 per class")
    if n_train < len(classes) or n_test < len(classes):
        raise DatasetError(f"train_test_split: train ({n_train}) and test ({n_test}) need at least one row per "
                           f"class ({len(classes)})")
    by_class = np.split(np.argsort(y, kind="mergesort"), np.cumsum(counts)[:-1])
    train_counts = _approximate_mode(counts, n_train, rng)
    test_counts = _approximate_mode(counts - train_counts, n_test, rng)
    train, test = [], []
    for i in range(len(classes)):
        rows = by_class[i].take(rng.permutation(counts[i]), mode="clip")
        train.extend(rows[:train_counts[i]])
        test.extend(rows[train_counts[i]:train_counts[i] + test_counts[i]])
    return rng.permutation(train), rng.permutation(test)


def _approximate_mode(class_counts: np.ndarray, n_draws: int, rng) -> np.ndarray:
    """Rows to draw per class: proportional, rounded down, the remainder to the largest fractions
    (ties broken at random), as scikit-learn and `datasets` do."""
    continuous = n_draws * class_counts / class_counts.sum()
    floored = np.floor(continuous)
    need = int(n_draws - floored.sum())
    if need > 0:
        remainder = continuous - floored
        for value in np.sort(np.unique(remainder))[::-1]:
            (candidates,) = np.where(remainder == value)
            chosen = rng.choice(candidates, size=min(len(candidates), need), replace=False)
            floored[chosen] += 1
            need -= len(chosen)
            if need == 0:
                break
    return floored.astype(np.int64)


def cast_table(table: pa.Table, features: Mapping) -> pa.Table:
    """``table`` with the columns named in ``features`` converted to them (class names to ids).

    Raises:
        DatasetError: a feature names a missing column, or a value does not convert.
    """
    missing = [name for name in features if name not in table.column_names]
    if missing:
        raise DatasetError(f"features name columns {missing} that the data does not have ({table.column_names})")
    for name, feature in features.items():
        i = table.column_names.index(name)
        column = table.column(i)
        try:
            if isinstance(feature, ClassLabel):
                column = feature.encode_storage(column)
            else:
                column = column.cast(arrow_type_of(feature))
        except (pa.ArrowInvalid, pa.ArrowNotImplementedError, pa.ArrowTypeError) as e:
            raise DatasetError(f"column {name!r} cannot be cast to {feature!r}: {e}") from None
        table = table.set_column(i, name, column)
    return table


def concatenate_datasets(datasets: list[Dataset]) -> Dataset:
    """The rows of ``datasets`` one after another (their columns must agree).

    >>> concatenate_datasets([Dataset.from_dict({"a": [1]}), Dataset.from_dict({"a": [2]})])["a"]
    [1, 2]
    """
    if not datasets:
        raise DatasetError("concatenate_datasets needs at least one dataset")
    names = datasets[0].column_names
    for ds in datasets[1:]:
        if sorted(ds.column_names) != sorted(names):
            raise DatasetError(f"concatenate_datasets: columns differ: {names} vs {ds.column_names}")
    parts = [ds.flatten_indices()._table.select(names) for ds in datasets]
    try:
        table = pa.concat_tables(parts, promote_options="default")
    except (pa.ArrowInvalid, pa.ArrowTypeError) as e:
        raise DatasetError(f"concatenate_datasets: column types differ: {e}") from None
    first = datasets[0]
    files = [f for ds in datasets for f in ds._files]
    return Dataset(table, features=first.features, fingerprint=fingerprint("concatenate", [d.fingerprint for d in datasets]),
                   cache_dir=first._cache_dir, files=files)


class DatasetDict(dict):
    """Named splits (``{"train": Dataset, "test": Dataset}``); transforms apply to every split.

    >>> dd = DatasetDict({"train": Dataset.from_dict({"a": [1, 2]}), "test": Dataset.from_dict({"a": [3]})})
    >>> dd.map(lambda row: {"b": row["a"] * 10}).num_rows
    {'train': 2, 'test': 1}
    """

    def _each(self, method: str, *args, **kwargs) -> "DatasetDict":
        return DatasetDict({name: getattr(ds, method)(*args, **kwargs) for name, ds in self.items()})

    def map(self, function=None, **kwargs) -> "DatasetDict":
        return self._each("map", function, **kwargs)

    def filter(self, function, **kwargs) -> "DatasetDict":
        return self._each("filter", function, **kwargs)

    def shuffle(self, seed: int | None = None, **kwargs) -> "DatasetDict":
        return self._each("shuffle", seed, **kwargs)

    def sort(self, column, **kwargs) -> "DatasetDict":
        return self._each("sort", column, **kwargs)

    def select_columns(self, column_names) -> "DatasetDict":
        return self._each("select_columns", column_names)

    def remove_columns(self, column_names) -> "DatasetDict":
        return self._each("remove_columns", column_names)

    def rename_column(self, original: str, new: str) -> "DatasetDict":
        return self._each("rename_column", original, new)

    def rename_columns(self, mapping: dict[str, str]) -> "DatasetDict":
        return self._each("rename_columns", mapping)

    def cast_column(self, column: str, feature) -> "DatasetDict":
        return self._each("cast_column", column, feature)

    def cast(self, features: Features) -> "DatasetDict":
        return self._each("cast", features)

    def class_encode_column(self, column: str, include_nulls: bool = False) -> "DatasetDict":
        """Like ``Dataset.class_encode_column``, with one set of class names drawn from all splits
        (so label ids mean the same in every split, even one that lacks a class)."""
        values = {v for ds in self.values() for v in ds.unique(column) if include_nulls or v is not None}
        label = ClassLabel(names=sorted(str(v) for v in values))
        return DatasetDict({name: ds._class_encode(column, label, include_nulls) for name, ds in self.items()})

    def flatten_indices(self) -> "DatasetDict":
        return self._each("flatten_indices")

    def with_format(self, type: str | None = None, columns=None, output_all_columns: bool = False) -> "DatasetDict":
        return self._each("with_format", type, columns, output_all_columns)

    def set_format(self, type: str | None = None, columns=None, output_all_columns: bool = False) -> None:
        for ds in self.values():
            ds.set_format(type, columns, output_all_columns)

    def reset_format(self) -> None:
        self.set_format(None)

    def unique(self, column: str) -> dict[str, list]:
        return {name: ds.unique(column) for name, ds in self.items()}

    @property
    def column_names(self) -> dict[str, list[str]]:
        return {name: ds.column_names for name, ds in self.items()}

    @property
    def num_rows(self) -> dict[str, int]:
        return {name: ds.num_rows for name, ds in self.items()}

    @property
    def shape(self) -> dict[str, tuple[int, int]]:
        return {name: ds.shape for name, ds in self.items()}

    def save_to_disk(self, path: str | os.PathLike) -> None:
        """Write every split under ``path`` (one folder each) for :func:`load_from_disk`."""
        from peluk.data.io import save_to_disk

        save_to_disk(self, path)

    def __repr__(self) -> str:
        inner = ",\n".join(f"    {name}: " + repr(ds).replace("\n", "\n    ") for name, ds in self.items())
        return f"DatasetDict({{\n{inner}\n}})"
