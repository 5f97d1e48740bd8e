"""Capture attention probabilities of any peluk model into an ``AttentionView``.

The models already return attention probabilities with ``output_attentions=True`` (the
``capture_attention`` hook in ``peluk/nn/attention.py`` switches ``attend`` to its eager path
for the duration of the call), so capturing is one forward pass:

* encoders (BERT, RoBERTa, DistilBERT, ...): encoder self-attention over ``text`` [+ ``text_pair``];
* decoders (GPT-2, Llama, Mistral, ...): causal self-attention over the prompt, and with
  ``generate=N`` over the prompt followed by N greedily generated tokens;
* encoder-decoders (T5, BART, Marian, ...): encoder self-, decoder self- and cross-attention with
  the ``target`` text teacher-forced (or N greedily generated target tokens).

>>> view = attention(model, tokenizer, "The cat sat on the mat")     # doctest: +SKIP
>>> view.attentions["encoder"].shape                                  # (layers, heads, T, S)
>>> view.save("cat.html"); view.heatmap(layer=0, path="cat.png")      # doctest: +SKIP

With ``neurons=True`` the view also keeps every head's queries and keys (``view.neurons``) for
the neuron view: how a query vector meets each key vector, element by element, in the score.
"""

from __future__ import annotations

import base64
import json
import zlib
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch

from peluk.nn.attention import capture_attention

# which token list each attention kind reads: (query side, key side)
SIDES = {"encoder": ("source", "source"), "decoder": ("target", "target"), "cross": ("target", "source")}


