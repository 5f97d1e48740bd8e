"""Wire shapes of the inference API: what the real clients send and parse
(../shared/specs/inference-protocol.md).

Request bodies are pydantic models (they validate, and they are the OpenAPI document);
responses are built by the small functions below, so every route family answers in its own
dialect: the HF Inference API and TGI/TEI (``{"error": str, "error_type": str}``), OpenAI
(``{"error": {"message", "type", "code", "param"}}``). Strings are JSON-encoded with
``ensure_ascii`` so that no input (lone surrogates included) can break an answer.
"""

from __future__ import annotations

import base64
import json
import struct
import time
import uuid
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

FINGERPRINT = "peluk-0.1"
OPENAI_FINISH = {"eos": "stop", "stop": "stop", "length": "length"}
TGI_FINISH = {"eos": "eos_token", "stop": "stop_sequence", "length": "length"}


class ApiError(Exception):
    """An answer other than 200: status, message, and the error type the clients map to exceptions.

    ``error_type``: TGI's (``validation``, ``overloaded``, ``generation``, ...); the OpenAI shape
    gets ``openai_type``. ``headers`` go out too (``Retry-After``, ``X-Error-Code``).
    """

    OPENAI_TYPES = {400: "invalid_request_error", 401: "authentication_error", 403: "permission_error",
                    404: "not_found_error", 413: "invalid_request_error", 422: "invalid_request_error",
                    429: "rate_limit_error", 503: "server_error", 504: "timeout_error"}

    def __init__(self, status: int, message: str, error_type: str = "validation", *, code: str | None = None,
                 param: str | None = None, headers: dict[str, str] | None = None):
        super().__init__(message)
        self.status, self.message, self.error_type = status, message, error_type
        self.code, self.param, self.headers = code, param, dict(headers or {})

    @property
    def openai_type(self) -> str:
        return self.OPENAI_TYPES.get(self.status, "server_error" if self.status >= 500 else "invalid_request_error")


def overloaded(message: str, retry_after: float = 1.0, status: int = 429) -> ApiError:
    return ApiError(status, message, "overloaded", code="overloaded",
                    headers={"Retry-After": str(max(1, int(retry_after + 0.999)))})


def dumps(obj: Any) -> str:
    """Compact JSON on one line (one SSE event per line), ASCII only."""
    return json.dumps(obj, separators=(",", ":"), allow_nan=False)


def error_body(e: ApiError, openai: bool) -> dict:
    if openai:
        return {"error": {"message": e.message, "type": e.openai_type, "code": e.code or e.error_type,
                          "param": e.param}}
    return {"error": e.message, "error_type": e.error_type}


def sse(obj: Any) -> str:
    return f"data: {obj if isinstance(obj, str) else dumps(obj)}\n\n"


# --- request bodies ---------------------------------------------------------------------------
class Body(BaseModel):
    # unknown keys are accepted (clients add their own), NaN and infinities are not
    model_config = ConfigDict(extra="allow", allow_inf_nan=False)


class InferenceOptions(Body):
    use_cache: bool = Field(True, description="False: always compute (skip the result cache)")
    wait_for_model: bool = Field(True, description="False: answer 503 while the model is still loading")


class InferenceRequest(Body):
    """The HF Inference API body: ``inputs`` (a string, list, or the task's dict), ``parameters``
    (the task's options), ``options``. Feature extraction takes its options at the root too."""

    inputs: Any = Field(..., description="the task's input: text, list of texts, {question, context}, ...")
    parameters: dict[str, Any] | None = None
    options: InferenceOptions | None = None
    stream: bool = Field(False, description="text-generation: answer as server-sent events (TGI's format)")


class GenerateParameters(Body):
    """TGI's GenerateParameters."""

    best_of: int | None = Field(None, ge=1)
    decoder_input_details: bool = False
    details: bool = False
    do_sample: bool = False
    frequency_penalty: float | None = Field(None, ge=-2, le=2)
    grammar: Any = None
    max_new_tokens: int | None = Field(None, ge=1)
    repetition_penalty: float | None = Field(None, gt=0)
    return_full_text: bool | None = None
    seed: int | None = Field(None, ge=0)
    stop: list[str] | None = None
    temperature: float | None = Field(None, ge=0)
    top_k: int | None = Field(None, ge=0)
    top_n_tokens: int | None = Field(None, ge=0, le=20)
    top_p: float | None = Field(None, gt=0, le=1)
    truncate: int | None = Field(None, ge=1)
    typical_p: float | None = Field(None, gt=0, le=1)
    watermark: bool = False
    adapter_id: str | None = None


