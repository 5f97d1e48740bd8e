"""Column types of a dataset: ``Value``, ``ClassLabel``, ``Sequence`` and ``Features``.

A ``Features`` is an ordered ``{column: type}`` dict over an Arrow schema. Most types are just
the Arrow type under Hugging Face's name (``Value("int64")``, ``Value("string")``); what Arrow
cannot say on its own is kept in the schema's metadata, under the ``huggingface`` key and in
the JSON shape that `datasets` writes, so Arrow files and saved datasets move between peluk
and `datasets` with their class names intact:

* ``ClassLabel(names=[...])``: integer labels with names (stored as int64).
* ``Sequence(feature, length=-1)``: a list column (`datasets` >= 4 calls it ``List``).
* a plain ``dict`` of types: a struct column.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any

import pyarrow as pa

from peluk.errors import DatasetError

METADATA_KEY = b"huggingface"
# Arrow's own names for floats differ from the numpy-style names datasets uses.
_DTYPE_OF_ARROW = {"double": "float64", "float": "float32", "halffloat": "float16"}


@dataclass(frozen=True)
class Value:
    """A scalar column: ``Value("int64")``, ``Value("float32")``, ``Value("string")``, ``Value("bool")``.

    >>> Value("int64").arrow_type
    DataType(int64)
    """

    dtype: str
    # An Arrow type that has no alias string (timestamps with a time zone, dictionaries): kept as is.
    arrow: pa.DataType | None = field(default=None, repr=False, compare=False)

    def __post_init__(self):
        object.__setattr__(self, "dtype", _DTYPE_OF_ARROW.get(self.dtype, self.dtype))
        if self.arrow is None:
            try:
                pa.type_for_alias(self.dtype)
            except ValueError:
                raise DatasetError(f"Value({self.dtype!r}): unknown dtype; use an Arrow type name such as "
                                   "'int64', 'float32', 'string', 'bool'") from None

    @property
    def arrow_type(self) -> pa.DataType:
        return self.arrow if self.arrow is not None else pa.type_for_alias(self.dtype)

    def __repr__(self) -> str:
        return f"Value({self.dtype!r})"


class ClassLabel:
    """Integer class labels with names, stored as int64 (-1 means "no label", as in `datasets`).

    Args:
        names: the class names, in label order.
        num_classes: instead of ``names``: classes named ``"0"``, ``"1"``, ...

    >>> labels = ClassLabel(names=["negative", "positive"])
    >>> labels.str2int("positive"), labels.int2str(0), labels.num_classes
    (1, 'negative', 2)
    """

    dtype = "int64"
    arrow_type = pa.int64()

    def __init__(self, names: list[str] | None = None, num_classes: int | None = None):
        if names is None:
            if num_classes is None:
                raise DatasetError("ClassLabel needs names=[...] or num_classes=N")
            names = [str(i) for i in range(num_classes)]
        self.names = [str(n) for n in names]
        if num_classes is not None and num_classes != len(self.names):
            raise DatasetError(f"ClassLabel: num_classes={num_classes} but {len(self.names)} names were given")
        if len(set(self.names)) != len(self.names):
            raise DatasetError(f"ClassLabel: names must be unique, got {self.names}")
        self._index = {name: i for i, name in enumerate(self.names)}

    @property
    def num_classes(self) -> int:
        return len(self.names)

    def str2int(self, values: str | list[str]) -> int | list[int]:
        """Label id(s) of class name(s). Raises ``DatasetError`` for a name that is not a class."""
        if isinstance(values, str):
            if values not in self._index:
                raise DatasetError(f"{values!r} is not a class name of this ClassLabel; names are {self.names}")
            return self._index[values]
        return [self.str2int(v) for v in values]

    def int2str(self, values: int | list[int]) -> str | list[str]:
        """Class name(s) of label id(s). Raises ``DatasetError`` for an id out of range."""
        if isinstance(values, (list, tuple)):
            return [self.int2str(v) for v in values]
        if not 0 <= int(values) < self.num_classes:
            raise DatasetError(f"label {values} is out of range for a ClassLabel of {self.num_classes} classes")
        return self.names[int(values)]

    def encode_storage(self, array: pa.Array | pa.ChunkedArray) -> pa.ChunkedArray:
        """Cast a column of class names (strings) or ids (integers) to label ids, checking every value."""
        import pyarrow.compute as pc

        array = array if isinstance(array, pa.ChunkedArray) else pa.chunked_array([array])
        if pa.types.is_string(array.type) or pa.types.is_large_string(array.type):
            ids = pc.index_in(array, value_set=pa.array(self.names, array.type))
            unknown = pc.and_(pc.is_null(ids), pc.is_valid(array))
            if pc.any(unknown).as_py():
                bad = array.filter(unknown)[0].as_py()
                raise DatasetError(f"{bad!r} is not a class name of this ClassLabel; names are {self.names}")
            return ids.cast(pa.int64())
        ids = array.cast(pa.int64())
        if len(ids) and ids.null_count < len(ids):
            low, high = pc.min_max(ids).values()
            if low.as_py() < -1 or high.as_py() >= self.num_classes:
                raise DatasetError(f"labels must be in [-1, {self.num_classes}) for a ClassLabel of "
                                   f"{self.num_classes} classes; found {low.as_py()}..{high.as_py()}")
        return ids

    def __eq__(self, other) -> bool:
        return isinstance(other, ClassLabel) and other.names == self.names

    def __hash__(self) -> int:
        return hash(tuple(self.names))

    def __repr__(self) -> str:
        return f"ClassLabel(names={self.names})"


@dataclass(frozen=True)
class Sequence:
    """A list column of ``feature`` values; ``length`` > 0 makes it fixed-size.

    >>> Sequence(Value("int32")).arrow_type
    ListType(list<item: int32>)
    """

    feature: Any
    length: int = -1

    @property
    def arrow_type(self) -> pa.DataType:
        inner = arrow_type_of(self.feature)
        return pa.list_(inner, self.length) if self.length > 0 else pa.list_(inner)

    def __repr__(self) -> str:
        length = f", length={self.length}" if self.length > 0 else ""
        return f"Sequence({self.feature!r}{length})"


class Features(dict):
    """An ordered ``{column name: type}`` mapping, convertible to and from an Arrow schema.

    >>> features = Features({"text": Value("string"), "label": ClassLabel(names=["neg", "pos"])})
    >>> features.arrow_schema.field("label").type
    DataType(int64)
    """

    @property
    def arrow_schema(self) -> pa.Schema:
        """The Arrow schema, with these features in its metadata."""
        fields = [pa.field(name, arrow_type_of(feature)) for name, feature in self.items()]
        return pa.schema(fields, metadata=self.metadata())

    def metadata(self) -> dict[bytes, bytes]:
        return {METADATA_KEY: json.dumps({"info": {"features": self.to_dict()}}).encode()}

    def to_dict(self) -> dict:
        """The JSON-able form `datasets` writes (``{"label": {"names": [...], "_type": "ClassLabel"}}``)."""
        return {name: _to_json(feature) for name, feature in self.items()}

    @classmethod
    def from_dict(cls, data: dict) -> "Features":
        return cls({name: _from_json(value) for name, value in data.items()})

    @classmethod
    def from_arrow_schema(cls, schema: pa.Schema, known: dict | None = None) -> "Features":
        """Types of ``schema``'s columns: from ``known`` (or else the schema's metadata) where a
        column's Arrow type still matches, else read off the Arrow type."""
        if known is None:
            known = {}
            if schema.metadata and METADATA_KEY in schema.metadata:
                try:
                    stored = json.loads(schema.metadata[METADATA_KEY])["info"]["features"] or {}
                    known = {name: _from_json(value) for name, value in stored.items()}
                except (ValueError, KeyError, TypeError, AttributeError):
                    known = {}
        features = cls()
        for f in schema:
            feature = known.get(f.name)
            features[f.name] = feature if feature is not None and arrow_type_of(feature) == f.type \
                else feature_of_arrow(f.type)
        return features

    def __repr__(self) -> str:
        return "{" + ", ".join(f"{k!r}: {v!r}" for k, v in self.items()) + "}"


