"""Weight-only quantized linear layers (int8, int4) for fast CPU decoding.

At batch 1 a decoder step reads every weight once, so its speed is bounded by the bytes it
reads. :class:`QuantLinear` keeps weights as int8 (one scale per output row) or int4 (a scale
and a zero per group of ``group_size`` inputs) and multiplies with PyTorch's weight-only CPU
kernels, ``torch._weight_int8pack_mm`` and ``torch._weight_int4pack_mm_for_cpu``. Both kernels
want the activations in the dtype of the scales and are only vectorised for bfloat16 on CPU
(float32 inputs take a scalar path ~20x slower), so ``dtype`` defaults to bfloat16; the layer
casts its input to it and its output back. On other devices the layer dequantizes and calls
``F.linear``.

The int4 kernel dequantizes ``w = (q - 8) * scale + zero`` with ``q`` in 0..15, per group of
inputs. GGUF's Q4_0 (``w = d * (q - 8)``) and Q4_1 (``w = d * q + m``) blocks of 32 therefore map
onto it without requantizing: ``scale = d`` and ``zero = 0`` or ``m + 8 d``; only rounding the
fp16 ``d``/``m`` to bfloat16 changes them (relative 2^-9). Q8_0 blocks (``w = d * q``, int8,
group 32) have no group-wise int8 kernel to map to; they become per-row int8 (requantized from
the exact values), as does any other GGUF type (dequantized first).

>>> layer = QuantLinear.from_float(nn.Linear(576, 1536, bias=False), bits=4)   # doctest: +SKIP
>>> quantize_linears(model, bits=4, lm_head=8)                                   # doctest: +SKIP
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from peluk.errors import WeightsError


class QuantLinear(nn.Module):
    """``y = x Wᵀ + b`` with ``W`` stored as int8 or int4; build it with a ``from_*`` constructor.

    Args:
        weight: int8 (N, K) for ``bits=8``; the int4 kernel's packed uint8 for ``bits=4``.
        scales: (N,) for ``bits=8``; (K / group_size, N, 2) scales and zeros for ``bits=4``.
        bits: 8 or 4.
        group_size: inputs per int4 group (32, 64, 128 or 256); 0 for per-row int8.
        bias: (N,) or None.
    """

    def __init__(self, weight: torch.Tensor, scales: torch.Tensor, bits: int, group_size: int,
                 bias: torch.Tensor | None = None):
        super().__init__()
        self.bits, self.group_size = bits, group_size
        self.out_features = scales.shape[0] if bits == 8 else scales.shape[1]
        self.in_features = weight.shape[1] * (1 if bits == 8 else 2)
        self.register_buffer("weight", weight)
        self.register_buffer("scales", scales)
        self.register_buffer("bias", bias)

    def extra_repr(self) -> str:
        return (f"in_features={self.in_features}, out_features={self.out_features}, bits={self.bits}, "
                f"group_size={self.group_size}, dtype={self.scales.dtype}")

    @classmethod
    def from_float(cls, linear: nn.Linear | torch.Tensor, bits: int = 8, group_size: int = 32,
                   dtype: torch.dtype = torch.bfloat16) -> "QuantLinear":
        """Quantize a float layer (or an (N, K) weight): int8 symmetric per row, or int4 asymmetric per group.

        Args:
            linear: an ``nn.Linear`` (its bias is kept) or a weight tensor.
            bits: 8 or 4.
            group_size: int4 only; must divide ``in_features``.
            dtype: activation and scale dtype (bfloat16 is the fast one on CPU).

        Raises:
            ValueError: unsupported ``bits`` or a ``group_size`` that does not divide ``in_features``.
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
        groups = _grouped(w, group_size)  # (N, G, group)
        lo, hi = groups.amin(-1), groups.amax(-1)
        scale = ((hi - lo) / 15).clamp(min=1e-12)
        q = torch.round((groups - lo[..., None]) / scale[..., None]).clamp(0, 15)
        return cls.from_int4(q.flatten(1), scale, lo + 8 * scale, group_size, bias, dtype)

    @classmethod
    def from_int4(cls, q: torch.Tensor, scale: torch.Tensor, zero: torch.Tensor, group_size: int,
                  bias: torch.Tensor | None = None, dtype: torch.dtype = torch.bfloat16) -> "QuantLinear":
        """From int4 values ``q`` (N, K) in 0..15 and per-group ``scale``, ``zero`` (N, K / group_size),
        meaning ``w = (q - 8) * scale + zero``."""
        packed = torch._convert_weight_to_int4pack_for_cpu(q.to(torch.int32).contiguous(), 1)
        scales_and_zeros = torch.stack([scale.T, zero.T], dim=-1).to(dtype).contiguous()  # (G, N, 2)
        return cls(packed, scales_and_zeros, 4, group_size, bias)

    @classmethod
    def from_gguf(cls, data: np.ndarray, qtype: str, shape: tuple[int, int], bias: torch.Tensor | None = None,
                  dtype: torch.dtype = torch.bfloat16, bits: int = 8) -> "QuantLinear":
        """From a GGUF weight as stored: ``data`` (N, bytes per row) uint8 blocks of type ``qtype``.

        Q4_0 and Q4_1 become int4 group-32 layers without requantizing; Q8_0 becomes per-row int8;
        any other type is dequantized with ``gguf.quants`` and quantized with ``bits``.

        Args:
            data: the raw rows (e.g. ``peluk.gguf.RawTensor.data``).
            qtype: the ggml type name, e.g. ``"Q4_1"``.
            shape: the dequantized (out_features, in_features).
            bits: the width for types that are requantized (not Q4_0/Q4_1).

        Raises:
            WeightsError: bytes that do not match ``shape`` for ``qtype``, or a type ``gguf`` cannot read.
        """
        N, K = shape
        rows = torch.from_numpy(np.ascontiguousarray(data).view(np.uint8).reshape(N, -1))
        if qtype in ("Q4_0", "Q4_1"):
            block = 18 if qtype == "Q4_0" else 20
            if rows.shape[1] * 32 != K * block:
                raise WeightsError(f"{qtype} weight of shape {shape}: expected {K // 32 * block} bytes per row, "
                                   f"found {rows.shape[1]}")
            blocks = rows.view(N, K // 32, block)
            d = blocks[..., 0:2].contiguous().view(torch.float16).squeeze(-1).float()  # (N, G)
            nibbles = blocks[..., block - 16:]  # (N, G, 16): low nibbles are weights 0..15, high ones 16..31
            q = torch.cat([nibbles & 15, nibbles >> 4], dim=-1).reshape(N, K)
            if qtype == "Q4_0":  # w = d (q - 8)
                return cls.from_int4(q, d, torch.zeros_like(d), 32, bias, dtype)
            m = blocks[..., 2:4].contiguous().view(torch.float16).squeeze(-1).float()
            return cls.from_int4(q, d, m + 8 * d, 32, bias, dtype)  # w = d q + m = (q - 8) d + (m + 8 d)
        return cls.from_float(dequantize_gguf(data, qtype, shape), bits=bits, dtype=dtype)

    def dequantize(self) -> torch.Tensor:
        """The float32 (N, K) weight this layer multiplies by."""
        if self.bits == 8:
            return self.weight.float() * self.scales.float()[:, None]
        # The packed int4 layout is the CPU kernel's own; multiplying an identity matrix reads it back.
        eye = torch.eye(self.in_features, dtype=self.scales.dtype)
        w = torch._weight_int4pack_mm_for_cpu(eye, self.weight.cpu(), self.group_size, self.scales.cpu())
        return w.T.float().to(self.weight.device)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x2 = x.reshape(-1, self.in_features).to(self.scales.dtype)  # (B*T, K)
        if x.device.type != "cpu":
            y = F.linear(x2, self.dequantize().to(x2.dtype))
        elif self.bits == 8:
            y = torch._weight_int8pack_mm(x2, self.weight, self.scales)
        else:
            y = torch._weight_int4pack_mm_for_cpu(x2, self.weight, self.group_size, self.scales)
        if self.bias is not None:
            y = y + self.bias
        return y.view(*x.shape[:-1], self.out_features).to(x.dtype)


class QuantEmbedding(nn.Module):
    """Embedding rows read from an int8 :class:`QuantLinear` (a tied LM head shares its bytes).

    Args:
        linear: a ``bits=8`` QuantLinear whose (vocab, dim) weight is the embedding table.
        dtype: the dtype of the returned vectors.
    """

    def __init__(self, linear: QuantLinear, dtype: torch.dtype = torch.float32):
        super().__init__()
        if linear.bits != 8:
            raise ValueError("QuantEmbedding reads rows of an int8 (bits=8) QuantLinear")
        self.table, self.dtype = linear, dtype

    def forward(self, ids: torch.Tensor) -> torch.Tensor:
        rows = self.table.weight[ids].to(self.dtype)  # (..., C)
        return rows * self.table.scales[ids].to(self.dtype)[..., None]


def dequantize_gguf(data: np.ndarray, qtype: str, shape: tuple[int, ...]) -> torch.Tensor:
    """A GGUF tensor's float32 values, through ``gguf.quants.dequantize``."""
    import gguf

    try:
        values = gguf.quants.dequantize(np.asarray(data), gguf.GGMLQuantizationType[qtype])
    except (KeyError, NotImplementedError):
        raise WeightsError(f"cannot dequantize GGUF type {qtype!r} (the gguf package has no reader for it)") from None
    return torch.from_numpy(np.array(values, dtype=np.float32).reshape(shape))


def quantize_linears(model: nn.Module, bits: int = 4, group_size: int = 32, *, lm_head: int | None = 8,
                     gguf_tensors: dict | None = None, dtype: torch.dtype = torch.bfloat16) -> nn.Module:
    """Replace every ``nn.Linear`` of ``model`` (in place) with a :class:`QuantLinear`.

    Args:
        bits, group_size: the format of the decoder layers' weights.
        lm_head: the width of the output projection (``lm_head``; for a 135M model with a 49152-word
            vocabulary it is a third of the bytes read per token): 8, 4, or None to leave it as is.
        gguf_tensors: ``{state-dict key: RawTensor}`` (``peluk.gguf``); a layer found here is built
            from its GGUF blocks (exact for Q4_0/Q4_1) instead of from its float weight.
        dtype: activation and scale dtype of the quantized layers.

    Returns:
        ``model``, for chaining.
    """
    for name, module in list(model.named_modules()):
        if not isinstance(module, nn.Linear):
            continue
        width = lm_head if name.split(".")[-1] == "lm_head" else bits
        if width is None:
            continue
        raw = (gguf_tensors or {}).get(f"{name}.weight")
        bias = module.bias.detach().to(dtype) if module.bias is not None else None
        if raw is not None and not raw.transposed:
            layer = QuantLinear.from_gguf(raw.data, raw.qtype, raw.shape, bias, dtype, bits=width)
        else:
            layer = QuantLinear.from_float(module, width, group_size, dtype)
        parent, _, leaf = name.rpartition(".")
        setattr(model.get_submodule(parent) if parent else model, leaf, layer)
    return model


def _grouped(w: torch.Tensor, group_size: int) -> torch.Tensor:
    N, K = w.shape
    if group_size not in (32, 64, 128, 256) or K % group_size:
        raise ValueError(f"group_size must be 32, 64, 128 or 256 and divide in_features ({K}); got {group_size}")
    return w.view(N, K // group_size, group_size)