class GenerateRequest(Body):
    inputs: str = Field(..., description="the prompt")
    parameters: GenerateParameters | None = None
    stream: bool = False


class ContentPart(Body):
    type: str
    text: str | None = None


class ChatMessage(Body):
    role: Literal["system", "developer", "user", "assistant", "tool"]
    content: str | list[ContentPart] | None = None


class StreamOptions(Body):
    include_usage: bool = False


class SamplingFields(Body):
    model: str | None = Field(None, description='a served model id; "dummy" or none: the default model')
    temperature: float | None = Field(None, ge=0, le=2)
    top_p: float | None = Field(None, gt=0, le=1)
    n: int | None = Field(None, ge=1, le=8)
    stop: str | list[str] | None = None
    seed: int | None = None
    stream: bool | None = False
    stream_options: StreamOptions | None = None
    frequency_penalty: float | None = Field(None, ge=-2, le=2)
    presence_penalty: float | None = Field(None, ge=-2, le=2)
    logit_bias: dict[str, float] | None = None
    user: str | None = None


class ChatCompletionRequest(SamplingFields):
    messages: list[ChatMessage] = Field(..., min_length=1)
    max_tokens: int | None = Field(None, ge=1)
    max_completion_tokens: int | None = Field(None, ge=1)
    logprobs: bool | None = False
    top_logprobs: int | None = Field(None, ge=0, le=20)
    response_format: dict[str, Any] | None = None
    tools: list[Any] | None = None
    tool_choice: Any = None


class CompletionRequest(SamplingFields):
    prompt: str | list[str] | list[int] | list[list[int]] = Field(..., description="text, texts, or token ids")
    max_tokens: int | None = Field(16, ge=1)
    logprobs: int | None = Field(None, ge=0, le=20)
    echo: bool | None = False
    suffix: str | None = None
    best_of: int | None = Field(None, ge=1)


class EmbeddingRequest(Body):
    model: str | None = None
    input: str | list[str] | list[int] | list[list[int]]
    encoding_format: Literal["float", "base64"] = "float"
    dimensions: int | None = Field(None, ge=1)
    user: str | None = None


class EmbedRequest(Body):
    """TEI's /embed."""

    inputs: str | list[str]
    normalize: bool = True
    truncate: bool | None = Field(None, description="None or True: cut long inputs; False: refuse them")
    truncation_direction: Literal["Left", "Right", "left", "right"] = "Right"
    prompt_name: str | None = None
    dimensions: int | None = Field(None, ge=1)


class RerankRequest(Body):
    query: str
    texts: list[str] = Field(..., min_length=1)
    raw_scores: bool = False
    return_text: bool = False
    truncate: bool | None = None
    truncation_direction: Literal["Left", "Right", "left", "right"] = "Right"


class PredictRequest(Body):
    inputs: str | list[str] | list[list[str]] = Field(..., description="a text, a [text, text_pair], or a batch")
    raw_scores: bool = False
    truncate: bool | None = None
    truncation_direction: Literal["Left", "Right", "left", "right"] = "Right"


class SimilarityInputs(Body):
    source_sentence: str
    sentences: list[str]


class SimilarityRequest(Body):
    inputs: SimilarityInputs
    parameters: dict[str, Any] | None = None


# --- responses --------------------------------------------------------------------------------
def new_id(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:24]}"


def usage(prompt: int, completion: int) -> dict:
    return {"prompt_tokens": prompt, "completion_tokens": completion, "total_tokens": prompt + completion}


def token_bytes(text: str) -> list[int]:
    return list(text.encode("utf-8", "replace"))


