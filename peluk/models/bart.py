"""BART-style encoder-decoders: BART, mBART and Marian (opus-mt translation models).

A transformer encoder-decoder (Lewis et al. 2019, https://arxiv.org/abs/1910.13461) whose
decoder attends to the encoder output through cross-attention. The variants differ in a few
switches, read from ``model_type``:

* BART: learned positions offset by 2, a LayerNorm on the embeddings, post-LayerNorm blocks.
* mBART (https://arxiv.org/abs/2001.08210): the same, but pre-LayerNorm blocks and a final
  LayerNorm after each stack; generation starts the target with a language code (forced BOS).
* Marian (https://arxiv.org/abs/1804.00344): fixed sinusoidal positions (sin half, then cos
  half; not stored in checkpoints), no embedding LayerNorm, embeddings scaled by sqrt(d_model),
  ``final_logits_bias`` added to the logits, the pad token as decoder start.

Module paths equal the transformers state-dict keys. Reference:
transformers/models/{bart,mbart,marian}/modeling_*.py.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from peluk.config import PretrainedConfig
from peluk.errors import UnsupportedModelError
from peluk.models.base import ModelOutput, PreTrainedModel
from peluk.nn.attention import attend, decoder_mask, padding_mask
from peluk.nn.cache import KVCache, Seq2SeqCache
from peluk.nn.layers import activation
from peluk.nn.linear import Linear, fused_linear


@dataclass
class BartConfig(PretrainedConfig):
    vocab_size: int = 50265
    d_model: int = 1024
    encoder_layers: int = 12
    decoder_layers: int = 12
    encoder_attention_heads: int = 16
    decoder_attention_heads: int = 16
    encoder_ffn_dim: int = 4096
    decoder_ffn_dim: int = 4096
    activation_function: str = "gelu"
    dropout: float = 0.1
    attention_dropout: float = 0.0
    activation_dropout: float = 0.0
    max_position_embeddings: int = 1024
    scale_embedding: bool = False
    init_std: float = 0.02
    pad_token_id: int | None = 1
    bos_token_id: int | None = 0
    eos_token_id: int | None = 2
    share_encoder_decoder_embeddings: bool = True

    @property
    def pre_norm(self) -> bool:
        return self.model_type == "mbart"

    @property
    def sinusoidal(self) -> bool:
        return self.model_type == "marian"


def config_class(model_type: str):
    return BartConfig


def marian_positions(n_pos: int, dim: int) -> torch.Tensor:
    """Marian's fixed position table: sin(pos / 10000^(2i/dim)) in the first half, cos in the second."""
    pos = torch.arange(n_pos, dtype=torch.float64)[:, None]
    angle = pos / torch.pow(10000.0, 2 * (torch.arange(dim, dtype=torch.float64) // 2) / dim)
    return torch.cat([torch.sin(angle[:, 0::2]), torch.cos(angle[:, 1::2])], dim=1)[:, :dim].float()


class BartAttention(nn.Module):
    def __init__(self, c: BartConfig, heads: int, index: int, cross: bool = False):
        super().__init__()
        self.H, self.index, self.is_cross = heads, index, cross
        self.k_proj = Linear(c.d_model, c.d_model)
        self.v_proj = Linear(c.d_model, c.d_model)
        self.q_proj = Linear(c.d_model, c.d_model)
        self.out_proj = Linear(c.d_model, c.d_model)
        self.p_drop = c.attention_dropout

    def _heads(self, x):
        B, T, _ = x.shape
        return x.view(B, T, self.H, -1).transpose(1, 2)  # (B, H, T, D)

    def forward(self, x, mask, cache=None, memory=None, causal=False):
        """Self-attention over x (with the decoder's cache), or cross-attention to ``memory``."""
        B, T, C = x.shape
        if self.is_cross:
            q = self._heads(self.q_proj(x))
            project = lambda m: tuple(self._heads(t) for t in fused_linear(m, self.k_proj, self.v_proj))  # noqa: E731
            k, v = cache.cross_kv(self.index, project) if cache is not None else project(memory)
        else:
            q, k, v = (self._heads(t) for t in fused_linear(x, self.q_proj, self.k_proj, self.v_proj))
            if cache is not None:
                k, v = cache.self_attn.update(self.index, k, v)  # (B, H, S, D)
        y = attend(q, k, v, mask, dropout=self.p_drop if self.training else 0.0, is_causal=causal and mask is None)
        return self.out_proj(y.transpose(1, 2).reshape(B, T, C))


class BartEncoderLayer(nn.Module):
    def __init__(self, c: BartConfig, index: int):
        super().__init__()
        self.self_attn = BartAttention(c, c.encoder_attention_heads, index)
        self.self_attn_layer_norm = nn.LayerNorm(c.d_model)
        self.fc1 = Linear(c.d_model, c.encoder_ffn_dim)
        self.fc2 = Linear(c.encoder_ffn_dim, c.d_model)
        self.final_layer_norm = nn.LayerNorm(c.d_model)
        self.act, self.pre_norm = activation(c.activation_function), c.pre_norm
        self.dropout = nn.Dropout(c.dropout)

    def forward(self, x, mask):
        if self.pre_norm:  # mBART
            x = x + self.dropout(self.self_attn(self.self_attn_layer_norm(x), mask))
            return x + self.dropout(self.fc2(self.act(self.fc1(self.final_layer_norm(x)))))
        x = self.self_attn_layer_norm(x + self.dropout(self.self_attn(x, mask)))
        return self.final_layer_norm(x + self.dropout(self.fc2(self.act(self.fc1(x)))))


class BartDecoderLayer(nn.Module):
    def __init__(self, c: BartConfig, index: int):
        super().__init__()
        self.self_attn = BartAttention(c, c.decoder_attention_heads, index)
        self.self_attn_layer_norm = nn.LayerNorm(c.d_model)
        self.encoder_attn = BartAttention(c, c.decoder_attention_heads, index, cross=True)
        self.encoder_attn_layer_norm = nn.LayerNorm(c.d_model)
        self.fc1 = Linear(c.d_model, c.decoder_ffn_dim)
        self.fc2 = Linear(c.decoder_ffn_dim, c.d_model)
        self.final_layer_norm = nn.LayerNorm(c.d_model)
        self.act, self.pre_norm = activation(c.activation_function), c.pre_norm
        self.dropout = nn.Dropout(c.dropout)

    def forward(self, x, self_mask, memory, cross_mask, cache):
        def sub(norm, fn, x):  # one residual sub-block, pre- or post-LayerNorm
            return x + self.dropout(fn(norm(x))) if self.pre_norm else norm(x + self.dropout(fn(x)))

        x = sub(self.self_attn_layer_norm, lambda h: self.self_attn(h, self_mask, cache, causal=True), x)
        x = sub(self.encoder_attn_layer_norm, lambda h: self.encoder_attn(h, cross_mask, cache, memory), x)
        return sub(self.final_layer_norm, lambda h: self.fc2(self.act(self.fc1(h))), x)


class _Stack(nn.Module):
    """Embeddings (token × scale + position, optional LayerNorm) shared by encoder and decoder."""

    def __init__(self, c: BartConfig, shared: nn.Embedding):
        super().__init__()
        self.c = c
        self.embed_tokens = shared
        self.embed_scale = math.sqrt(c.d_model) if c.scale_embedding else 1.0
        if not c.sinusoidal:  # learned positions, numbered from 2 (a quirk of fairseq's BART)
            self.embed_positions = nn.Embedding(c.max_position_embeddings + 2, c.d_model)
            self.layernorm_embedding = nn.LayerNorm(c.d_model)
        self._table: torch.Tensor | None = None
        self.dropout = nn.Dropout(c.dropout)

    def embed(self, ids, past: int = 0):
        T = ids.shape[1]
        x = self.embed_tokens(ids) * self.embed_scale
        if self.c.sinusoidal:
            if self._table is None or self._table.device != x.device:
                self._table = marian_positions(self.c.max_position_embeddings, self.c.d_model).to(x.device)
            x = x + self._table[past:past + T].to(x.dtype)
        else:
            x = self.layernorm_embedding(x + self.embed_positions(torch.arange(past + 2, past + T + 2, device=ids.device)))
        return self.dropout(x)  # (B, T, C)


class BartEncoder(_Stack):
    def __init__(self, c: BartConfig, shared: nn.Embedding):
        super().__init__(c, shared)
        self.layers = nn.ModuleList(BartEncoderLayer(c, i) for i in range(c.encoder_layers))
        self.layer_norm = nn.LayerNorm(c.d_model) if c.pre_norm else None

    def forward(self, input_ids, attention_mask=None, output_hidden_states=False):
        x = self.embed(input_ids)
        mask = padding_mask(attention_mask, x.dtype)
        hidden = [x]
        for layer in self.layers:
            x = layer(x, mask)
            hidden.append(x)
        if self.layer_norm is not None:
            x = self.layer_norm(x)
            hidden[-1] = x
        return ModelOutput(last_hidden_state=x, hidden_states=tuple(hidden) if output_hidden_states else None)


class BartDecoder(_Stack):
    def __init__(self, c: BartConfig, shared: nn.Embedding):
        super().__init__(c, shared)
        self.layers = nn.ModuleList(BartDecoderLayer(c, i) for i in range(c.decoder_layers))
        self.layer_norm = nn.LayerNorm(c.d_model) if c.pre_norm else None

    def forward(self, input_ids, attention_mask=None, memory=None, memory_mask=None, cache: Seq2SeqCache | None = None,
                output_hidden_states=False):
        past = cache.length if cache is not None else 0
        T = input_ids.shape[1]
        x = self.embed(input_ids, past)
        if cache is not None:
            memory, memory_mask = cache.encoder_hidden_states, cache.encoder_attention_mask
        self_mask = decoder_mask(attention_mask, T, past + T, x.dtype)
        cross_mask = padding_mask(memory_mask, x.dtype)
        hidden = [x]
        for layer in self.layers:
            x = layer(x, self_mask, memory, cross_mask, cache)
            hidden.append(x)
        if self.layer_norm is not None:
            x = self.layer_norm(x)
            hidden[-1] = x
        if cache is not None:
            cache.self_attn.advance(T)
        return ModelOutput(last_hidden_state=x, hidden_states=tuple(hidden) if output_hidden_states else None)


class BartModel(PreTrainedModel):
    """Shared embeddings, encoder, decoder."""

    is_encoder_decoder = True

    def __init__(self, config: BartConfig):
        super().__init__(config)
        if not config.share_encoder_decoder_embeddings:
            raise UnsupportedModelError("Marian models with separate source/target vocabularies "
                                        "(share_encoder_decoder_embeddings=false) are not supported")
        self.checkpoint_prefix = "model"
        self.shared = nn.Embedding(config.vocab_size, config.d_model, padding_idx=config.pad_token_id)
        self.encoder = BartEncoder(config, self.shared)
        self.decoder = BartDecoder(config, self.shared)
        self.tied = {"encoder.embed_tokens.weight": "shared.weight", "decoder.embed_tokens.weight": "shared.weight"}

    def forward(self, input_ids=None, attention_mask=None, decoder_input_ids=None, decoder_attention_mask=None,
                encoder_outputs=None, cache: Seq2SeqCache | None = None, output_hidden_states=False,
                output_attentions=False):
        def run():
            enc = encoder_outputs
            if enc is None and cache is None:
                enc = self.encoder(input_ids, attention_mask, output_hidden_states)
            dec = self.decoder(decoder_input_ids, decoder_attention_mask, enc.last_hidden_state if enc is not None
                               else None, attention_mask, cache, output_hidden_states)
            return enc, dec

        (enc, dec), maps = self.run_capturing(run, output_attentions)
        return seq2seq_output(dec, enc, maps, len(self.encoder.layers) if enc is not None and encoder_outputs is None else 0)

    def get_encoder(self):
        return self.encoder

    def make_cache(self, batch: int, max_len: int, encoder_hidden_states=None, encoder_attention_mask=None):
        c, w = self.config, self.shared.weight
        self_attn = KVCache(c.decoder_layers, batch, max_len, c.decoder_attention_heads,
                            c.d_model // c.decoder_attention_heads, dtype=w.dtype, device=w.device)
        return Seq2SeqCache(self_attn, encoder_hidden_states, encoder_attention_mask)


class BartForConditionalGeneration(PreTrainedModel):
    is_encoder_decoder = True

    def __init__(self, config: BartConfig):
        super().__init__(config)
        self.prefix = "model"
        self.model = BartModel(config)
        self.lm_head = Linear(config.d_model, config.vocab_size, bias=False)
        self.final_logits_bias = nn.Parameter(torch.zeros(1, config.vocab_size), requires_grad=False)
        self.tied = {"model.encoder.embed_tokens.weight": "model.shared.weight",
                     "model.decoder.embed_tokens.weight": "model.shared.weight"}
        if config.tie_word_embeddings:
            self.tied["lm_head.weight"] = "model.shared.weight"

    def get_encoder(self):
        return self.model.encoder

    def make_cache(self, batch: int, max_len: int, encoder_hidden_states=None, encoder_attention_mask=None):
        return self.model.make_cache(batch, max_len, encoder_hidden_states, encoder_attention_mask)

    def forward(self, input_ids=None, attention_mask=None, decoder_input_ids=None, decoder_attention_mask=None,
                encoder_outputs=None, cache: Seq2SeqCache | None = None, labels=None, output_hidden_states=False,
                output_attentions=False, logits_to_keep: int = 0):
        if decoder_input_ids is None and labels is not None:
            c = self.config
            decoder_input_ids = (shift_right_mbart(labels, c.pad_token_id) if c.model_type == "mbart" else
                                 shift_right(labels, c.pad_token_id, c.extra.get("decoder_start_token_id", c.eos_token_id)))
        out = self.model(input_ids, attention_mask, decoder_input_ids, decoder_attention_mask, encoder_outputs, cache,
                         output_hidden_states, output_attentions)
        h = out.last_hidden_state
        logits = self.lm_head(h[:, -logits_to_keep:] if logits_to_keep else h, bias=self.final_logits_bias[0].to(h.dtype))
        loss = None if labels is None else F.cross_entropy(logits.flatten(0, 1).float(), labels.flatten(), ignore_index=-100)
        return ModelOutput(loss=loss, logits=logits, **{k: v for k, v in out.items() if k != "last_hidden_state"})

    def decode_step(self, ids, attention_mask=None, position_ids=None, cache=None, logits_to_keep: int = 0):
        """One decoder call during generation (the encoder output lives in ``cache``)."""
        return self(decoder_input_ids=ids, decoder_attention_mask=attention_mask, cache=cache,
                    logits_to_keep=logits_to_keep)


def seq2seq_output(dec, enc, maps, n_encoder_maps: int) -> ModelOutput:
    """Outputs named as transformers names them; captured attention maps come in call order
    (encoder layers, then per decoder layer: self-attention, cross-attention)."""
    dec_maps = maps[n_encoder_maps:] if maps is not None else None
    return ModelOutput(last_hidden_state=dec.last_hidden_state,
                       encoder_last_hidden_state=enc.last_hidden_state if enc is not None else None,
                       decoder_hidden_states=dec.hidden_states,
                       encoder_hidden_states=enc.hidden_states if enc is not None else None,
                       encoder_attentions=maps[:n_encoder_maps] if maps is not None and n_encoder_maps else None,
                       decoder_attentions=dec_maps[0::2] if dec_maps is not None else None,
                       cross_attentions=dec_maps[1::2] if dec_maps is not None else None)


def shift_right(labels: torch.Tensor, pad: int, start: int) -> torch.Tensor:
    """Decoder inputs for teacher forcing: the start token, then the labels without their last token."""
    shifted = labels.new_full(labels.shape, start)
    shifted[:, 1:] = labels[:, :-1]
    return shifted.masked_fill(shifted == -100, pad)


def shift_right_mbart(labels: torch.Tensor, pad: int) -> torch.Tensor:
    """mBART's teacher forcing: the target's last real token (its language code) moves to the front."""
    ids = labels.masked_fill(labels == -100, pad)
    last = ids.gather(1, (ids.ne(pad).sum(dim=1) - 1)[:, None])
    return torch.cat([last, ids[:, :-1]], dim=1)


HEADS = {"base": BartModel, "seq2seq-lm": BartForConditionalGeneration}


def remap(state: dict, config) -> dict:
    """Checkpoint quirks, one per line."""
    out = {}
    for k, v in state.items():
        if config.model_type == "marian" and k.endswith("embed_positions.weight"):  # fixed table, recomputed
            continue
        if k.endswith("final_logits_bias") and v.dim() == 1:  # stored (V,) in some conversions
            v = v[None]
        out[k] = v
    return out
