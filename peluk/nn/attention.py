"""Scaled dot-product attention, padding masks, and the attention capture hook.

``attend`` is the one attention function every model calls. By default it runs PyTorch's
fused SDPA kernel; inside ``capture_attention()`` it runs the eager reference below, which
computes the probabilities explicitly and hands them to the capture list. Models therefore
never thread ``output_attentions`` flags through their layers.

>>> with capture_attention() as maps:          # doctest: +SKIP
...     model(**inputs)
>>> maps[0].shape                              # (B, H, T, S) of the first attention call
"""

from __future__ import annotations

import contextlib
import contextvars
import math

import torch
import torch.nn.functional as F

# The active capture list, or None. A ContextVar keeps captures of concurrent requests
# (threads, asyncio tasks) apart.
# enable_gqa (torch >= 2.5) lets SDPA read shared kv heads without copying them
_SDPA_GQA = tuple(int(x) for x in torch.__version__.split(".")[:2]) >= (2, 5)

_capture: contextvars.ContextVar["AttentionCapture | None"] = contextvars.ContextVar("peluk_attention_capture",
                                                                                     default=None)


class AttentionCapture(list):
    """The probabilities of each ``attend`` call, in call order; ``neurons`` (when asked for)
    holds ``(q, k, scale)`` of each call as the scores were computed from them (after rotary,
    keys repeated per query head), for a neuron view."""

    def __init__(self, neurons: list | None = None):
        super().__init__()
        self.neurons = neurons


@contextlib.contextmanager
def capture_attention(neurons: bool = False):
    """Record the attention probabilities of every ``attend`` call made inside the block.

    Yields a list that fills with one ``(B, H, T, S)`` float tensor per call, in call order
    (for an encoder: one per layer). Captured tensors are detached. With ``neurons=True`` its
    ``neurons`` list also fills with ``(q (B, H, T, D), k (B, H, S, D), scale)`` per call; a
    capture opened inside this one (a model's own ``output_attentions``) adds to the same list.
    """
    outer = _capture.get()
    shared = outer.neurons if outer is not None and outer.neurons is not None else None
    maps = AttentionCapture(shared if shared is not None else ([] if neurons else None))
    token = _capture.set(maps)
    try:
        yield maps
    finally:
        _capture.reset(token)


def padding_mask(attention_mask: torch.Tensor | None, dtype: torch.dtype) -> torch.Tensor | None:
    """Turn a (B, S) 1/0 attention mask into an additive (B, 1, 1, S) bias.

    Returns None when nothing is masked, which lets SDPA take its fastest kernel.
    Masked positions get the dtype's most negative value (as transformers does), so a
    fully masked row still yields finite (uniform) probabilities instead of NaN.
    """
    if attention_mask is None or bool(attention_mask.all()):
        return None
    bias = torch.zeros(attention_mask.shape, dtype=dtype, device=attention_mask.device)
    bias.masked_fill_(attention_mask == 0, torch.finfo(dtype).min)
    return bias[:, None, None, :]  # (B, 1, 1, S)


def decoder_mask(attention_mask: torch.Tensor | None, T: int, S: int, dtype: torch.dtype,
                 sliding_window: int | None = None) -> torch.Tensor | None:
    """Causal (+ padding, + sliding window) additive mask (B|1, 1, T, S) for T new queries
    that follow S - T cached positions; None when plain causal attention suffices."""
    window = sliding_window is not None and S > sliding_window
    if (attention_mask is None or bool(attention_mask.all())) and not window:
        return None
    device = attention_mask.device if attention_mask is not None else None
    q_pos = torch.arange(S - T, S, device=device)[:, None]
    k_pos = torch.arange(S, device=device)[None, :]
    allowed = k_pos <= q_pos  # (T, S)
    if window:
        allowed = allowed & (k_pos > q_pos - sliding_window)
    allowed = allowed[None, None]  # (1, 1, T, S)
    if attention_mask is not None:
        allowed = allowed & attention_mask[:, None, None, :S].bool()
    return torch.zeros(allowed.shape, dtype=dtype, device=device).masked_fill_(~allowed, torch.finfo(dtype).min)


