"""GGUF files (llama.cpp's format) → config, state dict and tokenizer, as transformers reads them.

A GGUF file is a whole model in one file: metadata under llama.cpp's key names (the network's
shape, the tokenizer's vocabulary and merges, the chat template) and tensors under llama.cpp's
names, usually quantized in blocks (Q4_K, Q8_0, ...). :class:`GGUFFile` reads it with the ``gguf``
package (llama.cpp's own reader; the file is memory-mapped, so opening it reads only the header)
and gives:

- :meth:`~GGUFFile.config_dict`: the ``config.json`` transformers builds from the metadata;
- :meth:`~GGUFFile.state_dict`: float tensors under transformers' names, with llama.cpp's layout
  changes undone (the rotary row order of Llama's q/k projections, GPT-2's transposed Conv1D weights);
- :meth:`~GGUFFile.raw_tensors`: the same tensors still quantized, for a loader that keeps them packed;
- :meth:`~GGUFFile.tokenizer`: a :class:`peluk.tokenizer.Tokenizer` built from the metadata.

The parity target is ``transformers.AutoModelForCausalLM.from_pretrained(dir, gguf_file=name)``
and ``AutoTokenizer.from_pretrained(dir, gguf_file=name)`` (transformers/modeling_gguf_pytorch_utils.py,
transformers/integrations/ggml.py, transformers/integrations/gguf/gguf_tokenizer_mapping.py).
Where transformers' loader drops information the file holds, peluk keeps it: ``attention_bias``,
``mlp_bias`` and ``rope_scaling`` (llama), ``n_positions``/``n_inner`` (GPT-2, where transformers
leaves its defaults), and q/k rows are un-permuted even in older files without a kv-head count
(transformers then leaves them permuted).

>>> model = GGUFFile("SmolLM2-135M-Instruct.Q4_1.gguf")     # doctest: +SKIP
>>> model.architecture, model.config_dict()["num_hidden_layers"]   # doctest: +SKIP
('llama', 30)
>>> model.state_dict()["model.layers.0.self_attn.q_proj.weight"].shape   # doctest: +SKIP
torch.Size([576, 576])
"""

from __future__ import annotations

import functools

import os
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any, NamedTuple

import numpy as np
import torch

from peluk.errors import ModelNotFoundError, TokenizerError, UnsupportedModelError, WeightsError

if TYPE_CHECKING:
    from peluk.tokenizer import Tokenizer

# GGUF general.architecture → the transformers model_type it loads as.
ARCHITECTURES = {"llama": "llama", "mistral": "mistral", "gpt2": "gpt2"}
_CLASS = {"llama": "LlamaForCausalLM", "mistral": "MistralForCausalLM", "gpt2": "GPT2LMHeadModel"}

_LLAMA_NAMES = {
    "token_embd": "model.embed_tokens",
    "output_norm": "model.norm",
    "output": "lm_head",
    "blk.{i}.attn_norm": "model.layers.{i}.input_layernorm",
    "blk.{i}.attn_q": "model.layers.{i}.self_attn.q_proj",
    "blk.{i}.attn_k": "model.layers.{i}.self_attn.k_proj",
    "blk.{i}.attn_v": "model.layers.{i}.self_attn.v_proj",
    "blk.{i}.attn_output": "model.layers.{i}.self_attn.o_proj",
    "blk.{i}.ffn_norm": "model.layers.{i}.post_attention_layernorm",
    "blk.{i}.ffn_gate": "model.layers.{i}.mlp.gate_proj",
    "blk.{i}.ffn_up": "model.layers.{i}.mlp.up_proj",
    "blk.{i}.ffn_down": "model.layers.{i}.mlp.down_proj",
}
_GPT2_NAMES = {
    "token_embd": "transformer.wte",
    "position_embd": "transformer.wpe",
    "output_norm": "transformer.ln_f",
    "output": "lm_head",
    "blk.{i}.attn_norm": "transformer.h.{i}.ln_1",
    "blk.{i}.attn_qkv": "transformer.h.{i}.attn.c_attn",
    "blk.{i}.attn_output": "transformer.h.{i}.attn.c_proj",
    "blk.{i}.ffn_norm": "transformer.h.{i}.ln_2",
    "blk.{i}.ffn_up": "transformer.h.{i}.mlp.c_fc",
    "blk.{i}.ffn_down": "transformer.h.{i}.mlp.c_proj",
}
# llama.cpp tensor names (without .weight/.bias) → transformers names. Tensors not listed, such as
# Llama 3's precomputed ``rope_freqs``, are skipped, as transformers skips them.
TENSOR_NAMES = {"llama": _LLAMA_NAMES, "mistral": _LLAMA_NAMES, "gpt2": _GPT2_NAMES}
# GPT-2's Conv1D layers store (in, out); llama.cpp writes them as (out, in) like every other weight.
_GPT2_CONV1D = ("attn_qkv.weight", "attn_output.weight", "ffn_up.weight", "ffn_down.weight")

