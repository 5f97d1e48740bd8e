"""The hub's ASGI application: the Hugging Face Hub HTTP API over git repositories.

>>> from peluk.serve.hub.app import create_app, serve
>>> app = create_app(Path("~/.peluk/hub").expanduser())       # doctest: +SKIP
>>> serve(Path("~/.peluk/hub").expanduser(), port=8000)       # doctest: +SKIP  (blocks; uvicorn)

Clients then use ``HF_ENDPOINT=http://127.0.0.1:8000`` (or ``HfApi(endpoint=...)``) with a
token from ``home/admin_token`` or ``peluk.serve.hub.auth.create_token``.

All routes are matched by one dispatcher on the raw request path, git smart HTTP
(``git_http``) and the web pages (``peluk.serve.web``, registered last) included: add more with
``handlers.route`` (``stream=True`` for async handlers that read the body themselves), or insert
Starlette routes in front of it (``app.router.routes.insert(0, ...)``). ``peluk hub serve``
(``cli.py``) runs it and imports the default models on the first start (``defaults.py``).
"""

from __future__ import annotations

import io
import logging
import tempfile
from contextlib import asynccontextmanager
from pathlib import Path
from urllib.parse import unquote

from fastapi import FastAPI
from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import Response

from peluk.serve.hub import git_http, lfs, protocol  # noqa: F401  (they register the git and Git LFS routes)
from peluk.serve import web  # noqa: F401,I001  (then the web pages: a path the API and git take stays theirs)
from peluk.serve.hub.auth import token_from_header
from peluk.serve.hub.handlers import ROUTES, Ctx
from peluk.serve.hub.service import MAX_FILE_SIZE, MAX_REQUEST_SIZE, Hub, TooLarge
from peluk.serve.hub.storage import LFS_THRESHOLD

log = logging.getLogger("peluk.hub")
METHODS = ["GET", "HEAD", "POST", "PUT", "DELETE", "PATCH"]
LFS_UPLOADS = ("auto", "always", "never")


def create_app(home: Path, *, db_url: str | None = None, lfs_threshold: int = LFS_THRESHOLD,
               max_file_size: int = MAX_FILE_SIZE, max_request_size: int = MAX_REQUEST_SIZE,
               lfs_uploads: str = "auto", admin_name: str = "admin") -> FastAPI:
    """The hub application for the data under ``home`` (created on first start, with an admin).

    Args:
        home: directory of the repositories, LFS objects, ``hub.db``, ``secret`` and ``admin_token``.
        db_url: ``postgresql://...`` for PostgreSQL (needs psycopg); default SQLite ``home/hub.db``.
        lfs_threshold: files larger than this are stored as LFS objects (default 10 MB, as the Hub).
        max_file_size: largest file accepted, in bytes.
        max_request_size: largest request body other than LFS uploads (inline commits, JSON).
        lfs_uploads: what preupload answers for large files. ``"auto"``: "lfs" only to clients
            known to use the LFS batch API, "regular" (inline) to huggingface_hub >= 1.1, which
            would otherwise try Xet; ``"always"``: "lfs" (clients must set HF_HUB_DISABLE_XET=1);
            ``"never"``: always inline. Large files end up in LFS in every case.
        admin_name: user created, with its token in ``home/admin_token``, when the hub has no users.
    """
    if lfs_uploads not in LFS_UPLOADS:
        raise ValueError(f"lfs_uploads must be one of {LFS_UPLOADS}, not {lfs_uploads!r}")
    hub = Hub(Path(home), db_url, lfs_threshold, max_file_size, max_request_size, admin_name)
    if cleaned := hub.storage.lfs.clean_tmp():
        log.warning("peluk hub: removed %d unfinished upload(s) left by a previous run", cleaned)

    @asynccontextmanager
    async def lifespan(app):
        yield
        hub.close()

    app = FastAPI(title="peluk hub", lifespan=lifespan, docs_url=None, redoc_url=None, openapi_url=None)
    app.state.hub = hub

    async def dispatch(request: Request) -> Response:
        return await handle(hub, lfs_uploads, request)

    app.add_route("/{path:path}", dispatch, methods=METHODS, include_in_schema=False)
    return app


def serve(home: Path, host: str = "127.0.0.1", port: int = 8000, **options) -> None:
    """Run the hub with uvicorn until interrupted (``options`` go to ``create_app``)."""
    import uvicorn

    uvicorn.run(create_app(home, **options), host=host, port=port)


async def spool(request: Request, limit: int, tmp: Path):
    """The request body in a temporary file (in memory while small), refused above ``limit``."""
    declared = request.headers.get("content-length", "")
    if declared.isdigit() and int(declared) > limit:
        raise TooLarge(f"Request body of {declared} bytes is above this hub's limit of {limit}")
    body, total = tempfile.SpooledTemporaryFile(max_size=16 << 20, dir=tmp), 0
    try:
        async for chunk in request.stream():
            total += len(chunk)
            if total > limit:
                raise TooLarge(f"Request body is above this hub's limit of {limit} bytes")
            body.write(chunk)
    except BaseException:
        body.close()
        raise
    body.seek(0)
    return body


async def handle(hub: Hub, lfs_uploads: str, request: Request) -> Response:
    raw = (request.scope.get("raw_path") or request.scope["path"].encode()).decode("latin-1").split("?", 1)[0]
    method = "GET" if request.method == "HEAD" else request.method
    matches = [(m, fn, stream, match) for m, regex, fn, stream in ROUTES if (match := regex.fullmatch(raw))]
    found = next(((fn, stream, match) for m, fn, stream, match in matches if m == method), None)
    if found is None:
        if matches:
            return protocol.error(405, f"{request.method} is not allowed on {raw}")
        return protocol.error(404, f"Not found: {request.method} {raw}")
    fn, stream, match = found
    params = {k: unquote(v) for k, v in match.groupdict().items()}
    if "type" in params:
        params["type"] = params["type"][:-1]  # models → model
    base = f"{request.url.scheme}://{request.headers.get('host') or request.url.netloc}"
    token, body = token_from_header(request.headers.get("authorization")), None
    ctx = Ctx(hub, request, None, base, base + raw, list(request.query_params.multi_items()), None, lfs_uploads)

    def call():  # in a worker thread: handlers block on git and the database
        ctx.user = hub.user_for_token(token)
        return fn(ctx, **params)
    try:
        if stream:
            ctx.user = await run_in_threadpool(hub.user_for_token, token)
            return await fn(ctx, **params)
        if method in ("POST", "PUT", "DELETE", "PATCH"):
            body = await spool(request, hub.max_request_size, hub.storage.lfs.tmp)
        ctx.body = body or io.BytesIO()
        return await run_in_threadpool(call)
    except Exception as e:
        response = protocol.error_for(e)
        if response is None:
            log.exception("peluk hub: %s %s failed", request.method, raw)
            response = protocol.error(500, f"Internal error ({type(e).__name__}); the server log has details")
        return response
    finally:
        if body is not None:
            body.close()
