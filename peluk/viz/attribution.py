""""Which words mattered": attention rollout and gradient × input over the input tokens.

* **Attention rollout** (Abnar & Zuidema, 2020): per layer, the mean over heads plus the identity
  (the residual connection), rows renormalised; multiplied through the layers. The row of the
  token the prediction reads (``[CLS]``/``<s>`` for encoders, the last token for decoders) says
  how much each input token flowed into it.
* **Gradient × input**: d logit(target class) / d input embedding, dotted with that embedding, per
  token (signed; the view shows its magnitude).

>>> a = attributions(model, tokenizer, "film ini bagus sekali")      # doctest: +SKIP
>>> a.label, a.scores["rollout"], a.save("words.html")               # doctest: +SKIP
"""

from __future__ import annotations

import html
import json
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
from torch import nn

from peluk.viz.capture import _device_batch, _encode, _family, _tokens

METHODS = ("rollout", "grad_x_input")


@dataclass
class Attributions:
    tokens: list[str]
    scores: dict[str, list[float]]  # method -> one score per token
    label: str | None = None
    probabilities: dict[str, float] = field(default_factory=dict)
    special: list[bool] = field(default_factory=list)

    def normalized(self, method: str) -> np.ndarray:
        """Magnitudes scaled to [0, 1] over the non-special tokens (for highlighting)."""
        s = np.abs(np.asarray(self.scores[method], dtype=np.float64))
        mask = ~np.asarray(self.special or [False] * len(s), dtype=bool)
        top = s[mask].max() if mask.any() and s[mask].max() > 0 else (s.max() or 1.0)
        return np.where(mask, s / top, 0.0).clip(0, 1)

    def to_dict(self) -> dict:
        return {"format": "peluk-attributions/1", "tokens": self.tokens, "scores": self.scores, "label": self.label,
                "probabilities": self.probabilities, "special": self.special}

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), ensure_ascii=False)

    def _repr_html_(self) -> str:
        return attributions_html(self)

    def save(self, path) -> Path:
        path = Path(path)
        if path.suffix.lower() == ".json":
            path.write_text(self.to_json(), encoding="utf-8")
        else:
            path.write_text("<!DOCTYPE html>\n<html><head><meta charset=\"utf-8\"><title>peluk: which words mattered"
                            f"</title></head><body>{attributions_html(self)}</body></html>\n", encoding="utf-8")
        return path


def _input_embedding(model) -> nn.Embedding:
    vocab = getattr(model.config, "vocab_size", None)
    for name, module in model.named_modules():
        if isinstance(module, nn.Embedding) and (module.num_embeddings == vocab or name.endswith(("word_embeddings", "wte", "embed_tokens"))):
            return module
    raise ValueError("attributions: no input embedding found")


def rollout(attentions: np.ndarray, residual: float = 0.5) -> np.ndarray:
    """(layers, heads, T, T) → (T, T) rollout matrix: row t = how much each input token reaches t."""
    T = attentions.shape[-1]
    out = np.eye(T)
    for layer in attentions.astype(np.float64):
        a = residual * np.eye(T) + (1 - residual) * layer.mean(axis=0)
        a /= a.sum(axis=-1, keepdims=True)
        out = a @ out
    return out


def attributions(model, tokenizer, text, text_pair=None, target: int | str | None = None,
                 max_length: int | None = None) -> Attributions:
    """Per-token attributions for a sequence classifier (or any model with ``logits``).

    ``target``: the class to explain (index or label name); default the predicted class.
    Decoders explain the last position's prediction (the next token).
    """
    family = _family(model)
    if family == "seq2seq":
        raise ValueError("attributions: encoder or decoder models only")
    enc = _device_batch(model, _encode(tokenizer, text, text_pair, max_length=max_length), max_length)
    kwargs = {k: v for k, v in enc.items() if k in ("input_ids", "attention_mask", "token_type_ids")}
    if family == "decoder":
        kwargs.pop("token_type_ids", None)
    emb = _input_embedding(model)
    grabbed = {}

    def hook(module, inputs, output):  # a fresh leaf, so gradients reach it even for frozen weights
        output = output.detach().requires_grad_(True)
        grabbed["x"] = output
        return output

    was_training = model.training
    model.eval()
    handle = emb.register_forward_hook(hook)
    try:
        with torch.enable_grad():
            out = model(**kwargs, output_attentions=True)
            logits = out.logits[0] if out.logits.dim() == 2 else out.logits[0, -1]
            probs = torch.softmax(logits.detach().float(), dim=-1)
            id2label = getattr(model.config, "id2label", None) or {}
            if isinstance(target, str):
                label2id = {v: int(k) for k, v in id2label.items()}
                target = label2id[target]
            cls = int(probs.argmax()) if target is None else int(target)
            (grad,) = torch.autograd.grad(logits[cls], grabbed["x"])  # leaves the weights' .grad alone
    finally:
        handle.remove()
        model.train(was_training)
    x = grabbed["x"]
    gxi = (grad[0] * x[0]).sum(-1).detach().float().cpu().numpy()
    att = torch.stack([m[0].float() for m in out.attentions]).cpu().numpy()
    roll = rollout(att)
    row = roll[0] if family == "encoder" else roll[-1]
    ids = [int(i) for i in kwargs["input_ids"][0]]
    specials = set(getattr(tokenizer, "all_special_ids", []) or [])
    label = id2label.get(cls, id2label.get(str(cls), str(cls))) if family == "encoder" else _tokens(tokenizer, [cls])[0]
    top = {}
    if family == "encoder":
        top = {str(id2label.get(i, id2label.get(str(i), i))): round(float(p), 6) for i, p in enumerate(probs)}
    return Attributions(tokens=_tokens(tokenizer, ids), label=str(label), probabilities=top,
                        scores={"rollout": [float(v) for v in row], "grad_x_input": [float(v) for v in gxi]},
                        special=[i in specials for i in ids])


STRINGS = {"en": {"rollout": "Attention rollout", "grad_x_input": "Gradient × input", "label": "Prediction"},
           "id": {"rollout": "Attention rollout", "grad_x_input": "Gradien × input", "label": "Prediksi"}}


def attributions_html(a: Attributions, lang: str = "en") -> str:
    """Highlighted text, one line per method: darker background = the token mattered more.
    Pure HTML/CSS (no script), so it renders anywhere offline."""
    s = STRINGS.get(lang, STRINGS["en"])
    parts = ['<div class="peluk-attributions" style="font:14px sans-serif;line-height:1.9">']
    if a.label is not None:
        probs = ", ".join(f"{html.escape(k)} {v:.3f}" for k, v in a.probabilities.items())
        parts.append(f"<div><b>{s['label']}:</b> {html.escape(a.label)}"
                     + (f' <span style="color:#666">({probs})</span>' if probs else "") + "</div>")
    for method in a.scores:
        weights = a.normalized(method)
        spans = []
        for tok, w, raw, sp in zip(a.tokens, weights, a.scores[method], a.special):
            style = "color:#999" if sp else f"background:rgba(220,60,30,{w:.3f})"
            spans.append(f'<span title="{raw:.4g}" style="{style};padding:1px 2px;border-radius:3px">'
                         f"{html.escape(str(tok))}</span>")
        parts.append(f'<div><b>{s.get(method, method)}:</b> {" ".join(spans)}</div>')
    parts.append("</div>")
    return "\n".join(parts)
