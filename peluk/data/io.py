"""Reading data files into datasets: ``load_dataset``, ``load_from_disk``, streaming.

``load_dataset`` takes a builder name (``"csv"``, ``"json"``, ``"parquet"``, ``"text"``) with
``data_files``, a local directory or data file, or a dataset repo id ``owner/name`` (a snapshot
from the hub, see ``peluk.hub``); :func:`resolve_dataset` is the one place names become local
paths. Files are read with pyarrow, converted once to Arrow files in the cache
(:mod:`peluk.data.cache`) and memory-mapped from there: the second load of unchanged files
reads nothing but their sizes and modification times. With ``streaming=True`` nothing is converted: an
:class:`IterableDataset` reads the files in chunks while it is iterated.

Bad data is an error that names the file and the line (``train.csv line 17: expected 2
columns, got 3``), never a silently dropped or mangled row: wrong column counts, bytes that
are not UTF-8, JSON that does not parse. pyarrow finds these; the line numbers come from a
second, exact scan of the file with Python (which only runs when something is wrong).
"""

from __future__ import annotations

import csv
import glob
import itertools
import json
import os
import re
from pathlib import Path
from typing import Any, Callable, Iterator

import numpy as np
import pyarrow as pa

from peluk.data.cache import ArrowWriter, cache_home, fingerprint, read_arrow
from peluk.data.dataset import Dataset, DatasetDict, _seed, cast_table, concatenate_datasets
from peluk.data.features import Features
from peluk.errors import DatasetError, DatasetNotFoundError, ModelNotFoundError

# builder -> the options it takes (beyond data_files, split, features...)
BUILDERS = {
    "csv": ("delimiter", "sep", "column_names", "quotechar", "quoting", "keep_default_na"),
    "json": ("field",),
    "parquet": ("columns",),
    "text": ("sample_by", "keep_linebreaks"),
}
# file extension -> (builder, its default options), as `datasets` maps them
EXTENSIONS = {".csv": ("csv", {}), ".tsv": ("csv", {"delimiter": "\t"}), ".json": ("json", {}),
              ".jsonl": ("json", {}), ".parquet": ("parquet", {}), ".txt": ("text", {})}
# Split names recognised in file and folder names, in `datasets`' order and spelling.
SPLIT_KEYWORDS = {"train": ["train", "training"], "validation": ["validation", "valid", "dev", "val"],
                  "test": ["test", "testing", "eval", "evaluation"]}
_SEP = r"[-._ 0-9]"  # what may surround a split keyword ("train.csv", "dev_2.tsv", "my-test-0001.json")
_IGNORED = {"README.md", "config.json", "dataset_info.json", "dataset_infos.json", "dataset_dict.json", "state.json"}
_BATCH_ROWS = 10_000  # rows per Arrow batch when a reader builds tables from Python values


# --- names and files ----------------------------------------------------------------------------
def resolve_dataset(name: str, revision: str | None = None) -> Path:
    """The local directory of a dataset repo id: a snapshot of the hub's dataset repo (``peluk.hub``).

    Raises:
        DatasetNotFoundError: not a repo id, no such dataset repo or revision, or (offline) not cached.
    """
    from peluk.hub import resolve

    if name.startswith((".", "/", "~")) or name.count("/") > 1 or Path(name).suffix in EXTENSIONS:
        raise DatasetNotFoundError(f"{name!r}: no such data file or directory")
    try:
        return resolve(name, revision=revision, repo_type="dataset")
    except ModelNotFoundError as e:
        raise DatasetNotFoundError(f"{name!r} is not a builder ({', '.join(BUILDERS)}), a local file or directory, "
                                   f"or a dataset repo peluk can get: {e}") from None


def _split_of(relative: str) -> dict[str, str | None]:
    """For each kind of split pattern, the split a file belongs to (or None), from its path."""
    *folders, filename = relative.split("/")
    found: dict[str, str | None] = {"sharded": None, "folder": None, "filename": None}
    m = re.fullmatch(r"data/(\w+)-\d{5}-of-\d{5}[^/]*\.\w+", relative)
    if m:
        found["sharded"] = m.group(1)
    for split, keywords in SPLIT_KEYWORDS.items():
        for keyword in keywords:
            word = rf"(?:^|.*{_SEP}){keyword}"
            if found["folder"] is None and any(re.fullmatch(rf"{word}(?:{_SEP}.*)?", f) for f in folders):
                found["folder"] = split
            if found["filename"] is None and re.fullmatch(rf"{word}{_SEP}.*", filename):
                found["filename"] = split
    return found


