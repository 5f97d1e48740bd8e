"""Preallocated key/value caches, made by the caller and passed into the model.

A ``KVCache`` holds, for every layer, keys and values of shape (B, Hkv, max_len, D). The model
writes the new positions of a forward pass into it and attends over everything written so
far; ``length`` counts the positions written. Nothing is hidden inside the model, so a caller
can keep, copy, trim or reorder (beam search) a cache explicitly.

>>> cache = model.make_cache(batch=1, max_len=256)     # doctest: +SKIP
>>> model(prompt_ids, cache=cache)                      # prefill   # doctest: +SKIP
>>> model(next_id[:, None], cache=cache)                # one decode step  # doctest: +SKIP

Decoders with a ``decode_step`` (Llama) write the same cache from their lean step, which
``generate`` uses for one-token steps; both paths may alternate on one cache.
"""

from __future__ import annotations

import torch

from peluk.errors import PelukError


class CacheFullError(PelukError, ValueError):
    """More positions than the cache was made for."""


class KVCache:
    def __init__(self, n_layers: int, batch: int, max_len: int, n_kv_heads: int, head_dim: int,
                 dtype: torch.dtype = torch.float32, device=None):
        shape = (batch, n_kv_heads, max_len, head_dim)
        self.k = [torch.zeros(shape, dtype=dtype, device=device) for _ in range(n_layers)]
        self.v = [torch.zeros(shape, dtype=dtype, device=device) for _ in range(n_layers)]
        self.max_len = max_len
        self.length = 0

    @property
    def batch(self) -> int:
        return self.k[0].shape[0]

    def update(self, layer: int, k: torch.Tensor, v: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Write (B, Hkv, T, D) new keys/values after the cached ones; return all of them (B, Hkv, S, D)."""
        start, end = self.length, self.length + k.shape[2]
        if end > self.max_len:
            raise CacheFullError(f"the KV cache holds {self.max_len} positions; {end} were needed "
                                 "(make a longer cache with make_cache(batch, max_len))")
        self.k[layer][:, :, start:end] = k
        self.v[layer][:, :, start:end] = v
        return self.k[layer][:, :, :end], self.v[layer][:, :, :end]

    def advance(self, n: int) -> None:
        """Mark ``n`` more positions as written (the model calls this after its last layer)."""
        self.length += n

    def reorder(self, index: torch.Tensor) -> None:
        """Keep rows ``index`` of the batch (beam search), in that order."""
        for i in range(len(self.k)):
            self.k[i] = self.k[i].index_select(0, index)
            self.v[i] = self.v[i].index_select(0, index)

    def reorder_beams(self, index: torch.Tensor) -> None:
        """Beam search's per-step reorder (one gather per buffer; copying only the written part
        and writing it back costs two)."""
        self.reorder(index)

    def trim(self, length: int) -> None:
        """Forget positions from ``length`` on (e.g. to reuse a shared prompt prefix)."""
        self.length = min(self.length, length)


class Seq2SeqCache:
    """What an encoder-decoder's decoder needs across steps: its self-attention ``KVCache``, the
    encoder output (and mask) it attends to, and the cross-attention keys/values of every layer,
    computed from the encoder output once per generation."""

    def __init__(self, self_attn: KVCache, encoder_hidden_states: torch.Tensor,
                 encoder_attention_mask: torch.Tensor | None = None):
        self.self_attn = self_attn
        self.encoder_hidden_states = encoder_hidden_states
        self.encoder_attention_mask = encoder_attention_mask
        self.cross: list[tuple[torch.Tensor, torch.Tensor] | None] = [None] * len(self_attn.k)

    @property
    def length(self) -> int:
        return self.self_attn.length

    def cross_kv(self, layer: int, project) -> tuple[torch.Tensor, torch.Tensor]:
        """The layer's cross-attention (k, v): ``project(encoder_hidden_states)`` the first time,
        made contiguous (every decode step's matmuls then read them without copying them)."""
        if self.cross[layer] is None:
            self.cross[layer] = tuple(t.contiguous() for t in project(self.encoder_hidden_states))
        return self.cross[layer]

    def reorder_beams(self, index: torch.Tensor) -> None:
        """Beams of one input share its encoder output, so only the decoder's own cache moves."""
        self.self_attn.reorder_beams(index)

    def reorder(self, index: torch.Tensor) -> None:
        self.self_attn.reorder(index)
        self.encoder_hidden_states = self.encoder_hidden_states.index_select(0, index)
        if self.encoder_attention_mask is not None:
            self.encoder_attention_mask = self.encoder_attention_mask.index_select(0, index)
        self.cross = [None if kv is None else (kv[0].index_select(0, index), kv[1].index_select(0, index))
                      for kv in self.cross]
