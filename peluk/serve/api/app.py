"""Routes of the inference API: HF Inference API, OpenAI, TGI and TEI shapes over one ``Api``.

Every TGI/TEI/OpenAI route exists twice: at the root (the default model, or ``?model=`` / the
body's ``model``) and under a model's own URL ``/models/{owner}/{name}/...``, so that
``InferenceClient(model="http://host/models/owner/name")`` reaches every call it makes
(``POST`` the URL itself, ``/v1/chat/completions``, ``/info``, ``/health``).

Errors are ``{"error": {"message", "type", "code", "param"}}`` on ``/v1/`` routes (the OpenAI
clients read that), ``{"error": str, "error_type": str}`` elsewhere (TGI, TEI, huggingface_hub);
404s for unknown models carry ``X-Error-Code: RepoNotFound``. Bad input is a 4xx, never a 500.

``/docs`` is a small page of our own that renders ``/openapi.json`` without any CDN (FastAPI's
default Swagger UI loads its scripts from one; peluk must work offline).
"""

from __future__ import annotations

import asyncio
import logging
import time
from contextlib import asynccontextmanager

from fastapi import Depends, FastAPI, Path, Query, Request
from fastapi.exceptions import RequestValidationError
from pydantic import ValidationError
from starlette.responses import HTMLResponse, Response, StreamingResponse

from peluk.serve.api import protocol as p
from peluk.serve.api.docs import DOCS_HTML
from peluk.serve.api.handlers import Api
from peluk.serve.api.protocol import ApiError, dumps

log = logging.getLogger("peluk.serve")
SSE_HEADERS = {"Cache-Control": "no-cache", "X-Accel-Buffering": "no"}
API_PREFIXES = ("/v1/", "/models/", "/generate", "/embed", "/rerank", "/predict", "/similarity", "/info",
                "/health", "/metrics", "/docs", "/openapi.json")
UNGUARDED = ("/health", "/metrics", "/docs", "/openapi.json")


def is_api(path: str) -> bool:
    return path.startswith(API_PREFIXES) or path in ("/v1/models",)


def json_response(obj, status: int = 200, headers: dict | None = None) -> Response:
    return Response(dumps(obj), status, headers, media_type="application/json")


def error_response(path: str, e: ApiError) -> Response:
    openai = "/v1/" in path
    return json_response(p.error_body(e, openai), e.status, e.headers)


class ClientGone(Exception):
    """The client closed the connection before its answer was ready."""


async def _disconnected(request: Request) -> None:
    while (await request.receive())["type"] != "http.disconnect":
        pass