def files_in_directory(directory: Path, builder: str | None = None) -> tuple[str, dict[str, list[Path]]]:
    """The builder and ``{split: files}`` of a data directory, matched as `datasets` does: files
    named ``data/{split}-00000-of-00001.*``; else by folder name, else by file name
    (``train``, ``training`` → train; ``validation``, ``valid``, ``dev``, ``val`` → validation;
    ``test``, ``testing``, ``eval``, ``evaluation`` → test: at the start of the name or after a
    ``-._ `` or digit, before one of those); else every file is ``train``.

    Raises:
        DatasetNotFoundError: no data file of a known type in ``directory``.
    """
    files = sorted(p for p in directory.rglob("*") if p.is_file() and p.name not in _IGNORED
                   and not any(part.startswith((".", "__")) for part in p.relative_to(directory).parts)
                   and p.suffix in EXTENSIONS and (builder is None or EXTENSIONS[p.suffix][0] == builder))
    if not files:
        wanted = "" if builder is None else f" for the {builder!r} builder"
        hint = " (a folder written by save_to_disk: use load_from_disk)" if (directory / "state.json").exists() or \
            (directory / "dataset_dict.json").exists() else ""
        raise DatasetNotFoundError(f"no data files ({', '.join(EXTENSIONS)}){wanted} in {directory}{hint}")
    if builder is None:  # the most common kind of file decides, as in datasets
        kinds = [EXTENSIONS[p.suffix][0] for p in files]
        builder = max(dict.fromkeys(kinds), key=kinds.count)
        files = [p for p in files if EXTENSIONS[p.suffix][0] == builder]
    found = {p: _split_of(p.relative_to(directory).as_posix()) for p in files}
    for kind in ("sharded", "folder", "filename"):
        splits: dict[str, list[Path]] = {}
        for p in files:
            if found[p][kind] is not None:
                splits.setdefault(found[p][kind], []).append(p)
        if splits:
            order = [s for s in SPLIT_KEYWORDS if s in splits] + sorted(set(splits) - set(SPLIT_KEYWORDS))
            return builder, {s: splits[s] for s in order}
    return builder, {"train": files}


def _data_files(data_files, base: Path | None) -> dict[str, list[Path]]:
    """``data_files`` (a path, a list, or ``{split: path or list}``; globs allowed) as ``{split: [paths]}``."""
    if isinstance(data_files, (str, os.PathLike)) or isinstance(data_files, (list, tuple)):
        data_files = {"train": data_files}
    out = {}
    for split, files in data_files.items():
        files = [files] if isinstance(files, (str, os.PathLike)) else list(files)
        resolved: list[Path] = []
        for f in files:
            path = Path(base, f) if base is not None and not Path(f).is_absolute() else Path(f).expanduser()
            if any(ch in str(f) for ch in "*?["):
                matches = sorted(Path(m) for m in glob.glob(str(path), recursive=True) if Path(m).is_file())
                if not matches:
                    raise DatasetNotFoundError(f"no file matches {str(f)!r} (split {split!r})")
                resolved.extend(matches)
            elif not path.is_file():
                raise DatasetNotFoundError(f"data file {str(path)!r} (split {split!r}) does not exist")
            else:
                resolved.append(path)
        out[str(split)] = resolved
    return out


