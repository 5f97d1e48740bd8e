"""The inference API as a Python object: every route's work, calling the library.

``Api`` holds the registry of models, the result cache, rate limits and metrics. Its methods
take validated request bodies (``protocol``) and a resolved model (``registry.Source``) and
return JSON-able answers or async iterators of server-sent events; ``app.py`` maps routes onto
them. Pipelines run behind each model's dynamic ``Batcher``; decoder LMs through its continuous
batching ``GenerationEngine``.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import math
import random
import time
from dataclasses import dataclass, field
from typing import Any, AsyncIterator

from peluk.serve.api import tasks
from peluk.serve.api.batcher import Batcher, QueueFull
from peluk.serve.api.engine import GenerationEngine, Request, Sampling
from peluk.serve.api.engine import QueueFull as EngineFull
from peluk.serve.api.limits import RateLimiter, ResultCache, TokenRate, standard_metrics
from peluk.serve.api.protocol import (OPENAI_FINISH, TGI_FINISH, ApiError, ChatCompletionRequest, CompletionRequest,
                                      GenerateParameters, chat_chunk, chat_completion, chat_logprobs,
                                      completion_logprobs, dumps, new_id, overloaded, sse, text_completion, tgi_details,
                                      tgi_stream_event, usage)
from peluk.serve.api.registry import Registry, Source
from peluk.serve.api.settings import DEFAULT_ALIASES, Settings

log = logging.getLogger("peluk.serve")


@dataclass
class Choice:
    text: str = ""
    finish: str | None = None
    tokens: int = 0
    steps: list = field(default_factory=list)


class Generation:
    """Requests to one engine (the ``n`` choices of a call) sharing one queue of (choice, Step)."""

    def __init__(self, engine: GenerationEngine, deadline: float, metrics=None):
        self.engine, self.deadline, self.metrics = engine, deadline, metrics
        self.queue: asyncio.Queue = asyncio.Queue()
        self.requests: list[Request] = []
        self.loop = asyncio.get_running_loop()

    def add(self, prompt: list[int], max_new: int, sampling: Sampling, stop: list[str], logprobs=False, top=0):
        index = len(self.requests)

        def emit(step, index=index):
            try:
                self.loop.call_soon_threadsafe(self.queue.put_nowait, (index, step))
            except RuntimeError:  # the event loop is closed: nobody listens any more
                pass
        request = Request(prompt, max_new, emit, sampling, stop, logprobs, top)
        try:
            self.engine.submit(request)
        except EngineFull as e:
            self.cancel()
            if self.metrics is not None:
                self.metrics.inc("peluk_rejected_total", reason="queue_full")
            raise overloaded(f"Model is overloaded: {e}") from None
        self.requests.append(request)

    async def events(self) -> AsyncIterator[tuple[int, Any]]:
        left = len(self.requests)
        while left:
            remaining = self.deadline - time.monotonic()
            try:
                index, step = await asyncio.wait_for(self.queue.get(), max(remaining, 0.001))
            except asyncio.TimeoutError:
                raise ApiError(504, "the request timed out (the server's request_timeout); ask for fewer "
                               "tokens or retry later", "timeout") from None
            if step.error:
                raise ApiError(503 if "shutting down" in step.error else 500, step.error, "generation")
            if step.finish:
                left -= 1
            yield index, step

    async def collect(self) -> list[Choice]:
        choices = [Choice() for _ in self.requests]
        async for i, step in self.events():
            c = choices[i]
            c.steps.append(step)
            c.tokens = step.tokens
            if step.finish:
                c.finish, c.text = step.finish, step.generated_text
        return choices

    def cancel(self) -> None:
        for r in self.requests:
            r.cancel()


class Api:
    def __init__(self, hub, settings: Settings | None = None):
        self.hub, self.settings = hub, settings or Settings()
        s = self.settings
        self.metrics = standard_metrics()
        self.cache = ResultCache(s.cache_entries)
        self.limiter = RateLimiter(s.rate_limit_per_minute, s.rate_limit_burst)
        self.registry = Registry(hub, s, self.metrics, self._workers)
        self.rates: dict[str, TokenRate] = {}
        self._users: dict[str, tuple[float, Any]] = {}
        self._sources: dict[tuple, tuple[float, Source]] = {}
        self.draining = False
        self.in_flight = 0
        m = self.metrics
        entries = lambda: list(self.registry.loaded.values())  # noqa: E731
        m.gauge_fn("peluk_queue_depth", lambda: {(("model", e.source.id),): float(
            (e.engine or e.batcher).queue_depth) for e in entries() if (e.engine or e.batcher)})
        m.gauge_fn("peluk_running_requests", lambda: {(("model", e.source.id),): float(e.engine.running)
                                                      for e in entries() if e.engine})
        m.gauge_fn("peluk_tokens_per_second", lambda: {(("model", k),): r.rate() for k, r in self.rates.items()})
        m.gauge_fn("peluk_in_flight_requests", lambda: {(): float(self.in_flight)})

    # --- workers of a newly loaded model ----------------------------------------------------------
    def _workers(self, entry) -> None:
        s, model_id = self.settings, entry.source.id
        if entry.source.kind == "causal":
            def on_step(rows, seconds):
                self.metrics.observe("peluk_decode_batch_size", rows, model=model_id)
            # a sliding attention window counts cache columns, which only equal positions for one row
            entry.engine = GenerationEngine(entry.model, entry.tokenizer, on_step=on_step, name=model_id,
                                            max_rows=1 if entry.source.sliding_window else s.max_rows,
                                            max_queue=s.max_queue)
            return

        def on_batch(size, seconds):
            self.metrics.observe("peluk_batch_size", size, model=model_id)
            self.metrics.observe("peluk_batch_duration_seconds", seconds, model=model_id)
        entry.batcher = Batcher(lambda key, inputs, lengths: self._run(entry, key, inputs, lengths),
                                measure=lambda key, x: self._measure(entry, key, x), name=model_id,
                                max_batch_size=s.max_batch_size, max_wait_ms=s.max_wait_ms, max_queue=s.max_queue,
                                max_batch_tokens=s.max_batch_tokens, enabled=s.batching, on_batch=on_batch)

    @staticmethod
    def _measure(entry, key, x) -> int:
        """Tokens of one input (worker thread); refuses inputs too long when truncation is off."""
        if not isinstance(x, str):
            return 1 + len(json.dumps(x)) // 4
        n = len(entry.tokenizer(x)["input_ids"])
        task, _, strict = key
        limit = entry.pipeline(task).max_length if strict else None
        if limit and n > limit:
            raise ApiError(422, f"an input has {n} tokens; {entry.source.id} takes at most {limit} "
                           "(send truncate=true to cut it)", "validation")
        return n

    @staticmethod
    def _run(entry, key, inputs: list, lengths: list[int]) -> list:
        """One batch through a pipeline (worker thread)."""
        task, params, _ = key
        pipe = entry.pipeline(task)
        outputs = pipe.run(inputs, len(inputs), {**pipe.params, **json.loads(params)})
        if task == "sentence-embeddings":
            limit = pipe.max_length or max(lengths)
            return [(o.tolist(), min(n, limit)) for o, n in zip(outputs, lengths)]
        return outputs

    # --- callers and models -----------------------------------------------------------------------
    async def caller(self, authorization: str | None, address: str):
        """The hub user behind a request (None: anonymous), after the rate limit.

        On a public server a key that is not a hub token (``hf_...``) counts as anonymous, so
        OpenAI clients, which must send some key, work with any placeholder.

        Raises ApiError 401 (no token where one is needed, unknown token) or 429.
        """
        from peluk.serve.hub.auth import hash_token, token_from_header

        token = token_from_header(authorization)
        if token and self.settings.public and not token.startswith("hf_"):
            token = None  # OpenAI clients must send some key ("EMPTY", "none"): anonymous on a public server
        user = None
        if token:
            cached = self._users.get(token)
            if cached is None or cached[0] < time.monotonic():
                from peluk.serve.hub.service import Unauthorized

                try:
                    user = await asyncio.to_thread(self.hub.user_for_token, token)
                except Unauthorized:
                    raise ApiError(401, "Invalid credentials in Authorization header: the token is unknown or "
                                   "revoked", "authentication", code="invalid_api_key") from None
                if len(self._users) > 10_000:
                    self._users.clear()
                self._users[token] = (time.monotonic() + 10, user)
            else:
                user = cached[1]
        elif not self.settings.public:
            raise ApiError(401, "This server needs a token: send Authorization: Bearer <hub token> (make one "
                           "with `peluk hub token create`), or start it with --public", "authentication",
                           code="invalid_api_key")
        wait = self.limiter.check(f"t:{hash_token(token)}" if token else f"a:{address}")
        if wait:
            self.metrics.inc("peluk_rejected_total", reason="rate_limit")
            raise ApiError(429, f"Rate limit reached ({self.settings.rate_limit_per_minute:g} requests a minute); "
                           f"retry in {wait:.1f}s", "rate_limited", code="rate_limit_exceeded",
                           headers={"Retry-After": str(max(1, math.ceil(wait)))})
        return user

    async def source(self, model_id: str | None, role: str, user) -> Source:
        """The model a request names (or the default for ``role``), visible to ``user``."""
        model_id = (model_id or "").strip()
        key = (model_id, role, getattr(user, "name", None))
        cached = self._sources.get(key)
        if cached is not None and cached[0] > time.monotonic():
            return cached[1]

        def resolve():
            name = self.registry.default_for(role) if model_id in DEFAULT_ALIASES else model_id
            return self.registry.source(name, user)
        found = await asyncio.to_thread(resolve)
        if len(self._sources) > 10_000:
            self._sources.clear()
        self._sources[key] = (time.monotonic() + 2.0, found)  # new commits and privacy changes: within 2 s
        return found

    def deadline(self) -> float:
        return time.monotonic() + self.settings.request_timeout_s

    # --- pipelines (HF Inference API, TEI) ----------------------------------------------------------
    async def submit(self, source: Source, task: str, items: list, params: dict | None = None, strict=False,
                     wait: bool = True) -> list:
        async with self.registry.use(source, task, wait) as entry:
            if entry.batcher is None:
                raise ApiError(422, f"{source.id} is a {source.kind} model; it does not run {task}", "validation")
            try:
                return await entry.batcher.submit((task, dumps(params or {}), strict), items)
            except QueueFull as e:
                self.metrics.inc("peluk_rejected_total", reason="queue_full")
                raise overloaded(f"Model is overloaded: {e}") from None
            except (ValueError, TypeError) as e:  # the pipelines' PipelineError, bad values deep inside
                raise ApiError(422, str(e) or type(e).__name__, "validation") from None

    async def embed(self, source: Source, texts: list[str], normalize: bool | None = None,
                    truncate: bool | None = None, dimensions: int | None = None, wait: bool = True):
        """(vectors, tokens) of sentence embeddings, batched with other requests."""
        if source.kind != "encoder":
            raise ApiError(422, f"{source.id} is not an embedding model (it is a {source.kind} model)", "validation")
        out = await self.submit(source, "sentence-embeddings", texts, strict=truncate is False, wait=wait)
        vectors = [v for v, _ in out]
        if dimensions is not None:
            if dimensions > len(vectors[0]):
                raise ApiError(422, f"dimensions={dimensions} is more than the model's {len(vectors[0])}",
                               "validation", param="dimensions")
            vectors, normalize = [v[:dimensions] for v in vectors], True if normalize is None else normalize
        if normalize:
            vectors = [_unit(v) for v in vectors]
        return vectors, sum(n for _, n in out)

    def task_for(self, source: Source, inputs: Any, parameters: dict | None, task: str | None) -> str:
        task = task or source.task
        if task not in tasks.PARAMS and task != "text-generation":
            raise ApiError(422, f"unknown task {task!r}; peluk serves {sorted([*tasks.PARAMS, 'text-generation'])}",
                           "validation")
        if task in ("feature-extraction", "sentence-similarity") and source.kind == "encoder":
            task = "sentence-similarity" if isinstance(inputs, dict) and "source_sentence" in inputs \
                else "feature-extraction"
        if task == "text-classification" and isinstance(parameters, dict) and "candidate_labels" in parameters:
            task = "zero-shot-classification"
        if source.kind == "seq2seq" and task in ("text-generation", "text2text-generation", "summarization",
                                                 "translation"):
            return "text2text-generation" if task == "text-generation" else task
        wanted = {"causal": ("text-generation",), "seq2seq": tasks.GENERATION}.get(source.kind)
        if wanted is not None and task not in wanted or wanted is None and task in ("text-generation",
                                                                                     *tasks.GENERATION):
            raise ApiError(422, f"{source.id} is a {source.kind} model: it cannot run {task}", "validation")
        return task

    async def inference(self, source: Source, task: str, inputs, parameters, root: dict, use_cache: bool,
                        wait: bool) -> tuple[Any, bool]:
        """An HF Inference API task (not decoder text generation): (answer, from the cache)."""
        s = self.settings
        if task == "feature-extraction":  # its options come at the root of the body
            parameters = {**{k: v for k, v in root.items() if k in tasks.PARAMS[task]}, **(parameters or {})}
        params = tasks.params_of(task, parameters if parameters is not None else {}, s.max_new_tokens)
        items, single = tasks.inputs_of(task, inputs, s.max_inputs, s.max_input_chars)
        key = ResultCache.key(source.id, source.revision, task, items, params) if use_cache else None
        if key is not None and (hit := self.cache.get(key)) is not None:
            self.metrics.inc("peluk_cache_hits_total")
            return hit, True
        if task == "sentence-similarity":
            vectors, _ = await self.embed(source, items, normalize=True, truncate=params.get("truncate"), wait=wait)
            result = [sum(a * b for a, b in zip(vectors[0], v)) for v in vectors[1:]]
        elif task == "feature-extraction" and source.embedding:
            result, _ = await self.embed(source, items, params.get("normalize"), params.get("truncate"),
                                         params.get("dimensions"), wait=wait)
        else:
            pipeline_params = {} if task == "feature-extraction" else params
            outputs = await self.submit(source, task, items, pipeline_params, wait=wait)
            result = tasks.shape(task, outputs, single, params)
        if key is not None:
            self.metrics.inc("peluk_cache_misses_total")
            self.cache.put(key, result)
        return result, False

    # --- generation -----------------------------------------------------------------------------
    @contextlib.asynccontextmanager
    async def llm(self, source: Source):
        if source.kind != "causal":
            raise ApiError(422, f"{source.id} is not a text-generation (decoder) model; it is a {source.kind} model",
                           "validation")
        async with self.registry.use(source, "text-generation") as entry:
            yield entry

    async def encode(self, entry, text: str | None = None, messages: list[dict] | None = None,
                     ids: list[int] | None = None) -> list[int]:
        """Prompt ids of a text, a chat (the model's template) or token ids (checked)."""
        tokenizer = entry.tokenizer

        def run():
            with entry.lock:
                if messages is not None:
                    try:
                        rendered = tokenizer.apply_chat_template(messages, add_generation_prompt=True, tokenize=False)
                    except Exception as e:  # template errors (roles must alternate, ...) are the request's fault
                        raise ApiError(422, f"the chat template of {entry.source.id} refused these messages: {e}",
                                       "validation") from None
                    return list(tokenizer(rendered, add_special_tokens=False)["input_ids"])
                return list(tokenizer(text)["input_ids"])
        if ids is not None:
            vocab = len(tokenizer)
            if any(not isinstance(i, int) or isinstance(i, bool) or not 0 <= i < vocab for i in ids):
                raise ApiError(422, f"token ids must be integers from 0 to {vocab - 1}", "validation")
            prompt = list(ids)
        else:
            if messages is None and len(text) > self.settings.max_input_chars:
                raise ApiError(413, f"the prompt has {len(text)} characters; this server takes at most "
                               f"{self.settings.max_input_chars}", "validation")
            prompt = await asyncio.to_thread(run)
        if not prompt:
            raise ApiError(422, "the prompt is empty", "validation")
        return prompt

    def check_length(self, entry, prompt: list[int], max_new: int, truncate: int | None = None) -> list[int]:
        if max_new > self.settings.max_new_tokens:
            raise ApiError(422, f"max_new_tokens ({max_new}) is above this server's limit of "
                           f"{self.settings.max_new_tokens}", "validation", param="max_tokens")
        if truncate:
            prompt = prompt[-truncate:]
        if len(prompt) + max_new > entry.max_length:
            raise ApiError(422, f"`inputs` tokens + `max_new_tokens` must be <= {entry.max_length}. Given: "
                           f"{len(prompt)} `inputs` tokens and {max_new} `max_new_tokens`", "validation")
        return prompt

    def stops(self, stop) -> list[str]:
        stops = [stop] if isinstance(stop, str) else list(stop or [])
        if len(stops) > self.settings.max_stop_sequences:
            raise ApiError(422, f"at most {self.settings.max_stop_sequences} stop sequences, got {len(stops)}",
                           "validation", param="stop")
        return [s for s in stops if s]

    def count(self, model_id: str, tokens: int) -> None:
        self.metrics.inc("peluk_generated_tokens_total", tokens, model=model_id)
        self.rates.setdefault(model_id, TokenRate()).add(tokens)

    # TGI: /generate, /generate_stream, and the HF Inference API's text-generation
    def tgi_sampling(self, p: GenerateParameters) -> Sampling:
        for name, bad in (("best_of", (p.best_of or 1) > 1), ("grammar", p.grammar is not None),
                          ("watermark", p.watermark), ("adapter_id", p.adapter_id is not None),
                          ("typical_p", p.typical_p not in (None, 1.0))):
            if bad:
                raise ApiError(422, f"parameters.{name} is not supported by this server", "validation", param=name)
        # as TGI: any sampling option turns sampling on; temperature 0 means greedy
        warpers = p.temperature not in (None, 1.0) or bool(p.top_k) or p.top_p not in (None, 1.0)
        do_sample = (p.do_sample or warpers) and p.temperature != 0
        seed = p.seed if p.seed is not None else (random.randrange(2 ** 63) if do_sample else None)
        return Sampling(do_sample, p.temperature if do_sample else None, p.top_k or None,
                        p.top_p if do_sample else None, p.repetition_penalty, p.frequency_penalty, None, None, seed)

    async def tgi(self, source: Source, inputs: str, p: GenerateParameters, stream: bool, as_list: bool,
                  use_cache: bool = True):
        """TGI's generate (a dict, or ``[dict]`` for ``as_list``) or generate_stream (SSE events)."""
        sampling = self.tgi_sampling(p)
        extra = p.model_extra or {}
        unknown = sorted(set(extra) - {"max_length", "num_return_sequences"})
        if unknown:
            raise ApiError(422, f"unknown parameter(s) {unknown}", "validation", param=unknown[0])
        n = extra.get("num_return_sequences") or 1
        if not isinstance(n, int) or isinstance(n, bool) or not 1 <= n <= 8 or (stream and n > 1):
            raise ApiError(422, "parameters.num_return_sequences must be an integer from 1 to 8 (1 when streaming)",
                           "validation")
        deterministic = not sampling.do_sample or p.seed is not None
        key = ResultCache.key(source.id, source.revision, "text-generation", inputs, p.model_dump(), as_list) \
            if use_cache and deterministic and not stream else None
        if key is not None and (hit := self.cache.get(key)) is not None:
            self.metrics.inc("peluk_cache_hits_total")
            return hit, True
        stack = contextlib.AsyncExitStack()
        await stack.__aenter__()
        try:
            entry = await stack.enter_async_context(self.llm(source))
            prompt = await self.encode(entry, text=inputs)
            max_length = extra.get("max_length")
            if isinstance(max_length, int) and not isinstance(max_length, bool) and p.max_new_tokens is None:
                max_new = max_length - len(prompt)
                if max_new < 1:
                    raise ApiError(422, f"max_length ({max_length}) leaves no room after the prompt's {len(prompt)} "
                                   "tokens", "validation")
            else:
                max_new = p.max_new_tokens or self.settings.default_max_new_tokens
            prompt = self.check_length(entry, prompt, max_new, p.truncate)
            gen = Generation(entry.engine, self.deadline(), self.metrics)
            top = p.top_n_tokens or 0
            want_lp = bool(p.details or stream or top)
            for i in range(n):
                seeded = Sampling(**{**sampling.__dict__, "seed": None if sampling.seed is None else sampling.seed + i})
                gen.add(prompt, max_new, seeded, self.stops(p.stop), want_lp, top)
            prefix = inputs if p.return_full_text else ""
            prefill = [{"id": t, "text": entry.tokenizer.decode([t]), "logprob": None} for t in prompt] \
                if p.decoder_input_details else []
            if stream:
                return self._tgi_stream(gen, stack.pop_all(), source.id, prefix, len(prompt), sampling.seed, top), False
            try:
                choices = await gen.collect()
            finally:
                gen.cancel()
        finally:
            await stack.aclose()
        self.count(source.id, sum(c.tokens for c in choices))
        answers = [{"generated_text": prefix + c.text} for c in choices]
        if p.details:
            for a, c in zip(answers, choices):
                a["details"] = tgi_details(c, sampling.seed, prefill, c.steps, bool(top))
        result = answers if as_list else answers[0]
        if key is not None:
            self.metrics.inc("peluk_cache_misses_total")
            self.cache.put(key, result)
        return result, False

    async def _tgi_stream(self, gen: Generation, stack, model_id: str, prefix: str, prompt_len: int, seed, top):
        index = 0
        try:
            async for _, step in gen.events():
                index += 1
                self.count(model_id, 1)
                details = None
                if step.finish:
                    details = {"finish_reason": TGI_FINISH[step.finish], "generated_tokens": step.tokens,
                               "input_length": prompt_len, "seed": seed}
                shown = type(step)(**{**step.__dict__, "piece": step.text})  # token.text: what concatenates
                yield sse(tgi_stream_event(index, shown, prefix + step.generated_text if step.finish else None,
                                           details, bool(top)))
        except ApiError as e:
            yield sse({"error": e.message, "error_type": e.error_type})
        finally:
            gen.cancel()
            await stack.aclose()

    # OpenAI: chat completions and completions
    def openai_sampling(self, body, vocab: int) -> Sampling:
        temperature = 1.0 if body.temperature is None else body.temperature
        bias = None
        if body.logit_bias:
            try:
                bias = {int(k): max(-100.0, min(100.0, float(v))) for k, v in body.logit_bias.items()}
            except ValueError:
                raise ApiError(422, "logit_bias keys must be token ids", "validation", param="logit_bias") from None
            if any(not 0 <= k < vocab for k in bias):
                raise ApiError(422, f"logit_bias: token ids go from 0 to {vocab - 1}", "validation",
                               param="logit_bias")
        do_sample = temperature > 0
        seed = None if body.seed is None else body.seed % 2 ** 63
        return Sampling(do_sample, temperature if do_sample else None, None,
                        body.top_p if do_sample and body.top_p is not None and body.top_p < 1 else None, None,
                        body.frequency_penalty, body.presence_penalty, bias, seed)

    def _choices(self, gen: Generation, prompts: list[list[int]], n: int, max_new: int, sampling: Sampling,
                 stop, logprobs: bool, top: int) -> None:
        for prompt in prompts:
            for i in range(n):
                seed = sampling.seed + i if sampling.seed is not None else None
                gen.add(prompt, max_new, Sampling(**{**sampling.__dict__, "seed": seed}), stop, logprobs, top)

    async def chat(self, source: Source, body: ChatCompletionRequest, model_name: str):
        if body.tools:
            raise ApiError(422, "tools (function calling) are not supported by this server", "validation",
                           param="tools")
        if body.response_format and body.response_format.get("type") not in (None, "text"):
            raise ApiError(422, "response_format: only {\"type\": \"text\"} is supported", "validation",
                           param="response_format")
        if body.top_logprobs and not body.logprobs:
            raise ApiError(422, "top_logprobs needs logprobs=true", "validation", param="top_logprobs")
        messages = []
        for i, m in enumerate(body.messages):
            content = m.content
            if isinstance(content, list):
                if any(part.type != "text" or part.text is None for part in content):
                    raise ApiError(422, f"messages[{i}].content: only text parts are supported", "validation")
                content = "".join(part.text for part in content)
            messages.append({"role": m.role, "content": content or ""})
        max_new = body.max_completion_tokens or body.max_tokens or self.settings.default_max_new_tokens
        n, stop = body.n or 1, self.stops(body.stop)
        stack = contextlib.AsyncExitStack()
        await stack.__aenter__()
        try:
            entry = await stack.enter_async_context(self.llm(source))
            prompt = self.check_length(entry, await self.encode(entry, messages=messages), max_new)
            sampling = self.openai_sampling(body, len(entry.tokenizer))
            gen = Generation(entry.engine, self.deadline(), self.metrics)
            self._choices(gen, [prompt], n, max_new, sampling, stop, bool(body.logprobs), body.top_logprobs or 0)
            if body.stream:
                include = bool(body.stream_options and body.stream_options.include_usage)
                return self._chat_stream(gen, stack.pop_all(), source.id, model_name, len(prompt),
                                         bool(body.logprobs), include)
            try:
                choices = await gen.collect()
            finally:
                gen.cancel()
        finally:
            await stack.aclose()
        tokens = sum(c.tokens for c in choices)
        self.count(source.id, tokens)
        return chat_completion(new_id("chatcmpl"), model_name, [
            {"index": i, "message": {"role": "assistant", "content": c.text},
             "logprobs": chat_logprobs(c.steps) if body.logprobs else None, "finish_reason": OPENAI_FINISH[c.finish]}
            for i, c in enumerate(choices)], len(prompt), tokens)

    async def _chat_stream(self, gen, stack, model_id, model_name, prompt_len, logprobs, include_usage):
        cid, created, tokens = new_id("chatcmpl"), int(time.time()), 0
        try:
            for i in range(len(gen.requests)):
                first = {"index": i, "delta": {"role": "assistant", "content": ""}, "logprobs": None,
                         "finish_reason": None}
                yield sse(chat_chunk(cid, model_name, created, [first]))
            async for i, step in gen.events():
                tokens += 1
                self.count(model_id, 1)
                if not step.text and not step.finish and not logprobs:
                    continue
                delta = {"content": step.text} if step.text or not step.finish else {}
                yield sse(chat_chunk(cid, model_name, created, [{
                    "index": i, "delta": delta, "logprobs": chat_logprobs([step]) if logprobs else None,
                    "finish_reason": OPENAI_FINISH[step.finish] if step.finish else None}]))
            if include_usage:
                yield sse(chat_chunk(cid, model_name, created, [], usage(prompt_len, tokens)))
            yield sse("[DONE]")
        except ApiError as e:
            yield sse({"error": {"message": e.message, "type": e.openai_type, "code": e.error_type}})
        finally:
            gen.cancel()
            await stack.aclose()

    async def completion(self, source: Source, body: CompletionRequest, model_name: str):
        if body.suffix:
            raise ApiError(422, "suffix is not supported by this server", "validation", param="suffix")
        if (body.best_of or 1) > 1:
            raise ApiError(422, "best_of is not supported by this server", "validation", param="best_of")
        prompts = body.prompt
        if isinstance(prompts, str) or (prompts and all(isinstance(t, int) for t in prompts)):
            prompts = [prompts]
        if not prompts or len(prompts) > self.settings.max_inputs:
            raise ApiError(422 if not prompts else 413, f"prompt: give 1 to {self.settings.max_inputs} prompts",
                           "validation", param="prompt")
        max_new, n = body.max_tokens or 16, body.n or 1
        if len(prompts) * n > self.settings.max_rows * 4:
            raise ApiError(422, f"{len(prompts)} prompts x n={n} is too many choices for one request", "validation")
        stop, top = self.stops(body.stop), body.logprobs or 0
        stack = contextlib.AsyncExitStack()
        await stack.__aenter__()
        try:
            entry = await stack.enter_async_context(self.llm(source))
            ids = [await self.encode(entry, text=p) if isinstance(p, str) else await self.encode(entry, ids=p)
                   for p in prompts]
            ids = [self.check_length(entry, p, max_new) for p in ids]
            texts = [p if isinstance(p, str) else entry.tokenizer.decode(p) for p in prompts]
            gen = Generation(entry.engine, self.deadline(), self.metrics)
            sampling = self.openai_sampling(body, len(entry.tokenizer))
            self._choices(gen, ids, n, max_new, sampling, stop, body.logprobs is not None, top)
            echo = [texts[i // n] if body.echo else "" for i in range(len(ids) * n)]
            prompt_tokens = sum(len(p) for p in ids)
            if body.stream:
                include = bool(body.stream_options and body.stream_options.include_usage)
                return self._completion_stream(gen, stack.pop_all(), source.id, model_name, echo, prompt_tokens,
                                               body.logprobs is not None, include)
            try:
                choices = await gen.collect()
            finally:
                gen.cancel()
        finally:
            await stack.aclose()
        tokens = sum(c.tokens for c in choices)
        self.count(source.id, tokens)
        return text_completion(new_id("cmpl"), model_name, int(time.time()), [
            {"index": i, "text": echo[i] + c.text, "finish_reason": OPENAI_FINISH[c.finish],
             "logprobs": completion_logprobs(c.steps) if body.logprobs is not None else None}
            for i, c in enumerate(choices)], usage(prompt_tokens, tokens))

    async def _completion_stream(self, gen, stack, model_id, model_name, echo, prompt_tokens, logprobs, include):
        cid, created, tokens, started = new_id("cmpl"), int(time.time()), 0, set()
        try:
            async for i, step in gen.events():
                tokens += 1
                self.count(model_id, 1)
                text = step.text if i in started else echo[i] + step.text
                started.add(i)
                if not text and not step.finish:
                    continue
                yield sse(text_completion(cid, model_name, created, [{
                    "index": i, "text": text, "finish_reason": OPENAI_FINISH[step.finish] if step.finish else None,
                    "logprobs": completion_logprobs([step]) if logprobs else None}], None))
            if include:
                yield sse(text_completion(cid, model_name, created, [], usage(prompt_tokens, tokens)))
            yield sse("[DONE]")
        except ApiError as e:
            yield sse({"error": {"message": e.message, "type": e.openai_type, "code": e.error_type}})
        finally:
            gen.cancel()
            await stack.aclose()

    # --- TEI: rerank, predict -------------------------------------------------------------------
    async def rerank(self, source: Source, query: str, texts: list[str], raw: bool, truncate) -> list[dict]:
        s = self.settings
        for where, t in [("query", query), *((f"texts[{i}]", t) for i, t in enumerate(texts))]:
            tasks._text(t, where, s.max_input_chars)
        if len(texts) > s.max_inputs:
            raise ApiError(413, f"{len(texts)} texts; this server takes at most {s.max_inputs}", "validation")
        if source.task == "text-classification":  # a cross-encoder: score each (query, text) pair
            out = await self.submit(source, "text-classification", [{"text": query, "text_pair": t} for t in texts],
                                    {"top_k": None, "function_to_apply": "none" if raw else "sigmoid"})
            scores = [o[0]["score"] for o in out]
        else:  # an embedding model: cosine similarity
            vectors, _ = await self.embed(source, [query, *texts], normalize=True, truncate=truncate)
            scores = [sum(a * b for a, b in zip(vectors[0], v)) for v in vectors[1:]]
        return sorted(({"index": i, "score": sc} for i, sc in enumerate(scores)), key=lambda r: -r["score"])

    async def predict(self, source: Source, inputs, raw: bool):
        """TEI's /predict: one input → [{label, score}]; a batch → [[...], ...]."""
        def item(x, where):
            if isinstance(x, str):
                return tasks._text(x, where, self.settings.max_input_chars)
            if isinstance(x, list) and len(x) in (1, 2) and all(isinstance(t, str) for t in x):
                return x[0] if len(x) == 1 else {"text": x[0], "text_pair": x[1]}
            raise ApiError(422, f"{where} must be a text or [text, text_pair]", "validation")
        single = isinstance(inputs, str) or (isinstance(inputs, list) and bool(inputs)
                                             and all(isinstance(t, str) for t in inputs))
        items = [item(inputs, "inputs")] if single else [item(x, f"inputs[{i}]") for i, x in enumerate(inputs)]
        if not items:
            raise ApiError(422, "inputs is empty", "validation")
        if len(items) > self.settings.max_inputs:
            raise ApiError(413, f"{len(items)} inputs; this server takes at most {self.settings.max_inputs}",
                           "validation")
        if source.task not in ("text-classification", "zero-shot-classification"):
            raise ApiError(422, f"{source.id} is not a classifier ({source.task})", "validation")
        params = {"top_k": None, "function_to_apply": "none" if raw else None}
        out = await self.submit(source, "text-classification", items, params)
        return out[0] if single else out


def _unit(v: list[float]) -> list[float]:
    norm = math.sqrt(sum(x * x for x in v)) or 1.0
    return [x / norm for x in v]
