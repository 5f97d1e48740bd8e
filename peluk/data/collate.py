"""Collators: turn a list of dataset rows into one padded batch of tensors.

Padding happens here, per batch ("dynamic padding"), so a batch is only as long as its
longest row; with length-grouped sampling (the Trainer's default) little is wasted.
Label padding uses -100, the index the models' losses ignore.

>>> collate = DataCollatorWithPadding(tokenizer)                       # doctest: +SKIP
>>> collate([{"input_ids": [101, 102], "label": 0}, {"input_ids": [101, 7, 102], "label": 1}])["labels"]  # doctest: +SKIP
tensor([0, 1])
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch

IGNORE_INDEX = -100


def _plain(value: Any) -> Any:
    return value.tolist() if hasattr(value, "tolist") else value


def _rename_label(rows: list[dict]) -> list[dict]:
    # Datasets call the column "label" or "label_ids"; models take "labels" (as transformers' collators do).
    out = []
    for row in rows:
        row = dict(row)
        for name in ("label", "label_ids"):
            if name in row:
                row["labels"] = row.pop(name)
        out.append(row)
    return out


def default_data_collator(rows: list[dict]) -> dict[str, torch.Tensor]:
    """Stack rows whose values already have equal shapes; ``label``/``label_ids`` become ``labels``."""
    rows = _rename_label(rows)
    batch = {}
    for key in rows[0]:
        values = [row[key] for row in rows]
        if isinstance(values[0], str) or values[0] is None:
            continue  # text columns are not model inputs
        if isinstance(values[0], torch.Tensor):
            batch[key] = torch.stack(values)
        else:
            batch[key] = torch.tensor([_plain(v) for v in values])
    if "labels" in batch and batch["labels"].is_floating_point() is False and batch["labels"].dtype != torch.long:
        batch["labels"] = batch["labels"].long()
    return batch


def _pad_rows(rows: list[list], value, length: int, left: bool) -> list[list]:
    return [([value] * (length - len(r)) + r) if left else (r + [value] * (length - len(r))) for r in rows]


def _target_length(lengths: list[int], max_length: int | None, padding, multiple: int | None) -> int:
    length = max_length if padding == "max_length" and max_length else max(lengths)
    if multiple:
        length = -(-length // multiple) * multiple
    return length


def _pad_inputs(collator, rows: list[dict]) -> tuple[dict, list[list] | None]:
    """Pad the model inputs of ``rows`` with the collator's tokenizer; return them and the unpadded labels."""
    rows = [{k: _plain(v) for k, v in row.items() if not isinstance(v, str)} for row in _rename_label(rows)]
    labels = [list(row.pop("labels")) for row in rows] if "labels" in rows[0] else None
    batch = dict(collator.tokenizer.pad(rows, padding=collator.padding, max_length=collator.max_length,
                                        pad_to_multiple_of=collator.pad_to_multiple_of, return_tensors="pt"))
    return batch, labels


@dataclass
class DataCollatorWithPadding:
    """Pad ``input_ids``/``attention_mask``/``token_type_ids`` to the longest row of the batch.

    Args:
        tokenizer: supplies the pad token and padding side.
        padding: ``True``/``"longest"`` or ``"max_length"`` (with ``max_length``).
        pad_to_multiple_of: round the length up (tensor-core friendly shapes on GPUs).
    """

    tokenizer: Any
    padding: bool | str = True
    max_length: int | None = None
    pad_to_multiple_of: int | None = None
    return_tensors: str = "pt"

    def __call__(self, rows: list[dict]) -> dict[str, torch.Tensor]:
        rows = [{k: _plain(v) for k, v in row.items() if not isinstance(v, str)} for row in _rename_label(rows)]
        batch = self.tokenizer.pad(rows, padding=self.padding, max_length=self.max_length,
                                   pad_to_multiple_of=self.pad_to_multiple_of, return_tensors=self.return_tensors)
        batch = dict(batch)
        if "labels" in batch and isinstance(batch["labels"], torch.Tensor) and not batch["labels"].is_floating_point():
            batch["labels"] = batch["labels"].long()
        return batch


@dataclass
class DataCollatorForTokenClassification:
    """Pad inputs as :class:`DataCollatorWithPadding` and per-token ``labels`` with -100."""

    tokenizer: Any
    padding: bool | str = True
    max_length: int | None = None
    pad_to_multiple_of: int | None = None
    label_pad_token_id: int = IGNORE_INDEX
    return_tensors: str = "pt"

    def __call__(self, rows: list[dict]) -> dict[str, torch.Tensor]:
        batch, labels = _pad_inputs(self, rows)
        if labels is not None:
            length = batch["input_ids"].shape[1]
            left = self.tokenizer.padding_side == "left"
            batch["labels"] = torch.tensor(_pad_rows(labels, self.label_pad_token_id, length, left))
        return batch


@dataclass
class DataCollatorForSeq2Seq:
    """Pad encoder inputs, pad ``labels`` with -100, and build ``decoder_input_ids`` when the
    model can (``model.prepare_decoder_input_ids_from_labels``), as transformers does."""

    tokenizer: Any
    model: Any = None
    padding: bool | str = True
    max_length: int | None = None
    pad_to_multiple_of: int | None = None
    label_pad_token_id: int = IGNORE_INDEX
    return_tensors: str = "pt"

    def __call__(self, rows: list[dict]) -> dict[str, torch.Tensor]:
        batch, labels = _pad_inputs(self, rows)
        if labels is not None:
            length = _target_length([len(r) for r in labels], None, True, self.pad_to_multiple_of)
            left = self.tokenizer.padding_side == "left"
            batch["labels"] = torch.tensor(_pad_rows(labels, self.label_pad_token_id, length, left))
            prepare = getattr(self.model, "prepare_decoder_input_ids_from_labels", None)
            if prepare is not None:
                batch["decoder_input_ids"] = prepare(labels=batch["labels"])
        return batch