# --- load_dataset ---------------------------------------------------------------------------------
def load_dataset(path: str | os.PathLike, data_files=None, data_dir: str | None = None, split: str | list | None = None,
                 cache_dir: str | os.PathLike | None = None, features: Features | None = None, streaming: bool = False,
                 revision: str | None = None, **options):
    """Load data files as a ``DatasetDict`` (or, with ``split``, one ``Dataset``).

    Args:
        path: ``"csv"``, ``"json"``, ``"parquet"`` or ``"text"`` (with ``data_files`` or
            ``data_dir``); or a local data directory (splits found from file names, see
            :func:`files_in_directory`) or data file; or a dataset repo id.
        data_files: a file, a list of files (split ``"train"``) or ``{split: file(s)}``; globs work.
        split: ``"train"``; a slice ``"train[:100]"``, ``"train[10%:]"``; ``"train+validation"``;
            or a list of those (a list of datasets back).
        cache_dir: instead of :func:`peluk.data.cache.cache_home`.
        features: column types to cast to (e.g. a ``ClassLabel`` for a column of label names).
        streaming: read lazily while iterating: an ``IterableDataset`` (``IterableDatasetDict``).
        **options: csv: ``delimiter`` (``sep``), ``column_names`` (the file has no header
            line), ``quotechar``, ``quoting=csv.QUOTE_NONE`` (quotes are plain characters),
            ``keep_default_na=False`` (empty fields and "NA"... stay strings; by default they
            are missing values, as pandas and `datasets` read them); json: ``field`` (rows are
            under this key); parquet: ``columns``; text: ``sample_by`` (``"line"``,
            ``"paragraph"``, ``"document"``), ``keep_linebreaks``.

    Raises:
        DatasetNotFoundError: a file, directory or split that does not exist.
        DatasetError: a bad row (the message names the file and line), or unknown options.

    >>> ds = load_dataset("csv", data_files="train.tsv", delimiter="\\t", split="train")  # doctest: +SKIP
    >>> load_dataset("../shared/data/sst2")  # doctest: +SKIP
    DatasetDict({
        train: Dataset({
            features: ['sentence', 'label'],
            num_rows: 67349
        }),
        validation: Dataset(...)
    })
    """
    name = str(path)
    base: Path | None = None
    defaults: dict = {}
    if name in BUILDERS:
        builder = name
        if data_files is None:
            if data_dir is None:
                raise DatasetError(f"load_dataset({name!r}) needs data_files=... or data_dir=...")
            _, files = files_in_directory(Path(data_dir).expanduser(), builder)
        else:
            files = _data_files(data_files, Path(data_dir).expanduser() if data_dir else None)
    else:
        local = Path(name).expanduser()
        if local.is_file():
            builder, defaults = _builder_of(local)
            files = {"train": [local]}
        else:
            base = local if local.is_dir() else resolve_dataset(name, revision)
            base = base / data_dir if data_dir else base
            if data_files is not None:
                files = _data_files(data_files, base)
                builder, defaults = _builder_of(next(iter(files.values()))[0])
            else:
                builder, files = files_in_directory(base)
                defaults = EXTENSIONS[next(iter(files.values()))[0].suffix][1]
    options = {k: v for k, v in options.items() if v is not None}  # None means "the default", as in datasets
    unknown = sorted(set(options) - set(BUILDERS[builder]))
    if unknown:
        raise DatasetError(f"load_dataset: the {builder!r} builder takes no option {unknown}; "
                           f"its options are {list(BUILDERS[builder])}")
    options = {**defaults, **options}
    if "sep" in options:
        options.setdefault("delimiter", options.pop("sep"))
    if streaming:
        result = IterableDatasetDict({s: IterableDataset(_source(builder, paths, options, features))
                                      for s, paths in files.items()})
        return result if split is None else _streaming_split(result, split)
    root = Path(cache_dir).expanduser() if cache_dir is not None else cache_home()
    # the cache entry: which files (their path, size and modification time) make which split, read how
    stats = {s: [(str(p.resolve()), p.stat().st_size, p.stat().st_mtime_ns) for p in paths] for s, paths in files.items()}
    config = fingerprint(builder, sorted(options.items()), repr(features), stats)
    directory = root / builder / config
    result = DatasetDict()
    wanted = None if split is None else {part[0] for s in ([split] if isinstance(split, str) else split)
                                         for part in _parse_split(s)}
    for split_name, paths in files.items():
        if wanted is not None and split_name not in wanted:
            continue
        arrow = directory / f"{split_name}.arrow"
        if not arrow.exists():
            _convert(builder, paths, options, features, arrow)
        result[split_name] = Dataset(read_arrow(arrow), fingerprint=fingerprint(config, split_name),
                                     cache_dir=directory, files=[arrow], split=split_name)
    if split is None:
        return result
    return _select_split(result, split)


def _builder_of(path: Path) -> tuple[str, dict]:
    if path.suffix not in EXTENSIONS:
        raise DatasetError(f"{path}: cannot tell the format from the extension {path.suffix!r}; use "
                           f"load_dataset(builder, data_files=...) with a builder from {list(BUILDERS)}")
    return EXTENSIONS[path.suffix]


def _convert(builder: str, paths: list[Path], options: dict, features, target: Path) -> None:
    """Read ``paths`` into one Arrow file ``target`` (written atomically), casting to ``features``."""
    with ArrowWriter(target, features) as writer:
        for path in paths:
            for table in READERS[builder](path, options):
                if features is not None:
                    table = cast_table(table, features)
                try:
                    writer.write(table)
                except DatasetError as e:
                    raise DatasetError(f"{path}: {e} (files of one split must have the same columns)") from None
        writer.close(features.arrow_schema if features is not None else None)


_SPLIT_RE = re.compile(r"(\w[\w.-]*)(?:\[(-?\d+%?)?:(-?\d+%?)?\])?")


def _parse_split(spec: str) -> list[tuple[str, str | None, str | None]]:
    """``"train[:10%]+test"`` -> ``[("train", None, "10%"), ("test", None, None)]``."""
    parts = []
    for part in spec.replace(" ", "").split("+"):
        m = _SPLIT_RE.fullmatch(part)
        if not m:
            raise DatasetError(f"bad split {spec!r}: use a name, name[start:stop] (rows or %), joined by '+'")
        parts.append(m.groups())
    return parts


def _select_split(splits: DatasetDict, spec):
    if not isinstance(spec, str):
        return [_select_split(splits, s) for s in spec]
    chosen = []
    for name, start, stop in _parse_split(spec):
        if name not in splits:
            raise DatasetNotFoundError(f"unknown split {name!r}; the splits are {list(splits)}")
        ds = splits[name]
        if start is not None or stop is not None:
            ds = ds.select(range(*_bounds(start, stop, len(ds), spec)))
        chosen.append(ds)
    return chosen[0] if len(chosen) == 1 else concatenate_datasets(chosen)


