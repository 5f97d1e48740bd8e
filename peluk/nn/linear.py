"""``Linear``: ``nn.Linear`` with faster CPU paths, and ``fused_linear``.

PyTorch's CPU ``F.linear`` goes through MKL's sgemm, which on AMD processors does not use
AVX-512; oneDNN does. With the weight re-ordered ("pre-packed") once for oneDNN, a linear
layer runs about 2.5x faster on this project's AMD EPYC machines in fp32 (bench/RESULTS.md),
with fp32 accuracy. That inference path is taken with grad disabled on CPU in fp32/bf16.
Packed weights are a cache outside the state dict, rebuilt when a weight changes (its version
counter moves).

Training in fp32 on CPU (grad enabled, no autocast) runs the forward and both backward
matmuls through oneDNN too (:class:`_OneDNNLinearFn`; unpacked weights, as they change every
step). Under autocast (``bf16=True``) autocast's own bf16 ``F.linear`` (oneDNN already) is used;
other devices and dtypes use ``F.linear``.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

_ONEDNN = {"ok": None}  # None: not tried yet; False after a failure (then F.linear only)


def _fast(x: torch.Tensor, w: torch.Tensor) -> bool:
    if x.device.type != "cpu" or torch.is_grad_enabled() or x.dtype != w.dtype:
        return False
    if x.dtype not in (torch.float32, torch.bfloat16):
        return False
    return _onednn_available()


def _fast_training(x: torch.Tensor, w: torch.Tensor) -> bool:
    return (x.device.type == "cpu" and x.dtype == w.dtype == torch.float32 and torch.is_grad_enabled()
            and not torch.is_autocast_enabled("cpu") and _onednn_available())


def _onednn_available() -> bool:
    if _ONEDNN["ok"] is None:
        _ONEDNN["ok"] = bool(torch.backends.mkldnn.is_available() and hasattr(torch.ops.mkldnn, "_linear_pointwise"))
    return _ONEDNN["ok"]


def _mm(a: torch.Tensor, b_t: torch.Tensor, strided_b: bool = False) -> torch.Tensor:
    """a (M, K) @ b_tᵀ where b_t is (N, K): oneDNN's linear without a bias. ``strided_b``: pass
    b_t as it is (a transposed weight reads faster that way than copied first)."""
    return torch.ops.mkldnn._linear_pointwise(a.contiguous(), b_t if strided_b else b_t.contiguous(), None,
                                              "none", [], "")


class _OneDNNLinearFn(torch.autograd.Function):
    """``F.linear`` for fp32 CPU training with oneDNN matmuls: y = x Wᵀ + b; dx = dy W; dW = dyᵀ x."""

    @staticmethod
    def forward(ctx, x, weight, bias):
        ctx.save_for_backward(x, weight)
        ctx.has_bias = bias is not None
        return torch.ops.mkldnn._linear_pointwise(x.contiguous(), weight, bias, "none", [], "")

    @staticmethod
    def backward(ctx, grad):
        x, weight = ctx.saved_tensors
        g = grad.reshape(-1, grad.shape[-1])  # (M, N)
        dx = dw = db = None
        if ctx.needs_input_grad[0]:
            dx = _mm(g, weight.t(), strided_b=True).view(*grad.shape[:-1], weight.shape[1])  # (M, N) @ (N, K)
        if ctx.needs_input_grad[1]:
            dw = _mm(g.t(), x.reshape(-1, x.shape[-1]).t())  # (N, M) @ (M, K)
        if ctx.has_bias and ctx.needs_input_grad[2]:
            db = g.sum(0)
        return dx, dw, db


def _packed(layers: tuple[nn.Linear, ...], name: str) -> tuple[torch.Tensor, torch.Tensor | None]:
    """The oneDNN-packed weight (and bias) of ``layers`` stacked, cached on the first layer."""
    key = tuple((m.weight.data_ptr(), m.weight._version, m.weight.dtype) for m in layers)
    owner = layers[0]
    cache = owner.__dict__.get(name)
    if cache is None or cache[0] != key:
        w = torch.cat([m.weight.detach() for m in layers]) if len(layers) > 1 else layers[0].weight.detach()
        biases = [m.bias for m in layers]
        b = None if any(x is None for x in biases) else torch.cat([x.detach() for x in biases])
        cache = (key, torch.ops.mkldnn._reorder_linear_weight(w), b)
        owner.__dict__[name] = cache  # a plain attribute: not a parameter, not in the state dict
    return cache[1], cache[2]


def _onednn(x, weight, bias, gelu: str | None):
    try:
        if gelu is None:
            return torch.ops.mkldnn._linear_pointwise(x.contiguous(), weight, bias, "none", [], "")
        return torch.ops.mkldnn._linear_pointwise(x.contiguous(), weight, bias, "gelu", [], gelu)
    except RuntimeError:  # an unusual build or shape: use F.linear from now on
        _ONEDNN["ok"] = False
        return None


class Linear(nn.Linear):
    """Drop-in ``nn.Linear`` (same parameters, same state-dict keys) with the oneDNN fast path.

    ``gelu="none"`` (exact) or ``"tanh"`` applies GELU to the output, fused into the matmul
    on the fast path; ``bias`` replaces the layer's own bias for this call.
    """

    def train(self, mode: bool = True):
        """A change of mode also drops the packed copies: an optimizer that writes weights without
        moving their version counter (``torch.optim.AdamW(fused=True)``) would otherwise leave them
        stale, and ``model.eval()`` after training is where training and inference meet."""
        if mode != self.training:
            self.__dict__.pop("_packed", None)
            self.__dict__.pop("_packed_fused", None)
        return super().train(mode)

    def forward(self, x: torch.Tensor, gelu: str | None = None, bias: torch.Tensor | None = None) -> torch.Tensor:
        bias = self.bias if bias is None else bias  # an outside bias (e.g. final_logits_bias) fuses in too
        if _fast(x, self.weight):
            weight, _ = _packed((self,), "_packed")
            y = _onednn(x, weight, bias, gelu)
            if y is not None:
                return y
        y = linear(x, self.weight, bias)
        return y if gelu is None else F.gelu(y, approximate=gelu)


def linear(x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None = None) -> torch.Tensor:
    """``F.linear``, with oneDNN's matmuls for fp32 CPU training (see the module docstring)."""
    if _fast_training(x, weight):
        try:
            return _OneDNNLinearFn.apply(x, weight, bias)
        except RuntimeError:  # an unusual build or shape: use F.linear from now on
            _ONEDNN["ok"] = False
    return F.linear(x, weight, bias)


def fused_linear(x: torch.Tensor, *layers: nn.Linear) -> tuple[torch.Tensor, ...]:
    """``tuple(layer(x) for layer in layers)``, as one matmul on the fast path (e.g. q, k, v)."""
    if not all(isinstance(m, nn.Linear) for m in layers):  # e.g. swapped for quantized layers
        from peluk.nn.quant import QuantLinear, fused_forward

        if all(isinstance(m, QuantLinear) for m in layers):
            return fused_forward(x, *layers)
        return tuple(m(x) for m in layers)
    if _fast(x, layers[0].weight):
        weight, bias = _packed(layers, "_packed_fused")
        y = _onednn(x, weight, bias, None)
        if y is not None:
            return y.split([m.out_features for m in layers], dim=-1)
    return tuple(linear(x, m.weight, m.bias) for m in layers)
