"""Embeddings: token features, sentence embeddings (sentence-transformers style), similarity."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import torch

from peluk.errors import PipelineError
from peluk.pipelines.base import Pipeline


class FeatureExtractionPipeline(Pipeline):
    """Token features of the last layer, shaped as transformers returns them: [1][T][C] per input
    (nested lists, or a (1, T, C) tensor with ``return_tensors=True``)."""

    per_token = ("last_hidden_state",)
    defaults = {"return_tensors": False}

    def preprocess(self, text, **params):
        return [self.model_inputs(self.encode(text))], None

    def forward(self, batch, **params):
        return {"last_hidden_state": self.model(**batch).last_hidden_state}

    def postprocess(self, context, outputs, return_tensors=False):
        features = outputs[0]["last_hidden_state"].float()[None]  # (1, T, C)
        return features.clone() if return_tensors else features.tolist()


@dataclass
class Pooling:
    """How sentence-transformers turns token features into one vector (1_Pooling/config.json)."""

    mode: str = "mean"  # cls | mean | max | mean_sqrt_len
    normalize: bool = False
    max_seq_length: int | None = None

    @classmethod
    def read(cls, directory: str | None) -> "Pooling":
        """Read modules.json and its Pooling/Normalize modules; plain models get mean pooling,
        as sentence-transformers gives them."""
        if directory is None or not (Path(directory) / "modules.json").exists():
            return cls()
        root = Path(directory)
        modules = json.loads((root / "modules.json").read_text())
        pooling = cls(normalize=any(m.get("type", "").endswith(".Normalize") for m in modules))
        for m in modules:
            if m.get("type", "").endswith(".Pooling"):
                config = json.loads((root / m.get("path", "") / "config.json").read_text())
                modes = [k.removeprefix("pooling_mode_").removesuffix("_tokens").removesuffix("_token")
                         for k, v in config.items() if k.startswith("pooling_mode_") and v]
                if len(modes) != 1:
                    raise PipelineError(f"{root / m.get('path', '')}/config.json: peluk supports exactly one "
                                        f"pooling mode (cls, mean, max, mean_sqrt_len); found {modes}")
                pooling.mode = modes[0]
        st_config = root / "sentence_bert_config.json"
        if st_config.exists():
            pooling.max_seq_length = json.loads(st_config.read_text()).get("max_seq_length")
        return pooling

    def __call__(self, hidden: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        """(B, T, C) features and a (B, T) mask → (B, C) sentence vectors."""
        m = mask[..., None].to(hidden.dtype)
        if self.mode == "cls":
            out = hidden[:, 0]
        elif self.mode == "max":
            out = hidden.masked_fill(m == 0, torch.finfo(hidden.dtype).min).amax(dim=1)
        else:
            total, count = (hidden * m).sum(dim=1), m.sum(dim=1).clamp(min=1e-9)
            out = total / (count.sqrt() if self.mode == "mean_sqrt_len" else count)
        return torch.nn.functional.normalize(out, dim=-1) if self.normalize else out


class SentenceEmbeddingsPipeline(Pipeline):
    """One vector per text, as sentence-transformers' ``encode`` computes it.

    ``pipe(text)`` → 1-D array; ``pipe(texts)`` → 2-D (N, C) float32 array
    (torch tensors with ``return_tensors=True``).
    """

    defaults = {"return_tensors": False}

    def __init__(self, model, tokenizer, **kwargs):
        super().__init__(model, tokenizer, **kwargs)
        self.pooling = Pooling.read(getattr(model, "name_or_path", None))
        if self.pooling.max_seq_length:
            self.max_length = min(self.max_length or self.pooling.max_seq_length, self.pooling.max_seq_length)

    def preprocess(self, text, **params):
        if not isinstance(text, str):
            raise PipelineError(f"{self.task}: inputs must be strings, got {type(text).__name__}")
        return [self.model_inputs(self.encode(text))], None

    def forward(self, batch, **params):
        hidden = self.model(**batch).last_hidden_state
        return {"embedding": self.pooling(hidden, batch["attention_mask"]).float()}

    def postprocess(self, context, outputs, return_tensors=False):
        return outputs[0]["embedding"]

    def __call__(self, inputs, batch_size=None, **params):
        result = super().__call__(inputs, batch_size, **params)
        tensors = {**self.params, **params}.get("return_tensors")
        if self.is_single(inputs):
            return result.clone() if tensors else result.numpy().copy()
        if isinstance(inputs, (list, tuple)):
            width = self.model.config.hidden_size if hasattr(self.model.config, "hidden_size") else self.model.config.dim
            stacked = torch.stack(result) if result else torch.empty(0, width)
            return stacked if tensors else stacked.numpy()
        return (r if tensors else r.numpy() for r in result)


class SentenceSimilarityPipeline(SentenceEmbeddingsPipeline):
    """The HF Inference API's sentence-similarity: ``{"source_sentence": s, "sentences": [...]}``
    → cosine similarity of each sentence to the source (a list of floats)."""

    defaults = {}

    def is_single(self, inputs) -> bool:
        return isinstance(inputs, dict)

    def __call__(self, inputs, batch_size=None, **params):
        if self.is_single(inputs):
            return self._similarity(inputs, batch_size)
        if isinstance(inputs, (list, tuple)):
            return [self._similarity(x, batch_size) for x in inputs]
        raise PipelineError('sentence-similarity takes {"source_sentence": str, "sentences": [str, ...]}')

    def _similarity(self, inputs: dict, batch_size) -> list[float]:
        source, sentences = inputs.get("source_sentence"), inputs.get("sentences")
        if not isinstance(source, str) or not isinstance(sentences, list) or not all(isinstance(s, str) for s in sentences):
            raise PipelineError('sentence-similarity takes {"source_sentence": str, "sentences": [str, ...]}')
        if not sentences:
            return []
        vectors = torch.stack(Pipeline.__call__(self, [source, *sentences], batch_size))
        vectors = torch.nn.functional.normalize(vectors, dim=-1)
        return (vectors[1:] @ vectors[0]).tolist()


__all__ = ["FeatureExtractionPipeline", "SentenceEmbeddingsPipeline", "SentenceSimilarityPipeline", "Pooling"]