# metadata key (after "<architecture>.") → config.json key, as in transformers' GGUF_CONFIG_MAPPING
_LLAMA_CONFIG = {
    "context_length": "max_position_embeddings",
    "block_count": "num_hidden_layers",
    "feed_forward_length": "intermediate_size",
    "embedding_length": "hidden_size",
    "rope.dimension_count": "head_dim",
    "rope.freq_base": "rope_theta",
    "attention.head_count": "num_attention_heads",
    "attention.head_count_kv": "num_key_value_heads",
    "attention.layer_norm_rms_epsilon": "rms_norm_eps",
    "vocab_size": "vocab_size",
}
_GPT2_CONFIG = {
    "context_length": "n_positions",
    "block_count": "n_layer",
    "feed_forward_length": "n_inner",
    "embedding_length": "n_embd",
    "attention.head_count": "n_head",
    "attention.layer_norm_epsilon": "layer_norm_epsilon",
}
CONFIG_KEYS = {"llama": _LLAMA_CONFIG, "mistral": _LLAMA_CONFIG, "gpt2": _GPT2_CONFIG}
_TOKEN_IDS = {"bos_token_id": "bos_token_id", "eos_token_id": "eos_token_id",
              "unknown_token_id": "unk_token_id", "padding_token_id": "pad_token_id"}


class RawTensor(NamedTuple):
    """One tensor as the file stores it, named and laid out for transformers (see :meth:`GGUFFile.raw_tensors`)."""

    name: str  # the transformers state-dict key, e.g. "model.layers.0.self_attn.q_proj.weight"
    gguf_name: str  # the key in the file, e.g. "blk.0.attn_q.weight"
    qtype: str  # the ggml type name: "F32", "F16", "BF16", "Q8_0", "Q4_K", ...
    shape: tuple[int, ...]  # the dequantized shape, (out, in) for a weight
    data: np.ndarray  # the stored bytes: (out, bytes per row) uint8 blocks, or F32/F16 values
    transposed: bool  # transformers' tensor is the transpose of this one (GPT-2's Conv1D weights)


