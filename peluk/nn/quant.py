"""Weight-only quantized layers (int8, int4) for fast CPU decoding, built from floats or GGUF blocks.

At batch 1 a decoder step reads every weight once, so its speed is bounded by the bytes read.
:class:`QuantLinear` keeps weights as int8 (a scale per output row) or int4 (a scale and a zero
per group of inputs) and multiplies with PyTorch's weight-only CPU kernels
(``torch._weight_int8pack_mm``, ``torch._weight_int4pack_mm_for_cpu``). These want activations in
the scales' dtype and are vectorised only for bfloat16 (float32 takes a ~20x slower scalar path),
so ``dtype`` defaults to bfloat16; the layer casts its input to it and its output back. Off the
CPU it dequantizes and calls ``F.linear``.

The int4 kernel computes ``w = (q - 8) * scale + zero`` (``q`` in 0..15) per group, so GGUF blocks
of 32 map onto it without requantizing; only the fp16 block scales are rounded to ``dtype``:
Q4_0 (``w = d (q - 8)``): scale ``d``, zero 0; Q4_1 (``w = d q + m``): scale ``d``, zero ``m + 8d``;
Q8_0 (``w = d q``, int8 ``q``; no group-wise int8 kernel exists): the nibbles of ``q + 128`` give
``w = (hi - 8) 16d + (lo - 8) d + 8d``, two int4 halves side by side that both multiply the input
(one call, 1.18x Q8_0's bytes). Other GGUF types are dequantized and quantized again.
:class:`QuantEmbedding` keeps a table as Q8_0 blocks (e.g. memory-mapped from the file, read only
where looked up) and dequantizes the rows it gathers, exactly.

>>> layer = QuantLinear.from_float(nn.Linear(576, 1536, bias=False), bits=4)   # doctest: +SKIP
>>> quantize_linears(model, bits=4, lm_head=8)                                   # doctest: +SKIP
"""

from __future__ import annotations

import warnings
from typing import Callable

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from peluk.errors import WeightsError

_Q4_BLOCK = {"Q4_0": 18, "Q4_1": 20}  # bytes per block of 32 weights: fp16 d (, fp16 m), 16 bytes of nibbles
_Q8_BLOCK = 34  # fp16 d, 32 int8
# Rows converted at a time: a multiple of the int4 kernel's 64-row tiles, so packed slices concatenate.
_ROWS = 1024


