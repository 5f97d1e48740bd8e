"""The web UI's inference side, under ``peluk serve`` only: widgets, the playground, the Explore route.

``enable(app, hub_app)`` (called by ``peluk.serve.app.create_app``) connects the pages to the
inference API: it adds the Explore route below to the API, lets the widgets' ``fetch`` calls use
the login cookie, and hands the ``Api`` to the hub's pages (``hub_app.state.inference``). Under
``peluk hub serve`` alone nothing here runs: model pages show no widget and no Explore tab.

The Explore route (per model, next to the HF Inference route ``POST /models/{owner}/{name}``)::

    POST /models/{owner}/{name}/attention   {"text": str, "text_pair"?: str, "target"?: str, "neurons"?: bool}
    → 200 the captured attention: AttentionView.to_dict("auto") (format "peluk-attention/1"),
      the JSON that peluk/viz's renderer (PelukAttention.render) draws
    → 404 unknown (or private) model; 413 a text above the server's max_input_chars;
      422 empty text, more than 512 tokens (or the model's positions), text_pair for a model
      that is not an encoder, target for one that is not an encoder-decoder

``text_pair`` makes a sentence pair for encoders; ``target`` is teacher-forced through an
encoder-decoder (greedy when absent). The model is loaded through the API's ``Registry`` (one
copy in memory, within the memory budget, shared with the inference routes) and the capture
runs in a worker thread.

Widgets call the existing API routes; their requests carry ``X-Peluk-Web: 1``, and only such
requests get the ``peluk_token`` cookie turned into an ``Authorization`` header (a custom header
cannot be sent cross-site without a CORS preflight, which this server never grants).
"""

from __future__ import annotations

import asyncio
import json
from pathlib import Path

from fastapi import Request
from pydantic import BaseModel, ConfigDict, Field
from starlette.responses import Response

from peluk.serve.api.protocol import ApiError
from peluk.serve.web.common import TOKEN_COOKIE

MAX_TOKENS = 512
# pipeline task → the widget drawing it (templates/widget.html, static/widgets.js)
WIDGETS = {"text-classification": "classify", "zero-shot-classification": "zero-shot",
           "token-classification": "ner", "fill-mask": "fill-mask", "question-answering": "qa",
           "feature-extraction": "similarity", "sentence-similarity": "similarity", "text-generation": "chat",
           "translation": "text2text", "summarization": "text2text", "text2text-generation": "text2text"}


def enable(app, hub_app) -> None:
    """Connect the hub's pages (``hub_app``) to the inference API ``app`` (before mounting the hub)."""
    from peluk.serve.api.app import is_api  # here: the hub's pages alone never import the API (torch)

    api = app.state.api
    add_explore_route(app, api)
    app.add_middleware(CookieAuth, is_api=is_api)
    hub_app.state.inference = api


class CookieAuth:
    """ASGI middleware: a widget's call to the API (``X-Peluk-Web: 1``, no Authorization) uses the login cookie."""

    def __init__(self, app, is_api):
        self.app, self.is_api = app, is_api

    async def __call__(self, scope, receive, send):
        if scope["type"] == "http" and self.is_api(scope["path"]):
            headers = dict(scope["headers"])
            if headers.get(b"x-peluk-web") == b"1" and b"authorization" not in headers:
                token = _cookie(headers.get(b"cookie", b"").decode("latin-1"), TOKEN_COOKIE)
                if token:
                    scope = {**scope, "headers": [*scope["headers"], (b"authorization", f"Bearer {token}".encode())]}
        await self.app(scope, receive, send)


def _cookie(header: str, name: str) -> str | None:
    for part in header.split(";"):
        key, _, value = part.strip().partition("=")
        if key == name and value:
            return value
    return None


# --- what the pages show (called in the hub's worker threads) -------------------------------------

def source_for(api, model_id: str, user):
    """The registry's Source of ``model_id`` for ``user``, or None when the API cannot serve it."""
    try:
        return api.registry.source(model_id, user)
    except ApiError:
        return None


def widget(source) -> dict | None:
    """What the model page's widget needs: model id, task, widget kind, mask token."""
    task = source.task
    if task == "feature-extraction" and source.kind != "encoder":
        return None
    kind = WIDGETS.get(task)
    return kind and {"model": source.id, "task": task, "widget": kind, "mask": _mask_token(source.path)}