class GGUFFile:
    """A GGUF file, opened for reading.

    Args:
        path: the ``.gguf`` file.

    Attributes:
        path: the file.
        metadata: every key/value of the header as plain Python values (arrays become lists).
        architecture: ``general.architecture``, e.g. ``"llama"``.

    Raises:
        ModelNotFoundError: the file does not exist.
        WeightsError: the file is not GGUF, or is truncated or corrupt.

    >>> model = GGUFFile("model.Q4_K_M.gguf")        # doctest: +SKIP
    >>> config, state = model.config_dict(), model.state_dict()   # doctest: +SKIP
    """

    def __init__(self, path: str | os.PathLike):
        import gguf

        self.path = Path(path)
        if not self.path.is_file():
            raise ModelNotFoundError(f"GGUF file {self.path} does not exist")
        with open(self.path, "rb") as f:
            magic = f.read(4)
        if magic != b"GGUF":
            raise WeightsError(f"{self.path} is not a GGUF file (it does not start with the bytes 'GGUF')")
        try:
            self.metadata, self._tensors, self._mapping = _read_header(self.path, gguf)
        except Exception as e:  # numpy, struct and enum errors from a damaged header have no common base
            raise WeightsError(f"{self.path} is not a readable GGUF file ({type(e).__name__}: {e}); "
                               "it may be truncated or corrupt") from None
        size = self.path.stat().st_size
        for tensor in self._tensors:
            if tensor.data_offset + tensor.n_bytes > size:
                raise WeightsError(f"{self.path} is truncated: tensor {tensor.name!r} ends at byte "
                                   f"{tensor.data_offset + tensor.n_bytes} but the file has {size}")
        self.architecture: str = self.metadata.get("general.architecture", "")

    def __repr__(self) -> str:
        return f"GGUFFile({str(self.path)!r}, architecture={self.architecture!r}, tensors={len(self._tensors)})"

    @property
    def tensor_types(self) -> dict[str, str]:
        """``{gguf tensor name: ggml type name}``, e.g. ``{"blk.0.attn_q.weight": "Q4_K"}``."""
        return {t.name: t.tensor_type.name for t in self._tensors}

    def _model_type(self) -> str:
        if self.architecture not in ARCHITECTURES:
            raise UnsupportedModelError(
                f"{self.path}: GGUF architecture {self.architecture!r} is not supported; peluk loads "
                f"{', '.join(sorted(ARCHITECTURES))} GGUF files"
            )
        return ARCHITECTURES[self.architecture]

    def config_dict(self) -> dict[str, Any]:
        """The ``config.json`` dict of this model, as transformers derives it from the metadata.

        Returns:
            A dict with ``model_type`` and the family's fields (Llama: ``hidden_size``,
            ``num_key_value_heads``, ``rope_theta``, ...; GPT-2: ``n_embd``, ``n_layer``, ...), the
            special token ids the file names, and ``tie_word_embeddings`` (True when the file has no
            separate ``output.weight``).

        Raises:
            UnsupportedModelError: an architecture other than llama, mistral or gpt2.
        """
        model_type = self._model_type()
        meta, prefix = self.metadata, self.architecture
        config: dict[str, Any] = {"model_type": model_type, "architectures": [_CLASS[model_type]]}
        for key, name in CONFIG_KEYS[model_type].items():
            if f"{prefix}.{key}" in meta:
                config[name] = meta[f"{prefix}.{key}"]
        if f"{prefix}.attention.key_length" in meta and model_type != "gpt2":  # head_dim, if not the rotary width
            config["head_dim"] = meta[f"{prefix}.attention.key_length"]
        if "vocab_size" not in config and meta.get("tokenizer.ggml.tokens"):  # as transformers: from the vocabulary
            config["vocab_size"] = len(meta["tokenizer.ggml.tokens"])
        names = {t.name for t in self._tensors}
        config["tie_word_embeddings"] = "output.weight" not in names
        for key, name in _TOKEN_IDS.items():
            if f"tokenizer.ggml.{key}" in meta:
                config[name] = meta[f"tokenizer.ggml.{key}"]
        if model_type == "gpt2":
            config["activation_function"] = "gelu_new"
        else:
            # transformers' GGUF loader ignores these three; llama.cpp writes them and the model needs them.
            config["attention_bias"] = "blk.0.attn_q.bias" in names
            config["mlp_bias"] = "blk.0.ffn_up.bias" in names
            if (scaling := self._rope_scaling()) is not None:
                config["rope_scaling"] = scaling
        return config

    def _rope_scaling(self) -> dict | None:
        """rope_scaling from llama.cpp's rope.scaling.* keys (or the older rope.scale_linear)."""
        key = lambda name: self.metadata.get(f"{self.architecture}.rope.{name}")  # noqa: E731
        kind, factor = key("scaling.type"), key("scaling.factor")
        if kind is None and key("scale_linear") is not None:
            kind, factor = "linear", key("scale_linear")
        if kind in (None, "none") or factor is None:
            return None
        scaling = {"rope_type": kind, "factor": factor}
        if key("scaling.original_context_length") is not None:
            scaling["original_max_position_embeddings"] = key("scaling.original_context_length")
        return scaling

    def raw_tensors(self) -> Iterator[RawTensor]:
        """The tensors as stored (still quantized), named and ordered for transformers.

        For a loader that keeps weights packed: ``data`` is a read-only view of the memory-mapped
        file (nothing is read until used), except for Llama's q/k projections, whose rows are put
        back from llama.cpp's interleaved rotary order into transformers' (a row gather of the packed
        bytes, exact because each row holds whole quantization blocks). Dequantize a tensor with
        ``gguf.quants.dequantize(raw.data, gguf.GGMLQuantizationType[raw.qtype]).reshape(raw.shape)``;
        when ``raw.transposed``, transformers' tensor is its transpose (peluk's Linear wants it as is).

        Yields:
            :class:`RawTensor` for every tensor the model uses, in file order.

        Raises:
            UnsupportedModelError: an architecture other than llama, mistral or gpt2.
        """
        config = self.config_dict()
        names = TENSOR_NAMES[self.architecture]
        heads = config.get("num_attention_heads")
        kv_heads = config.get("num_key_value_heads") or heads  # absent in older files: no grouped attention
        for tensor in self._tensors:
            name = _hf_name(tensor.name, names)
            if name is None:
                continue
            data = tensor.data
            if self.architecture != "gpt2" and heads and (".attn_q." in tensor.name or ".attn_k." in tensor.name):
                data = _unpermute_rows(data, heads if ".attn_q." in tensor.name else kv_heads)
            shape = tuple(int(d) for d in reversed(tensor.shape.tolist()))  # ggml lists the fastest dim first
            transposed = self.architecture == "gpt2" and tensor.name.endswith(_GPT2_CONV1D)
            yield RawTensor(name, tensor.name, tensor.tensor_type.name, shape, data, transposed)

    def release_pages(self) -> None:
        """Drop the file's pages from this process's memory (they stay in the OS page cache).

        Tensor data (:meth:`raw_tensors`) are views of a read-only file mapping: whatever was
        read stays resident until the process ends, although a loader that converted the data
        no longer needs it. Nothing is lost: a later read faults the pages in again from the file.
        """
        import mmap

        if hasattr(mmap, "MADV_DONTNEED") and not self._mapping.closed:
            self._mapping.madvise(mmap.MADV_DONTNEED)

    def state_dict(self, dtype: torch.dtype = torch.float32) -> dict[str, torch.Tensor]:
        """Every tensor dequantized, under transformers' names and in transformers' layout.

        The values equal those of ``transformers.AutoModelForCausalLM.from_pretrained(dir,
        gguf_file=...)`` exactly: both dequantize with ``gguf.quants`` to float32, then cast. A tied
        model (no ``output.weight``) has no ``lm_head.weight`` here, as in a safetensors checkpoint.

        Args:
            dtype: the dtype of the returned tensors (float32 by default).

        Returns:
            ``{name: tensor}``; GPT-2's Conv1D weights are transposed views (shape (in, out)).

        Raises:
            UnsupportedModelError: an architecture other than llama, mistral or gpt2.
            WeightsError: a tensor of a type that cannot be dequantized (named with its type).
        """
        state = {}
        for raw in self.raw_tensors():
            tensor = torch.from_numpy(self._dequantize(raw))
            if raw.transposed:
                tensor = tensor.T
            state[raw.name] = tensor if dtype == torch.float32 else tensor.to(dtype)
        return state

    def _dequantize(self, raw: RawTensor) -> np.ndarray:
        import gguf

        try:
            values = gguf.quants.dequantize(raw.data, gguf.GGMLQuantizationType[raw.qtype])
        except NotImplementedError:
            raise WeightsError(f"{self.path}: tensor {raw.gguf_name!r} has ggml type {raw.qtype}, which cannot "
                               f"be dequantized; supported types: {', '.join(supported_types())}") from None
        values = values.reshape(raw.shape)
        # An F32 tensor comes back as a view of the read-only file mapping; the model needs its own memory.
        return values if values.flags.writeable else values.copy()

    def tokenizer(self, **kwargs) -> "Tokenizer":
        """The tokenizer described by the ``tokenizer.*`` metadata, as transformers builds it.

        ``tokenizer.ggml.model`` ``"gpt2"`` gives a byte-level BPE (vocabulary and merges from the
        file, the split regex of ``tokenizer.ggml.pre`` for Llama 3 / Qwen / Tekken vocabularies);
        ``"llama"`` gives a SentencePiece-style BPE with byte fallback (merges from the file, or
        rebuilt from the token scores). Control tokens become special added tokens, user-defined
        ones plain added tokens; ``add_bos_token``/``add_eos_token`` and ``chat_template`` come along.

        Args:
            **kwargs: override tokenizer config keys, e.g. ``padding_side="left"``.

        Returns:
            A :class:`peluk.tokenizer.Tokenizer`.

        Raises:
            TokenizerError: the file has no vocabulary, or a tokenizer model other than gpt2 or llama.
        """
        from peluk.tokenizer import Tokenizer

        backend, config, class_name = _build_tokenizer(self.metadata, str(self.path))
        config.update(kwargs)
        return Tokenizer.from_backend(backend, config, class_name)