def _bounds(start: str | None, stop: str | None, n: int, spec: str) -> tuple[int, int]:
    """Absolute row bounds of a split slice; percentages round to the closest row, as in `datasets`."""
    if start and stop and start.endswith("%") != stop.endswith("%"):
        raise DatasetError(f"bad split {spec!r}: both bounds must be rows or both percentages")

    def absolute(bound: str | None, default: int) -> int:
        if bound is None:
            return default
        value = int(round(float(bound[:-1]) * n / 100)) if bound.endswith("%") else int(bound)
        return min(max(n + value, 0) if value < 0 else value, n)

    return absolute(start, 0), absolute(stop, n)


# --- readers: one file -> Arrow tables ---------------------------------------------------------------
def _csv_options(options: dict):
    import pyarrow.csv as pcsv

    quote = options.get("quotechar", '"')
    if options.get("quoting") == csv.QUOTE_NONE or not quote:
        quote = False
    read = pcsv.ReadOptions(column_names=options.get("column_names"), block_size=1 << 22)
    parse = pcsv.ParseOptions(delimiter=options.get("delimiter", ","), quote_char=quote,
                              newlines_in_values=quote is not False)
    keep_na = options.get("keep_default_na", True)
    convert = pcsv.ConvertOptions(strings_can_be_null=keep_na, **({} if keep_na else {"null_values": []}))
    return read, parse, convert


def read_csv(path: Path, options: dict) -> Iterator[pa.Table]:
    """A CSV/TSV file as one table (types inferred over the whole file).

    Raises:
        DatasetError: naming the file and line of a row with the wrong number of fields or of
            bytes that are not UTF-8.
    """
    import pyarrow.csv as pcsv

    try:
        table = pcsv.read_csv(path, *_csv_options(options))
    except (pa.ArrowInvalid, UnicodeDecodeError) as e:
        raise _csv_error(path, options, e) from None
    if any(pa.types.is_binary(f.type) for f in table.schema):  # pyarrow's answer to text that is not UTF-8
        raise _csv_error(path, options, DatasetError("not UTF-8"))
    yield table


def _csv_error(path: Path, options: dict, error: Exception) -> DatasetError:
    """The error for a CSV file pyarrow refused, with the line found by an exact Python scan."""
    bad = _bad_utf8(path)
    if bad:
        return bad
    quote = options.get("quotechar", '"')
    quoting = csv.QUOTE_NONE if options.get("quoting") == csv.QUOTE_NONE or not quote else csv.QUOTE_MINIMAL
    expected = len(options["column_names"]) if options.get("column_names") else None
    limit = csv.field_size_limit(2**31 - 1)  # long texts in one field are fine here; restored below
    try:
        return _locate_csv_error(path, options, error, expected, quote, quoting)
    except csv.Error:  # Python's reader refuses the file too: pyarrow's words are all there is
        return DatasetError(f"{path}: {error}")
    finally:
        csv.field_size_limit(limit)


def _locate_csv_error(path: Path, options: dict, error: Exception, expected, quote, quoting) -> DatasetError:
    # pyarrow's streaming reader says which column and value failed to convert, but not where
    conversion = re.search(r"column #(\d+): CSV conversion error to (\S+): invalid value '(.*)'", str(error), re.S)
    with open(path, newline="", encoding="utf-8-sig") as f:
        reader = csv.reader(f, delimiter=options.get("delimiter", ","), quotechar=quote or '"', quoting=quoting)
        line = 1
        for row in reader:
            start, line = line, reader.line_num + 1  # a quoted field may span lines: report the first
            if not row:
                continue
            if expected is None:
                expected = len(row)
                continue
            if len(row) != expected:
                return DatasetError(f"{path} line {start}: expected {expected} columns, got {len(row)}")
            if conversion and row[int(conversion.group(1))] == conversion.group(3):
                return DatasetError(f"{path} line {start}: column {int(conversion.group(1)) + 1} value "
                                    f"{conversion.group(3)!r} is not {conversion.group(2)} like the rows before it "
                                    "(streaming infers types from the first rows; pass features=... to fix them)")
    return DatasetError(f"{path}: {error}")


def _bad_utf8(path: Path) -> DatasetError | None:
    """An error naming the line and column of the first byte of ``path`` that is not UTF-8, if any."""
    with open(path, "rb") as f:
        for number, line in enumerate(f, 1):
            try:
                line.decode("utf-8")
            except UnicodeDecodeError as e:
                return DatasetError(f"{path} line {number}: byte 0x{line[e.start]:02x} at column {e.start + 1} is not "
                                    "UTF-8; re-encode the file as UTF-8 (e.g. iconv -f latin1 -t utf-8)")
    return None


