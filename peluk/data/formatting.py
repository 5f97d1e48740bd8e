"""How rows leave a dataset (formats) and how a function's results come back in (to Arrow).

Formats, as in `datasets`' ``with_format``:

* ``None`` (Python): a row is a dict of Python values; a batch a dict of lists; a column a list.
* ``"numpy"``: numbers become arrays, strings ``str_`` arrays; lists of equal-length lists become
  2-D arrays, ragged lists object arrays of arrays.
* ``"torch"``: like numpy, then tensors: integers as int64 and floats as float32 (the dtypes
  models expect, as `datasets` does), ragged lists stay lists of tensors, strings stay strings.
* ``"pandas"``: rows and batches are DataFrames, a column is a Series. ``"arrow"``: ``pyarrow.Table``.
"""

from __future__ import annotations

from collections.abc import MutableMapping
from typing import Any, Callable

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from peluk.errors import DatasetError

FORMATS = {None: None, "python": None, "numpy": "numpy", "np": "numpy", "torch": "torch", "pt": "torch",
           "pandas": "pandas", "pd": "pandas", "arrow": "arrow", "pa": "arrow"}
# `datasets` stores these tokenizer outputs in small integer types; the values always fit.
_SMALL_INTS = {"input_ids": pa.int32(), "attention_mask": pa.int8(), "token_type_ids": pa.int8(),
               "special_tokens_mask": pa.int8()}


def check_format(kind: str | None) -> str | None:
    if kind not in FORMATS:
        raise DatasetError(f"unknown format {kind!r}; use one of None, 'numpy', 'torch', 'pandas', 'arrow'")
    return FORMATS[kind]


def column_converter(kind: str | None) -> Callable[[pa.ChunkedArray], Any]:
    """The function that turns one Arrow column into the values of format ``kind``."""
    if kind == "numpy":
        return to_numpy
    if kind == "torch":
        return lambda column: to_torch(to_numpy(column))
    if kind == "pandas":
        return lambda column: column.to_pandas()
    if kind == "arrow":
        return lambda column: column
    return lambda column: column.to_pylist()


def format_table(table: pa.Table, fmt: dict, kind: str) -> Any:
    """Format ``table`` as one row (``kind="row"``: a one-row table), a batch or a column.

    ``fmt`` is a dataset's format: ``{"type": ..., "columns": [...] or None, "output_all_columns": bool}``;
    columns outside ``fmt["columns"]`` are dropped, or kept as Python values with ``output_all_columns``.
    """
    kind_of_format, chosen = fmt["type"], fmt["columns"]
    if kind == "column":
        column = table.column(0)
        formatted = chosen is None or table.column_names[0] in chosen
        return column_converter(kind_of_format if formatted else None)(column)
    if chosen is not None and not fmt["output_all_columns"]:
        table = table.select([c for c in table.column_names if c in chosen])
    if kind_of_format in ("pandas", "arrow"):
        if kind_of_format == "arrow":
            return table
        return table.to_pandas()
    if kind_of_format is None:
        return table.to_pylist()[0] if kind == "row" else table.to_pydict()
    convert = column_converter(kind_of_format)
    out = {}
    for name in table.column_names:
        value = convert(table.column(name)) if chosen is None or name in chosen else table.column(name).to_pylist()
        out[name] = value[0] if kind == "row" else value
    return out


def to_numpy(column: pa.ChunkedArray) -> np.ndarray:
    """One column as a numpy array (2-D and more for equal-length lists, object arrays for ragged ones)."""
    t = column.type
    if pa.types.is_integer(t) or pa.types.is_floating(t) or pa.types.is_boolean(t):
        return column.to_numpy()
    if pa.types.is_list(t) or pa.types.is_large_list(t) or pa.types.is_fixed_size_list(t):
        inner = t.value_type
        flat_ok = pa.types.is_integer(inner) or pa.types.is_floating(inner) or pa.types.is_boolean(inner)
        array = column.combine_chunks() if column.num_chunks != 1 else column.chunk(0)
        if flat_ok and array.null_count == 0 and len(array):
            lengths = pc.list_value_length(array)
            low, high = pc.min_max(lengths).values()
            if low.as_py() == high.as_py():  # a rectangle: one reshape, no Python loop
                return array.flatten().to_numpy(zero_copy_only=False).reshape(len(array), high.as_py())
        # row by row, through Arrow so that each row keeps the column's dtype (even when empty)
        rows = [to_numpy(pa.chunked_array([array[i].values])) if array[i].is_valid else None
                for i in range(len(array))]
        if rows and all(isinstance(r, np.ndarray) and r.dtype != object for r in rows) \
                and len({r.shape for r in rows}) == 1:
            return np.stack(rows)
        out = np.empty(len(rows), dtype=object)
        for i, row in enumerate(rows):
            out[i] = row
        return out
    if pa.types.is_string(t) or pa.types.is_large_string(t):
        return np.array(column.to_pylist(), dtype=str) if len(column) else np.array([], dtype=str)
    return _nested(column.to_pylist())


