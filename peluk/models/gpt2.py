"""GPT-2 (Radford et al. 2019): a pre-LayerNorm decoder with learned absolute positions.

Notable differences from Llama-style decoders: learned position embeddings (``wpe``), biased
LayerNorm, a GELU (tanh) MLP, one fused q/k/v projection (``c_attn``), and transformers'
``Conv1D`` layers, whose weights are stored transposed ((in, out) instead of Linear's
(out, in)); ``remap``/``unmap`` transpose them on load and save.

Module paths equal the transformers state-dict keys. Reference:
transformers/models/gpt2/modeling_gpt2.py.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from peluk.config import PretrainedConfig
from peluk.errors import UnsupportedModelError
from peluk.models.base import ModelOutput, PreTrainedModel
from peluk.models.llama import causal_lm_loss
from peluk.nn.attention import attend, decoder_mask
from peluk.nn.cache import KVCache
from peluk.nn.layers import activation
from peluk.nn.linear import Linear

CONV1D = ("attn.c_attn.weight", "attn.c_proj.weight", "mlp.c_fc.weight", "mlp.c_proj.weight")


@dataclass
class GPT2Config(PretrainedConfig):
    vocab_size: int = 50257
    n_positions: int = 1024
    n_embd: int = 768
    n_layer: int = 12
    n_head: int = 12
    n_inner: int | None = None
    activation_function: str = "gelu_new"
    resid_pdrop: float = 0.1
    embd_pdrop: float = 0.1
    attn_pdrop: float = 0.1
    layer_norm_epsilon: float = 1e-5
    scale_attn_weights: bool = True
    scale_attn_by_inverse_layer_idx: bool = False
    bos_token_id: int | None = 50256
    eos_token_id: int | None = 50256

    @property
    def max_input_length(self) -> int:
        return self.n_positions


def config_class(model_type: str):
    return GPT2Config


class GPT2Attention(nn.Module):
    def __init__(self, c: GPT2Config, index: int):
        super().__init__()
        if c.scale_attn_by_inverse_layer_idx:
            raise UnsupportedModelError("scale_attn_by_inverse_layer_idx=True is not supported by peluk's GPT-2")
        self.index, self.H = index, c.n_head
        self.c_attn = Linear(c.n_embd, 3 * c.n_embd)
        self.c_proj = Linear(c.n_embd, c.n_embd)
        self.attn_dropout, self.resid_dropout = c.attn_pdrop, nn.Dropout(c.resid_pdrop)
        self.scale = None if c.scale_attn_weights else 1.0

    def forward(self, x, mask, cache):
        B, T, C = x.shape
        q, k, v = (t.view(B, T, self.H, -1).transpose(1, 2) for t in self.c_attn(x).split(C, dim=-1))  # (B, H, T, D)
        if cache is not None:
            k, v = cache.update(self.index, k, v)  # (B, H, S, D)
        y = attend(q, k, v, mask, dropout=self.attn_dropout if self.training else 0.0, scale=self.scale,
                   is_causal=mask is None)
        return self.resid_dropout(self.c_proj(y.transpose(1, 2).reshape(B, T, C)))


class GPT2MLP(nn.Module):
    def __init__(self, c: GPT2Config):
        super().__init__()
        inner = c.n_inner or 4 * c.n_embd
        self.c_fc = Linear(c.n_embd, inner)
        self.c_proj = Linear(inner, c.n_embd)
        self.act = activation(c.activation_function)
        self.dropout = nn.Dropout(c.resid_pdrop)

    def forward(self, x):
        return self.dropout(self.c_proj(self.act(self.c_fc(x))))


class GPT2Block(nn.Module):
    def __init__(self, c: GPT2Config, index: int):
        super().__init__()
        self.ln_1 = nn.LayerNorm(c.n_embd, eps=c.layer_norm_epsilon)
        self.attn = GPT2Attention(c, index)
        self.ln_2 = nn.LayerNorm(c.n_embd, eps=c.layer_norm_epsilon)
        self.mlp = GPT2MLP(c)

    def forward(self, x, mask, cache):
        x = x + self.attn(self.ln_1(x), mask, cache)
        return x + self.mlp(self.ln_2(x))


class GPT2Model(PreTrainedModel):
    """Token + position embeddings → pre-LN blocks → final LayerNorm."""

    def __init__(self, config: GPT2Config):
        super().__init__(config)
        self.checkpoint_prefix = "transformer"
        self.wte = nn.Embedding(config.vocab_size, config.n_embd)
        self.wpe = nn.Embedding(config.n_positions, config.n_embd)
        self.drop = nn.Dropout(config.embd_pdrop)
        self.h = nn.ModuleList(GPT2Block(config, i) for i in range(config.n_layer))
        self.ln_f = nn.LayerNorm(config.n_embd, eps=config.layer_norm_epsilon)

    def forward(self, input_ids, attention_mask=None, position_ids=None, cache: KVCache | None = None,
                output_hidden_states=False, output_attentions=False):
        B, T = input_ids.shape
        past = cache.length if cache is not None else 0
        if position_ids is None:
            position_ids = torch.arange(past, past + T, device=input_ids.device)[None].expand(B, -1)

        def run():
            x = self.drop(self.wte(input_ids) + self.wpe(position_ids))  # (B, T, C)
            mask = decoder_mask(attention_mask, T, past + T, x.dtype)
            hidden = [x]
            for block in self.h:
                x = block(x, mask, cache)
                hidden.append(x)
            x = self.ln_f(x)
            hidden[-1] = x  # transformers reports the normed output as the last hidden state
            return x, hidden

        (x, hidden), attentions = self.run_capturing(run, output_attentions)
        if cache is not None:
            cache.advance(T)
        return ModelOutput(last_hidden_state=x, hidden_states=tuple(hidden) if output_hidden_states else None,
                           attentions=attentions)

    def make_cache(self, batch: int, max_len: int) -> KVCache:
        c = self.config
        w = self.wte.weight
        return KVCache(c.n_layer, batch, max_len, c.n_head, c.n_embd // c.n_head, dtype=w.dtype, device=w.device)


class GPT2LMHeadModel(PreTrainedModel):
    def __init__(self, config: GPT2Config):
        super().__init__(config)
        self.prefix = "transformer"
        self.transformer = GPT2Model(config)
        self.lm_head = Linear(config.n_embd, config.vocab_size, bias=False)
        self.tied = {"lm_head.weight": "transformer.wte.weight"} if config.tie_word_embeddings else {}

    def make_cache(self, batch: int, max_len: int) -> KVCache:
        return self.transformer.make_cache(batch, max_len)

    def forward(self, input_ids, attention_mask=None, position_ids=None, cache: KVCache | None = None, labels=None,
                output_hidden_states=False, output_attentions=False, logits_to_keep: int = 0):
        """``logits_to_keep=1`` computes logits for the last position only (generation)."""
        out = self.transformer(input_ids, attention_mask, position_ids, cache, output_hidden_states, output_attentions)
        h = out.last_hidden_state
        logits = self.lm_head(h[:, -logits_to_keep:] if logits_to_keep else h)  # (B, T, V)
        loss = None if labels is None else causal_lm_loss(logits, labels)
        return ModelOutput(loss=loss, logits=logits, hidden_states=out.hidden_states, attentions=out.attentions)


HEADS = {"base": GPT2Model, "causal-lm": GPT2LMHeadModel}


def remap(state: dict, config) -> dict:
    """Checkpoint quirks, one per line."""
    out = {}
    for k, v in state.items():
        if k.endswith((".attn.bias", ".attn.masked_bias")):  # old checkpoints saved the causal-mask buffers
            continue
        if k.endswith(CONV1D) and v.dim() == 2:  # Conv1D stores (in, out); Linear wants (out, in)
            v = v.t()
        out[k] = v
    return out


def unmap(state: dict, config) -> dict:
    """The inverse of ``remap`` for saving in transformers' layout."""
    return {k: (v.t().contiguous() if k.endswith(CONV1D) and v.dim() == 2 else v) for k, v in state.items()}
