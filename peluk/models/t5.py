"""T5 (Raffel et al. 2019, https://arxiv.org/abs/1910.10683): an encoder-decoder with relative
position biases instead of position embeddings.

* Attention has no 1/sqrt(d) scaling; a learned bias per (head, distance bucket) is added to
  the scores; only the first block of each stack owns the bias table and shares it.
* RMS LayerNorm without bias (computed in float32), pre-norm residual blocks.
* v1.0: ReLU feed-forward (``wi``, ``wo``), output embeddings tied to the input embeddings and
  the decoder output scaled by d_model^-0.5 before them. v1.1 / FLAN-T5
  (``feed_forward_proj="gated-gelu"``): gated feed-forward (``wi_0``, ``wi_1``), untied output
  layer without scaling (``tie_word_embeddings: false`` in their config.json).

Module paths equal the transformers state-dict keys. Reference: transformers/models/t5/modeling_t5.py.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from peluk.config import PretrainedConfig
from peluk.models.bart import seq2seq_output, shift_right
from peluk.models.base import ModelOutput, PreTrainedModel
from peluk.nn.attention import attend
from peluk.nn.cache import KVCache, Seq2SeqCache
from peluk.nn.layers import activation
from peluk.nn.linear import Linear, fused_linear


@dataclass
class T5Config(PretrainedConfig):
    vocab_size: int = 32128
    d_model: int = 512
    d_kv: int = 64
    d_ff: int = 2048
    num_layers: int = 6
    num_decoder_layers: int | None = None
    num_heads: int = 8
    relative_attention_num_buckets: int = 32
    relative_attention_max_distance: int = 128
    dropout_rate: float = 0.1
    layer_norm_epsilon: float = 1e-6
    feed_forward_proj: str = "relu"
    pad_token_id: int | None = 0
    eos_token_id: int | None = 1
    scale_decoder_outputs: bool | None = None

    def __post_init__(self):
        self.num_decoder_layers = self.num_decoder_layers or self.num_layers
        if self.scale_decoder_outputs is None:  # v1.0 scales (tied head), v1.1 does not
            self.scale_decoder_outputs = self.tie_word_embeddings is not False

    @property
    def gated(self) -> bool:
        return self.feed_forward_proj.startswith("gated-")

    @property
    def act(self) -> str:
        name = self.feed_forward_proj.removeprefix("gated-")
        return "gelu_new" if name == "gelu" and self.gated else name

    @property
    def max_input_length(self) -> None:
        return None  # relative positions: no fixed limit


def config_class(model_type: str):
    return T5Config


def relative_buckets(relative: torch.Tensor, bidirectional: bool, n_buckets: int, max_distance: int) -> torch.Tensor:
    """Map key - query distances to buckets: exact for small distances, logarithmic up to max_distance."""
    buckets = torch.zeros_like(relative)
    if bidirectional:
        n_buckets //= 2
        buckets += (relative > 0).long() * n_buckets
        relative = relative.abs()
    else:
        relative = -torch.min(relative, torch.zeros_like(relative))
    exact = n_buckets // 2
    large = exact + (torch.log(relative.float() / exact) / math.log(max_distance / exact) * (n_buckets - exact)).long()
    large = torch.min(large, torch.full_like(large, n_buckets - 1))
    return buckets + torch.where(relative < exact, relative, large)


class T5LayerNorm(nn.Module):
    def __init__(self, dim: int, eps: float):
        super().__init__()
        self.weight = nn.Parameter(torch.ones(dim))
        self.eps = eps

    def forward(self, x):
        variance = x.float().pow(2).mean(-1, keepdim=True)
        return self.weight * (x * torch.rsqrt(variance + self.eps)).to(self.weight.dtype)


class T5Attention(nn.Module):
    def __init__(self, c: T5Config, index: int, has_bias: bool, decoder: bool):
        super().__init__()
        self.H, self.D, self.index, self.decoder = c.num_heads, c.d_kv, index, decoder
        inner = c.num_heads * c.d_kv
        self.q, self.k, self.v = (Linear(c.d_model, inner, bias=False) for _ in range(3))
        self.o = Linear(inner, c.d_model, bias=False)
        self.buckets, self.max_distance = c.relative_attention_num_buckets, c.relative_attention_max_distance
        if has_bias:
            self.relative_attention_bias = nn.Embedding(c.relative_attention_num_buckets, c.num_heads)
        self.p_drop = c.dropout_rate

    def position_bias(self, T: int, S: int, past: int, device) -> torch.Tensor:
        """(1, H, T, S) learned biases for queries at past..past+T-1 and keys at 0..S-1."""
        relative = torch.arange(S, device=device)[None, :] - torch.arange(past, past + T, device=device)[:, None]
        b = relative_buckets(relative, not self.decoder, self.buckets, self.max_distance)
        return self.relative_attention_bias(b).permute(2, 0, 1)[None]

    def _heads(self, x):
        B, T, _ = x.shape
        return x.view(B, T, self.H, self.D).transpose(1, 2)  # (B, H, T, D)

    def forward(self, x, bias, cache=None, memory=None, cross=False):
        B, T, _ = x.shape
        if cross:
            q = self._heads(self.q(x))
            project = lambda m: tuple(self._heads(t) for t in fused_linear(m, self.k, self.v))  # noqa: E731
            k, v = cache.cross_kv(self.index, project) if cache is not None else project(memory)
        else:
            q, k, v = (self._heads(t) for t in fused_linear(x, self.q, self.k, self.v))
            if cache is not None:
                k, v = cache.self_attn.update(self.index, k, v)
        y = attend(q, k, v, bias, dropout=self.p_drop if self.training else 0.0, scale=1.0)  # T5 does not scale
        return self.o(y.transpose(1, 2).reshape(B, T, self.H * self.D))


class T5DenseActDense(nn.Module):
    def __init__(self, c: T5Config):
        super().__init__()
        if c.gated:
            self.wi_0 = Linear(c.d_model, c.d_ff, bias=False)
            self.wi_1 = Linear(c.d_model, c.d_ff, bias=False)
        else:
            self.wi = Linear(c.d_model, c.d_ff, bias=False)
        self.wo = Linear(c.d_ff, c.d_model, bias=False)
        self.act, self.gated = activation(c.act), c.gated
        self.dropout = nn.Dropout(c.dropout_rate)

    def forward(self, x):
        if self.gated:
            gate, up = fused_linear(x, self.wi_0, self.wi_1)
            return self.wo(self.dropout(self.act(gate) * up))
        return self.wo(self.dropout(self.act(self.wi(x))))


class T5Sub(nn.Module):
    """One pre-norm residual sub-layer: x + dropout(f(layer_norm(x)))."""

    def __init__(self, c: T5Config, name: str, inner: nn.Module):
        super().__init__()
        setattr(self, name, inner)
        self.inner_name = name
        self.layer_norm = T5LayerNorm(c.d_model, c.layer_norm_epsilon)
        self.dropout = nn.Dropout(c.dropout_rate)

    def forward(self, x, *args, **kwargs):
        return x + self.dropout(getattr(self, self.inner_name)(self.layer_norm(x), *args, **kwargs))


class T5Block(nn.Module):
    def __init__(self, c: T5Config, index: int, decoder: bool):
        super().__init__()
        subs = [T5Sub(c, "SelfAttention", T5Attention(c, index, has_bias=index == 0, decoder=decoder))]
        if decoder:
            subs.append(T5Sub(c, "EncDecAttention", T5Attention(c, index, has_bias=False, decoder=True)))
        subs.append(T5Sub(c, "DenseReluDense", T5DenseActDense(c)))
        self.layer = nn.ModuleList(subs)

    def forward(self, x, self_bias, cross_bias=None, memory=None, cache=None):
        x = self.layer[0](x, self_bias, cache)
        if len(self.layer) == 3:
            x = self.layer[1](x, cross_bias, cache, memory, cross=True)
        return self.layer[-1](x)


def _mask_bias(mask: torch.Tensor | None, dtype) -> torch.Tensor | None:
    """(B, S) 1/0 mask -> (B, 1, 1, S) additive bias (always built: it joins the position bias)."""
    if mask is None:
        return None
    return torch.zeros(mask.shape, dtype=dtype, device=mask.device).masked_fill_(
        mask == 0, torch.finfo(dtype).min)[:, None, None, :]


class T5Stack(nn.Module):
    def __init__(self, c: T5Config, shared: nn.Embedding, decoder: bool):
        super().__init__()
        self.embed_tokens = shared
        self.is_decoder = decoder
        n = c.num_decoder_layers if decoder else c.num_layers
        self.block = nn.ModuleList(T5Block(c, i, decoder) for i in range(n))
        self.final_layer_norm = T5LayerNorm(c.d_model, c.layer_norm_epsilon)
        self.dropout = nn.Dropout(c.dropout_rate)

    def forward(self, input_ids, attention_mask=None, memory=None, memory_mask=None, cache=None,
                output_hidden_states=False):
        past = cache.length if cache is not None else 0
        T = input_ids.shape[1]
        x = self.dropout(self.embed_tokens(input_ids))
        S = past + T
        bias = self.block[0].layer[0].SelfAttention.position_bias(T, S, past, x.device).to(x.dtype)
        if self.is_decoder:
            causal = torch.arange(S, device=x.device)[None, :] > torch.arange(past, S, device=x.device)[:, None]
            bias = bias.masked_fill(causal, torch.finfo(x.dtype).min)
        if attention_mask is not None:
            bias = bias + _mask_bias(attention_mask[:, :S], x.dtype)
        cross_bias = None
        if self.is_decoder:
            if cache is not None:
                memory, memory_mask = cache.encoder_hidden_states, cache.encoder_attention_mask
            cross_bias = _mask_bias(memory_mask, x.dtype)
        hidden = [x]
        for block in self.block:
            x = block(x, bias, cross_bias, memory, cache)
            hidden.append(x)
        x = self.dropout(self.final_layer_norm(x))
        hidden[-1] = x
        if cache is not None:
            cache.self_attn.advance(T)
        return ModelOutput(last_hidden_state=x, hidden_states=tuple(hidden) if output_hidden_states else None)


class T5Model(PreTrainedModel):
    is_encoder_decoder = True

    def __init__(self, config: T5Config):
        super().__init__(config)
        self.shared = nn.Embedding(config.vocab_size, config.d_model)
        self.encoder = T5Stack(config, self.shared, decoder=False)
        self.decoder = T5Stack(config, self.shared, decoder=True)
        self.tied = {"encoder.embed_tokens.weight": "shared.weight", "decoder.embed_tokens.weight": "shared.weight"}

    def forward(self, input_ids=None, attention_mask=None, decoder_input_ids=None, decoder_attention_mask=None,
                encoder_outputs=None, cache: Seq2SeqCache | None = None, output_hidden_states=False,
                output_attentions=False):
        def run():
            enc = encoder_outputs
            if enc is None and cache is None:
                enc = self.encoder(input_ids, attention_mask, output_hidden_states=output_hidden_states)
            dec = self.decoder(decoder_input_ids, decoder_attention_mask, enc.last_hidden_state if enc is not None
                               else None, attention_mask, cache, output_hidden_states)
            return enc, dec

        (enc, dec), maps = self.run_capturing(run, output_attentions)
        return seq2seq_output(dec, enc, maps, len(self.encoder.block) if enc is not None and encoder_outputs is None else 0)

    def get_encoder(self):
        return self.encoder

    def make_cache(self, batch: int, max_len: int, encoder_hidden_states=None, encoder_attention_mask=None):
        c, w = self.config, self.shared.weight
        self_attn = KVCache(c.num_decoder_layers, batch, max_len, c.num_heads, c.d_kv, dtype=w.dtype, device=w.device)
        return Seq2SeqCache(self_attn, encoder_hidden_states, encoder_attention_mask)


class T5ForConditionalGeneration(T5Model):
    def __init__(self, config: T5Config):
        super().__init__(config)
        self.lm_head = Linear(config.d_model, config.vocab_size, bias=False)
        if config.tie_word_embeddings:
            self.tied = {**self.tied, "lm_head.weight": "shared.weight"}

    def forward(self, input_ids=None, attention_mask=None, decoder_input_ids=None, decoder_attention_mask=None,
                encoder_outputs=None, cache: Seq2SeqCache | None = None, labels=None, output_hidden_states=False,
                output_attentions=False, logits_to_keep: int = 0):
        if decoder_input_ids is None and labels is not None:
            decoder_input_ids = shift_right(labels, self.config.pad_token_id,
                                            self.config.extra.get("decoder_start_token_id", self.config.pad_token_id))
        out = super().forward(input_ids, attention_mask, decoder_input_ids, decoder_attention_mask, encoder_outputs,
                              cache, output_hidden_states, output_attentions)
        h = out.last_hidden_state
        h = h[:, -logits_to_keep:] if logits_to_keep else h
        if self.config.scale_decoder_outputs:
            h = h * (self.config.d_model ** -0.5)
        logits = self.lm_head(h)
        loss = None if labels is None else F.cross_entropy(logits.flatten(0, 1).float(), labels.flatten(), ignore_index=-100)
        return ModelOutput(loss=loss, logits=logits, **{k: v for k, v in out.items() if k != "last_hidden_state"})

    def decode_step(self, ids, attention_mask=None, position_ids=None, cache=None, logits_to_keep: int = 0):
        """One decoder call during generation (the encoder output lives in ``cache``)."""
        return self(decoder_input_ids=ids, decoder_attention_mask=attention_mask, cache=cache,
                    logits_to_keep=logits_to_keep)


HEADS = {"base": T5Model, "seq2seq-lm": T5ForConditionalGeneration}


def remap(state: dict, config) -> dict:
    """Checkpoint quirks: none known for T5 (kept for the family-file contract)."""
    return state