def _nested(values: list) -> np.ndarray:
    """np.array(values), or an object array of arrays where the lengths differ."""
    try:
        array = np.array(values)
        if array.dtype != object:
            return array
    except ValueError:  # inhomogeneous shape
        pass
    out = np.empty(len(values), dtype=object)
    for i, value in enumerate(values):
        out[i] = _nested(value) if isinstance(value, list) else value
    return out


def to_torch(array: Any) -> Any:
    """A numpy value as torch: tensors for numbers, lists of tensors for ragged arrays, str for text."""
    import torch

    if isinstance(array, np.ndarray):
        if array.dtype == object:
            return [to_torch(v) for v in array]
        if array.dtype.kind in "US":
            return array.tolist()
        if array.dtype.kind in "iu":
            array = array.astype(np.int64, copy=False)
        elif array.dtype.kind == "f":
            array = array.astype(np.float32, copy=False)
        # arrays straight from a memory-mapped table are read-only; tensors must own writable memory
        return torch.from_numpy(array if array.flags.writeable else array.copy())
    if isinstance(array, np.generic):
        return array.item() if array.dtype.kind in "US" else to_torch(np.asarray(array))
    return array


class LazyBatch(MutableMapping):
    """A batch handed to ``map``/``filter``: columns are converted only when the function reads them.

    ``touched(name)`` tells the writer whether a column may have changed; untouched columns are
    copied over as Arrow data without a round trip through Python.
    """

    def __init__(self, table: pa.Table, convert: Callable[[pa.ChunkedArray], Any]):
        self.table, self.convert = table, convert
        self.data: dict[str, Any] = {}
        self.deleted: set[str] = set()

    def __getitem__(self, key: str) -> Any:
        if key not in self.data:
            if key in self.deleted or key not in self.table.column_names:
                raise KeyError(key)
            self.data[key] = self.convert(self.table.column(key))
        return self.data[key]

    def __setitem__(self, key: str, value: Any) -> None:
        self.deleted.discard(key)
        self.data[key] = value

    def __delitem__(self, key: str) -> None:
        if key not in self:
            raise KeyError(key)
        self.data.pop(key, None)
        self.deleted.add(key)

    def __iter__(self):
        names = [n for n in self.table.column_names if n not in self.deleted]
        return iter(names + [k for k in self.data if k not in names])

    def __len__(self) -> int:
        return sum(1 for _ in self)

    def __contains__(self, key) -> bool:
        return key in self.data or (key in self.table.column_names and key not in self.deleted)

    def touched(self, key: str) -> bool:
        return key in self.data

    def __repr__(self) -> str:
        return f"LazyBatch({list(self)}, {self.table.num_rows} rows)"


def to_arrow(values: Any, name: str) -> pa.Array | pa.ChunkedArray:
    """A function's output column (list, numpy array, tensor, Series or Arrow) as an Arrow array.

    Raises:
        DatasetError: the values have no common Arrow type (say, numbers mixed with strings).
    """
    if isinstance(values, (pa.Array, pa.ChunkedArray)):
        return values
    values = _plain(values)
    try:
        array = pa.array(values)
    except (pa.ArrowInvalid, pa.ArrowTypeError, pa.ArrowNotImplementedError) as e:
        raise DatasetError(f"column {name!r}: the values have no common type ({e})") from None
    small = _SMALL_INTS.get(name)
    if small is not None:
        target = small if pa.types.is_int64(array.type) else (
            pa.list_(small) if pa.types.is_list(array.type) and pa.types.is_int64(array.type.value_type) else None)
        if target is not None:
            try:
                array = array.cast(target)
            except pa.ArrowInvalid:  # a value out of the small type's range: keep int64
                pass
    return array


def _plain(values: Any) -> Any:
    """Tensors and arrays as something ``pa.array`` takes (numpy, or lists of numpy arrays)."""
    if hasattr(values, "detach") and hasattr(values, "numpy"):  # a torch tensor, without importing torch
        values = values.detach().cpu().numpy()
    if isinstance(values, np.ndarray):
        return values if values.ndim == 1 else list(values)
    if type(values).__name__ == "Series":
        return values.to_numpy() if values.dtype != object else values.tolist()
    if isinstance(values, (list, tuple)) and values and hasattr(values[0], "detach"):
        return [v.detach().cpu().numpy() for v in values]
    return values