@dataclass
class AttentionView:
    """Tokens and attention probabilities of one input, per layer and head.

    ``attentions[kind]`` is a float32 array (layers, heads, T, S): row t holds how query token t
    distributes its attention over the key tokens. ``kind`` is ``"encoder"`` (encoder
    self-attention), ``"decoder"`` (causal self-attention) or ``"cross"`` (decoder queries over
    encoder keys). Query/key tokens of a kind are ``tokens[SIDES[kind][0]]`` / ``[1]``.
    """

    tokens: dict[str, list[str]]
    attentions: dict[str, np.ndarray]
    model_type: str = ""
    name: str = ""
    prompt_length: int | None = None  # decoders with generate=N: the first generated token's index
    meta: dict = field(default_factory=dict)
    # neuron view (attention(..., neurons=True)): {kind: {"queries": (layers, heads, T, D),
    # "keys": (layers, heads, S, D)}} as the scores were computed (after rotary), and "scale"
    neurons: dict = field(default_factory=dict)

    @property
    def kinds(self) -> list[str]:
        return list(self.attentions)

    def tokens_of(self, kind: str) -> tuple[list[str], list[str]]:
        q, k = SIDES[kind]
        return self.tokens[q], self.tokens[k]

    def matrix(self, layer: int, head: int | None = None, kind: str | None = None) -> np.ndarray:
        """(T, S) probabilities of one head, or their mean over heads when ``head`` is None."""
        a = self.attentions[kind or self.kinds[0]][layer]
        return a.mean(axis=0) if head is None else a[head]

    # --- serialisation -------------------------------------------------------------------
    def to_dict(self, precision: str = "float16", compress: bool | None = None) -> dict:
        """A JSON-ready dict. Each attention tensor is stored as base64 bytes with its shape:

        * ``precision="float16"`` (default) or ``"float32"``: little-endian floats;
        * ``"uint8"``: round(255 * sqrt(p)), 1 byte per value (the square root keeps small
          probabilities visible; error < 0.004 on p), for very long inputs;
        * ``"auto"``: float16 up to 4M values, else uint8 (BERT-base on 512 tokens: 38M).

        ``compress`` (default: when precision is uint8) deflates the bytes (zlib), which browsers
        undo natively (``DecompressionStream``); near-zero attention compresses well. Captured
        queries and keys (``neurons``) go under ``"neurons"``, as float16 (float32 if asked).
        """
        if precision == "auto":
            precision = "float16" if sum(a.size for a in self.attentions.values()) <= 4_000_000 else "uint8"
        if compress is None:
            compress = precision == "uint8"
        atts = {kind: _encode_array(a, precision, compress) for kind, a in self.attentions.items()}
        # queries and keys are not probabilities: float16 unless float32 was asked for
        vectors = "float32" if precision == "float32" else "float16"
        neurons = {kind: {"queries": _encode_array(n["queries"], vectors, compress),
                          "keys": _encode_array(n["keys"], vectors, compress), "scale": n["scale"]}
                   for kind, n in self.neurons.items()}
        out = {"format": "peluk-attention/1", "model_type": self.model_type, "name": self.name,
               "tokens": self.tokens, "sides": {k: list(SIDES[k]) for k in self.attentions},
               "prompt_length": self.prompt_length, "meta": self.meta, "attentions": atts}
        if neurons:
            out["neurons"] = neurons
        return out

    def to_json(self, precision: str = "float16", compress: bool | None = None) -> str:
        return json.dumps(self.to_dict(precision, compress), ensure_ascii=False, separators=(",", ":"))

    @classmethod
    def from_dict(cls, data: dict) -> "AttentionView":
        atts = {kind: _decode_array(a) for kind, a in data["attentions"].items()}
        neurons = {kind: {"queries": _decode_array(n["queries"]), "keys": _decode_array(n["keys"]),
                          "scale": float(n["scale"])} for kind, n in (data.get("neurons") or {}).items()}
        return cls(tokens=data["tokens"], attentions=atts, model_type=data.get("model_type", ""),
                   name=data.get("name", ""), prompt_length=data.get("prompt_length"), meta=data.get("meta", {}),
                   neurons=neurons)

    @classmethod
    def from_json(cls, text: str) -> "AttentionView":
        return cls.from_dict(json.loads(text))

    @classmethod
    def load(cls, path: str | Path) -> "AttentionView":
        return cls.from_json(Path(path).read_text(encoding="utf-8"))

    def save(self, path: str | Path, precision: str | None = None) -> Path:
        """Write ``.json`` (the data), ``.html`` (standalone interactive view), or ``.png``/``.svg``
        (heat map of the mean over heads of the last layer; use ``heatmap`` to choose).
        ``precision``: see ``to_dict`` (default: float16 for .json, "auto" for .html)."""
        path = Path(path)
        suffix = path.suffix.lower()
        if suffix == ".json":
            path.write_text(self.to_json(precision or "float16"), encoding="utf-8")
        elif suffix in (".html", ".htm"):
            from peluk.viz.render import standalone_html

            path.write_text(standalone_html(self, precision=precision or "auto"), encoding="utf-8")
        elif suffix in (".png", ".svg", ".pdf"):
            self.heatmap(layer=-1, path=path)
        else:
            raise ValueError(f"save: unknown format {suffix!r} (use .html, .json, .png or .svg)")
        return path

    # --- views ---------------------------------------------------------------------------
    def _repr_html_(self) -> str:
        from peluk.viz.render import notebook_html

        return notebook_html(self)

    def heatmap(self, layer: int = -1, head: int | None = None, kind: str | None = None, path=None, **options):
        """Matplotlib heat map of one head (or the mean over heads); darker = more attention.
        Returns the figure; with ``path`` (.png/.svg/.pdf) also saves it there."""
        from peluk.viz.heatmap import heatmap

        return heatmap(self, layer=layer, head=head, kind=kind, path=path, **options)

    def __repr__(self) -> str:
        shapes = ", ".join(f"{k}={tuple(a.shape)}" for k, a in self.attentions.items())
        return f"AttentionView({self.model_type or 'model'}: {shapes})"


def _encode_array(a: np.ndarray, precision: str, compress: bool) -> dict:
    """One tensor as JSON: base64 bytes (float16/float32 little-endian, or uint8 = 255 sqrt(p))."""
    if precision == "uint8":
        raw = np.rint(np.sqrt(np.clip(a, 0.0, 1.0)) * 255.0).astype(np.uint8).tobytes()
    else:
        raw = np.ascontiguousarray(a, dtype={"float16": "<f2", "float32": "<f4"}[precision]).tobytes()
    entry = {"shape": list(a.shape), "dtype": precision}
    if compress:
        raw, entry["compression"] = zlib.compress(raw, 6), "deflate"
    entry["data"] = base64.b64encode(raw).decode("ascii")
    return entry


def _decode_array(a: dict) -> np.ndarray:
    raw = base64.b64decode(a["data"])
    if a.get("compression") == "deflate":
        raw = zlib.decompress(raw)
    if a["dtype"] == "uint8":
        values = (np.frombuffer(raw, dtype=np.uint8).astype(np.float32) / 255.0) ** 2
    else:
        values = np.frombuffer(raw, dtype={"float16": "<f2", "float32": "<f4"}[a["dtype"]]).astype(np.float32)
    return values.reshape(a["shape"])


# --- capture --------------------------------------------------------------------------------