def create_api(hub, settings=None) -> FastAPI:
    """The inference API over ``hub`` (a ``peluk.serve.hub.service.Hub``) as a FastAPI app;
    ``app.state.api`` is its :class:`~peluk.serve.api.handlers.Api`."""
    api = Api(hub, settings)
    s = api.settings

    @asynccontextmanager
    async def lifespan(app):
        task = asyncio.ensure_future(api.registry.preload()) if s.preload else None
        yield
        api.draining = True
        if task is not None:
            task.cancel()
        await asyncio.to_thread(api.registry.close)

    app = FastAPI(title="peluk inference API", version=p.FINGERPRINT.removeprefix("peluk-"), lifespan=lifespan,
                  docs_url=None, redoc_url=None, description="HF Inference API, OpenAI, TGI and TEI compatible "
                  "routes. Per-model URLs: /models/{owner}/{name} (paste them into InferenceClient(model=...)).")
    app.state.api = api

    @app.exception_handler(ApiError)
    async def on_api_error(request: Request, e: ApiError):
        return error_response(request.url.path, e)

    @app.exception_handler(ClientGone)
    async def on_gone(request: Request, e: ClientGone):
        return Response(status_code=499)  # nobody reads it; the metrics count it

    @app.exception_handler(Exception)
    async def on_bug(request: Request, e: Exception):
        log.error("peluk serve: %s %s failed", request.method, request.url.path, exc_info=e)
        return error_response(request.url.path, ApiError(500, f"Internal error ({type(e).__name__}); the server "
                                                               "log has details", "internal"))

    @app.exception_handler(RequestValidationError)
    async def on_invalid(request: Request, e: RequestValidationError):
        errors = e.errors()
        if any(err.get("type") == "json_invalid" for err in errors):
            return error_response(request.url.path, ApiError(400, "The body is not valid JSON", "validation"))
        return error_response(request.url.path, ApiError(422, _describe(errors), "validation"))

    async def caller(request: Request):
        return await api.caller(request.headers.get("authorization"), request.client.host if request.client else "-")

    async def guarded(request: Request, work):
        """Run ``work``; cancel it when the client goes away or the request times out."""
        task, gone = asyncio.ensure_future(work), asyncio.ensure_future(_disconnected(request))
        try:
            done, _ = await asyncio.wait({task, gone}, timeout=s.request_timeout_s,
                                         return_when=asyncio.FIRST_COMPLETED)
        finally:
            gone.cancel()
            if not task.done():
                task.cancel()
        if task in done:
            return task.result()
        if gone in done:
            raise ClientGone()
        api.metrics.inc("peluk_rejected_total", reason="timeout")
        raise ApiError(504, f"the request took longer than {s.request_timeout_s:g}s", "timeout")

    def answer(result, cached: bool | None = None):
        if isinstance(result, Response):
            return result
        if hasattr(result, "__aiter__"):
            return StreamingResponse(result, media_type="text/event-stream", headers=SSE_HEADERS)
        return json_response(result, headers=None if cached is None else {"X-Cache": "HIT" if cached else "MISS"})

    def add_routes(prefix: str, target) -> None:
        """The TGI, TEI and OpenAI routes under ``prefix``; ``target`` gives the model id (None: default)."""
        tags = ["per model"] if prefix else ["default model"]

        def route(path, methods=("POST",), **kw):
            return app.api_route(prefix + path, methods=list(methods), tags=kw.pop("tags", tags), **kw)

        @route("/generate", summary="TGI: generate text")
        async def generate(request: Request, body: p.GenerateRequest, model=Depends(target), user=Depends(caller)):
            async def work():
                source = await api.source(model, "llm", user)
                return await api.tgi(source, body.inputs, body.parameters or p.GenerateParameters(), body.stream,
                                     as_list=False)
            result, cached = await guarded(request, work())
            return answer(result, None if body.stream else cached)

        @route("/generate_stream", summary="TGI: generate text as server-sent events")
        async def generate_stream(request: Request, body: p.GenerateRequest, model=Depends(target),
                                  user=Depends(caller)):
            source = await api.source(model, "llm", user)
            result, _ = await guarded(request, api.tgi(source, body.inputs, body.parameters or p.GenerateParameters(),
                                                       True, as_list=False))
            return answer(result)

        @route("/v1/chat/completions", summary="OpenAI: chat completion (stream: server-sent events)")
        async def chat(request: Request, body: p.ChatCompletionRequest, model=Depends(target), user=Depends(caller)):
            name = model or body.model
            source = await api.source(name, "llm", user)
            return answer(await guarded(request, api.chat(source, body, source.id)))

        @route("/v1/completions", summary="OpenAI: text completion")
        async def completions(request: Request, body: p.CompletionRequest, model=Depends(target),
                              user=Depends(caller)):
            source = await api.source(model or body.model, "llm", user)
            return answer(await guarded(request, api.completion(source, body, source.id)))

        @route("/v1/embeddings", summary="OpenAI: embeddings (float or base64)")
        async def openai_embeddings(request: Request, body: p.EmbeddingRequest, model=Depends(target),
                                    user=Depends(caller)):
            texts = [body.input] if isinstance(body.input, str) else body.input
            if not texts or not all(isinstance(t, str) for t in texts):
                raise ApiError(422, "input must be a non-empty string or list of strings (token ids are not "
                               "supported)", "validation", param="input")
            items, _ = _texts(texts, api)
            source = await api.source(model or body.model, "embedding", user)
            vectors, tokens = await guarded(request, api.embed(source, items, dimensions=body.dimensions))
            return json_response(p.embeddings(source.id, vectors, tokens, body.encoding_format))

        @route("/embed", summary="TEI: embeddings, one row per input")
        async def embed(request: Request, body: p.EmbedRequest, model=Depends(target), user=Depends(caller)):
            if body.prompt_name is not None:
                raise ApiError(422, "prompt_name is not supported by this server", "validation")
            items, _ = _texts([body.inputs] if isinstance(body.inputs, str) else body.inputs, api)
            source = await api.source(model, "embedding", user)
            vectors, _ = await guarded(request, api.embed(source, items, body.normalize, body.truncate,
                                                          body.dimensions))
            return json_response(vectors)

        @route("/similarity", summary="TEI: cosine similarity of sentences to a source sentence")
        async def similarity(request: Request, body: p.SimilarityRequest, model=Depends(target), user=Depends(caller)):
            source = await api.source(model, "embedding", user)
            result, _ = await guarded(request, api.inference(source, "sentence-similarity", body.inputs.model_dump(),
                                                             body.parameters or {}, {}, True, True))
            return json_response(result)

        @route("/rerank", summary="TEI: rank texts by relevance to a query")
        async def rerank(request: Request, body: p.RerankRequest, model=Depends(target), user=Depends(caller)):
            source = await api.source(model, "embedding", user)
            ranked = await guarded(request, api.rerank(source, body.query, body.texts, body.raw_scores, body.truncate))
            if body.return_text:
                for r in ranked:
                    r["text"] = body.texts[r["index"]]
            return json_response(ranked)

        @route("/predict", summary="TEI: classify texts (or text pairs)")
        async def predict(request: Request, body: p.PredictRequest, model=Depends(target), user=Depends(caller)):
            source = await api.source(model, "classifier", user)
            return json_response(await guarded(request, api.predict(source, body.inputs, body.raw_scores)))

        @route("/info", methods=("GET",), summary="TGI: model information")
        async def info(request: Request, model=Depends(target), user=Depends(caller)):
            source = await api.source(model, "llm", user)

            async def work():
                async with api.registry.use(source, source.task) as entry:
                    dtype = str(next(entry.model.parameters()).dtype).removeprefix("torch.")
                    return p.tgi_info(source.id, None if source.revision in ("builtin", "local") else source.revision,
                                      source.task, dtype, entry.max_length - 1, entry.max_length, s)
            return json_response(await guarded(request, work()))

    async def root_target(model: str | None = Query(None, description="a served model id (default: the "
                                                                       "server's default model for the route)")):
        return model

    async def model_target(owner: str = Path(..., description="namespace of the model id"),
                           name: str = Path(..., description="name of the model id")):
        return f"{owner}/{name}"

    @app.post("/models/{owner}/{name}", tags=["per model"], summary="HF Inference API: run the model's task")
    async def inference(request: Request, body: p.InferenceRequest, owner: str, name: str,
                        task: str | None = Query(None, description="the task to run (default: the model card's "
                                                                   "pipeline_tag, else guessed from config.json)"),
                        user=Depends(caller)):
        return await _inference(request, body, f"{owner}/{name}", task, user)

    @app.post("/models/{owner}/{name}/pipeline/{task}", tags=["per model"], summary="HF Inference API with a task")
    async def inference_task(request: Request, body: p.InferenceRequest, owner: str, name: str, task: str,
                             user=Depends(caller)):
        return await _inference(request, body, f"{owner}/{name}", task, user)

    async def _inference(request, body: p.InferenceRequest, model_id: str, task, user):
        source = await api.source(model_id, "llm", user)
        task = api.task_for(source, body.inputs, body.parameters, task)
        options = body.options or p.InferenceOptions()
        if source.kind == "causal":
            if not isinstance(body.inputs, str):
                raise ApiError(422, "text-generation: inputs must be the prompt (a string)", "validation")
            try:
                params = p.GenerateParameters.model_validate(body.parameters or {})
            except ValidationError as e:
                raise ApiError(422, _describe(e.errors(), "parameters"), "validation") from None
            result, cached = await guarded(request, api.tgi(source, body.inputs, params, body.stream, as_list=True,
                                                            use_cache=options.use_cache))
            return answer(result, None if body.stream else cached)
        if body.stream:
            raise ApiError(422, f"stream=true is for text generation; {task} answers at once", "validation")
        result, cached = await guarded(request, api.inference(source, task, body.inputs, body.parameters,
                                                              body.model_extra or {}, options.use_cache,
                                                              options.wait_for_model))
        return answer(result, cached)

    add_routes("/models/{owner}/{name}", model_target)
    add_routes("", root_target)

    @app.get("/models/{owner}/{name}/health", tags=["per model"], summary="TGI: 200 once the model is loaded")
    async def model_health(request: Request, owner: str, name: str, user=Depends(caller)):
        source = await api.source(f"{owner}/{name}", "llm", user)

        async def work():
            async with api.registry.use(source, source.task):
                return Response(status_code=200)
        return await guarded(request, work())

    @app.get("/health", tags=["server"], summary="200 while the server takes requests")
    async def health():
        if api.draining:
            return json_response({"error": "unhealthy", "error_type": "healthcheck"}, 503)
        return Response(status_code=200)

    @app.get("/metrics", tags=["server"], summary="Prometheus metrics")
    async def metrics():
        return Response(api.metrics.render(), media_type="text/plain; version=0.0.4; charset=utf-8")

    @app.get("/v1/models", tags=["default model"], summary="OpenAI: the models this server serves")
    async def list_models(user=Depends(caller)):
        ids = await asyncio.to_thread(api.registry.listing, user)
        return json_response({"object": "list", "data": [p.model_card(i) for i in ids]})

    @app.get("/models/{owner}/{name}/v1/models", tags=["per model"], summary="OpenAI: this model")
    async def list_one_model(owner: str, name: str, user=Depends(caller)):
        source = await api.source(f"{owner}/{name}", "llm", user)
        return json_response({"object": "list", "data": [p.model_card(source.id)]})

    @app.get("/v1/models/{owner}/{name}", tags=["default model"], summary="OpenAI: one model")
    async def get_model(owner: str, name: str, user=Depends(caller)):
        source = await api.source(f"{owner}/{name}", "llm", user)
        return json_response(p.model_card(source.id))

    @app.get("/docs", include_in_schema=False)
    async def docs():
        return HTMLResponse(DOCS_HTML)

    app.add_middleware(Guard, api=api)
    return app


