"""BERT-style encoders: BERT, RoBERTa (and XLM-RoBERTa) and DistilBERT.

All three are post-LayerNorm transformer encoders (Devlin et al. 2018,
https://arxiv.org/abs/1810.04805). Differences between the variants:

* RoBERTa (https://arxiv.org/abs/1907.11692) counts positions from ``pad_token_id + 1`` and
  skips padding when numbering them; its classifier head is a small MLP on the ``<s>`` token
  and its LM head is called ``lm_head``. XLM-RoBERTa is the same network.
* DistilBERT (https://arxiv.org/abs/1910.01108) has no token types and no pooler, other
  parameter names (``q_lin``, ``sa_layer_norm``, ``ffn.lin1``), and config keys
  ``dim``/``n_layers``/``n_heads``/``hidden_dim``, so it gets its own blocks below.

Module paths equal the transformers state-dict keys, so loading is a copy.
Reference: transformers/models/{bert,roberta,distilbert}/modeling_*.py.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from peluk.config import PretrainedConfig
from peluk.errors import UnsupportedModelError
from peluk.models.base import ModelOutput, PreTrainedModel
from peluk.nn.attention import attend, padding_mask
from peluk.nn.layers import activation
from peluk.nn.linear import Linear, fused_linear


@dataclass
class BertConfig(PretrainedConfig):
    vocab_size: int = 30522
    hidden_size: int = 768
    num_hidden_layers: int = 12
    num_attention_heads: int = 12
    intermediate_size: int = 3072
    hidden_act: str = "gelu"
    hidden_dropout_prob: float = 0.1
    attention_probs_dropout_prob: float = 0.1
    max_position_embeddings: int = 512
    type_vocab_size: int = 2
    layer_norm_eps: float = 1e-12
    pad_token_id: int | None = 0
    position_embedding_type: str = "absolute"
    classifier_dropout: float | None = None

    @property
    def max_input_length(self) -> int:
        # RoBERTa numbers positions from pad_token_id + 1, so that many table rows are unusable
        offset = self.pad_token_id + 1 if self.model_type in ("roberta", "xlm-roberta") else 0
        return self.max_position_embeddings - offset


@dataclass
class DistilBertConfig(PretrainedConfig):
    vocab_size: int = 30522
    dim: int = 768
    n_layers: int = 6
    n_heads: int = 12
    hidden_dim: int = 3072
    activation: str = "gelu"
    dropout: float = 0.1
    attention_dropout: float = 0.1
    max_position_embeddings: int = 512
    sinusoidal_pos_embds: bool = False
    seq_classif_dropout: float = 0.2
    qa_dropout: float = 0.1
    pad_token_id: int | None = 0


def config_class(model_type: str):
    return DistilBertConfig if model_type == "distilbert" else BertConfig


def _prefix(config) -> str:
    """The backbone's name in transformers' head checkpoints (XLM-R reuses RoBERTa's)."""
    return {"xlm-roberta": "roberta"}.get(config.model_type, config.model_type or "bert")


def _is_roberta(config) -> bool:
    return config.model_type in ("roberta", "xlm-roberta")


# --- BERT / RoBERTa blocks -------------------------------------------------------------

class BertEmbeddings(nn.Module):
    def __init__(self, c: BertConfig):
        super().__init__()
        self.word_embeddings = nn.Embedding(c.vocab_size, c.hidden_size, padding_idx=c.pad_token_id)
        self.position_embeddings = nn.Embedding(c.max_position_embeddings, c.hidden_size,
                                                padding_idx=c.pad_token_id if _is_roberta(c) else None)
        self.token_type_embeddings = nn.Embedding(c.type_vocab_size, c.hidden_size)
        self.LayerNorm = nn.LayerNorm(c.hidden_size, eps=c.layer_norm_eps)
        self.dropout = nn.Dropout(c.hidden_dropout_prob)
        self.roberta = _is_roberta(c)
        self.pad = c.pad_token_id

    def forward(self, input_ids, token_type_ids=None, position_ids=None):
        if position_ids is None:
            if self.roberta:  # count non-pad tokens, starting after the padding index
                not_pad = input_ids.ne(self.pad).int()
                position_ids = torch.cumsum(not_pad, dim=1) * not_pad + self.pad
            else:
                position_ids = torch.arange(input_ids.shape[1], device=input_ids.device)[None]
        if token_type_ids is None:
            token_type_ids = torch.zeros_like(input_ids)
        x = self.word_embeddings(input_ids) + self.token_type_embeddings(token_type_ids)
        x = x + self.position_embeddings(position_ids)
        return self.dropout(self.LayerNorm(x))  # (B, T, C)


class BertSelfAttention(nn.Module):
    def __init__(self, c: BertConfig):
        super().__init__()
        self.n_heads = c.num_attention_heads
        self.query = Linear(c.hidden_size, c.hidden_size)
        self.key = Linear(c.hidden_size, c.hidden_size)
        self.value = Linear(c.hidden_size, c.hidden_size)
        self.p_drop = c.attention_probs_dropout_prob

    def forward(self, x, mask):
        B, T, C = x.shape
        q, k, v = (t.view(B, T, self.n_heads, -1).transpose(1, 2) for t in fused_linear(x, self.query, self.key, self.value))  # (B, H, T, D)
        y = attend(q, k, v, mask, dropout=self.p_drop if self.training else 0.0)
        return y.transpose(1, 2).reshape(B, T, C)


class BertSelfOutput(nn.Module):
    """Projection, dropout, then the residual and LayerNorm (post-LN)."""

    def __init__(self, c: BertConfig, width_in: int):
        super().__init__()
        self.dense = Linear(width_in, c.hidden_size)
        self.LayerNorm = nn.LayerNorm(c.hidden_size, eps=c.layer_norm_eps)
        self.dropout = nn.Dropout(c.hidden_dropout_prob)

    def forward(self, h, residual):
        return self.LayerNorm(self.dropout(self.dense(h)) + residual)


class BertAttention(nn.Module):
    def __init__(self, c: BertConfig):
        super().__init__()
        self.self = BertSelfAttention(c)
        self.output = BertSelfOutput(c, c.hidden_size)

    def forward(self, x, mask):
        return self.output(self.self(x, mask), x)


class BertIntermediate(nn.Module):
    def __init__(self, c: BertConfig):
        super().__init__()
        self.dense = Linear(c.hidden_size, c.intermediate_size)
        self.act = activation(c.hidden_act)
        # GELU variants fuse into the matmul on the fast CPU path (peluk/nn/linear.py)
        self.gelu = {"gelu": "none", "gelu_new": "tanh", "gelu_pytorch_tanh": "tanh", "gelu_fast": "tanh"}.get(c.hidden_act)

    def forward(self, x):
        if self.gelu and isinstance(self.dense, Linear):  # (not when swapped for a quantized layer)
            return self.dense(x, gelu=self.gelu)
        return self.act(self.dense(x))


class BertLayer(nn.Module):
    def __init__(self, c: BertConfig):
        super().__init__()
        self.attention = BertAttention(c)
        self.intermediate = BertIntermediate(c)
        self.output = BertSelfOutput(c, c.intermediate_size)

    def forward(self, x, mask):
        x = self.attention(x, mask)
        return self.output(self.intermediate(x), x)


class BertEncoder(nn.Module):
    def __init__(self, c: BertConfig):
        super().__init__()
        self.layer = nn.ModuleList(BertLayer(c) for _ in range(c.num_hidden_layers))


class BertPooler(nn.Module):
    def __init__(self, c: BertConfig):
        super().__init__()
        self.dense = Linear(c.hidden_size, c.hidden_size)

    def forward(self, h):
        return torch.tanh(self.dense(h[:, 0]))


class BertModel(PreTrainedModel):
    """The BERT/RoBERTa backbone: embeddings → post-LN blocks → (pooler)."""

    def __init__(self, config: BertConfig, add_pooling_layer: bool = True):
        super().__init__(config)
        if config.position_embedding_type != "absolute":
            raise UnsupportedModelError(f"position_embedding_type {config.position_embedding_type!r} is not "
                                        "supported; peluk implements 'absolute'")
        self.checkpoint_prefix = _prefix(config)
        self.embeddings = BertEmbeddings(config)
        self.encoder = BertEncoder(config)
        self.pooler = BertPooler(config) if add_pooling_layer else None

    def forward(self, input_ids, attention_mask=None, token_type_ids=None, position_ids=None,
                output_hidden_states=False, output_attentions=False):
        def run():
            x = self.embeddings(input_ids, token_type_ids, position_ids)
            mask = padding_mask(attention_mask, x.dtype)
            hidden = [x]
            for layer in self.encoder.layer:
                x = layer(x, mask)
                hidden.append(x)
            return x, hidden

        (x, hidden), attentions = self.run_capturing(run, output_attentions)
        return ModelOutput(last_hidden_state=x, pooler_output=self.pooler(x) if self.pooler is not None else None,
                           hidden_states=tuple(hidden) if output_hidden_states else None, attentions=attentions)


# --- DistilBERT blocks -----------------------------------------------------------------

class DistilEmbeddings(nn.Module):
    def __init__(self, c: DistilBertConfig):
        super().__init__()
        self.word_embeddings = nn.Embedding(c.vocab_size, c.dim, padding_idx=c.pad_token_id)
        self.position_embeddings = nn.Embedding(c.max_position_embeddings, c.dim)  # sinusoidal ones are stored too
        self.LayerNorm = nn.LayerNorm(c.dim, eps=1e-12)
        self.dropout = nn.Dropout(c.dropout)

    def forward(self, input_ids, position_ids=None):
        if position_ids is None:
            position_ids = torch.arange(input_ids.shape[1], device=input_ids.device)[None]
        return self.dropout(self.LayerNorm(self.word_embeddings(input_ids) + self.position_embeddings(position_ids)))


class DistilAttention(nn.Module):
    def __init__(self, c: DistilBertConfig):
        super().__init__()
        self.n_heads = c.n_heads
        self.q_lin = Linear(c.dim, c.dim)
        self.k_lin = Linear(c.dim, c.dim)
        self.v_lin = Linear(c.dim, c.dim)
        self.out_lin = Linear(c.dim, c.dim)
        self.p_drop = c.attention_dropout

    def forward(self, x, mask):
        B, T, C = x.shape
        q, k, v = (t.view(B, T, self.n_heads, -1).transpose(1, 2) for t in fused_linear(x, self.q_lin, self.k_lin, self.v_lin))  # (B, H, T, D)
        y = attend(q, k, v, mask, dropout=self.p_drop if self.training else 0.0)
        return self.out_lin(y.transpose(1, 2).reshape(B, T, C))


class DistilFFN(nn.Module):
    def __init__(self, c: DistilBertConfig):
        super().__init__()
        self.lin1 = Linear(c.dim, c.hidden_dim)
        self.lin2 = Linear(c.hidden_dim, c.dim)
        self.act = activation(c.activation)
        self.dropout = nn.Dropout(c.dropout)

    def forward(self, x):
        return self.dropout(self.lin2(self.act(self.lin1(x))))


class DistilBlock(nn.Module):
    def __init__(self, c: DistilBertConfig):
        super().__init__()
        self.attention = DistilAttention(c)
        self.sa_layer_norm = nn.LayerNorm(c.dim, eps=1e-12)
        self.ffn = DistilFFN(c)
        self.output_layer_norm = nn.LayerNorm(c.dim, eps=1e-12)

    def forward(self, x, mask):
        x = self.sa_layer_norm(self.attention(x, mask) + x)
        return self.output_layer_norm(self.ffn(x) + x)


class DistilTransformer(nn.Module):
    def __init__(self, c: DistilBertConfig):
        super().__init__()
        self.layer = nn.ModuleList(DistilBlock(c) for _ in range(c.n_layers))


class DistilBertModel(PreTrainedModel):
    """The DistilBERT backbone: embeddings → post-LN blocks (no pooler, no token types)."""

    def __init__(self, config: DistilBertConfig, add_pooling_layer: bool = False):
        super().__init__(config)
        self.checkpoint_prefix = "distilbert"
        self.embeddings = DistilEmbeddings(config)
        self.transformer = DistilTransformer(config)

    def forward(self, input_ids, attention_mask=None, token_type_ids=None, position_ids=None,
                output_hidden_states=False, output_attentions=False):
        def run():
            x = self.embeddings(input_ids, position_ids)
            mask = padding_mask(attention_mask, x.dtype)
            hidden = [x]
            for layer in self.transformer.layer:
                x = layer(x, mask)
                hidden.append(x)
            return x, hidden

        (x, hidden), attentions = self.run_capturing(run, output_attentions)
        return ModelOutput(last_hidden_state=x, hidden_states=tuple(hidden) if output_hidden_states else None,
                           attentions=attentions)


# --- heads -----------------------------------------------------------------------------

def _hidden(c) -> int:
    return c.dim if c.model_type == "distilbert" else c.hidden_size


class _Head(PreTrainedModel):
    """A backbone under its checkpoint name (``bert``/``roberta``/``distilbert``) plus a head."""

    pooler = False

    def __init__(self, config):
        super().__init__(config)
        self.prefix = _prefix(config)
        backbone = (DistilBertModel(config) if config.model_type == "distilbert"
                    else BertModel(config, add_pooling_layer=self.pooler and not _is_roberta(config)))
        setattr(self, self.prefix, backbone)

    @property
    def backbone(self) -> nn.Module:
        return getattr(self, self.prefix)

    def _dropout(self, kind: str) -> float:
        c = self.config
        if c.model_type == "distilbert":
            return {"sequence": c.seq_classif_dropout, "qa": c.qa_dropout}.get(kind, c.dropout)
        return c.classifier_dropout if c.classifier_dropout is not None else c.hidden_dropout_prob

    def encode(self, input_ids, attention_mask, token_type_ids, position_ids, output_hidden_states, output_attentions):
        return self.backbone(input_ids, attention_mask=attention_mask, token_type_ids=token_type_ids,
                             position_ids=position_ids, output_hidden_states=output_hidden_states,
                             output_attentions=output_attentions)

    def _output(self, out, **fields):
        return ModelOutput(**fields, hidden_states=out.hidden_states, attentions=out.attentions)


class _LMHead(nn.Module):
    """transform (dense → act → LayerNorm) then the vocabulary projection (BERT/RoBERTa)."""

    def __init__(self, c: BertConfig, roberta: bool):
        super().__init__()
        self.dense = Linear(c.hidden_size, c.hidden_size)
        self.act = activation("gelu" if roberta else c.hidden_act)
        self.norm_name = "layer_norm" if roberta else "LayerNorm"  # the checkpoints' names differ
        setattr(self, self.norm_name, nn.LayerNorm(c.hidden_size, eps=c.layer_norm_eps))

    def forward(self, h):
        return getattr(self, self.norm_name)(self.act(self.dense(h)))


class _BertPredictions(nn.Module):
    def __init__(self, c: BertConfig):
        super().__init__()
        self.transform = _LMHead(c, roberta=False)
        self.decoder = Linear(c.hidden_size, c.vocab_size)
        self.bias = nn.Parameter(torch.zeros(c.vocab_size))

    def forward(self, h):
        return self.decoder(self.transform(h))


class _BertOnlyMLMHead(nn.Module):
    def __init__(self, c: BertConfig):
        super().__init__()
        self.predictions = _BertPredictions(c)

    def forward(self, h):
        return self.predictions(h)


class _RobertaLMHead(_LMHead):
    def __init__(self, c: BertConfig):
        super().__init__(c, roberta=True)
        self.decoder = Linear(c.hidden_size, c.vocab_size)
        self.bias = nn.Parameter(torch.zeros(c.vocab_size))

    def forward(self, h):
        return self.decoder(super().forward(h))


class BertForMaskedLM(_Head):
    def __init__(self, config):
        super().__init__(config)
        c, p = config, self.prefix
        embeddings = f"{p}.embeddings.word_embeddings.weight"
        if c.model_type == "distilbert":
            self.vocab_transform = Linear(c.dim, c.dim)
            self.act = activation(c.activation)
            self.vocab_layer_norm = nn.LayerNorm(c.dim, eps=1e-12)
            self.vocab_projector = Linear(c.dim, c.vocab_size)
            decoder = "vocab_projector"
            self.tied = {}
        elif _is_roberta(c):
            self.lm_head = _RobertaLMHead(c)
            decoder = "lm_head.decoder"
            self.tied = {"lm_head.decoder.bias": "lm_head.bias"}
        else:
            self.cls = _BertOnlyMLMHead(c)
            decoder = "cls.predictions.decoder"
            self.tied = {"cls.predictions.decoder.bias": "cls.predictions.bias"}
        if c.tie_word_embeddings:
            self.tied = {f"{decoder}.weight": embeddings, **self.tied}

    def forward(self, input_ids, attention_mask=None, token_type_ids=None, position_ids=None, labels=None,
                output_hidden_states=False, output_attentions=False):
        out = self.encode(input_ids, attention_mask, token_type_ids, position_ids, output_hidden_states, output_attentions)
        h = out.last_hidden_state
        if self.config.model_type == "distilbert":
            logits = self.vocab_projector(self.vocab_layer_norm(self.act(self.vocab_transform(h))))
        else:
            logits = (self.lm_head if _is_roberta(self.config) else self.cls)(h)  # (B, T, V)
        loss = None if labels is None else F.cross_entropy(logits.flatten(0, 1).float(), labels.flatten(), ignore_index=-100)
        return self._output(out, loss=loss, logits=logits)


class _RobertaClassificationHead(nn.Module):
    """RoBERTa's classifier: dropout → dense → tanh → dropout → out_proj, on the <s> token."""

    def __init__(self, c: BertConfig, p_drop: float):
        super().__init__()
        self.dense = Linear(c.hidden_size, c.hidden_size)
        self.dropout = nn.Dropout(p_drop)
        self.out_proj = Linear(c.hidden_size, c.num_labels)

    def forward(self, h):
        x = self.dropout(h[:, 0])
        return self.out_proj(self.dropout(torch.tanh(self.dense(x))))


class BertForSequenceClassification(_Head):
    pooler = True

    def __init__(self, config):
        super().__init__(config)
        c = config
        self.dropout = nn.Dropout(self._dropout("sequence"))
        if c.model_type == "distilbert":
            self.pre_classifier = Linear(c.dim, c.dim)
            self.classifier = Linear(c.dim, c.num_labels)
        elif _is_roberta(c):
            self.classifier = _RobertaClassificationHead(c, self._dropout("sequence"))
        else:
            self.classifier = Linear(c.hidden_size, c.num_labels)

    def forward(self, input_ids, attention_mask=None, token_type_ids=None, position_ids=None, labels=None,
                output_hidden_states=False, output_attentions=False):
        out = self.encode(input_ids, attention_mask, token_type_ids, position_ids, output_hidden_states, output_attentions)
        c = self.config
        if c.model_type == "distilbert":
            logits = self.classifier(self.dropout(F.relu(self.pre_classifier(out.last_hidden_state[:, 0]))))
        elif _is_roberta(c):
            logits = self.classifier(out.last_hidden_state)
        else:
            logits = self.classifier(self.dropout(out.pooler_output))  # (B, num_labels)
        return self._output(out, loss=None if labels is None else classification_loss(logits, labels, c), logits=logits)


def classification_loss(logits: torch.Tensor, labels: torch.Tensor, config) -> torch.Tensor:
    """The loss ``config.problem_type`` names, inferred from the labels as transformers does."""
    problem = config.problem_type
    if problem is None:
        if config.num_labels == 1:
            problem = "regression"
        elif labels.dtype in (torch.long, torch.int):
            problem = "single_label_classification"
        else:
            problem = "multi_label_classification"
    if problem == "regression":
        return F.mse_loss(logits.squeeze(-1).float() if config.num_labels == 1 else logits.float(),
                          labels.float().view_as(logits.squeeze(-1)) if config.num_labels == 1 else labels.float())
    if problem == "single_label_classification":
        return F.cross_entropy(logits.view(-1, config.num_labels).float(), labels.view(-1))
    if problem == "multi_label_classification":
        return F.binary_cross_entropy_with_logits(logits.float(), labels.float())
    raise UnsupportedModelError(f"problem_type {problem!r} is not one of regression, single_label_classification, "
                                "multi_label_classification")


class BertForTokenClassification(_Head):
    def __init__(self, config):
        super().__init__(config)
        self.dropout = nn.Dropout(self._dropout("token"))
        self.classifier = Linear(_hidden(config), config.num_labels)

    def forward(self, input_ids, attention_mask=None, token_type_ids=None, position_ids=None, labels=None,
                output_hidden_states=False, output_attentions=False):
        out = self.encode(input_ids, attention_mask, token_type_ids, position_ids, output_hidden_states, output_attentions)
        logits = self.classifier(self.dropout(out.last_hidden_state))  # (B, T, num_labels)
        loss = None if labels is None else F.cross_entropy(logits.flatten(0, 1).float(), labels.flatten(), ignore_index=-100)
        return self._output(out, loss=loss, logits=logits)


class BertForQuestionAnswering(_Head):
    def __init__(self, config):
        super().__init__(config)
        self.dropout = nn.Dropout(self._dropout("qa") if config.model_type == "distilbert" else 0.0)
        self.qa_outputs = Linear(_hidden(config), 2)

    def forward(self, input_ids, attention_mask=None, token_type_ids=None, position_ids=None,
                start_positions=None, end_positions=None, output_hidden_states=False, output_attentions=False):
        out = self.encode(input_ids, attention_mask, token_type_ids, position_ids, output_hidden_states, output_attentions)
        start, end = self.qa_outputs(self.dropout(out.last_hidden_state)).unbind(-1)  # (B, T) each
        loss = None
        if start_positions is not None and end_positions is not None:
            T = start.shape[1]  # positions outside the sequence are ignored, as transformers does
            s, e = start_positions.clamp(0, T), end_positions.clamp(0, T)
            loss = (F.cross_entropy(start.float(), s, ignore_index=T) + F.cross_entropy(end.float(), e, ignore_index=T)) / 2
        return self._output(out, loss=loss, start_logits=start.contiguous(), end_logits=end.contiguous())


class _AnyBackbone:
    """``HEADS["base"]``: the BERT/RoBERTa or DistilBERT backbone, whichever config names."""

    @staticmethod
    def from_pretrained(name_or_path, config=None, **kwargs):
        cls = DistilBertModel if config is not None and config.model_type == "distilbert" else BertModel
        return cls.from_pretrained(name_or_path, config=config, **kwargs)

    @staticmethod
    def from_config(config):
        return (DistilBertModel if config.model_type == "distilbert" else BertModel).from_config(config)


HEADS = {
    "base": _AnyBackbone,
    "masked-lm": BertForMaskedLM,
    "sequence-classification": BertForSequenceClassification,
    "token-classification": BertForTokenClassification,
    "question-answering": BertForQuestionAnswering,
}


def remap(state: dict, config) -> dict:
    """Checkpoint quirks, one per line."""
    out = {}
    for k, v in state.items():
        if k.endswith("position_ids"):  # old checkpoints saved this (recomputed) buffer
            continue
        # checkpoints converted from TensorFlow name LayerNorm parameters gamma/beta
        k = k.replace("LayerNorm.gamma", "LayerNorm.weight").replace("LayerNorm.beta", "LayerNorm.bias")
        out[k] = v
    return out
