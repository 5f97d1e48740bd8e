"""The dataset cache: where it lives, how entries are named, how they are written and read.

* **Where**: :func:`cache_home` is ``$PELUK_DATASETS_CACHE``, else ``$PELUK_HOME/datasets``,
  else ``~/.cache/peluk/datasets``. Files loaded by ``load_dataset`` are converted to Arrow
  once under it; ``map``/``filter`` results are written next to their source's Arrow files.
* **Names**: fingerprints. A loaded split's fingerprint hashes its source files' paths, sizes
  and modification times; every transform hashes the previous fingerprint with its own name
  and arguments, and for ``map``/``filter`` the function itself (:func:`fingerprint` hashes
  code, constants, defaults, closure values and the globals it uses, recursively). An object
  that cannot be hashed deterministically raises :class:`Unhashable`; the caller then uses a
  random fingerprint, i.e. no cache reuse, as `datasets` does.
* **How**: Arrow IPC streams, written batch by batch (:class:`ArrowWriter`) to a temporary
  file in the same directory, fsynced, then renamed into place: a file under a final name is
  always complete. Reading memory-maps them (:func:`read_arrow`), so a cached table costs no RAM.
"""

from __future__ import annotations

import functools
import hashlib
import os
import pickle
import struct
import sys
import types
import uuid
from pathlib import Path
from typing import Any

import pyarrow as pa

from peluk.data.features import Features
from peluk.errors import DatasetError

# Attributes that change when an object is *used* but not what it computes: hashing them would
# make a tokenizer's fingerprint differ after its first call, and every cached map a miss.
# (`datasets` special-cases transformers' tokenizers the same way.)
_VOLATILE_ATTRIBUTES = {"peluk.tokenizer.Tokenizer": {"_rust_settings", "_warned_too_long"}}


def cache_home() -> Path:
    """The root of peluk's dataset cache (see the module docstring for the environment variables)."""
    if os.environ.get("PELUK_DATASETS_CACHE"):
        return Path(os.environ["PELUK_DATASETS_CACHE"]).expanduser()
    if os.environ.get("PELUK_HOME"):
        return Path(os.environ["PELUK_HOME"]).expanduser() / "datasets"
    return Path("~/.cache/peluk/datasets").expanduser()


class Unhashable(Exception):
    """An object whose content cannot be hashed deterministically (an open file, a lock...)."""


def fingerprint(*parts: Any) -> str:
    """A 16-hex-digit hash of ``parts`` (any mix of values, functions and objects).

    Raises:
        Unhashable: some part cannot be hashed deterministically.

    >>> fingerprint("map", lambda x: x + 1) == fingerprint("map", lambda x: x + 1)
    True
    >>> fingerprint("map", lambda x: x + 1) == fingerprint("map", lambda x: x + 2)
    False
    """
    hasher = _Hasher()
    hasher.update(parts)
    return hasher.digest.hexdigest()


def random_fingerprint() -> str:
    return uuid.uuid4().hex[:16]