def arrow_type_of(feature) -> pa.DataType:
    """The Arrow storage type of a feature (a dict of features is a struct)."""
    if isinstance(feature, dict):
        return pa.struct([pa.field(name, arrow_type_of(f)) for name, f in feature.items()])
    if isinstance(feature, (list, tuple)) and len(feature) == 1:  # datasets' [Value(...)] shorthand
        return pa.list_(arrow_type_of(feature[0]))
    try:
        return feature.arrow_type
    except AttributeError:
        raise DatasetError(f"{feature!r} is not a feature type (Value, ClassLabel, Sequence or a dict)") from None


def feature_of_arrow(t: pa.DataType):
    """The feature for an Arrow type with no metadata: lists become ``Sequence``, structs dicts."""
    if pa.types.is_list(t) or pa.types.is_large_list(t):
        return Sequence(feature_of_arrow(t.value_type))
    if pa.types.is_fixed_size_list(t):
        return Sequence(feature_of_arrow(t.value_type), length=t.list_size)
    if pa.types.is_struct(t):
        return {t.field(i).name: feature_of_arrow(t.field(i).type) for i in range(t.num_fields)}
    name = _DTYPE_OF_ARROW.get(str(t), str(t))
    try:
        return Value(name) if pa.type_for_alias(name) == t else Value(name, arrow=t)
    except ValueError:
        return Value(name, arrow=t)


def _to_json(feature) -> dict:
    if isinstance(feature, dict):
        return {name: _to_json(f) for name, f in feature.items()}
    if isinstance(feature, ClassLabel):
        return {"names": feature.names, "_type": "ClassLabel"}
    if isinstance(feature, Sequence):
        out = {"feature": _to_json(feature.feature)}
        if feature.length > 0:
            out["length"] = feature.length
        return {**out, "_type": "List"}
    return {"dtype": feature.dtype, "_type": "Value"}


def _from_json(data: dict):
    """Parse one feature of `datasets`' JSON; unknown types (Image, Audio...) give ``None``."""
    if not isinstance(data, dict):
        return None
    kind = data.get("_type")
    if kind is None:  # a struct
        inner = {name: _from_json(value) for name, value in data.items()}
        return None if any(v is None for v in inner.values()) else inner
    if kind == "Value":
        try:
            return Value(data["dtype"])
        except DatasetError:
            return None
    if kind == "ClassLabel":
        return ClassLabel(names=data.get("names"), num_classes=data.get("num_classes"))
    if kind in ("Sequence", "List", "LargeList"):
        inner = _from_json(data.get("feature"))
        return None if inner is None else Sequence(inner, data.get("length", -1))
    return None