def chat_logprobs(steps: list) -> dict:
    """OpenAI chat ``logprobs``: one entry per generated token (``steps`` are engine Steps)."""
    return {"content": [{"token": s.piece, "logprob": s.logprob, "bytes": token_bytes(s.piece),
                         "top_logprobs": [{"token": t, "logprob": lp, "bytes": token_bytes(t)} for _, t, lp in s.top]}
                        for s in steps]}


def completion_logprobs(steps: list) -> dict:
    """Legacy completions ``logprobs``: parallel lists."""
    offsets, at = [], 0
    for s in steps:
        offsets.append(at)
        at += len(s.piece)
    return {"tokens": [s.piece for s in steps], "token_logprobs": [s.logprob for s in steps],
            "top_logprobs": [{t: lp for _, t, lp in s.top} for s in steps], "text_offset": offsets}


def chat_completion(cid: str, model: str, choices: list[dict], prompt_tokens: int, completion_tokens: int) -> dict:
    return {"id": cid, "object": "chat.completion", "created": int(time.time()), "model": model,
            "system_fingerprint": FINGERPRINT, "choices": choices, "usage": usage(prompt_tokens, completion_tokens)}


def chat_chunk(cid: str, model: str, created: int, choices: list[dict], usage_: dict | None = None) -> dict:
    chunk = {"id": cid, "object": "chat.completion.chunk", "created": created, "model": model,
             "system_fingerprint": FINGERPRINT, "choices": choices}
    if usage_ is not None:
        chunk["usage"] = usage_
    return chunk


def text_completion(cid: str, model: str, created: int, choices: list[dict], usage_: dict | None) -> dict:
    out = {"id": cid, "object": "text_completion", "created": created, "model": model,
           "system_fingerprint": FINGERPRINT, "choices": choices}
    if usage_ is not None:
        out["usage"] = usage_
    return out


def embeddings(model: str, vectors: list[list[float]], tokens: int, encoding: str) -> dict:
    def encode(v):
        return base64.b64encode(struct.pack(f"<{len(v)}f", *v)).decode() if encoding == "base64" else v
    return {"object": "list", "data": [{"object": "embedding", "index": i, "embedding": encode(v)}
                                       for i, v in enumerate(vectors)],
            "model": model, "usage": {"prompt_tokens": tokens, "total_tokens": tokens}}


def model_card(model_id: str, created: int = 0) -> dict:
    return {"id": model_id, "object": "model", "created": created, "owned_by": model_id.split("/")[0]
            if "/" in model_id else "peluk"}


def tgi_token(step) -> dict:
    token = {"id": step.token, "text": step.piece, "logprob": step.logprob, "special": step.special}
    return token


def tgi_details(result, seed: int | None, prefill: list[dict], steps: list | None, top: bool) -> dict:
    details = {"finish_reason": TGI_FINISH[result.finish], "generated_tokens": result.tokens, "seed": seed,
               "prefill": prefill}
    if steps is not None:
        details["tokens"] = [tgi_token(s) for s in steps]
        if top:
            details["top_tokens"] = [[{"id": i, "text": t, "logprob": lp, "special": False} for i, t, lp in s.top]
                                     for s in steps]
    return details


def tgi_stream_event(index: int, step, final_text: str | None, details: dict | None, top: bool) -> dict:
    event = {"index": index, "token": tgi_token(step), "generated_text": final_text, "details": details}
    if top:
        event["top_tokens"] = [{"id": i, "text": t, "logprob": lp, "special": False} for i, t, lp in step.top]
    return event


def tgi_info(model_id: str, sha: str | None, task: str | None, dtype: str, max_input: int, max_total: int,
             settings) -> dict:
    return {"model_id": model_id, "model_sha": sha, "model_pipeline_tag": task, "model_dtype": dtype,
            "model_device_type": "cpu", "max_concurrent_requests": settings.max_queue,
            "max_best_of": 1, "max_stop_sequences": settings.max_stop_sequences, "max_input_tokens": max_input,
            "max_total_tokens": max_total, "max_input_length": max_input, "validation_workers": 1,
            "max_client_batch_size": settings.max_inputs, "max_batch_size": settings.max_batch_size,
            "router": "peluk", "version": FINGERPRINT.removeprefix("peluk-")}
