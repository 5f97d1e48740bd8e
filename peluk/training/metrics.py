"""Metrics for ``compute_metrics``: accuracy, macro precision/recall/F1, entity-level F1 (seqeval's).

Small numpy functions, so training needs neither scikit-learn nor ``evaluate``.

>>> classification_metrics(EvalPrediction(np.array([[0.1, 0.9], [0.8, 0.2]]), np.array([1, 1])))  # doctest: +SKIP
{'accuracy': 0.5, 'f1_macro': 0.333..., ...}
"""

from __future__ import annotations

import numpy as np


def accuracy(predictions, labels) -> float:
    predictions, labels = np.asarray(predictions), np.asarray(labels)
    return float((predictions == labels).mean()) if labels.size else 0.0


def precision_recall_f1(predictions, labels, num_classes: int | None = None) -> dict[str, float]:
    """Macro-averaged precision, recall and F1 over the classes present in labels or predictions."""
    predictions, labels = np.asarray(predictions), np.asarray(labels)
    classes = range(num_classes) if num_classes else np.union1d(predictions, labels)
    p, r, f = [], [], []
    for c in classes:
        tp = float(((predictions == c) & (labels == c)).sum())
        fp = float(((predictions == c) & (labels != c)).sum())
        fn = float(((predictions != c) & (labels == c)).sum())
        precision = tp / (tp + fp) if tp + fp else 0.0
        recall = tp / (tp + fn) if tp + fn else 0.0
        p.append(precision)
        r.append(recall)
        f.append(2 * precision * recall / (precision + recall) if precision + recall else 0.0)
    return {"precision_macro": float(np.mean(p)), "recall_macro": float(np.mean(r)), "f1_macro": float(np.mean(f))}


def classification_metrics(pred) -> dict[str, float]:
    """``compute_metrics`` for sequence classification: accuracy and macro P/R/F1."""
    predicted = np.asarray(pred.predictions).argmax(-1)
    num_classes = np.asarray(pred.predictions).shape[-1]
    return {"accuracy": accuracy(predicted, pred.label_ids),
            **precision_recall_f1(predicted, pred.label_ids, num_classes)}


def entities(tags: list[str]) -> set[tuple[str, int, int]]:
    """(type, start, end) spans of IOB1/IOB2 tags, as seqeval's default (lenient) mode reads them."""
    spans, start, kind = set(), None, None
    for i, tag in enumerate(list(tags) + ["O"]):
        prefix, _, label = tag.partition("-") if tag != "O" else ("O", "", "")
        begins = prefix == "B" or (prefix == "I" and label != kind)
        if kind is not None and (prefix == "O" or begins):
            spans.add((kind, start, i))
            kind = None
        if prefix in ("B", "I") and (begins or kind is None):
            start, kind = i, label
    return spans


def entity_f1(predicted: list[list[str]], gold: list[list[str]]) -> dict[str, float]:
    """Micro precision/recall/F1 over entity spans (the CoNLL score)."""
    tp = n_pred = n_gold = 0
    for p, g in zip(predicted, gold):
        ps, gs = entities(p), entities(g)
        tp += len(ps & gs)
        n_pred += len(ps)
        n_gold += len(gs)
    precision = tp / n_pred if n_pred else 0.0
    recall = tp / n_gold if n_gold else 0.0
    f1 = 2 * precision * recall / (precision + recall) if precision + recall else 0.0
    return {"precision": precision, "recall": recall, "f1": f1}


def token_classification_metrics(id2label: dict[int, str]):
    """``compute_metrics`` for token classification: entity F1 and token accuracy (ignoring -100)."""
    def compute(pred) -> dict[str, float]:
        predicted = np.asarray(pred.predictions).argmax(-1)
        labels = np.asarray(pred.label_ids)
        gold_tags, pred_tags, correct, total = [], [], 0, 0
        for p_row, l_row in zip(predicted, labels):
            keep = l_row != -100
            gold_tags.append([id2label[int(x)] for x in l_row[keep]])
            pred_tags.append([id2label[int(x)] for x in p_row[keep]])
            correct += int((p_row[keep] == l_row[keep]).sum())
            total += int(keep.sum())
        return {**entity_f1(pred_tags, gold_tags), "accuracy": correct / total if total else 0.0}
    return compute
