"""Llama-style decoders: Llama 1/2/3, SmolLM/SmolLM2, TinyLlama, Mistral.

A pre-norm decoder (Touvron et al. 2023, https://arxiv.org/abs/2302.13971): RMSNorm, rotary
position embeddings (``rope_scaling``: default, linear, llama3), grouped-query attention
(``num_key_value_heads`` < ``num_attention_heads``), a SwiGLU MLP, tied or untied output
embeddings, optional attention/MLP biases. Mistral (https://arxiv.org/abs/2310.06825) is the
same network with an optional sliding attention window.

Module paths equal the transformers state-dict keys. Reference:
transformers/models/llama/modeling_llama.py.
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass
from typing import Callable

import torch
import torch.nn.functional as F
from torch import nn

from peluk.config import PretrainedConfig
from peluk.errors import WeightsError
from peluk.models.base import ModelOutput, PreTrainedModel, _no_init
from peluk.nn.attention import _SDPA_GQA, _capture, attend, decoder_mask
from peluk.nn.cache import KVCache
from peluk.nn.layers import activation
from peluk.nn.linear import Linear, fused_linear
from peluk.nn.rope import apply_rope, inv_freq, rope_tables


@dataclass
class LlamaConfig(PretrainedConfig):
    vocab_size: int = 32000
    hidden_size: int = 4096
    intermediate_size: int = 11008
    num_hidden_layers: int = 32
    num_attention_heads: int = 32
    num_key_value_heads: int | None = None
    head_dim: int | None = None
    hidden_act: str = "silu"
    max_position_embeddings: int = 2048
    rms_norm_eps: float = 1e-6
    rope_theta: float | None = None
    rope_scaling: dict | None = None
    rope_parameters: dict | None = None  # transformers >= 5 writes rope_theta and the scaling here
    attention_bias: bool = False
    mlp_bias: bool = False
    sliding_window: int | None = None
    tie_word_embeddings: bool = False

    def __post_init__(self):
        self.num_key_value_heads = self.num_key_value_heads or self.num_attention_heads
        self.head_dim = self.head_dim or self.hidden_size // self.num_attention_heads

    @property
    def rope(self) -> tuple[float, dict | None]:
        """(theta, scaling) from either the old (rope_theta/rope_scaling) or the new (rope_parameters) keys."""
        params = dict(self.rope_parameters or {})
        theta = params.pop("rope_theta", None) or self.rope_theta or 10000.0
        scaling = self.rope_scaling or (params if params.get("rope_type", "default") != "default" else None)
        return theta, scaling


def config_class(model_type: str):
    return LlamaConfig


class RMSNorm(nn.Module):
    def __init__(self, dim: int, eps: float):
        super().__init__()
        self.weight = nn.Parameter(torch.ones(dim))
        self.eps = eps

    def forward(self, x):
        if x.dtype == torch.float32:  # the fused kernel; same result
            return F.rms_norm(x, (x.shape[-1],), self.weight, self.eps)
        # computed in float32, as the reference does, then cast back
        h = x.float()
        h = h * torch.rsqrt(h.pow(2).mean(-1, keepdim=True) + self.eps)
        return self.weight * h.to(x.dtype)


class LlamaAttention(nn.Module):
    def __init__(self, c: LlamaConfig, index: int):
        super().__init__()
        self.index, self.H, self.Hkv, self.D = index, c.num_attention_heads, c.num_key_value_heads, c.head_dim
        self.q_proj = Linear(c.hidden_size, self.H * self.D, bias=c.attention_bias)
        self.k_proj = Linear(c.hidden_size, self.Hkv * self.D, bias=c.attention_bias)
        self.v_proj = Linear(c.hidden_size, self.Hkv * self.D, bias=c.attention_bias)
        self.o_proj = Linear(self.H * self.D, c.hidden_size, bias=c.attention_bias)

    def forward(self, x, rope, mask, cache):
        B, T, _ = x.shape
        q, k, v = fused_linear(x, self.q_proj, self.k_proj, self.v_proj)
        q = q.view(B, T, self.H, self.D).transpose(1, 2)  # (B, H, T, D)
        k = k.view(B, T, self.Hkv, self.D).transpose(1, 2)  # (B, Hkv, T, D)
        v = v.view(B, T, self.Hkv, self.D).transpose(1, 2)  # (B, Hkv, T, D)
        q, k = apply_rope(q, k, *rope)
        if cache is not None:
            k, v = cache.update(self.index, k, v)  # (B, Hkv, S, D)
        y = attend(q, k, v, mask, is_causal=mask is None)
        return self.o_proj(y.transpose(1, 2).reshape(B, T, self.H * self.D))


class LlamaMLP(nn.Module):
    def __init__(self, c: LlamaConfig):
        super().__init__()
        self.gate_proj = Linear(c.hidden_size, c.intermediate_size, bias=c.mlp_bias)
        self.up_proj = Linear(c.hidden_size, c.intermediate_size, bias=c.mlp_bias)
        self.down_proj = Linear(c.intermediate_size, c.hidden_size, bias=c.mlp_bias)
        self.act = activation(c.hidden_act)

    def forward(self, x):
        gate, up = fused_linear(x, self.gate_proj, self.up_proj)
        return self.down_proj(self.act(gate) * up)  # SwiGLU


class LlamaDecoderLayer(nn.Module):
    def __init__(self, c: LlamaConfig, index: int):
        super().__init__()
        self.self_attn = LlamaAttention(c, index)
        self.mlp = LlamaMLP(c)
        self.input_layernorm = RMSNorm(c.hidden_size, c.rms_norm_eps)
        self.post_attention_layernorm = RMSNorm(c.hidden_size, c.rms_norm_eps)

    def forward(self, x, rope, mask, cache):
        x = x + self.self_attn(self.input_layernorm(x), rope, mask, cache)
        return x + self.mlp(self.post_attention_layernorm(x))


class LlamaModel(PreTrainedModel):
    """Embeddings → pre-norm decoder layers → final RMSNorm."""

    def __init__(self, config: LlamaConfig):
        super().__init__(config)
        self.checkpoint_prefix = "model"
        self.embed_tokens = nn.Embedding(config.vocab_size, config.hidden_size, padding_idx=config.pad_token_id)
        self.layers = nn.ModuleList(LlamaDecoderLayer(config, i) for i in range(config.num_hidden_layers))
        self.norm = RMSNorm(config.hidden_size, config.rms_norm_eps)
        self.inv_freq: torch.Tensor | None = None  # computed on first use (not a checkpoint tensor)

    def forward(self, input_ids, attention_mask=None, position_ids=None, cache: KVCache | None = None,
                output_hidden_states=False, output_attentions=False):
        B, T = input_ids.shape
        past = cache.length if cache is not None else 0
        if position_ids is None:
            position_ids = torch.arange(past, past + T, device=input_ids.device)[None].expand(B, -1)

        def run():
            x = self.embed_tokens(input_ids)  # (B, T, C)
            rope = rope_tables(position_ids, self._inv_freq(), x.dtype)
            mask = decoder_mask(attention_mask, T, past + T, x.dtype, self.config.sliding_window)
            hidden = [x]
            for layer in self.layers:
                x = layer(x, rope, mask, cache)
                hidden.append(x)
            x = self.norm(x)
            hidden[-1] = x  # transformers reports the normed output as the last hidden state
            return x, hidden

        (x, hidden), attentions = self.run_capturing(run, output_attentions)
        if cache is not None:
            cache.advance(T)
        return ModelOutput(last_hidden_state=x, hidden_states=tuple(hidden) if output_hidden_states else None,
                           attentions=attentions)

    def _inv_freq(self) -> torch.Tensor:
        if self.inv_freq is None:
            theta, scaling = self.config.rope
            self.inv_freq = inv_freq(self.config.head_dim, theta, scaling)
        return self.inv_freq

    def make_cache(self, batch: int, max_len: int) -> KVCache:
        c = self.config
        w = self.norm.weight  # (the embedding table may be a quantized module without .weight)
        return KVCache(c.num_hidden_layers, batch, max_len, c.num_key_value_heads, c.head_dim,
                       dtype=w.dtype, device=w.device)


class LlamaForCausalLM(PreTrainedModel):
    def __init__(self, config: LlamaConfig):
        super().__init__(config)
        self.prefix = "model"
        self.model = LlamaModel(config)
        self.lm_head = Linear(config.hidden_size, config.vocab_size, bias=False)
        self.tied = {"lm_head.weight": "model.embed_tokens.weight"} if config.tie_word_embeddings else {}
        self._lean: LeanPlan | None | bool = None  # decode_step's references, made on first use

    def make_cache(self, batch: int, max_len: int) -> KVCache:
        return self.model.make_cache(batch, max_len)

    @classmethod
    def from_gguf_quantized(cls, gguf, config: LlamaConfig, device=None, exact_head: bool = False
                            ) -> "LlamaForCausalLM":
        """The GGUF default path: linear layers stay quantized (int4/int8 kernels, see
        ``peluk.nn.quant``), the embedding table stays in its stored blocks; no float copy is made.

        The head (for SmolLM2 the tied Q8_0 embedding) becomes per-row int8: ~0.4 ms per token
        faster than keeping Q8_0 exactly as two int4 halves (``exact_head=True``), at a top-1
        agreement with the float model of ~97.6 % instead of ~98.4 % (llama.cpp: ~96.5 %;
        bench/RESULTS.md). Q4_0/Q4_1 layers are always kept exactly.
        """
        from peluk.nn.quant import QuantEmbedding, quantize_linears, release_freed_memory

        with torch.device("meta"), _no_init():
            model = cls(config)
        raw = {t.name: t for t in gguf.raw_tensors()}
        table = raw["model.embed_tokens.weight"]
        if config.tie_word_embeddings:
            raw["lm_head.weight"] = table
        for i, layer in enumerate(model.model.layers):  # a layer at a time, dropping the file's pages after
            prefix = f"model.layers.{i}."  # each (converted, they are not needed): a lower peak RSS
            quantize_linears(layer, gguf_tensors={k[len(prefix):]: t for k, t in raw.items() if k.startswith(prefix)},
                             dtype=torch.bfloat16)
            gguf.release_pages()
        quantize_linears(model, gguf_tensors=raw, dtype=torch.bfloat16, exact_head=exact_head)  # the head
        model.model.embed_tokens = QuantEmbedding.from_gguf(table.data, table.qtype, table.shape)
        floats = {name: torch.from_numpy(t.data.copy()).view(t.shape).float()
                  for name, t in raw.items() if t.qtype in ("F32", "F16", "BF16") and name != "lm_head.weight"}
        model.load_state_dict(floats, strict=False, assign=True)
        left = sorted(k for k, v in model.state_dict().items() if v.is_meta)
        if left:
            raise WeightsError(f"{gguf.path}: tensors not found for {left[:5]}")
        gguf.release_pages()  # the Q8_0 embedding rows are read from the file again when looked up
        release_freed_memory()  # the conversion's temporaries
        model.name_or_path = str(gguf.path)
        model = model.eval()
        return model.to(device) if device is not None else model

    def forward(self, input_ids, attention_mask=None, position_ids=None, cache: KVCache | None = None, labels=None,
                output_hidden_states=False, output_attentions=False, logits_to_keep: int = 0):
        """``logits_to_keep=1`` computes logits for the last position only (generation)."""
        out = self.model(input_ids, attention_mask, position_ids, cache, output_hidden_states, output_attentions)
        h = out.last_hidden_state
        logits = self.lm_head(h[:, -logits_to_keep:] if logits_to_keep else h)  # (B, T, V)
        loss = None if labels is None else causal_lm_loss(logits, labels)
        return ModelOutput(loss=loss, logits=logits, hidden_states=out.hidden_states, attentions=out.attentions)

    def decode_step(self, input_ids, attention_mask=None, position_ids=None, cache: KVCache | None = None,
                    logits_to_keep: int = 0) -> ModelOutput:
        """One generation call (``generate`` makes every call through here): ``forward``'s arguments
        and ``logits``.

        One new token per row (T == 1) through a cache, float32 residual stream on CPU, without
        gradients, training or attention capture, runs :func:`lean_decode`: the same computation
        as the layers above as flat tensor ops over references gathered once (fused projections,
        norm weights), no module calls per layer. Anything else (the prefill, ...) runs ``forward``.
        The references are checked against the weights whenever a generation starts (a call with
        T > 1 or an empty cache); after changing weights in place in the middle of one, set
        ``model._lean = None``.
        """
        B, T = input_ids.shape
        lean = (T == 1 and cache is not None and not self.training and not torch.is_grad_enabled()
                and _capture.get() is None and input_ids.device.type == "cpu"
                and self.model.norm.weight.dtype == torch.float32)
        if self._lean and (not lean or cache.length == 0) and self._lean.key != _weights_key(self):
            self._lean = None  # a generation starts and the weights changed since the plan was made
        if lean and self._lean is None:
            gqa_ok = _SDPA_GQA or self.config.num_key_value_heads == self.config.num_attention_heads
            self._lean = LeanPlan(self) if gqa_ok else False  # torch < 2.5: no grouped-query SDPA
        if not (lean and self._lean):
            return self(input_ids, attention_mask=attention_mask, position_ids=position_ids, cache=cache,
                        logits_to_keep=logits_to_keep)
        past = cache.length
        if position_ids is None:
            position_ids = torch.full((B, 1), past, device=input_ids.device)
        x = self.model.embed_tokens(input_ids).view(B, -1)  # (B, C)
        cos, sin = rope_tables(position_ids, self.model._inv_freq(), torch.float32)  # (B, 1, 1, D)
        mask = decoder_mask(attention_mask, 1, past + 1, torch.float32, self.config.sliding_window)
        x = lean_decode(self._lean, x, cos, sin, mask, cache)
        cache.advance(1)
        return ModelOutput(logits=self.lm_head(x[:, None]))  # (B, 1, V)

    def train(self, mode: bool = True):  # the plan too may hold stale packed copies (see Linear.train)
        if mode != self.training:
            self._lean = None
        return super().train(mode)

    def __getstate__(self):  # the plan holds functions and packed copies: made again on first use
        return dict(self.__dict__, _lean=None)


class LeanPlan:
    """What :func:`lean_decode` reads, gathered once from a ``LlamaForCausalLM``: per layer the
    two norm weights and the projections as functions of (B, C) float32 inputs, q/k/v and
    gate/up each joined into one matmul (see :func:`projection`)."""

    def __init__(self, model: LlamaForCausalLM):
        c = model.config
        self.H, self.Hkv, self.D, self.eps = c.num_attention_heads, c.num_key_value_heads, c.head_dim, c.rms_norm_eps
        self.layers = []
        for layer in model.model.layers:
            a, m = layer.self_attn, layer.mlp
            self.layers.append((layer.input_layernorm.weight, projection(a.q_proj, a.k_proj, a.v_proj),
                                projection(a.o_proj), layer.post_attention_layernorm.weight,
                                projection(m.gate_proj, m.up_proj), projection(m.down_proj), m.act))
        self.norm = model.model.norm.weight
        self.key = _weights_key(model)  # after projection(): joining quantized layers re-points their weights


def lean_decode(plan: LeanPlan, x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor, mask: torch.Tensor | None,
                cache: KVCache) -> torch.Tensor:
    """The decoder layers for one new position per row: x (B, C) float32 → normed hidden (B, C).

    The readable layers above, op for op, except: rotary is applied to q and k at once, with
    ``roll`` and a signed sin instead of ``rotate_half``; attention is one SDPA call; quantized
    projections' bfloat16 outputs are promoted by the residual adds instead of cast first (the
    same values). No ``.item()``, no Python branches on tensor values (compile-friendly).
    """
    B, C = x.shape
    H, Hkv, D, eps = plan.H, plan.Hkv, plan.D, plan.eps
    Nqk = (H + Hkv) * D
    cos, sin = cos.view(B, 1, D), sin.view(B, 1, D)
    sin = torch.cat([-sin[..., :D // 2], sin[..., D // 2:]], dim=-1)  # rotate_half(x) * sin == roll(x) * signed sin
    gqa = {"enable_gqa": True} if H != Hkv else {}
    for i, (norm1, qkv, o, norm2, gate_up, down, act) in enumerate(plan.layers):
        y = qkv(F.rms_norm(x, (C,), norm1, eps)).float()  # (B, (H + 2 Hkv) D)
        qk = y[:, :Nqk].view(B, H + Hkv, D)
        qk = qk * cos + qk.roll(D // 2, -1) * sin  # rotary on q and k at once
        k, v = cache.update(i, qk[:, H:, None], y[:, Nqk:].view(B, Hkv, 1, D))  # (B, Hkv, S, D)
        a = F.scaled_dot_product_attention(qk[:, :H, None], k, v, attn_mask=mask, **gqa)  # (B, H, 1, D)
        x = x + o(a.reshape(B, H * D))
        gu = gate_up(F.rms_norm(x, (C,), norm2, eps))  # (B, 2I)
        gate, up = gu.chunk(2, dim=-1)
        x = x + down(act(gate.float()) * up)  # SwiGLU
    return F.rms_norm(x, (C,), plan.norm, eps)


def projection(*layers: nn.Module) -> Callable[[torch.Tensor], torch.Tensor]:
    """A function of h (B, C) giving ``torch.cat([m(h) for m in layers], -1)``, as one matmul where
    possible: a quantized kernel (its bfloat16 output as is), or oneDNN's packed fp32 weight."""
    from peluk.nn.linear import _fast, _packed
    from peluk.nn.quant import QuantLinear, joined

    if all(isinstance(m, QuantLinear) for m in layers):
        one = layers[0] if len(layers) == 1 else joined(*layers)
        if one is not None:
            kernel, dtype = one.kernel(), one.scales.dtype
            return lambda h: kernel(h.to(dtype))
    elif all(type(m) is Linear for m in layers) and _fast(torch.empty(0), layers[0].weight):
        weight, bias = _packed(layers, "_packed_fused" if len(layers) > 1 else "_packed")  # shared with forward
        linear = torch.ops.mkldnn._linear_pointwise
        return lambda h: linear(h, weight, bias, "none", [], "")
    return lambda h: torch.cat([m(h) for m in layers], dim=-1)


def _weights_key(model: nn.Module) -> tuple:
    """Where every weight lives and how often it was written in place."""
    return tuple((t.data_ptr(), -1 if t.is_inference() else t._version)
                 for t in itertools.chain(model.parameters(), model.buffers()))


def causal_lm_loss(logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """Next-token cross entropy: position t predicts labels[t + 1]; -100 is ignored."""
    return F.cross_entropy(logits[:, :-1].flatten(0, 1).float(), labels[:, 1:].flatten(), ignore_index=-100)


HEADS = {"base": LlamaModel, "causal-lm": LlamaForCausalLM}


def remap(state: dict, config) -> dict:
    """Checkpoint quirks, one per line."""
    # old checkpoints saved the rotary inverse frequencies, which are recomputed from the config
    return {k: v for k, v in state.items() if not k.endswith("rotary_emb.inv_freq")}