def _mask_token(path: Path) -> str:
    for name in ("special_tokens_map.json", "tokenizer_config.json"):
        try:
            token = json.loads((path / name).read_text()).get("mask_token")
        except (OSError, ValueError, AttributeError):
            continue
        token = token.get("content") if isinstance(token, dict) else token
        if isinstance(token, str) and token:
            return token
    return "[MASK]"


def card_of(source) -> str | None:
    """The README of a model served from local files (built-in or ``--models``), if it has one."""
    try:
        return (source.path / "README.md").read_text(encoding="utf-8", errors="replace") if source.path.is_dir() \
            else None
    except OSError:
        return None


def served(api, user) -> list[dict]:
    """The playground's rows: every model the API lists for ``user``, with its task."""
    loaded = {e.source.id for e in list(api.registry.loaded.values())}
    rows = []
    for model_id in api.registry.listing(user):
        namespace, _, name = model_id.partition("/")
        repo = api.hub.db.get_repo("model", namespace, name) if name else None
        if repo is not None:  # a hub repository: its card says (resolving it would export its files)
            task = repo.pipeline_tag or ("text-generation" if repo.library_name == "gguf" else "")
        else:
            source = source_for(api, model_id, user)
            task = source.task if source else ""
        rows.append({"id": model_id, "task": task, "loaded": model_id in loaded, "hub": repo is not None})
    return rows


# --- the Explore route -----------------------------------------------------------------------------

class ExploreRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")
    text: str = Field(description="the input text")
    text_pair: str | None = Field(None, description="encoders: the second text of a sentence pair")
    target: str | None = Field(None, description="encoder-decoders: the target text, teacher-forced "
                                                 "(default: generated greedily)")
    neurons: bool = Field(False, description="also every head's queries and keys, for the neuron view")


def add_explore_route(app, api) -> None:
    settings = api.settings

    @app.post("/models/{owner}/{name}/attention", tags=["per model"],
              summary="Explore: the attention of every layer and head (JSON of peluk's attention views)")
    async def explore(request: Request, body: ExploreRequest, owner: str, name: str):
        user = await api.caller(request.headers.get("authorization"), request.client.host if request.client else "-")
        for field in ("text", "text_pair", "target"):
            value = getattr(body, field)
            if value is not None and len(value) > settings.max_input_chars:
                raise ApiError(413, f"{field} has {len(value)} characters; this server takes at most "
                               f"{settings.max_input_chars}", "validation", param=field)
        if not body.text.strip():
            raise ApiError(422, "text is empty", "validation", param="text")
        source = await api.source(f"{owner}/{name}", "llm", user)
        if body.text_pair is not None and source.kind != "encoder":
            raise ApiError(422, f"text_pair is for encoders; {source.id} is a {source.kind} model", "validation")
        if body.target is not None and source.kind != "seq2seq":
            raise ApiError(422, f"target is for encoder-decoders; {source.id} is a {source.kind} model", "validation")
        async with api.registry.use(source, source.task) as entry:
            try:
                data = await asyncio.wait_for(asyncio.to_thread(capture, entry, body), settings.request_timeout_s)
            except asyncio.TimeoutError:
                raise ApiError(504, f"the capture took longer than {settings.request_timeout_s:g}s",
                               "timeout") from None
        return Response(data, media_type="application/json")


def capture(entry, body: ExploreRequest) -> str:
    """The attention JSON of one input (worker thread); 422 for an input too long to show."""
    import peluk.viz

    tokenizer, limit = entry.tokenizer, min(MAX_TOKENS, entry.max_length)
    with entry.lock:  # the tokenizer's settings are shared with the API's other requests
        for what, text, pair in (("text", body.text, body.text_pair), ("target", body.target, None)):
            # cut at limit + 1: enough to tell "too long", without the tokenizer's warning about long inputs
            n = len(tokenizer(text, pair, truncation=True, max_length=limit + 1)["input_ids"]) if text else 0
            if n > limit:
                raise ApiError(422, f"{what} has more than {limit} tokens, the most the Explore view takes: "
                               "shorten it", "validation", param=what)
        try:
            view = peluk.viz.attention(entry.model, tokenizer, body.text, text_pair=body.text_pair,
                                       target=body.target, neurons=body.neurons)
        except ValueError as e:
            raise ApiError(422, f"cannot capture the attention of {entry.source.id}: {e}", "validation") from None
    view.name = entry.source.id  # not the path it was loaded from
    return view.to_json("auto")