def _stack(maps, row: int = 0) -> np.ndarray:
    """Tuple of (B, H, T, S) per layer → float32 (layers, H, T, S) of one batch row."""
    return torch.stack([m[row].float() for m in maps]).cpu().numpy().astype(np.float32)


def _tokens(tokenizer, ids) -> list[str]:
    ids = [int(i) for i in ids]
    if tokenizer is not None and hasattr(tokenizer, "convert_ids_to_tokens"):
        return [str(t) for t in tokenizer.convert_ids_to_tokens(ids)]
    return [str(i) for i in ids]


def _encode(tokenizer, text, text_pair=None, target=False, max_length: int | None = None) -> dict:
    if isinstance(text, torch.Tensor):  # already token ids
        ids = text if text.dim() == 2 else text[None]
        return {"input_ids": ids, "attention_mask": torch.ones_like(ids)}
    kwargs = {"text_target": text} if target else {"text": text}
    if text_pair is not None:
        kwargs["text_pair_target" if target else "text_pair"] = text_pair
    if max_length:  # the tokenizer truncates and keeps the special tokens ([SEP], </s>)
        kwargs.update(truncation=True, max_length=max_length)
    try:
        enc = tokenizer(return_tensors="pt", **kwargs)
    except TypeError:  # a tokenizer without text_target: encode the target as plain text
        enc = tokenizer(text, text_pair, return_tensors="pt") if text_pair is not None else tokenizer(text, return_tensors="pt")
    return dict(enc)


def _family(model) -> str:
    """"encoder", "decoder" or "seq2seq", from the model's family module."""
    from peluk.models import MODEL_TYPES

    module = MODEL_TYPES.get(getattr(model.config, "model_type", ""), "")
    if module in ("peluk.models.t5", "peluk.models.bart") or getattr(model, "is_encoder_decoder", False):
        return "seq2seq"
    if module == "peluk.models.bert":
        return "encoder"
    return "decoder"


def _decoder_start(model) -> int:
    c = model.config
    extra = getattr(c, "extra", {}) or {}
    start = extra.get("decoder_start_token_id", getattr(c, "decoder_start_token_id", None))
    if start is None:
        start = c.pad_token_id if c.model_type == "t5" else c.eos_token_id
    return int(start)


def _teacher_forced_inputs(model, labels: torch.Tensor) -> torch.Tensor:
    from peluk.models.bart import shift_right, shift_right_mbart

    c = model.config
    if c.model_type == "mbart":
        return shift_right_mbart(labels, c.pad_token_id)
    return shift_right(labels, c.pad_token_id, _decoder_start(model))


def _call(model, neurons: bool, **kwargs):
    """The forward pass with attention maps, and the (q, k, scale) of each attention call when
    ``neurons`` (else None)."""
    with torch.no_grad(), capture_attention(neurons=neurons) as captured:
        return model(**kwargs, output_attentions=True), captured.neurons


def _neurons(calls, row: int = 0) -> dict:
    """(q, k, scale) per layer → {"queries": (layers, H, T, D), "keys": (layers, H, S, D), "scale"}."""
    return {"queries": _stack([q for q, _, _ in calls], row), "keys": _stack([k for _, k, _ in calls], row),
            "scale": float(calls[0][2] if calls[0][2] is not None else 1.0 / np.sqrt(calls[0][0].shape[-1]))}


@torch.no_grad()
def attention(model, tokenizer, text, text_pair=None, target=None, generate: int = 0,
              max_length: int | None = None, neurons: bool = False) -> AttentionView:
    """Run ``model`` once on ``text`` and return every layer's and head's attention.

    Args:
        model: any peluk model (encoder, decoder or encoder-decoder, with or without a head).
        tokenizer: its tokenizer (anything callable like ``peluk.Tokenizer``), used for the
            token strings too. ``text`` may also be a tensor of token ids.
        text_pair: second segment for encoders (``[CLS] a [SEP] b [SEP]``).
        target: seq2seq: the target text, teacher-forced through the decoder.
        generate: decoders: append this many greedily generated tokens and show the attention of
            prompt + generated tokens; seq2seq without ``target``: generate the target greedily.
        max_length: truncate the input to this many tokens.
        neurons: also keep every head's queries and keys (``view.neurons``) for the neuron view.
    """
    was_training = model.training
    model.eval()
    try:
        family = _family(model)
        if family == "seq2seq":
            return _seq2seq(model, tokenizer, text, text_pair, target, generate, max_length, neurons)
        if family == "decoder":
            return _decoder(model, tokenizer, text, text_pair, generate, max_length, neurons)
        return _encoder(model, tokenizer, text, text_pair, max_length, neurons)
    finally:
        model.train(was_training)