def _texts(texts: list, api: Api):
    from peluk.serve.api.tasks import inputs_of

    return inputs_of("feature-extraction", texts, api.settings.max_inputs, api.settings.max_input_chars)


def _describe(errors: list[dict], root: str = "") -> str:
    """pydantic's errors as one readable line: 'body.messages: Field required; ...'."""
    parts = []
    for err in errors[:5]:
        where = ".".join(str(x) for x in err.get("loc", ()) if x != "body" or not root)
        where = f"{root}.{where}" if root and where else (root or where or "body")
        parts.append(f"{where}: {err.get('msg', 'invalid')}")
    return "; ".join(parts) + (f" (and {len(errors) - 5} more)" if len(errors) > 5 else "")


class Guard:
    """ASGI middleware for the API's paths: 503 while draining or above ``max_concurrent``, 413 for
    bodies above ``max_request_bytes`` (the body is read here, then replayed), 499 for clients gone,
    request counts and latency in the metrics."""

    def __init__(self, app, api: Api):
        self.app, self.api = app, api

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http" or not is_api(scope["path"]):
            return await self.app(scope, receive, send)
        api, s, path = self.api, self.api.settings, scope["path"]
        started, status = time.perf_counter(), [0]

        async def sending(message):
            if message["type"] == "http.response.start":
                status[0] = message["status"]
            await send(message)

        async def refuse(e: ApiError):
            await error_response(path, e)(scope, receive, sending)

        try:
            if not path.startswith(UNGUARDED):
                if api.draining:
                    return await refuse(ApiError(503, "the server is shutting down", "unhealthy",
                                                 headers={"Retry-After": "5"}))
                if api.in_flight >= s.max_concurrent:
                    api.metrics.inc("peluk_rejected_total", reason="concurrency")
                    return await refuse(p.overloaded(f"the server is answering {api.in_flight} requests; retry "
                                                     "shortly", status=503))
            body, receive = await _read_body(scope, receive, s.max_request_bytes)
            if body is None:
                api.metrics.inc("peluk_rejected_total", reason="too_large")
                return await refuse(ApiError(413, f"the request body is larger than this server's limit of "
                                             f"{s.max_request_bytes} bytes", "validation"))
            api.in_flight += 1
            try:
                await self.app(scope, receive, sending)
            finally:
                api.in_flight -= 1
        finally:
            route = getattr(scope.get("route"), "path", None) or "other"
            api.metrics.inc("peluk_requests_total", route=route, status=str(status[0]))
            api.metrics.observe("peluk_request_duration_seconds", time.perf_counter() - started, route=route)


async def _read_body(scope, receive, limit: int):
    """(body or None when above ``limit``, a receive that replays it and then passes through)."""
    declared = dict(scope.get("headers") or []).get(b"content-length", b"")
    if declared.isdigit() and int(declared) > limit:
        return None, receive
    chunks, total, more = [], 0, True
    while more:
        message = await receive()
        if message["type"] != "http.request":
            return b"", receive  # disconnected already
        chunk = message.get("body", b"")
        total += len(chunk)
        if total > limit:
            return None, receive
        chunks.append(chunk)
        more = message.get("more_body", False)
    body, replayed = b"".join(chunks), [False]

    async def replay():
        if not replayed[0]:
            replayed[0] = True
            return {"type": "http.request", "body": body, "more_body": False}
        return await receive()
    return body, replay
