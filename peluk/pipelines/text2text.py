"""Encoder-decoder generation pipelines: text2text-generation, summarization and translation,
shaped as transformers 4.x returns them (transformers 5 dropped these pipelines).

T5-style models get their task prefix from ``task_specific_params`` in config.json
("summarize: ", "translate English to German: "). Multilingual models: mBART-style tokenizers
take ``src_lang`` and the target language code is forced as the first generated token;
Marian-style multilingual models get ``>>tgt<<`` put in front of the source text.
"""

from __future__ import annotations

from peluk.errors import PipelineError
from peluk.pipelines.base import Pipeline

OPTIONS = ("max_new_tokens", "max_length", "min_length", "min_new_tokens", "do_sample", "temperature", "top_k",
           "top_p", "repetition_penalty", "no_repeat_ngram_size", "num_beams", "length_penalty", "early_stopping",
           "num_return_sequences", "forced_bos_token_id")


class Text2TextGenerationPipeline(Pipeline):
    """``pipe("question: ... context: ...")`` → ``[{"generated_text": ...}]`` (a list of dicts for a list)."""

    key = "generated_text"
    task_params = "text2text-generation"
    defaults = {**{k: None for k in OPTIONS}, "seed": None, "src_lang": None, "tgt_lang": None}

    def __init__(self, model, tokenizer, batch_size=None, **kwargs):
        if not getattr(model, "is_encoder_decoder", False):
            raise PipelineError(f"{kwargs.get('task') or self.task_params} needs an encoder-decoder model "
                                f"(T5, BART, mBART, Marian); {type(model).__name__} is not one")
        super().__init__(model, tokenizer, batch_size=batch_size or 8, **kwargs)
        specific = (model.config.extra.get("task_specific_params") or {}).get(self.task_params) or {}
        self.prefix = specific.get("prefix") or model.config.extra.get("prefix") or ""

    def preprocess(self, text, src_lang=None, tgt_lang=None, **params):
        if not isinstance(text, str):
            raise PipelineError(f"{self.task}: inputs are strings, got {type(text).__name__}")
        if not text.strip():
            raise PipelineError(f"{self.task}: the input text is empty")
        self._languages(src_lang, tgt_lang)
        marian_code = f">>{tgt_lang}<<" if tgt_lang else None
        if marian_code and marian_code in self.tokenizer.get_vocab():  # multilingual Marian
            text = f"{marian_code} {text}"
        enc = self.encode(self.prefix + text)
        return [self.model_inputs(enc)], None

    def _languages(self, src_lang, tgt_lang) -> None:
        """mBART-style tokenizers: set the source language; check both codes exist."""
        for code in (src_lang, tgt_lang):
            if code and hasattr(self.tokenizer, "src_lang") and self.tokenizer.convert_tokens_to_ids(code) in (
                    None, self.tokenizer.unk_token_id):
                raise PipelineError(f"{self.task}: unknown language code {code!r} for this tokenizer")
        if src_lang and hasattr(self.tokenizer, "src_lang"):
            self.tokenizer.src_lang = src_lang

    def forward(self, batch, seed=None, src_lang=None, tgt_lang=None, min_length=None, max_length=None, **params):
        from peluk.generation import generate

        options = {k: v for k, v in params.items() if k in OPTIONS and v is not None}
        if max_length is not None:  # counts the decoder start token, as in transformers
            options.setdefault("max_new_tokens", max(max_length - 1, 0))
        if min_length is not None:
            options.setdefault("min_new_tokens", max(min_length - 1, 0))
        if tgt_lang and hasattr(self.tokenizer, "src_lang") and "forced_bos_token_id" not in options:
            options["forced_bos_token_id"] = self.tokenizer.convert_tokens_to_ids(tgt_lang)
        sequences = generate(self.model, batch["input_ids"], batch["attention_mask"], seed=seed, **options)
        B = batch["input_ids"].shape[0]
        return {"sequences": sequences.reshape(B, sequences.shape[0] // B, -1)}

    def postprocess(self, context, outputs, **params):
        return [{self.key: self.tokenizer.decode(row.tolist(), skip_special_tokens=True)}
                for row in outputs[0]["sequences"]]

    def __call__(self, inputs, batch_size=None, **params):
        result = super().__call__(inputs, batch_size, **params)
        if isinstance(inputs, (list, tuple)) and result and all(len(r) == 1 for r in result):
            return [r[0] for r in result]  # one dict per input, as transformers returns a list
        return result


class SummarizationPipeline(Text2TextGenerationPipeline):
    """``pipe(article, min_length=30, max_length=130)`` → ``[{"summary_text": ...}]``; long
    articles are truncated (with a warning) to what the encoder takes."""

    key = "summary_text"
    task_params = "summarization"


class TranslationPipeline(Text2TextGenerationPipeline):
    """``pipeline("translation_en_to_id", model=...)("Saya seorang siswa")`` → ``[{"translation_text": ...}]``."""

    key = "translation_text"
    task_params = "translation"

    def __init__(self, model, tokenizer, **kwargs):
        super().__init__(model, tokenizer, **kwargs)
        src, tgt = self.params.get("src_lang"), self.params.get("tgt_lang")
        specific = model.config.extra.get("task_specific_params") or {}
        if src and tgt and f"translation_{src}_to_{tgt}" in specific:
            self.prefix = specific[f"translation_{src}_to_{tgt}"].get("prefix", "")