def _device_batch(model, enc: dict, max_length: int | None) -> dict:
    dev = model.device
    out = {}
    for k, v in enc.items():
        if isinstance(v, torch.Tensor):
            out[k] = (v[:, :max_length] if max_length else v).to(dev)
    return out


def _name(model) -> str:
    return str(getattr(model, "name_or_path", "") or "")


def _encoder(model, tokenizer, text, text_pair, max_length, neurons=False) -> AttentionView:
    enc = _device_batch(model, _encode(tokenizer, text, text_pair, max_length=max_length), max_length)
    kwargs = {k: v for k, v in enc.items() if k in ("input_ids", "attention_mask", "token_type_ids")}
    out, calls = _call(model, neurons, **kwargs)
    ids = enc["input_ids"][0]
    meta = {}
    if "token_type_ids" in enc:
        meta["segments"] = [int(t) for t in enc["token_type_ids"][0]]
    return AttentionView(tokens={"source": _tokens(tokenizer, ids)}, attentions={"encoder": _stack(out.attentions)},
                         model_type=model.config.model_type, name=_name(model), meta=meta,
                         neurons={"encoder": _neurons(calls)} if calls else {})


def _greedy_next(logits: torch.Tensor) -> torch.Tensor:
    return logits[:, -1].argmax(dim=-1, keepdim=True)


def _decoder(model, tokenizer, text, text_pair, generate, max_length, neurons=False) -> AttentionView:
    enc = _device_batch(model, _encode(tokenizer, text, text_pair, max_length=max_length), max_length)
    ids = enc["input_ids"]
    prompt_len = ids.shape[1]
    if generate and not hasattr(model, "lm_head"):
        raise ValueError("attention(generate=N) needs a model with a language-modelling head (AutoModelForCausalLM)")
    eos = getattr(model.config, "eos_token_id", None)
    eos = set(eos if isinstance(eos, (list, tuple)) else [eos]) if eos is not None else set()
    for _ in range(generate):  # greedy, without a cache: readable, and views are small
        nxt = _greedy_next(model(input_ids=ids).logits)
        ids = torch.cat([ids, nxt], dim=1)
        if int(nxt) in eos:
            break
    out, calls = _call(model, neurons, input_ids=ids)
    return AttentionView(tokens={"target": _tokens(tokenizer, ids[0])}, attentions={"decoder": _stack(out.attentions)},
                         model_type=model.config.model_type, name=_name(model),
                         prompt_length=prompt_len if generate else None,
                         neurons={"decoder": _neurons(calls)} if calls else {})


def _seq2seq(model, tokenizer, text, text_pair, target, generate, max_length, neurons=False) -> AttentionView:
    enc = _device_batch(model, _encode(tokenizer, text, text_pair, max_length=max_length), max_length)
    src, mask = enc["input_ids"], enc.get("attention_mask")
    if target is not None:
        labels = _device_batch(model, _encode(tokenizer, target, target=True), None)["input_ids"]
        dec = _teacher_forced_inputs(model, labels)
    else:  # greedy target
        if not hasattr(model, "lm_head"):
            raise ValueError("attention() of a seq2seq model without a head needs target=...")
        dec = torch.tensor([[_decoder_start(model)]], device=src.device)
        eos = model.config.eos_token_id
        for _ in range(max(generate, 1) if generate else 20):
            nxt = _greedy_next(model(input_ids=src, attention_mask=mask, decoder_input_ids=dec).logits)
            dec = torch.cat([dec, nxt], dim=1)
            if int(nxt) == eos:
                break
    out, calls = _call(model, neurons, input_ids=src, attention_mask=mask, decoder_input_ids=dec)
    atts = {"encoder": _stack(out.encoder_attentions), "decoder": _stack(out.decoder_attentions),
            "cross": _stack(out.cross_attentions)}
    qk = {}
    if calls:  # in call order: the encoder's layers, then per decoder layer self- and cross-attention
        n = len(out.encoder_attentions)
        qk = {"encoder": _neurons(calls[:n]), "decoder": _neurons(calls[n::2]), "cross": _neurons(calls[n + 1::2])}
    return AttentionView(tokens={"source": _tokens(tokenizer, src[0]), "target": _tokens(tokenizer, dec[0])},
                         attentions=atts, model_type=model.config.model_type, name=_name(model), neurons=qk)