class _Hasher:
    """Feeds a value into blake2b as a tagged byte stream; revisited objects become back-references."""

    def __init__(self):
        self.digest = hashlib.blake2b(digest_size=8)
        self.seen: dict[int, int] = {}
        self.alive: list = []  # keeps hashed temporaries alive so their ids are not reused

    def write(self, tag: str, data: bytes = b"") -> None:
        self.digest.update(tag.encode() + struct.pack("<Q", len(data)) + data)

    def update(self, obj: Any) -> None:
        if obj is None or isinstance(obj, (bool, int, float, complex, str, bytes)):
            self.write(type(obj).__name__, obj if isinstance(obj, bytes) else repr(obj).encode())
            return
        if id(obj) in self.seen:
            self.write("ref", str(self.seen[id(obj)]).encode())
            return
        self.seen[id(obj)] = len(self.seen)
        self.alive.append(obj)
        if isinstance(obj, (list, tuple)):
            self.write(type(obj).__name__, str(len(obj)).encode())
            for item in obj:
                self.update(item)
        elif isinstance(obj, dict):
            self.write("dict", str(len(obj)).encode())
            for key, value in obj.items():
                self.update(key)
                self.update(value)
        elif isinstance(obj, (set, frozenset)):
            self.write("set", b"".join(sorted(bytes.fromhex(fingerprint(item)) for item in obj)))
        elif isinstance(obj, (range, slice)):
            self.write(type(obj).__name__, repr(obj).encode())
        elif isinstance(obj, types.CodeType):
            self._code(obj)
        elif isinstance(obj, types.FunctionType):
            self._function(obj)
        elif isinstance(obj, types.MethodType):
            self.write("method")
            self.update(obj.__self__)
            self.update(obj.__func__)
        elif isinstance(obj, (types.BuiltinFunctionType, types.ModuleType, type)):
            owner = getattr(obj, "__self__", None)
            self.write("named", f"{getattr(obj, '__module__', None)}.{getattr(obj, '__qualname__', obj.__name__)}".encode())
            if owner is not None and not isinstance(owner, types.ModuleType):
                self.update(owner)  # a bound builtin method such as " ".join
        elif isinstance(obj, functools.partial):
            self.write("partial")
            self.update((obj.func, obj.args, obj.keywords))
        else:
            self._object(obj)

    def _code(self, code: types.CodeType) -> None:
        # Not the file name or line numbers: moving a function does not change what it computes.
        self.write("code", code.co_code)
        self.update((code.co_consts, code.co_names, code.co_varnames, code.co_freevars, code.co_cellvars,
                     code.co_argcount, code.co_kwonlyargcount, code.co_flags,
                     getattr(code, "co_exceptiontable", b"")))

    def _function(self, fn: types.FunctionType) -> None:
        self.write("function")
        self.update(fn.__code__)
        self.update((fn.__defaults__, fn.__kwdefaults__))
        for cell in fn.__closure__ or ():
            try:
                self.update(cell.cell_contents)
            except ValueError:  # a cell not filled yet
                self.write("empty-cell")
        # The globals the code (and the code of nested functions and lambdas) refers to, by name.
        names: set[str] = set()
        stack = [fn.__code__]
        while stack:
            code = stack.pop()
            names.update(code.co_names)
            stack.extend(c for c in code.co_consts if isinstance(c, types.CodeType))
        for name in sorted(names):
            if name in fn.__globals__:
                self.update(name)
                self.update(fn.__globals__[name])

    def _object(self, obj: Any) -> None:
        cls = type(obj)
        name = f"{cls.__module__}.{cls.__qualname__}"
        self.write("object", name.encode())
        custom = getattr(obj, "__fingerprint__", None)
        if callable(custom):
            self.update(custom())
            return
        numpy, torch, tokenizers = (sys.modules.get(m) for m in ("numpy", "torch", "tokenizers"))
        if numpy is not None and isinstance(obj, (numpy.ndarray, numpy.generic)):
            self.write(str(obj.dtype), repr(obj.shape).encode() + numpy.ascontiguousarray(obj).tobytes())
        elif torch is not None and isinstance(obj, torch.Tensor):
            self.update(obj.detach().cpu().numpy() if obj.dtype != torch.bfloat16 else obj.detach().float().cpu().numpy())
        elif tokenizers is not None and isinstance(obj, tokenizers.Tokenizer):
            # Padding and truncation are per-call settings the tokenizer keeps between calls.
            import json

            state = json.loads(obj.to_str())  # key order is fixed by the library: no sorting needed
            state.pop("padding", None), state.pop("truncation", None)
            self.write("tokenizer", pickle.dumps(state, protocol=4))
        elif _pickles_itself(cls) or not hasattr(obj, "__dict__"):
            try:
                self.write("pickle", pickle.dumps(obj, protocol=4))
            except Exception as e:
                raise Unhashable(f"cannot hash a {name}: {e}") from None
        else:  # a plain instance: its class and its attributes
            skip = _VOLATILE_ATTRIBUTES.get(name, ())
            self.update({k: v for k, v in vars(obj).items() if k not in skip})


def _pickles_itself(cls: type) -> bool:
    """Whether ``cls`` decides its own pickled form (a logger pickles as its name, not its handlers)."""
    return (cls.__reduce_ex__ is not object.__reduce_ex__ or cls.__reduce__ is not object.__reduce__
            or getattr(cls, "__getstate__", object.__getstate__) is not object.__getstate__)


