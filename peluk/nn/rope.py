"""Rotary position embeddings (RoFormer, https://arxiv.org/abs/2104.09864) and their scalings.

``inv_freq(head_dim, theta, scaling)`` gives the per-pair frequencies; ``rope_tables`` turns
positions into cos/sin tables; ``apply_rope`` rotates q and k. Scaling follows transformers'
``rope_type``: ``default``, ``linear`` (positions divided by ``factor``) and ``llama3``
(low frequencies slowed by ``factor``, high ones kept, a smooth ramp between).
"""

from __future__ import annotations

import math

import torch

from peluk.errors import UnsupportedModelError


def inv_freq(head_dim: int, theta: float = 10000.0, scaling: dict | None = None) -> torch.Tensor:
    """(head_dim // 2,) inverse frequencies, in float32."""
    freq = 1.0 / (theta ** (torch.arange(0, head_dim, 2, dtype=torch.int64).float() / head_dim))
    kind = (scaling or {}).get("rope_type", (scaling or {}).get("type", "default"))
    if kind == "default":
        return freq
    if kind == "linear":
        return freq / scaling["factor"]
    if kind == "llama3":
        factor, low, high = scaling["factor"], scaling["low_freq_factor"], scaling["high_freq_factor"]
        original = scaling["original_max_position_embeddings"]
        low_wavelen, high_wavelen = original / low, original / high
        wavelen = 2 * math.pi / freq
        scaled = torch.where(wavelen > low_wavelen, freq / factor, freq)
        smooth = (original / wavelen - low) / (high - low)
        smoothed = (1 - smooth) * scaled / factor + smooth * scaled
        medium = (wavelen >= high_wavelen) & (wavelen <= low_wavelen)
        return torch.where(medium, smoothed, scaled)
    raise UnsupportedModelError(f"rope_type {kind!r} is not supported; peluk implements default, linear, llama3")


def rope_tables(positions: torch.Tensor, freq: torch.Tensor, dtype: torch.dtype) -> tuple[torch.Tensor, torch.Tensor]:
    """cos and sin of shape (B, 1, T, D) for integer positions (B, T)."""
    angles = positions[..., None].float() * freq.to(positions.device)  # (B, T, D/2)
    angles = torch.cat([angles, angles], dim=-1)[:, None]  # (B, 1, T, D)
    return angles.cos().to(dtype), angles.sin().to(dtype)


def _rotate_half(x: torch.Tensor) -> torch.Tensor:
    x1, x2 = x.chunk(2, dim=-1)
    return torch.cat([-x2, x1], dim=-1)


def apply_rope(q: torch.Tensor, k: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor):
    """Rotate (B, H, T, D) queries and (B, Hkv, T, D) keys by their positions' angles."""
    return q * cos + _rotate_half(q) * sin, k * cos + _rotate_half(k) * sin
