"""The inference API's settings (``peluk serve`` flags map onto these fields)."""

from __future__ import annotations

from dataclasses import dataclass, field

EMBEDDING = "sentence-transformers/all-MiniLM-L6-v2"
LLM = "HuggingFaceTB/SmolLM2-135M-Instruct-GGUF"
CLASSIFIER = "peluk/sentiment-en"
DEFAULT_MODELS = (EMBEDDING, LLM, "peluk/sentiment-en", "peluk/sentiment-id")
DEFAULT_ALIASES = ("dummy", "default", "peluk-default", "tgi", "tei", "")


@dataclass
class Settings:
    """Args:
        public: anonymous callers may use public models (otherwise every request needs a hub token).
        models: what to serve and preload: built-in names, repo ids of this hub, local paths
            (served as ``local/<folder name>``) or ``ID=PATH``; empty: the default models.
        preload: load ``models`` in the background at start-up.
        memory_budget_mb: loaded models' weights stay under this (least recently used evicted).
        quantize: model id → ``"int8"``, ``"int4"`` (weight-only, decoder LMs), ``"bf16"`` (weights
            in bfloat16) or ``"none"`` (float32; GGUF files dequantized). By default GGUF models stay
            quantized as stored (int4/int8: the fastest single stream on CPU); ``bf16`` scales better
            with many concurrent streams (the int4 CPU kernel's cost grows with the rows of a batch).
        batching, max_batch_size, max_wait_ms, max_batch_tokens: dynamic batching per model.
        max_rows: requests decoding together per LLM (continuous batching).
        max_queue: inputs (or generation requests) waiting per model before 429.
        max_concurrent: requests in flight over the whole API before 503.
        max_new_tokens: the most a request may ask for; default_max_new_tokens when it does not say.
        request_timeout_s: a request still unanswered after this gets 504 and its work is cancelled.
        rate_limit_per_minute, rate_limit_burst: per token (or client address); 0: no limit.
        max_request_bytes, max_inputs, max_input_chars: 413 above these.
        cache_entries: size of the result cache (0: off).
    """

    public: bool = False
    models: list[str] = field(default_factory=list)
    preload: bool = True
    memory_budget_mb: float = 4096
    quantize: dict[str, str] = field(default_factory=dict)
    batching: bool = True
    max_batch_size: int = 32
    max_wait_ms: float = 5.0
    max_batch_tokens: int = 16384
    max_rows: int = 16
    max_queue: int = 256
    max_concurrent: int = 1024
    max_new_tokens: int = 1024
    default_max_new_tokens: int = 100
    max_stop_sequences: int = 8
    request_timeout_s: float = 120.0
    rate_limit_per_minute: float = 0.0
    rate_limit_burst: int | None = None
    max_request_bytes: int = 2 * 1024 * 1024
    max_inputs: int = 128
    max_input_chars: int = 100_000
    cache_entries: int = 1024