def read_arrow(path: str | os.PathLike) -> pa.Table:
    """A table memory-mapped from an Arrow IPC stream (or file): no copy into RAM."""
    source = pa.memory_map(str(path), "r")
    try:
        return pa.ipc.open_stream(source).read_all()
    except pa.ArrowInvalid:
        source.seek(0)
        return pa.ipc.open_file(source).read_all()


class ArrowWriter:
    """Writes tables batch by batch to an Arrow IPC stream: to ``path`` atomically, or in memory.

    The schema (with ``features`` in its metadata) is fixed by the first batch; later batches
    are cast to it. Use as a context manager: leaving by an exception removes the partial file.

    >>> with ArrowWriter(None) as writer:
    ...     writer.write(pa.table({"x": [1, 2]}))
    ...     writer.write(pa.table({"x": [3]}))
    >>> writer.result().num_rows
    3
    """

    def __init__(self, path: str | os.PathLike | None, features: Features | None = None):
        self.path = Path(path) if path is not None else None
        self.features = features
        self.tmp = None if self.path is None else self.path.with_name(f".tmp-{uuid.uuid4().hex}-{self.path.name}")
        self.sink = None
        self.writer = None
        self.schema: pa.Schema | None = None
        self.table: pa.Table | None = None
        self.num_rows = 0
        self.closed = False

    def write(self, table: pa.Table | pa.RecordBatch) -> None:
        if self.writer is None:
            self._open(table.schema)
        if table.schema != self.schema:
            if sorted(table.schema.names) != sorted(self.schema.names):
                raise DatasetError(f"a batch has the columns {table.schema.names}, the first batch had "
                                   f"{self.schema.names}; every batch must have the same columns")
            try:
                table = table.select(self.schema.names).cast(self.schema)
            except (pa.ArrowInvalid, pa.ArrowNotImplementedError, pa.ArrowTypeError) as e:
                raise DatasetError(f"a batch's column types ({_types(table.schema)}) do not match the first "
                                   f"batch's ({_types(self.schema)}): {e}") from None
        if isinstance(table, pa.Table):
            for batch in table.to_batches():
                self.writer.write_batch(batch)
        else:
            self.writer.write_batch(table)
        self.num_rows += table.num_rows

    def _open(self, schema: pa.Schema) -> None:
        self.schema = schema.with_metadata(Features.from_arrow_schema(schema, self.features).metadata())
        if self.path is None:
            self.sink = pa.BufferOutputStream()
        else:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            self.sink = pa.OSFile(str(self.tmp), "wb")
        self.writer = pa.ipc.new_stream(self.sink, self.schema)

    def close(self, schema: pa.Schema | None = None) -> None:
        """Finish the stream (an empty one with ``schema`` if nothing was written) and publish it."""
        if self.writer is None:
            self._open(schema if schema is not None else pa.schema([]))
        self.writer.close()
        self.closed = True
        if self.path is None:
            self.table = pa.ipc.open_stream(self.sink.getvalue()).read_all()
            return
        self.sink.close()
        _fsync(self.tmp)  # the data is on disk before the name says the file is complete
        os.replace(self.tmp, self.path)
        try:
            _fsync(self.path.parent)  # and the rename itself survives a power cut
        except OSError:  # directories cannot be opened for fsync on some systems (Windows)
            pass

    def abort(self) -> None:
        if self.writer is not None:
            try:
                self.writer.close()
            except Exception:
                pass
            if self.tmp is not None:
                self.sink.close()
        if self.tmp is not None:
            self.tmp.unlink(missing_ok=True)

    def result(self) -> pa.Table:
        """The written table: memory-mapped from the file, or the in-memory one."""
        return self.table if self.path is None else read_arrow(self.path)

    def __enter__(self) -> "ArrowWriter":
        return self

    def __exit__(self, kind, value, traceback) -> None:
        if kind is not None:
            self.abort()
        elif not self.closed:
            self.close()


def _fsync(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _types(schema: pa.Schema) -> str:
    return ", ".join(str(f.type) for f in schema)