_SCALARS = {0: "<B", 1: "<b", 2: "<H", 3: "<h", 4: "<I", 5: "<i", 6: "<f", 7: "<?", 10: "<Q", 11: "<q", 12: "<d"}
_ARRAYS = {0: "<u1", 1: "<i1", 2: "<u2", 3: "<i2", 4: "<u4", 5: "<i4", 6: "<f4", 7: "?", 10: "<u8", 11: "<i8", 12: "<f8"}


def _read_header(path: Path, gguf) -> tuple[dict[str, Any], list, Any]:
    """Parse the GGUF header with ``struct`` over a memory map; returns (metadata, tensors, the map).

    ``gguf.GGUFReader`` builds a numpy object per string (100k+ vocabulary entries): ~1.8 s and
    ~160 MiB for SmolLM2; this reads the same metadata and tensor views in ~0.1 s. Tensor data
    are views of the mapped file, shaped as GGUFReader shapes them.
    """
    import mmap
    import struct
    from types import SimpleNamespace

    with open(path, "rb") as f:
        buf = mmap.mmap(f.fileno(), 0, access=mmap.ACCESS_READ)
    u32, u64 = struct.Struct("<I"), struct.Struct("<Q")

    def string(pos):
        n = u64.unpack_from(buf, pos)[0]
        return buf[pos + 8:pos + 8 + n].decode("utf-8", errors="replace"), pos + 8 + n

    def value(kind, pos):
        if kind == 8:
            return string(pos)
        if kind == 9:  # array: item type, count, items
            item, n = u32.unpack_from(buf, pos)[0], u64.unpack_from(buf, pos + 4)[0]
            pos += 12
            if item in _ARRAYS:
                arr = np.frombuffer(buf, dtype=_ARRAYS[item], count=n, offset=pos)
                return arr.tolist(), pos + arr.nbytes
            out = []
            for _ in range(n):
                v, pos = value(item, pos)
                out.append(v)
            return out, pos
        scalar = struct.Struct(_SCALARS[kind])
        return scalar.unpack_from(buf, pos)[0], pos + scalar.size

    pos = 8  # magic, version
    n_tensors, n_kv = struct.unpack_from("<QQ", buf, pos)
    pos += 16
    meta: dict[str, Any] = {}
    for _ in range(n_kv):
        key, pos = string(pos)
        meta[key], pos = value(u32.unpack_from(buf, pos)[0], pos + 4)
    infos = []
    for _ in range(n_tensors):
        name, pos = string(pos)
        nd = u32.unpack_from(buf, pos)[0]
        dims = struct.unpack_from(f"<{nd}Q", buf, pos + 4)
        pos += 4 + 8 * nd
        kind, offset = struct.unpack_from("<IQ", buf, pos)
        pos += 12
        infos.append((name, dims, kind, offset))
    align = meta.get("general.alignment", 32)
    start = (pos + align - 1) // align * align
    tensors = []
    for name, dims, kind, offset in infos:
        qtype = gguf.GGMLQuantizationType(kind)
        block, size = gguf.GGML_QUANT_SIZES[qtype]
        rows = int(np.prod(dims[1:])) if len(dims) > 1 else 1
        if qtype.name in ("F32", "F16"):
            dtype = np.float32 if qtype.name == "F32" else np.float16
            count = int(np.prod(dims))
            if start + offset + count * np.dtype(dtype).itemsize > len(buf):
                raise ValueError(f"tensor {name!r} extends past the end of the file")
            data = np.frombuffer(buf, dtype=dtype, count=count, offset=start + offset).reshape(tuple(reversed(dims)))
        else:  # quantized (and BF16): raw bytes, one row of blocks per output row
            row = dims[0] // block * size
            if start + offset + row * rows > len(buf):
                raise ValueError(f"tensor {name!r} extends past the end of the file")
            data = np.frombuffer(buf, dtype=np.uint8, count=row * rows, offset=start + offset)
            data = data.reshape(*reversed(dims[1:]), row)
        tensors.append(SimpleNamespace(name=name, tensor_type=qtype, shape=np.array(dims), data=data,
                                       data_offset=start + offset, n_bytes=data.nbytes))
    return meta, tensors, buf