def _lines(path: Path) -> Iterator[tuple[int, str]]:
    """(line number, text without its line break) for each line; universal newlines, exact errors."""
    with open(path, "rb") as f:
        for number, raw in enumerate(f, 1):
            try:
                text = raw.decode("utf-8-sig" if number == 1 else "utf-8")
            except UnicodeDecodeError as e:
                raise DatasetError(f"{path} line {number}: byte 0x{raw[e.start]:02x} at column {e.start + 1} is not "
                                   "UTF-8; re-encode the file as UTF-8") from None
            text = text[:-1] if text.endswith("\n") else text
            text = text[:-1] if text.endswith("\r") else text
            if "\r" in text:  # old Mac line breaks
                yield from ((number, part) for part in text.split("\r"))
            else:
                yield number, text


def read_text(path: Path, options: dict) -> Iterator[pa.Table]:
    """A text file as a ``text`` column: one row per line (or paragraph, or the whole document)."""
    sample_by = options.get("sample_by", "line")
    keep = options.get("keep_linebreaks", False)
    if sample_by not in ("line", "paragraph", "document"):
        raise DatasetError(f"sample_by={sample_by!r}: use 'line', 'paragraph' or 'document'")
    if sample_by == "line":
        lines = (text for _, text in _lines(path))
        rows: Iterator[str] = (text + "\n" for text in lines) if keep else lines
    else:  # the whole text (universal newlines), as one row or split at blank lines like `datasets`
        try:
            with open(path, encoding="utf-8-sig") as f:
                text = f.read()
        except UnicodeDecodeError:
            raise _bad_utf8(path) from None
        rows = iter([text] if sample_by == "document" else [p for p in text.split("\n\n") if p])
    while batch := list(itertools.islice(rows, _BATCH_ROWS)):
        yield pa.table({"text": pa.array(batch, pa.string())})


def read_json(path: Path, options: dict) -> Iterator[pa.Table]:
    """JSON Lines (one object per line), or a JSON document: a list of rows, or ``field``'s value.

    Raises:
        DatasetError: naming the file and line of JSON that does not parse.
    """
    import pyarrow.json as pjson

    field = options.get("field")
    if field is None:
        try:
            table = pjson.read_json(path)  # the fast path: valid JSON Lines
            table.validate(full=True)  # pyarrow's JSON reader lets bytes that are not UTF-8 into strings
        except (pa.ArrowInvalid, pa.ArrowNotImplementedError):
            pass  # a document, mixed types or a bad line: Python tells which, and where
        else:
            yield table
            return
    yield from _tables(_json_rows(path, field), path)


def _json_rows(path: Path, field: str | None) -> Iterator[dict]:
    with open(path, "rb") as f:
        head = f.read(4096).lstrip(b"\xef\xbb\xbf \t\r\n")
    if field is not None or head.startswith(b"["):
        yield from _json_document(path, field)
        return
    for number, text in _lines(path):
        if not text.strip():
            continue
        try:
            row = json.loads(text)
        except json.JSONDecodeError as e:
            if number == 1:  # maybe one pretty-printed document rather than JSON Lines
                try:
                    yield from _json_document(path, None)
                    return
                except DatasetError:
                    pass
            raise DatasetError(f"{path} line {number}: invalid JSON ({e.msg} at column {e.colno})") from None
        if not isinstance(row, dict):
            raise DatasetError(f"{path} line {number}: expected a JSON object per line, got {type(row).__name__}")
        yield row


def _json_document(path: Path, field: str | None) -> Iterator[dict]:
    try:
        document = json.loads(path.read_text(encoding="utf-8-sig"))
    except UnicodeDecodeError:
        raise _bad_utf8(path) or DatasetError(f"{path}: not UTF-8") from None
    except json.JSONDecodeError as e:
        raise DatasetError(f"{path} line {e.lineno}: invalid JSON ({e.msg} at column {e.colno})") from None
    if field is not None:
        if not isinstance(document, dict) or field not in document:
            keys = list(document) if isinstance(document, dict) else type(document).__name__
            raise DatasetError(f"{path}: no field {field!r} at the top level (found {keys})")
        document = document[field]
    if isinstance(document, dict):  # columns: {"a": [...], "b": [...]}
        names = list(document)
        yield from ({n: document[n][i] for n in names} for i in range(len(document[names[0]]) if names else 0))
    elif isinstance(document, list):
        yield from (row if isinstance(row, dict) else {"text": row} for row in document)
    else:
        raise DatasetError(f"{path}: the JSON document is a {type(document).__name__}; expected rows (a list) "
                           "or pass field=... naming the key that holds them")


def _tables(rows: Iterator[dict], path: Path) -> Iterator[pa.Table]:
    """Tables of up to _BATCH_ROWS rows; columns are every key seen (missing ones are null)."""
    while batch := list(itertools.islice(rows, _BATCH_ROWS)):
        names = list(dict.fromkeys(k for row in batch for k in row))
        try:
            yield pa.table({n: pa.array([row.get(n) for row in batch]) for n in names})
        except (pa.ArrowInvalid, pa.ArrowTypeError) as e:
            raise DatasetError(f"{path}: values of one field have different types ({e})") from None