class QuantLinear(nn.Module):
    """``y = x Wᵀ + b`` with ``W`` stored as int8 or int4; build it with a ``from_*`` constructor.

    Args:
        weight: int8 (N, K) for ``bits=8``; for ``bits=4`` the int4 kernel's packed uint8 of an
            (N, K * repeat) matrix (the layout is the CPU kernel's own, not portable).
        scales: (N,) for ``bits=8``; (K * repeat / group_size, N, 2) scales and zeros for ``bits=4``.
        bits: 8 or 4.
        group_size: inputs per int4 group (32, 64, 128 or 256); 0 for per-row int8.
        bias: (N,) or None.
        repeat: 2 when the int4 matrix is two halves that both multiply the input (Q8_0).
    """

    def __init__(self, weight: torch.Tensor, scales: torch.Tensor, bits: int, group_size: int,
                 bias: torch.Tensor | None = None, repeat: int = 1):
        super().__init__()
        self.bits, self.group_size, self.repeat = bits, group_size, repeat
        self.out_features = scales.shape[0] if bits == 8 else scales.shape[1]
        self.in_features = weight.shape[1] if bits == 8 else weight.shape[1] * 2 // repeat
        for name, tensor in (("weight", weight), ("scales", scales), ("bias", bias)):
            self.register_buffer(name, tensor)

    def extra_repr(self) -> str:
        return (f"in_features={self.in_features}, out_features={self.out_features}, bits={self.bits}, "
                f"group_size={self.group_size}, repeat={self.repeat}, dtype={self.scales.dtype}")

    @classmethod
    def from_float(cls, linear: nn.Linear | torch.Tensor, bits: int = 8, group_size: int = 32,
                   dtype: torch.dtype = torch.bfloat16) -> "QuantLinear":
        """Quantize an ``nn.Linear`` (bias kept) or an (N, K) weight: int8 per row, or int4 per group.

        Args:
            bits: 8 (symmetric, a scale per row) or 4 (a scale and a zero per ``group_size`` inputs).
            group_size: int4 only: 32, 64, 128 or 256, dividing ``in_features``.
            dtype: activation and scale dtype (bfloat16 is the fast one on CPU).

        Raises:
            ValueError: ``bits`` other than 8 or 4, or a ``group_size`` that does not fit.
        """
        w = (linear.weight if isinstance(linear, nn.Linear) else linear).detach().float()
        bias = linear.bias if isinstance(linear, nn.Linear) else None
        bias = None if bias is None else bias.detach().to(dtype)
        if bits == 8:
            scale = w.abs().amax(1).clamp(min=1e-12) / 127
            q = torch.round(w / scale[:, None]).clamp(-127, 127).to(torch.int8)
            return cls(q, scale.to(dtype), 8, 0, bias)
        if bits != 4:
            raise ValueError(f"bits must be 8 or 4, not {bits}")
        N, K = w.shape
        if group_size not in (32, 64, 128, 256) or K % group_size:
            raise ValueError(f"group_size must be 32, 64, 128 or 256 and divide in_features ({K}), not {group_size}")
        groups = w.view(N, K // group_size, group_size)
        lo, hi = groups.amin(-1), groups.amax(-1)
        scale = ((hi - lo) / 15).clamp(min=1e-12)
        q = torch.round((groups - lo[..., None]) / scale[..., None]).clamp(0, 15).to(torch.uint8)
        return cls(_pack(q.flatten(1)), _scales_and_zeros(scale, lo + 8 * scale, dtype), 4, group_size, bias)

    @classmethod
    def from_gguf(cls, data: np.ndarray, qtype: str, shape: tuple[int, int], bias: torch.Tensor | None = None,
                  dtype: torch.dtype = torch.bfloat16, bits: int = 8, exact: bool = True) -> "QuantLinear":
        """From a GGUF weight as stored: ``data`` holds the (N, bytes per row) blocks of type ``qtype``.

        Args:
            data: the raw rows, e.g. ``peluk.gguf.RawTensor.data``.
            qtype: the ggml type name. Q4_0, Q4_1 and Q8_0 convert exactly (see the module
                docstring); other types are dequantized and quantized again with ``bits``.
            shape: the dequantized (out_features, in_features).
            exact: False to requantize even the exact types with ``bits`` (e.g. a Q8_0 head as
                per-row int8: about half the time of the exact two int4 halves, not bit-exact).

        Raises:
            WeightsError: bytes that do not fit ``shape`` for ``qtype``, or a type ``gguf`` cannot read.
        """
        if bits == 8 and (qtype not in (*_Q4_BLOCK, "Q8_0") or not exact):
            return cls._int8_from_gguf(data, qtype, shape, bias, dtype)
        if qtype not in (*_Q4_BLOCK, "Q8_0"):
            return cls.from_float(dequantize_gguf(data, qtype, shape), bits=bits, dtype=dtype)
        blocks = _blocks(data, qtype, shape, _Q4_BLOCK.get(qtype, _Q8_BLOCK))  # (N, K / 32, bytes), not copied
        # converted in slices of rows, each written into place, so that the temporary copies stay
        # small (a vocabulary-sized head)
        out = None
        for i in range(0, shape[0], _ROWS):
            parts = _int4_blocks(blocks[i:i + _ROWS], qtype)  # packed, scale, zero
            out = out or [p.new_empty((shape[0], *p.shape[1:])) for p in parts]
            for whole, part in zip(out, parts):
                whole[i:i + len(part)] = part
        packed, scale, zero = out
        return cls(packed, _scales_and_zeros(scale, zero, dtype), 4, 32, bias, repeat=2 if qtype == "Q8_0" else 1)

    @classmethod
    def _int8_from_gguf(cls, data: np.ndarray, qtype: str, shape: tuple[int, int], bias: torch.Tensor | None,
                        dtype: torch.dtype) -> "QuantLinear":
        """Per-row int8 from any GGUF type, dequantized a slice of rows at a time (a vocabulary-sized
        head never exists in float32 as a whole)."""
        N, K = shape
        rows = np.asarray(data).reshape(N, -1)
        q, scale = torch.empty((N, K), dtype=torch.int8), torch.empty(N)
        for i in range(0, N, _ROWS):
            chunk = rows[i:i + _ROWS]
            part = cls.from_float(dequantize_gguf(chunk, qtype, (len(chunk), K)), bits=8, dtype=torch.float32)
            q[i:i + _ROWS], scale[i:i + _ROWS] = part.weight, part.scales
        return cls(q, scale.to(dtype), 8, 0, bias)

    def dequantize(self) -> torch.Tensor:
        """The float32 (N, K) weight this layer multiplies by."""
        if self.bits == 8:
            return self.weight.float() * self.scales.float()[:, None]
        # The packed layout is the CPU kernel's own; multiplying the identity reads it back.
        eye = torch.eye(self.in_features * self.repeat, dtype=self.scales.dtype)
        w = torch._weight_int4pack_mm_for_cpu(eye, self.weight.cpu(), self.group_size, self.scales.cpu()).T.float()
        return w.view(self.out_features, self.repeat, self.in_features).sum(1).to(self.weight.device)

    def matmul(self, x2: torch.Tensor) -> torch.Tensor:
        """The kernel call: (M, K) activations in the scales' dtype → (M, N) in that dtype, bias added."""
        if x2.device.type != "cpu":
            y = F.linear(x2, self.dequantize().to(x2.dtype))
        elif self.bits == 8:
            y = torch._weight_int8pack_mm(x2, self.weight, self.scales)
        else:
            x2 = x2.repeat(1, self.repeat) if self.repeat > 1 else x2
            y = torch._weight_int4pack_mm_for_cpu(x2, self.weight, self.group_size, self.scales)
        return y if self.bias is None else y + self.bias

    def kernel(self) -> Callable[[torch.Tensor], torch.Tensor]:
        """:meth:`matmul` with this layer's tensors bound, for hot loops (no module attribute
        lookups per call). It keeps using these tensors if the layer's are replaced later."""
        weight, scales, bias, group_size = self.weight, self.scales, self.bias, self.group_size
        if weight.device.type != "cpu" or self.repeat > 1 or bias is not None:
            return self.matmul
        if self.bits == 8:
            return lambda x2: torch._weight_int8pack_mm(x2, weight, scales)
        return lambda x2: torch._weight_int4pack_mm_for_cpu(x2, weight, group_size, scales)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.matmul(x.reshape(-1, self.in_features).to(self.scales.dtype))  # (B*T, N)
        return y.view(*x.shape[:-1], self.out_features).to(x.dtype)


class QuantEmbedding(nn.Module):
    """An embedding table kept as Q8_0 blocks; looked-up rows are dequantized exactly.

    Args:
        blocks: (vocab, dim / 32 * 34) uint8, GGUF's Q8_0 layout. A memory-mapped GGUF tensor
            may be passed as is: only the rows looked up are ever read.
        dtype: the dtype of the returned vectors.
    """

    def __init__(self, blocks: torch.Tensor, dtype: torch.dtype = torch.float32):
        super().__init__()
        self.register_buffer("blocks", blocks)
        self.dtype = dtype
        self.num_embeddings, self.embedding_dim = blocks.shape[0], blocks.shape[1] // _Q8_BLOCK * 32

    @classmethod
    def from_gguf(cls, data: np.ndarray, qtype: str, shape: tuple[int, int],
                  dtype: torch.dtype = torch.float32) -> "QuantEmbedding":
        """From a GGUF table: Q8_0 is used as stored (no copy); other types are requantized to Q8_0."""
        if qtype != "Q8_0":
            return cls.from_float(dequantize_gguf(data, qtype, shape), dtype)
        return cls(_blocks(data, qtype, shape, _Q8_BLOCK).flatten(1), dtype)

    @classmethod
    def from_float(cls, table: torch.Tensor, dtype: torch.dtype = torch.float32) -> "QuantEmbedding":
        """Quantize a (vocab, dim) float table to Q8_0 (dim must be a multiple of 32)."""
        V, C = table.shape
        groups = table.detach().float().view(V, C // 32, 32)
        d = (groups.abs().amax(-1, keepdim=True) / 127).half()  # rounded to fp16 first, as ggml does
        q = torch.round(groups / d.float().clamp(min=1e-30)).clamp(-127, 127).to(torch.int8)
        return cls(torch.cat([d.view(torch.uint8), q.view(torch.uint8)], dim=-1).flatten(1), dtype)

    def forward(self, ids: torch.Tensor) -> torch.Tensor:
        rows = self.blocks[ids.flatten()].view(-1, self.embedding_dim // 32, _Q8_BLOCK)  # (n, G, 34)
        d = rows[..., :2].contiguous().view(torch.float16).float()  # (n, G, 1)
        q = rows[..., 2:].contiguous().view(torch.int8).float()  # (n, G, 32)
        return (d * q).to(self.dtype).view(*ids.shape, self.embedding_dim)


def dequantize_gguf(data: np.ndarray, qtype: str, shape: tuple[int, ...]) -> torch.Tensor:
    """A GGUF tensor's float32 values, through ``gguf.quants.dequantize``."""
    import gguf

    try:
        values = gguf.quants.dequantize(np.asarray(data), gguf.GGMLQuantizationType[qtype])
    except (KeyError, NotImplementedError):
        raise WeightsError(f"cannot dequantize GGUF type {qtype!r} (the gguf package has no reader for it)") from None
    return torch.from_numpy(np.array(values, dtype=np.float32).reshape(shape))


def fuse(*layers: QuantLinear) -> QuantLinear | None:
    """One layer that computes ``torch.cat([m(x) for m in layers], -1)`` with one kernel call.

    The layers' weights become views of the joined weight, so no second copy is kept. Returns
    None when the layers cannot be joined: all must be int4 with the same group size and dtype,
    no bias, not Q8_0 pairs, and each ``out_features`` a multiple of the kernel's 64-row tiles.
    """
    first = layers[0]
    if not all(m.bits == 4 and m.repeat == 1 and m.bias is None and m.out_features % 64 == 0
               and m.group_size == first.group_size and m.scales.dtype == first.scales.dtype for m in layers):
        return None
    with torch.inference_mode(False):  # made on first use, perhaps in inference mode: keep them ordinary tensors
        joined = QuantLinear(torch.cat([m.weight for m in layers]), torch.cat([m.scales for m in layers], 1),
                             4, first.group_size)
        start = 0
        for m in layers:
            m.weight = joined.weight[start:start + m.out_features]  # (n, K / 2) packed rows: a contiguous slice
            start += m.out_features
    return joined


def joined(*layers: QuantLinear) -> QuantLinear | None:
    """The layer :func:`fuse` makes of ``layers`` (None if they cannot be joined), made on first
    use and cached on the first layer (outside the state dict); made again if a weight is replaced."""
    key = tuple(m.weight.data_ptr() for m in layers)
    cached = layers[0].__dict__.get("_fused")
    if cached is None or cached[0] != key:
        layer = fuse(*layers)
        cached = (tuple(m.weight.data_ptr() for m in layers), layer)
        layers[0].__dict__["_fused"] = cached  # a plain attribute: not a submodule, not in the state dict
    return cached[1]


def fused_forward(x: torch.Tensor, *layers: QuantLinear) -> tuple[torch.Tensor, ...]:
    """``tuple(m(x) for m in layers)``, as one call when :func:`fuse` can join them (e.g. q, k, v)."""
    layer = joined(*layers)
    if layer is None:
        return tuple(m(x) for m in layers)
    return layer(x).split([m.out_features for m in layers], dim=-1)


def quantize_linears(model: nn.Module, bits: int = 4, group_size: int = 32, *, lm_head: int | None = 8,
                     gguf_tensors: dict | None = None, dtype: torch.dtype = torch.bfloat16,
                     exact_head: bool = True) -> nn.Module:
    """Replace every ``nn.Linear`` of ``model`` (in place) with a :class:`QuantLinear`.

    Args:
        bits, group_size: the format of the layers quantized from float weights.
        lm_head: the width for the output projection (a module named ``lm_head``): 8, 4, or None
            to keep it in float. Choose explicitly: with a large vocabulary it is a big share of
            the bytes read per token (SmolLM2-135M: 28 MB of ~95 MB at int8).
        gguf_tensors: ``{state-dict key: peluk.gguf.RawTensor}``; a layer found here is built
            from its GGUF blocks (exact for Q4_0/Q4_1/Q8_0) instead of from its float weight,
            which may then be on the meta device. For a tied head, map ``"lm_head.weight"`` to
            the embedding's tensor.
        dtype: activation and scale dtype of the quantized layers.
        exact_head: False to requantize a GGUF head of an exact type (Q8_0) to ``lm_head`` bits
            anyway (see :meth:`QuantLinear.from_gguf`).

    Returns:
        ``model``, changed in place.
    """
    for name, module in list(model.named_modules()):
        if not isinstance(module, nn.Linear):
            continue
        head = name.rpartition(".")[2] == "lm_head"
        width = lm_head if head else bits
        if width is None:
            continue
        raw = (gguf_tensors or {}).get(f"{name}.weight")
        if raw is not None and not raw.transposed:
            bias = module.bias.detach().to(dtype) if module.bias is not None else None
            layer = QuantLinear.from_gguf(raw.data, raw.qtype, raw.shape, bias, dtype, bits=width,
                                          exact=exact_head or not head)
        else:
            layer = QuantLinear.from_float(module, width, group_size, dtype)
        model.set_submodule(name, layer)
    return model


def release_freed_memory() -> None:
    """Give the C heap's free pages back to the OS (glibc's ``malloc_trim``; elsewhere nothing).

    Converting weights frees large temporaries; glibc keeps such memory for reuse, so a process
    stays ~130 MiB larger than its tensors after loading SmolLM2's GGUF without this.
    """
    import ctypes

    try:
        ctypes.CDLL(None).malloc_trim(0)
    except (OSError, AttributeError):  # not glibc
        pass


def _int4_blocks(blocks: torch.Tensor, qtype: str) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """(packed, scale, zero) for the int4 kernel from (n, G, bytes) GGUF blocks of 32 weights."""
    n, G, size = blocks.shape
    d = blocks[..., :2].contiguous().view(torch.float16).squeeze(-1).float()  # (n, G)
    if qtype == "Q8_0":
        u = blocks[..., 2:].reshape(n, G * 32) ^ 128  # the int8 q as the byte q + 128 (the sign bit flipped)
        q = torch.cat([u >> 4, u & 15], dim=1)  # (n, 2K): high nibbles, then low ones
        return _pack(q), torch.cat([16 * d, d], dim=1), torch.cat([torch.zeros_like(d), 8 * d], dim=1)
    nibbles = blocks[..., size - 16:]  # (n, G, 16): low nibbles are weights 0..15 of a block, high ones 16..31
    q = torch.cat([nibbles & 15, nibbles >> 4], dim=-1).reshape(n, G * 32)
    if qtype == "Q4_0":  # w = d (q - 8)
        return _pack(q), d, torch.zeros_like(d)
    m = blocks[..., 2:4].contiguous().view(torch.float16).squeeze(-1).float()
    return _pack(q), d, m + 8 * d  # w = d q + m = (q - 8) d + (m + 8 d)


def _pack(q: torch.Tensor) -> torch.Tensor:
    """The int4 kernel's layout of (N, K) values in 0..15, packed a slice of rows at a time (a small int32 copy)."""
    if q.shape[0] % 16:
        raise ValueError(f"int4 weights need out_features divisible by 16, not {q.shape[0]}; use bits=8")
    return torch.cat([torch._convert_weight_to_int4pack_for_cpu(q[i:i + _ROWS].to(torch.int32).contiguous(), 1)
                      for i in range(0, q.shape[0], _ROWS)])


def _scales_and_zeros(scale: torch.Tensor, zero: torch.Tensor, dtype: torch.dtype) -> torch.Tensor:
    return torch.stack([scale.T, zero.T], dim=-1).to(dtype).contiguous()  # (G, N, 2)


def _blocks(data: np.ndarray, qtype: str, shape: tuple[int, int], size: int) -> torch.Tensor:
    """The (N, K / 32, size) uint8 blocks of a GGUF weight, without copying."""
    N, K = shape
    rows = np.asarray(data).view(np.uint8).reshape(N, -1)
    if K % 32 or rows.shape[1] != K // 32 * size:
        raise WeightsError(f"{qtype} tensor of shape {shape}: expected {K // 32 * size} bytes per row "
                           f"(blocks of 32 weights, {size} bytes each), found {rows.shape[1]}")
    with warnings.catch_warnings():  # a memory-mapped file is read-only; torch warns, but nothing writes to it
        warnings.simplefilter("ignore", UserWarning)
        return torch.from_numpy(rows).view(N, K // 32, size)
