"""The pipeline base: preprocess → forward → postprocess, with batching owned here.

A task subclass writes three small methods:

* ``preprocess(item, **params) -> (features, context)``: tokenize one input into one or more
  *features* (dicts of token-id lists; question answering splits long contexts into several);
  ``context`` is whatever postprocess needs later.
* ``forward(batch, **params) -> dict of tensors``: defaults to calling the model.
* ``postprocess(context, outputs, **params)``: ``outputs`` is one dict per feature (each
  row cut out of its batch, token axes trimmed to the feature's own length).

The base sorts all features by length before batching so that padding stays small, runs
batches under ``torch.inference_mode``, and hands results back in input order. Inputs can be
one item, a list, or any iterable (processed in chunks, results yielded as they are ready).
"""

from __future__ import annotations

import itertools
import logging
from typing import Any, Iterable, Iterator

import torch

from peluk.errors import PipelineError

logger = logging.getLogger("peluk")


class Pipeline:
    task: str = ""
    # model output keys that have a token axis (dim 1): trimmed to each feature's length
    per_token: tuple[str, ...] = ()
    # call-time parameters and their defaults; anything else is an error naming the known ones
    defaults: dict[str, Any] = {}

    def __init__(self, model, tokenizer, device=None, batch_size: int | None = None, task: str | None = None, **params):
        self.model = model.eval()
        self.tokenizer = tokenizer
        if device is not None:
            self.model.to(device)
        self.device = self.model.device
        self.batch_size = batch_size or 32
        self.task = task or self.task
        self.params = self._check({**self.defaults, **params})
        lengths = [n for n in (getattr(tokenizer, "model_max_length", None), model.config.max_input_length) if n]
        self.max_length = min(lengths) if lengths else None
        self._warned_truncation = False

    # --- the three stages ----------------------------------------------------------------
    def preprocess(self, item, **params) -> tuple[list[dict[str, list[int]]], Any]:
        raise NotImplementedError

    def forward(self, batch: dict[str, torch.Tensor], **params) -> dict[str, torch.Tensor]:
        return dict(self.model(**batch))

    def postprocess(self, context, outputs: list[dict[str, torch.Tensor]], **params):
        raise NotImplementedError

    # --- driving them ----------------------------------------------------------------------
    def is_single(self, inputs) -> bool:
        """Whether ``inputs`` is one item (rather than a list or stream of items)."""
        return isinstance(inputs, str)

    def __call__(self, inputs, batch_size: int | None = None, **params):
        params = self._check({**self.params, **params})
        size = batch_size or self.batch_size
        if self.is_single(inputs):
            return self.run([inputs], size, params)[0]
        if isinstance(inputs, (list, tuple)):
            return self.run(list(inputs), size, params)
        if isinstance(inputs, Iterable):
            return self._stream(iter(inputs), size, params)
        raise PipelineError(f"{self.task}: cannot take input of type {type(inputs).__name__}")

    def _stream(self, items: Iterator, size: int, params: dict) -> Iterator:
        # chunks of several batches, so sorting by length still has something to sort
        while chunk := list(itertools.islice(items, size * 4)):
            yield from self.run(chunk, size, params)

    def run(self, items: list, batch_size: int, params: dict) -> list:
        if not items:
            return []
        prepared = [self.preprocess(item, **params) for item in items]
        flat = [(i, f) for i, (features, _) in enumerate(prepared) for f in features]
        outputs: list[dict | None] = [None] * len(flat)
        order = sorted(range(len(flat)), key=lambda j: len(flat[j][1]["input_ids"]))
        with torch.inference_mode():
            for start in range(0, len(order), batch_size):
                rows = order[start:start + batch_size]
                feats = [flat[j][1] for j in rows]
                result = self.forward(self.collate(feats), **params)
                for r, (j, f) in enumerate(zip(rows, feats)):
                    n = len(f["input_ids"])
                    outputs[j] = {k: (v[r, :n] if k in self.per_token else v[r]) for k, v in result.items()
                                  if isinstance(v, torch.Tensor)}
        per_item: list[list[dict]] = [[] for _ in items]
        for (i, _), out in zip(flat, outputs):
            per_item[i].append(out)
        return [self.postprocess(ctx, per_item[i], **params) for i, (_, ctx) in enumerate(prepared)]

    padding_side = "right"  # generation pipelines pad on the left

    def collate(self, features: list[dict[str, list[int]]]) -> dict[str, torch.Tensor]:
        """Pad a list of features into tensors on the model's device."""
        T = max(len(f["input_ids"]) for f in features)
        pad = self.tokenizer.pad_token_id if self.tokenizer.pad_token_id is not None else 0
        batch = {}
        for key in features[0]:
            fill = pad if key == "input_ids" else 0
            rows = [([fill] * (T - len(f[key])) + f[key]) if self.padding_side == "left" else
                    (f[key] + [fill] * (T - len(f[key]))) for f in features]
            batch[key] = torch.tensor(rows, device=self.device)
        return batch

    # --- helpers for subclasses ------------------------------------------------------------
    def encode(self, text, text_pair=None, **kwargs) -> dict[str, list]:
        """Tokenize one input, truncated to what the model can take (with a warning once)."""
        enc = self.tokenizer(text, text_pair, truncation=True, max_length=self.max_length, **kwargs)
        if not self._warned_truncation and self.max_length and self._was_truncated(text, text_pair, enc):
            self._warned_truncation = True
            logger.warning("%s: an input is longer than the model's %d tokens and was truncated",
                           self.task, self.max_length)
        return enc

    @staticmethod
    def _was_truncated(text, text_pair, enc) -> bool:
        # the Rust encoding keeps what truncation cut off, whether or not it was asked for
        return any(e.overflowing for e in getattr(enc, "encodings", None) or [])

    def model_inputs(self, enc) -> dict[str, list[int]]:
        """Keep the keys the model takes (input_ids, attention_mask, token_type_ids)."""
        return {k: list(enc[k]) for k in ("input_ids", "attention_mask", "token_type_ids") if k in enc}

    def _check(self, params: dict) -> dict:
        unknown = sorted(set(params) - set(self.defaults))
        if unknown:
            raise PipelineError(f"{self.task or type(self).__name__}: unknown parameter(s) {unknown}; "
                                f"this pipeline takes {sorted(self.defaults) or 'none'}")
        return params