def read_parquet(path: Path, options: dict) -> Iterator[pa.Table]:
    import pyarrow.parquet as pq

    try:
        for batch in pq.ParquetFile(path).iter_batches(batch_size=65536, columns=options.get("columns")):
            yield pa.Table.from_batches([batch])
    except (pa.ArrowInvalid, OSError) as e:
        raise DatasetError(f"{path}: not a readable Parquet file ({e})") from None


READERS: dict[str, Callable[[Path, dict], Iterator[pa.Table]]] = {
    "csv": read_csv, "json": read_json, "parquet": read_parquet, "text": read_text}


# --- save_to_disk / load_from_disk -----------------------------------------------------------------
def save_to_disk(dataset: Dataset | DatasetDict, path: str | os.PathLike) -> None:
    """Write ``dataset`` as `datasets` does (``data-00000-of-00001.arrow``, ``dataset_info.json``,
    ``state.json``; a folder per split and ``dataset_dict.json`` for a DatasetDict)."""
    path = Path(path).expanduser()
    path.mkdir(parents=True, exist_ok=True)
    # a folder saved before as the other kind would shadow this one in load_from_disk
    (path / ("state.json" if isinstance(dataset, DatasetDict) else "dataset_dict.json")).unlink(missing_ok=True)
    if isinstance(dataset, DatasetDict):
        for name, split in dataset.items():
            save_to_disk(split, path / name)
        _write_json(path / "dataset_dict.json", {"splits": list(dataset)})
        return
    filename = "data-00000-of-00001.arrow"
    with ArrowWriter(path / filename, dataset.features) as writer:
        for start in range(0, len(dataset), _BATCH_ROWS):
            writer.write(dataset._slice(start, min(start + _BATCH_ROWS, len(dataset))))
        writer.close(dataset.features.arrow_schema)
    fmt = dataset.format
    _write_json(path / "dataset_info.json", {"citation": "", "description": "", "features": dataset.features.to_dict(),
                                             "homepage": "", "license": ""})
    _write_json(path / "state.json", {"_data_files": [{"filename": filename}], "_fingerprint": dataset.fingerprint,
                                      "_format_columns": fmt["columns"], "_format_kwargs": {},
                                      "_format_type": fmt["type"], "_output_all_columns": fmt["output_all_columns"],
                                      "_split": dataset.split})


def _write_json(path: Path, data: dict) -> None:
    tmp = path.with_name(f".tmp-{os.getpid()}-{path.name}")
    tmp.write_text(json.dumps(data, indent=2), encoding="utf-8")
    os.replace(tmp, path)


def load_from_disk(path: str | os.PathLike) -> Dataset | DatasetDict:
    """A dataset written by ``save_to_disk`` (peluk's or `datasets`'), memory-mapped.

    Raises:
        DatasetNotFoundError: ``path`` holds no saved dataset.

    >>> ds = load_from_disk("saved/sst2")  # doctest: +SKIP
    """
    path = Path(path).expanduser()
    if (path / "dataset_dict.json").is_file():
        splits = json.loads((path / "dataset_dict.json").read_text())["splits"]
        return DatasetDict({name: load_from_disk(path / name) for name in splits})
    if not (path / "state.json").is_file():
        raise DatasetNotFoundError(f"{path} is not a saved dataset (no state.json or dataset_dict.json); "
                                   "for data files use load_dataset")
    state = json.loads((path / "state.json").read_text())
    files = [path / f["filename"] for f in state["_data_files"]]
    tables = [read_arrow(f) for f in files]
    table = pa.concat_tables(tables) if len(tables) > 1 else tables[0]
    features = None
    if (path / "dataset_info.json").is_file():
        info = json.loads((path / "dataset_info.json").read_text())
        features = Features.from_dict(info["features"]) if info.get("features") else None
    writable = os.access(path, os.W_OK)  # map/filter results are cached next to the data when possible
    ds = Dataset(table, features=features, fingerprint=state.get("_fingerprint"), cache_dir=path if writable else None,
                 files=files, split=state.get("_split"))
    if state.get("_format_type") or state.get("_format_columns"):
        ds.set_format(state.get("_format_type"), state.get("_format_columns"), state.get("_output_all_columns", False))
    return ds


# --- streaming -----------------------------------------------------------------------------------
def _source(builder: str, paths: list[Path], options: dict, features) -> Callable:
    """A function (rng or None) -> iterator of dict rows over ``paths`` (in a shuffled order with an rng)."""

    def rows(rng: np.random.Generator | None) -> Iterator[dict]:
        order = paths if rng is None else [paths[i] for i in rng.permutation(len(paths))]
        for path in order:
            for table in STREAM_READERS[builder](path, options):
                if features is not None:
                    table = cast_table(table, features)
                yield from table.to_pylist()

    return rows