def read_gguf(path: str | os.PathLike) -> GGUFFile:
    """Open a GGUF file, reusing a recent opening of the same unchanged file (parsing the
    header of a large vocabulary takes seconds; config, weights and tokenizer all need it)."""
    path = Path(path)
    stat = path.stat() if path.exists() else None
    return _open_cached(str(path.resolve()), stat.st_mtime_ns if stat else 0, stat.st_size if stat else 0)


@functools.lru_cache(maxsize=2)
def _open_cached(path: str, mtime_ns: int, size: int) -> GGUFFile:
    return GGUFFile(path)


def gguf_path(name_or_path: str | os.PathLike, gguf_file: str | os.PathLike | None = None) -> Path | None:
    """The GGUF file meant by ``from_pretrained(name_or_path, gguf_file=...)``, or None."""
    path = Path(name_or_path)
    if gguf_file is not None:
        return path / gguf_file if path.is_dir() else Path(gguf_file)
    return path if path.suffix == ".gguf" and path.is_file() else None


def supported_types() -> list[str]:
    """The ggml tensor types peluk can dequantize (through ``gguf.quants``)."""
    import gguf

    names = []
    for qtype in gguf.GGMLQuantizationType:
        try:
            block, size = gguf.GGML_QUANT_SIZES[qtype]
            gguf.quants.dequantize(np.zeros((1, size), dtype=np.uint8), qtype)
        except (NotImplementedError, KeyError, ValueError):
            continue
        names.append(qtype.name)
    return names


