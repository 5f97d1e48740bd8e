"""Fill-mask: the most likely tokens for each mask token in a text."""

from __future__ import annotations

import logging

import torch

from peluk.errors import PipelineError
from peluk.pipelines.base import Pipeline

logger = logging.getLogger("peluk")


class FillMaskPipeline(Pipeline):
    """``pipe("Saya pergi ke [MASK].")`` → the ``top_k`` best fillers as
    ``{"score", "token", "token_str", "sequence"}`` dicts; a text with several masks gets one
    list per mask. ``targets=[...]`` limits the candidates to those words.
    """

    defaults = {"top_k": 5, "targets": None}

    def __init__(self, model, tokenizer, batch_size=None, **kwargs):
        super().__init__(model, tokenizer, batch_size=batch_size or 8, **kwargs)  # (B, T, V) logits are large
        if tokenizer.mask_token_id is None:
            raise PipelineError("fill-mask: the tokenizer defines no mask token")

    def __call__(self, inputs, batch_size=None, **params):
        result = super().__call__(inputs, batch_size, **params)
        return result[0] if isinstance(inputs, list) and len(inputs) == 1 else result

    def preprocess(self, text, **params):
        if not isinstance(text, str):
            raise PipelineError(f"fill-mask: inputs are strings, got {type(text).__name__}")
        enc = self.model_inputs(self.encode(text))
        if self.tokenizer.mask_token_id not in enc["input_ids"]:
            raise PipelineError(f"fill-mask: no mask token ({self.tokenizer.mask_token}) in the input {text[:80]!r}")
        return [enc], None

    def forward(self, batch, **params):
        logits = self.model(**batch).logits  # (B, T, V)
        is_mask = batch["input_ids"] == self.tokenizer.mask_token_id
        M = int(is_mask.sum(dim=1).max())
        # positions of each row's masks first (stable sort keeps their order), then cut to M
        positions = torch.argsort((~is_mask).int(), dim=1, stable=True)[:, :M]  # (B, M)
        return {"mask_logits": logits.gather(1, positions[..., None].expand(-1, -1, logits.shape[-1])),
                "input_ids": batch["input_ids"]}

    per_token = ("input_ids",)

    def postprocess(self, context, outputs, top_k=5, targets=None):
        ids = outputs[0]["input_ids"]
        where = (ids == self.tokenizer.mask_token_id).nonzero().squeeze(-1)
        probs = outputs[0]["mask_logits"][: len(where)].float().softmax(dim=-1)  # (masks, V)
        target_ids = self._target_ids(targets) if targets is not None else None
        if target_ids is not None:
            probs = probs[:, target_ids]
            top_k = min(top_k, len(target_ids))
        values, predictions = probs.topk(top_k)
        single = len(where) == 1
        rows = []
        for i, (vals, preds) in enumerate(zip(values.tolist(), predictions.tolist())):
            row = []
            for v, p in zip(vals, preds):
                token = target_ids[p] if target_ids is not None else p
                filled = ids.clone()
                filled[where[i]] = token
                filled = filled[filled != self.tokenizer.pad_token_id]
                row.append({"score": v, "token": token, "token_str": self.tokenizer.decode([token]),
                            "sequence": self.tokenizer.decode(filled.tolist(), skip_special_tokens=single)})
            rows.append(row)
        return rows[0] if single else rows

    def _target_ids(self, targets) -> list[int]:
        vocab = self.tokenizer.get_vocab()
        ids = []
        for target in [targets] if isinstance(targets, str) else targets:
            if target in vocab:
                ids.append(vocab[target])
                continue
            pieces = self.tokenizer(target, add_special_tokens=False)["input_ids"]
            if not pieces:
                logger.warning("fill-mask: target %r is not in the vocabulary and was ignored", target)
                continue
            logger.warning("fill-mask: target %r is not in the vocabulary; using %r", target,
                           self.tokenizer.convert_ids_to_tokens(pieces[0]))
            ids.append(pieces[0])
        if not ids:
            raise PipelineError("fill-mask: none of the targets could be used")
        return list(dict.fromkeys(ids))