def _stream_csv(path: Path, options: dict) -> Iterator[pa.Table]:
    import pyarrow.csv as pcsv

    read, parse, convert = _csv_options(options)
    read.block_size = 1 << 20
    try:
        reader = pcsv.open_csv(path, read, parse, convert)
        for batch in reader:
            if any(pa.types.is_binary(f.type) for f in batch.schema):
                raise _csv_error(path, options, DatasetError("not UTF-8"))
            yield pa.Table.from_batches([batch])
    except (pa.ArrowInvalid, UnicodeDecodeError) as e:
        raise _csv_error(path, options, e) from None


def _stream_json(path: Path, options: dict) -> Iterator[pa.Table]:
    yield from _tables(_json_rows(path, options.get("field")), path)


STREAM_READERS = {"csv": _stream_csv, "json": _stream_json, "parquet": read_parquet, "text": read_text}


class IterableDataset:
    """Rows read lazily from files and transformed on the fly; iterate it for dict rows.

    Every method returns a new ``IterableDataset`` with one more step; nothing is read until
    iteration, and each iteration reads the files again.

    >>> ds = load_dataset("json", data_files="big.jsonl", split="train", streaming=True)  # doctest: +SKIP
    >>> for row in ds.filter(lambda r: r["label"] == 1).shuffle(seed=0, buffer_size=1000).take(3):  # doctest: +SKIP
    ...     print(row)
    """

    def __init__(self, source: Callable[[Any], Iterator[dict]], steps: tuple = (), epoch: int = 0):
        self._source = source
        self._steps = steps
        self._epoch = epoch

    def _then(self, *step) -> "IterableDataset":
        return IterableDataset(self._source, self._steps + (step,), self._epoch)

    @classmethod
    def from_generator(cls, generator: Callable[[], Iterator[dict]]) -> "IterableDataset":
        """Rows from ``generator()``, called anew for each iteration."""
        return cls(lambda rng: generator())

    def __iter__(self) -> Iterator[dict]:
        shuffles = [step for step in self._steps if step[0] == "shuffle"]
        rows = self._source(self._rng(shuffles[0][1]) if shuffles else None)
        for kind, *args in self._steps:
            rows = getattr(self, f"_{kind}")(rows, *args)
        return rows

    def _rng(self, seed: int) -> np.random.Generator:
        """The shuffling generator for this epoch, derived from ``seed`` as `datasets` derives it."""
        rng = np.random.default_rng(seed)
        if self._epoch == 0:
            return rng
        effective = int(rng.integers(0, 1 << 63)) - self._epoch
        return np.random.default_rng(effective + (1 << 63) if effective < 0 else effective)

    def set_epoch(self, epoch: int) -> None:
        """Reshuffle differently (but reproducibly) for each epoch."""
        self._epoch = epoch

    def map(self, function: Callable | None = None, with_indices: bool = False, batched: bool = False,
            batch_size: int = 1000, remove_columns: str | list[str] | None = None,
            fn_kwargs: dict | None = None) -> "IterableDataset":
        """Like ``Dataset.map``, applied while iterating (not cached)."""
        remove = [remove_columns] if isinstance(remove_columns, str) else list(remove_columns or [])
        return self._then("map", function or (lambda _: None), with_indices, batched, batch_size, remove,
                          dict(fn_kwargs or {}))

    def filter(self, function: Callable, with_indices: bool = False, batched: bool = False, batch_size: int = 1000,
               fn_kwargs: dict | None = None) -> "IterableDataset":
        """The rows for which ``function`` is true (a list of bools per batch when ``batched``)."""
        return self._then("filter", function, with_indices, batched, batch_size, dict(fn_kwargs or {}))

    def shuffle(self, seed: int | None = None, buffer_size: int = 1000) -> "IterableDataset":
        """Approximate shuffling, as `datasets` does it (same seed, same order): the files in a random
        order, then rows drawn at random from a buffer of ``buffer_size`` rows."""
        return self._then("shuffle", _seed(seed), buffer_size)

    def take(self, n: int) -> "IterableDataset":
        return self._then("take", n)

    def skip(self, n: int) -> "IterableDataset":
        return self._then("skip", n)

    def iter(self, batch_size: int, drop_last_batch: bool = False) -> Iterator[dict[str, list]]:
        """Batches of ``batch_size`` rows as dicts of lists."""
        for batch in _batches(iter(self), batch_size):
            if len(batch) < batch_size and drop_last_batch:
                return
            yield _columns(batch)

    @property
    def column_names(self) -> list[str] | None:
        """The columns of the first row (read on demand), or None for an empty dataset."""
        first = next(iter(self), None)
        return None if first is None else list(first)

    def __repr__(self) -> str:
        return f"IterableDataset({{steps: {[step[0] for step in self._steps]}}})"

    # --- the steps, over iterators of rows -------------------------------------------------------
    def _map(self, rows, function, with_indices, batched, batch_size, remove, fn_kwargs):
        index = 0
        for batch in _batches(rows, batch_size if batched else 1):
            if batched:
                columns = _columns(batch)
                args = (columns, list(range(index, index + len(batch)))) if with_indices else (columns,)
                out = function(*args, **fn_kwargs)
                out = {} if out is None else {k: v for k, v in out.items() if not (out is columns and k in remove)}
                lengths = {len(v) for v in out.values()} or {len(batch)}
                if len(lengths) > 1:
                    raise DatasetError(f"map: the function returned columns of different lengths: "
                                       f"{ {k: len(v) for k, v in out.items()} }")
                n = lengths.pop()
                kept = [c for c in columns if c not in remove and c not in out]
                if n != len(batch) and kept:
                    raise DatasetError(f"map: the function returned {n} rows for a batch of {len(batch)}; to change "
                                       "the number of rows, remove the input columns (remove_columns=...)")
                yield from ({**{c: columns[c][i] for c in kept}, **{k: v[i] for k, v in out.items()}} for i in range(n))
            else:
                row = batch[0]
                out = function(row, index, **fn_kwargs) if with_indices else function(row, **fn_kwargs)
                kept = {k: v for k, v in row.items() if k not in remove}
                yield {**kept, **({} if out is None else {k: v for k, v in out.items() if not (out is row and k in remove)})}
            index += len(batch)

    def _filter(self, rows, function, with_indices, batched, batch_size, fn_kwargs):
        index = 0
        for batch in _batches(rows, batch_size if batched else 1):
            if batched:
                args = (_columns(batch), list(range(index, index + len(batch)))) if with_indices else (_columns(batch),)
                keep = list(function(*args, **fn_kwargs))
            else:
                args = (batch[0], index) if with_indices else (batch[0],)
                keep = [function(*args, **fn_kwargs)]
            yield from (row for row, k in zip(batch, keep) if k)
            index += len(batch)

    def _shuffle(self, rows, seed, buffer_size):
        # `datasets`' buffer: once full, permute it, emit all but half, keep that half; permute the rest at the end
        rng = self._rng(seed)
        buffer: list = []
        for row in rows:
            buffer.append(row)
            if len(buffer) >= buffer_size:
                order = rng.permutation(len(buffer))
                emit = len(buffer) - buffer_size // 2
                yield from (buffer[i] for i in order[:emit])
                buffer = [buffer[i] for i in order[emit:]]
        yield from (buffer[i] for i in rng.permutation(len(buffer)))

    def _take(self, rows, n):
        return itertools.islice(rows, n)

    def _skip(self, rows, n):
        return itertools.islice(rows, n, None)


