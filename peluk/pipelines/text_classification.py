"""Text classification (sentiment analysis, text pairs) and NLI-based zero-shot classification."""

from __future__ import annotations

import torch

from peluk.errors import PipelineError
from peluk.pipelines.base import Pipeline

_LEGACY = ""  # top_k not given: one best label per input, as transformers' default


def _scores(logits: torch.Tensor, function: str | None, config) -> torch.Tensor:
    if function is None:
        if config.problem_type == "regression":
            function = "none"
        elif config.problem_type == "multi_label_classification" or config.num_labels == 1:
            function = "sigmoid"
        else:
            function = "softmax"
    function = function.lower()
    logits = logits.float()
    if function == "softmax":
        return torch.softmax(logits, dim=-1)
    if function == "sigmoid":
        return torch.sigmoid(logits)
    if function == "none":
        return logits
    raise PipelineError(f"function_to_apply must be 'softmax', 'sigmoid' or 'none', not {function!r}")


class TextClassificationPipeline(Pipeline):
    """``pipe("text")`` → ``[{"label", "score"}]``; with ``top_k=k`` (None: all labels) each input
    gets a list of its k best labels. Text pairs: ``{"text": ..., "text_pair": ...}``."""

    defaults = {"top_k": _LEGACY, "function_to_apply": None}

    def is_single(self, inputs) -> bool:
        return isinstance(inputs, (str, dict))

    def __call__(self, inputs, batch_size=None, **params):
        result = super().__call__(inputs, batch_size, **params)
        legacy = {**self.params, **params}["top_k"] == _LEGACY
        return [result] if isinstance(inputs, str) and legacy else result

    def preprocess(self, item, **params):
        if isinstance(item, dict):
            if "text" not in item:
                raise PipelineError('a text pair is {"text": ..., "text_pair": ...}')
            enc = self.encode(item["text"], item.get("text_pair"))
        elif isinstance(item, str):
            enc = self.encode(item)
        else:
            raise PipelineError(f"{self.task}: inputs are strings or {{'text', 'text_pair'}} dicts, "
                                f"got {type(item).__name__}")
        return [self.model_inputs(enc)], None

    def forward(self, batch, **params):
        return {"logits": self.model(**batch).logits}

    def postprocess(self, context, outputs, top_k=_LEGACY, function_to_apply=None):
        scores = _scores(outputs[0]["logits"], function_to_apply, self.model.config)
        id2label = self.model.config.id2label
        if top_k == _LEGACY:
            best = int(scores.argmax())
            return {"label": id2label[best], "score": scores[best].item()}
        ranked = sorted(({"label": id2label[i], "score": s} for i, s in enumerate(scores.tolist())),
                        key=lambda d: d["score"], reverse=True)
        return ranked if top_k is None else ranked[:top_k]


class ZeroShotClassificationPipeline(Pipeline):
    """Classify text into labels chosen at call time with an NLI model: each label becomes the
    hypothesis ``hypothesis_template.format(label)`` and is scored by its entailment logit.

    ``pipe(text, candidate_labels=[...])`` → ``{"sequence", "labels", "scores"}`` (best first).
    """

    defaults = {"candidate_labels": None, "hypothesis_template": "This example is {}.", "multi_label": False}

    def __call__(self, inputs, *args, batch_size=None, **params):
        if args:
            if len(args) > 1 or "candidate_labels" in params:
                raise PipelineError(f"zero-shot-classification: unexpected arguments {args}")
            params["candidate_labels"] = args[0]
        return super().__call__(inputs, batch_size, **params)

    @property
    def entailment_id(self) -> int:
        for label, i in (self.model.config.label2id or {}).items():
            if label.lower().startswith("entail"):
                return i
        return -1

    def preprocess(self, text, candidate_labels=None, hypothesis_template="This example is {}.", multi_label=False):
        if isinstance(candidate_labels, str):
            candidate_labels = [x.strip() for x in candidate_labels.split(",") if x.strip()]
        if not candidate_labels or not isinstance(text, str) or not text:
            raise PipelineError("zero-shot-classification needs a non-empty text and at least one candidate label")
        if hypothesis_template.format(candidate_labels[0]) == hypothesis_template:
            raise PipelineError(f"hypothesis_template {hypothesis_template!r} has no {{}} where the label goes")
        # only the text is truncated, never the hypothesis
        features = [self.model_inputs(self.tokenizer(text, hypothesis_template.format(label), truncation="only_first",
                                                     max_length=self.max_length))
                    for label in candidate_labels]
        return features, (text, list(candidate_labels))

    def forward(self, batch, **params):
        return {"logits": self.model(**batch).logits}

    def postprocess(self, context, outputs, candidate_labels=None, hypothesis_template=None, multi_label=False):
        text, labels = context
        logits = torch.stack([o["logits"] for o in outputs]).float()  # (labels, classes)
        entail = self.entailment_id
        if multi_label or len(labels) == 1:  # each label alone: entailment vs contradiction
            contradiction = -1 if entail == 0 else 0
            scores = torch.softmax(logits[:, [contradiction, entail]], dim=-1)[:, 1]
        else:
            scores = torch.softmax(logits[:, entail], dim=0)
        order = scores.argsort(descending=True).tolist()
        return {"sequence": text, "labels": [labels[i] for i in order], "scores": [scores[i].item() for i in order]}