def _hf_name(gguf_name: str, names: dict[str, str]) -> str | None:
    """``"blk.3.attn_q.weight"`` → ``"model.layers.3.self_attn.q_proj.weight"`` (None: not a model tensor)."""
    stem, _, suffix = gguf_name.rpartition(".")
    layer = None
    if stem.startswith("blk."):
        _, layer, rest = stem.split(".", 2)
        stem = f"blk.{{i}}.{rest}"
    target = names.get(stem)
    if target is None:
        return None
    return f"{target.format(i=layer)}.{suffix}"


def _unpermute_rows(rows: np.ndarray, heads: int) -> np.ndarray:
    """Undo llama.cpp's q/k row permutation (rotary pairs interleaved per head) for ``heads`` heads.

    llama.cpp's converter reorders each head's rows from transformers' "rotate half" layout
    (x0..x31, y0..y31) to interleaved pairs (x0, y0, x1, y1, ...); this is the inverse, as in
    transformers' LlamaTensorProcessor. Works on float rows and on packed quantized rows alike.
    """
    half = rows.shape[0] // heads // 2
    return rows.reshape(heads, half, 2, *rows.shape[1:]).swapaxes(1, 2).reshape(rows.shape)


# Split regexes for byte-level vocabularies whose merges were learned on other pre-tokenization
# than GPT-2's; keyed by tokenizer.ggml.pre (transformers' GGUF_PRE_TOKENIZER_SPLITS).
_LLAMA3_SPLIT = (
    r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}"
    r"| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+"
)
_QWEN2_SPLIT = (
    r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}"
    r"| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+"
)
_TEKKEN_SPLIT = (
    r"[^\r\n\p{L}\p{N}]?[\p{Lu}\p{Lt}\p{Lm}\p{Lo}\p{M}]*[\p{Ll}\p{Lm}\p{Lo}\p{M}]+"
    r"|[^\r\n\p{L}\p{N}]?[\p{Lu}\p{Lt}\p{Lm}\p{Lo}\p{M}]+[\p{Ll}\p{Lm}\p{Lo}\p{M}]*"
    r"|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n/]*|\s*[\r\n]+|\s+(?!\S)|\s+"
)
_GPT4O_SPLIT = (
    r"[^\r\n\p{L}\p{N}]?[\p{Lu}\p{Lt}\p{Lm}\p{Lo}\p{M}]*[\p{Ll}\p{Lm}\p{Lo}\p{M}]+(?i:'s|'t|'re|'ve|'m|'ll|'d)?"
    r"|[^\r\n\p{L}\p{N}]?[\p{Lu}\p{Lt}\p{Lm}\p{Lo}\p{M}]+[\p{Ll}\p{Lm}\p{Lo}\p{M}]*(?i:'s|'t|'re|'ve|'m|'ll|'d)?"
    r"|\p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n/]*|\s*[\r\n]+|\s+(?!\S)|\s+"
)
PRE_TOKENIZER_SPLITS = {
    **dict.fromkeys(["llama3", "llama-v3", "llama-bpe", "falcon3", "falcon-h1", "pixtral", "midm-2.0", "lfm2",
                     "jina-v5-nano", "dbrx", "smaug-bpe"], _LLAMA3_SPLIT),
    **dict.fromkeys(["qwen2", "deepseek-r1-qwen", "kormo", "f2llmv2", "megrez"], _QWEN2_SPLIT),
    "tekken": _TEKKEN_SPLIT,
    **dict.fromkeys(["gpt-4o", "llama4", "kanana2", "talkie", "minimax-m2"], _GPT4O_SPLIT),
}
_CONTROL, _USER_DEFINED = 3, 4  # llama.cpp token types
_SPECIAL_IDS = {"bos_token": "bos_token_id", "eos_token": "eos_token_id", "unk_token": "unknown_token_id",
                "pad_token": "padding_token_id"}