def _batches(rows: Iterator[dict], size: int) -> Iterator[list[dict]]:
    while batch := list(itertools.islice(rows, size)):
        yield batch


def _columns(rows: list[dict]) -> dict[str, list]:
    names = list(dict.fromkeys(k for row in rows for k in row))
    return {n: [row.get(n) for row in rows] for n in names}


class IterableDatasetDict(dict):
    """Named streaming splits; ``map``, ``filter``, ``shuffle``, ``take``, ``skip`` apply to each."""

    def _each(self, method: str, *args, **kwargs) -> "IterableDatasetDict":
        return IterableDatasetDict({name: getattr(ds, method)(*args, **kwargs) for name, ds in self.items()})

    def map(self, function=None, **kwargs) -> "IterableDatasetDict":
        return self._each("map", function, **kwargs)

    def filter(self, function, **kwargs) -> "IterableDatasetDict":
        return self._each("filter", function, **kwargs)

    def shuffle(self, seed: int | None = None, buffer_size: int = 1000) -> "IterableDatasetDict":
        return self._each("shuffle", seed, buffer_size)

    def take(self, n: int) -> "IterableDatasetDict":
        return self._each("take", n)

    def skip(self, n: int) -> "IterableDatasetDict":
        return self._each("skip", n)


def _streaming_split(splits: IterableDatasetDict, spec: str) -> IterableDataset:
    parts = _parse_split(spec)
    if len(parts) != 1 or any(b and b.endswith("%") for b in parts[0][1:]) or (parts[0][1] or "").startswith("-") \
            or (parts[0][2] or "").startswith("-"):
        raise DatasetError(f"split {spec!r}: streaming takes one split, sliced by rows only (\"train[:100]\")")
    name, start, stop = parts[0]
    if name not in splits:
        raise DatasetNotFoundError(f"unknown split {name!r}; the splits are {list(splits)}")
    ds = splits[name]
    start = int(start or 0)
    ds = ds.skip(start) if start else ds
    return ds.take(int(stop) - start) if stop is not None else ds