def attend(
    q: torch.Tensor,
    k: torch.Tensor,
    v: torch.Tensor,
    mask: torch.Tensor | None = None,
    dropout: float = 0.0,
    scale: float | None = None,
    is_causal: bool = False,
) -> torch.Tensor:
    """Attention over q (B, H, T, D) and k, v (B, Hkv, S, D); returns (B, H, T, D).

    Args:
        mask: additive float bias broadcastable to (B, H, T, S), or None.
        dropout: attention-probability dropout (pass 0.0 in eval mode).
        scale: defaults to 1/sqrt(D).
        is_causal: apply a causal mask aligned to the end of the keys (T <= S).
    """
    if is_causal and q.shape[-2] == 1:  # one new query may see every key
        is_causal = False
    maps = _capture.get()
    if maps is None and q.shape[-2] == 1 and dropout == 0.0:
        return _decode(q, k, v, mask, scale)
    if maps is None:
        # SDPA's own is_causal aligns the triangle to the top-left; we need it aligned to the
        # end of the keys (a cached decode step has T < S), so build it unless T == S.
        if is_causal and (mask is not None or q.shape[-2] != k.shape[-2]):
            mask, is_causal = _with_causal(mask, q, k), False
        if k.shape[1] != q.shape[1] and not _SDPA_GQA:  # torch < 2.5: share kv heads by copying
            k, v = _repeat_kv(k, v, q.shape[1])
        extra = {"enable_gqa": True} if k.shape[1] != q.shape[1] else {}
        return F.scaled_dot_product_attention(q, k, v, attn_mask=mask, dropout_p=dropout, is_causal=is_causal,
                                              scale=scale, **extra)
    if k.shape[1] != q.shape[1]:  # grouped-query attention: each kv head serves H/Hkv query heads
        k, v = _repeat_kv(k, v, q.shape[1])
    return _eager(q, k, v, mask, dropout, scale, is_causal, maps)


def _with_causal(mask: torch.Tensor | None, q: torch.Tensor, k: torch.Tensor) -> torch.Tensor:
    T, S = q.shape[-2], k.shape[-2]
    causal = torch.ones(T, S, dtype=torch.bool, device=q.device).tril(S - T)
    bias = torch.zeros(T, S, dtype=q.dtype, device=q.device).masked_fill_(~causal, torch.finfo(q.dtype).min)
    return bias if mask is None else mask + bias


def _repeat_kv(k, v, heads: int):
    return k.repeat_interleave(heads // k.shape[1], dim=1), v.repeat_interleave(heads // v.shape[1], dim=1)


def _decode(q, k, v, mask, scale) -> torch.Tensor:
    """One query per row (a decode step): two small matmuls beat the fused kernel's overhead,
    and grouped-query heads read their shared keys without copying them."""
    B, H, T, D = q.shape
    Hkv = k.shape[1]
    scale = scale if scale is not None else 1.0 / math.sqrt(D)
    # k @ qᵀ rather than q @ kᵀ: a cached (strided) k then needs no contiguous copy of its transpose
    scores = torch.matmul(k, q.reshape(B, Hkv, H // Hkv, D).transpose(-1, -2)).transpose(-1, -2) * scale  # (B, Hkv, H/Hkv, S)
    if mask is not None:
        scores = scores + (mask if mask.shape[1] == 1 else mask.reshape(mask.shape[0], Hkv, H // Hkv, -1))
    probs = torch.softmax(scores.float(), dim=-1).to(q.dtype)
    return torch.matmul(probs, v).reshape(B, H, T, D)


def _eager(q, k, v, mask, dropout, scale, is_causal, maps) -> torch.Tensor:
    """The readable reference: softmax(q kᵀ / √D + mask) v, recording the probabilities."""
    scale = scale if scale is not None else 1.0 / math.sqrt(q.shape[-1])
    scores = torch.matmul(q, k.transpose(-1, -2)) * scale  # (B, H, T, S)
    if is_causal:
        mask = _with_causal(mask, q, k)
    if mask is not None:
        scores = scores + mask
    probs = torch.softmax(scores.float(), dim=-1).to(q.dtype)
    maps.append(probs.detach())
    if maps.neurons is not None:
        maps.neurons.append((q.detach(), k.detach(), scale))
    if dropout > 0.0:
        probs = F.dropout(probs, p=dropout)
    return torch.matmul(probs, v)  # (B, H, T, D)