def _build_tokenizer(meta: dict, source: str):
    """(Rust tokenizer, tokenizer config, transformers class name) from GGUF metadata."""
    from tokenizers import AddedToken, Regex, decoders, pre_tokenizers
    from tokenizers import Tokenizer as RustTokenizer
    from tokenizers.models import BPE

    kind = meta.get("tokenizer.ggml.model")
    tokens = meta.get("tokenizer.ggml.tokens")
    if not tokens:
        raise TokenizerError(f"{source} has no tokenizer.ggml.tokens: it carries no tokenizer; "
                             "load the tokenizer from the original model's files instead")
    merges = meta.get("tokenizer.ggml.merges")
    token_types = meta.get("tokenizer.ggml.token_type") or []
    if kind == "gpt2":
        alphabet = _bytes_to_unicode()
        letters = set(alphabet.values())
        # A token outside the byte alphabet is stored as text; spell its UTF-8 bytes in the alphabet.
        spelled = [t if set(t) <= letters else "".join(alphabet[b] for b in t.encode("utf-8")) for t in tokens]
        vocab = {token: index for index, token in enumerate(spelled)}
        backend = RustTokenizer(BPE(vocab, _merges(merges, tokens, meta), dropout=None, continuing_subword_prefix="",
                                    end_of_word_suffix="", fuse_unk=False))
        backend.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
        backend.decoder = decoders.ByteLevel()
        # transformers builds this vocabulary with GPT2Tokenizer, which registers its default special
        # token (adding it at the end if the vocabulary lacks it).
        backend.add_tokens([AddedToken("<|endoftext|>", special=True)])
        if (split := PRE_TOKENIZER_SPLITS.get(meta.get("tokenizer.ggml.pre"))) is not None:
            backend.pre_tokenizer = pre_tokenizers.Sequence([
                pre_tokenizers.Split(Regex(split), behavior="isolated"),
                pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=False),
            ])
        # A "control" token outside the byte alphabet is a llama.cpp mislabel; adding it would grow the vocabulary.
        control_ok = lambda token: set(token) <= letters  # noqa: E731
    elif kind == "llama":
        vocab = {token: index for index, token in enumerate(tokens)}
        backend = RustTokenizer(BPE(vocab, _merges(merges, tokens, meta), fuse_unk=True, byte_fallback=True,
                                    dropout=None))
        backend.pre_tokenizer = pre_tokenizers.Metaspace(replacement="\u2581", prepend_scheme="first", split=False)
        backend.decoder = decoders.Sequence([decoders.Replace("\u2581", " "), decoders.ByteFallback(), decoders.Fuse(),
                                             decoders.Strip(content=" ", left=1)])
        # transformers builds this vocabulary with LlamaTokenizer, which registers its default
        # specials (adding them at the end if the vocabulary lacks them).
        backend.add_tokens([AddedToken(t, special=True) for t in ("<unk>", "<s>", "</s>")])
        control_ok = lambda token: True  # noqa: E731
    else:
        raise TokenizerError(f"{source}: tokenizer.ggml.model {kind!r} is not supported; peluk builds 'gpt2' "
                             "(byte-level BPE) and 'llama' (SentencePiece BPE) tokenizers from GGUF files")

    control = [AddedToken(t, normalized=False, special=True)
               for t, kind_ in zip(tokens, token_types) if kind_ == _CONTROL and control_ok(t)]
    backend.add_special_tokens(control)
    current = backend.get_vocab(with_added_tokens=True)
    backend.add_tokens([AddedToken(t, normalized=False, special=False)
                        for t, kind_ in zip(tokens, token_types) if kind_ == _USER_DEFINED and t in current])

    config: dict[str, Any] = {}
    for name, key in _SPECIAL_IDS.items():
        index = meta.get(f"tokenizer.ggml.{key}")
        config[name] = tokens[index] if index is not None and 0 <= index < len(tokens) else None
    if kind == "llama":
        # llama.cpp adds BOS to a SentencePiece vocabulary that does not say otherwise.
        config["add_bos_token"] = True
    for key in ("add_bos_token", "add_eos_token"):
        if f"tokenizer.ggml.{key}" in meta:
            config[key] = meta[f"tokenizer.ggml.{key}"]
    if "tokenizer.chat_template" in meta:
        config["chat_template"] = meta["tokenizer.chat_template"]
    # AutoTokenizer picks GPT2Tokenizer for a gpt2 model and the generic class otherwise.
    class_name = "GPT2Tokenizer" if meta.get("general.architecture") == "gpt2" else "TokenizersBackend"
    return backend, config, class_name


def _merges(merges: list[str] | None, tokens: list[str], meta: dict) -> list[tuple[str, str]]:
    """The file's merges, or (SentencePiece files often have none) the ones its scores imply."""
    if merges is not None:
        return [tuple(merge.split(" ")) for merge in merges]
    scores = meta.get("tokenizer.ggml.scores") or [0.0] * len(tokens)
    return _merges_from_scores({t: i for i, t in enumerate(tokens)}, dict(zip(tokens, scores)))


def _merges_from_scores(vocab: dict[str, int], scores: dict[str, float]) -> list[tuple[str, str]]:
    """Every split of a token into two vocabulary tokens, best score first (transformers' generate_merges)."""
    merges = []
    for token, score in scores.items():
        pairs = [(token[:i], token[i:], score) for i in range(1, len(token))
                 if token[:i] in vocab and token[i:] in vocab]
        merges += sorted(pairs, key=lambda pair: (vocab[pair[0]], vocab[pair[1]]))
    merges.sort(key=lambda m: (m[2], len(m[0]), len(m[1])), reverse=True)
    return [(left, right) for left, right, _ in merges]


def _bytes_to_unicode() -> dict[int, str]:
    """GPT-2's map from bytes to printable characters (the byte-level BPE alphabet)."""
    printable = [*range(ord("!"), ord("~") + 1), *range(ord("¡"), ord("¬") + 1), *range(ord("®"), ord("ÿ") + 1)]
    chars = printable[:]
    extra = 0
    for b in range(256):
        if b not in printable:
            printable.append(b)
            chars.append(256 + extra)
            extra += 1
    return dict(zip(printable, map(chr, chars)))


__all__ = ["GGUFFile", "RawTensor", "read_gguf", "supported_types", "ARCHITECTURES"]
