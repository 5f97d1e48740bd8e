"""git smart HTTP on the hub's port (spec §10): ``git clone``, ``fetch`` and ``push`` with tokens.

Clone URLs are the web URLs, with or without ``.git``: ``http://host/owner/name``,
``http://host/datasets/owner/name``, ``http://host/spaces/owner/name``. The four smart-HTTP
routes (``info/refs?service=...``, ``git-upload-pack``, ``git-receive-pack``) go to
``git http-backend`` (CGI) in a subprocess: the request body is streamed into it, gzip bodies
included (the backend inflates them), and its answer is streamed back; the event loop never
waits on git.

Access, as for the API: public repositories clone anonymously; a private (or unknown)
repository answers 401 with ``WWW-Authenticate: Basic`` to an anonymous client, so git asks for
credentials (any user name, the token as password), and 404 to a token that may not see it
(git: "repository not found"). Pushing needs a write token for the namespace: 401 challenge
without credentials, 403 with a read token or another user's. A push is checked by the
pre-receive hook in ``git_hooks.py`` (LFS objects present, no large non-LFS files, branches and
tags only, main not deleted; force pushes are allowed), and once refs moved ``Hub.refresh``
updates the card metadata, tags and last-modified date before the client gets its answer.
"""

from __future__ import annotations

import asyncio
import logging
import os
import re
import signal

from starlette.concurrency import run_in_threadpool
from starlette.responses import Response, StreamingResponse

from peluk.hub import ERROR_REPO_NOT_FOUND
from peluk.serve.hub import git_hooks, protocol
from peluk.serve.hub.handlers import route
from peluk.serve.hub.service import RepoNotFound, TooLarge, Unauthorized

log = logging.getLogger("peluk.hub")
SERVICES = ("git-upload-pack", "git-receive-pack")
CHALLENGE = {"WWW-Authenticate": 'Basic realm="peluk hub"'}
GIT_PROTOCOL = re.compile(r"[A-Za-z0-9=:.-]{1,100}")  # e.g. "version=2"
CHUNK = 1 << 16
_hooks_ready: set[str] = set()


def authorize(ctx, prefix: str, repo: str, write: bool):
    """(repo row, None) when the caller may clone (or push), else (None, the 401 challenge).

    Raises the hub's errors (RepoNotFound, Forbidden, Gated) for a caller with a token.
    """
    try:
        row = (ctx.hub.writable if write else ctx.hub.find)(protocol.PREFIX_TYPE[prefix], repo.removesuffix(".git"),
                                                          ctx.user)
        if not write:
            ctx.hub.check_gate(row, ctx.user, "")
        return row, None
    except (RepoNotFound, Unauthorized) as e:
        if ctx.user is not None:
            raise
        code = ERROR_REPO_NOT_FOUND if isinstance(e, RepoNotFound) else None
        return None, protocol.error(401, f"{e} (git: use your token as the password)", code, CHALLENGE)


@route("GET", "/{prefix}{repo}/info/refs", stream=True)
async def info_refs(ctx, prefix, repo):
    service = ctx.q("service")
    if service not in SERVICES:
        return protocol.error(400, "This hub speaks git's smart HTTP protocol only: "
                                   "info/refs needs ?service=git-upload-pack or git-receive-pack")
    return await backend(ctx, prefix, repo, service, "/info/refs")


@route("POST", "/{prefix}{repo}/git-upload-pack", stream=True)
async def upload_pack(ctx, prefix, repo):
    return await backend(ctx, prefix, repo, "git-upload-pack", "/git-upload-pack")


@route("POST", "/{prefix}{repo}/git-receive-pack", stream=True)
async def receive_pack(ctx, prefix, repo):
    return await backend(ctx, prefix, repo, "git-receive-pack", "/git-receive-pack")


@route("GET", "/{prefix}{repo}.git/info/lfs/locks")
@route("POST", "/{prefix}{repo}.git/info/lfs/locks")
@route("POST", "/{prefix}{repo}.git/info/lfs/locks/verify")
def lfs_locks(ctx, prefix, repo):
    """The hub has no file locking: 501 makes git-lfs turn its lock check off for the remote, silently."""
    return protocol.error(501, "This hub does not implement Git LFS file locking")


def cgi_env(ctx, git_dir, tail: str) -> dict[str, str]:
    """The environment of ``git http-backend`` for this request (CGI variables + the hub's settings)."""
    request, hub = ctx.request, ctx.hub
    hooks = hub.home / "git-hooks"
    if str(hooks) not in _hooks_ready:
        git_hooks.install(hooks)
        _hooks_ready.add(str(hooks))
    config = {"core.hooksPath": str(hooks), "http.receivepack": "true", "receive.fsckObjects": "true",
              "uploadpack.allowFilter": "true"}
    env = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "HOME": os.environ.get("HOME", "/"), "LC_ALL": "C",
           "GIT_CONFIG_NOSYSTEM": "1", "GIT_HTTP_EXPORT_ALL": "1",
           "GIT_PROJECT_ROOT": str(git_dir.parent), "PATH_INFO": f"/{git_dir.name}{tail}",
           "REQUEST_METHOD": request.method, "QUERY_STRING": request.url.query,
           "CONTENT_TYPE": request.headers.get("content-type", ""),
           "REMOTE_ADDR": request.client.host if request.client else "",
           "PELUK_HUB_LFS": str(hub.storage.lfs.objects.parent),
           "PELUK_HUB_LFS_THRESHOLD": str(hub.storage.lfs_threshold),
           "GIT_CONFIG_COUNT": str(len(config))}
    for i, (key, value) in enumerate(config.items()):
        env[f"GIT_CONFIG_KEY_{i}"], env[f"GIT_CONFIG_VALUE_{i}"] = key, value
    if ctx.user is not None:
        env["REMOTE_USER"] = ctx.user.name
    if (length := request.headers.get("content-length", "")).isdigit():
        env["CONTENT_LENGTH"] = length
    if encoding := request.headers.get("content-encoding"):
        env["HTTP_CONTENT_ENCODING"] = encoding  # the backend inflates gzip bodies itself
    if (version := request.headers.get("git-protocol", "")) and GIT_PROTOCOL.fullmatch(version):
        env["HTTP_GIT_PROTOCOL"] = env["GIT_PROTOCOL"] = version
    return env


async def backend(ctx, prefix: str, repo: str, service: str, tail: str) -> Response:
    push = service == "git-receive-pack"
    row, denied = await run_in_threadpool(authorize, ctx, prefix, repo, push)
    if denied is not None:
        return denied
    hub, git = ctx.hub, ctx.hub.git(row)
    before = await run_in_threadpool(git.refs) if push and tail != "/info/refs" else None
    proc = await asyncio.create_subprocess_exec(
        "git", "http-backend", stdin=asyncio.subprocess.PIPE, stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE, env=cgi_env(ctx, git.path, tail), start_new_session=True)
    errors = asyncio.create_task(proc.stderr.read())
    feeder = asyncio.create_task(_feed(ctx.request, proc.stdin, hub.max_request_size))
    try:
        try:  # the backend writes its CGI headers first, then reads the body, then answers
            head = await proc.stdout.readuntil(b"\r\n\r\n")
        except (asyncio.IncompleteReadError, asyncio.LimitOverrunError):
            head = None
        await feeder  # the whole body is read before the answer (Starlette listens for disconnects then)
    except BaseException:  # TooLarge (→ 413), a client gone, a cancelled request: no ref is locked yet
        feeder.cancel()
        _terminate(proc)
        raise
    if head is None:
        _terminate(proc)
        message = (await errors).decode(errors="replace").strip()
        log.warning("peluk hub: git http-backend failed for %s: %s", row.id, message)
        return protocol.error(500, f"git {service} failed: {message}")
    status, headers = _cgi_headers(head)

    async def finish() -> None:
        code = await proc.wait()
        if code != 0:
            log.warning("peluk hub: git %s for %s exited with %s: %s", service, row.id, code,
                        (await errors).decode(errors="replace").strip())
        if before is not None:
            await run_in_threadpool(_refresh_if_moved, hub, git, row, before)

    async def body():
        done = False
        try:
            while chunk := await proc.stdout.read(CHUNK):
                yield chunk
            await finish()  # the metadata is refreshed before the client hears that its push landed
            done = True
        finally:
            if not done and push:  # the client left: let receive-pack finish (never kill it holding ref locks)
                task = asyncio.get_running_loop().create_task(_drain(proc, finish))
                _background.add(task)
                task.add_done_callback(_background.discard)
            elif not done:
                _terminate(proc)
    return StreamingResponse(body(), status_code=status, headers=headers)


_background: set[asyncio.Task] = set()


async def _drain(proc, finish) -> None:
    while await proc.stdout.read(CHUNK):
        pass
    await finish()


def _refresh_if_moved(hub, git, row, before: dict) -> None:
    if git.refs() != before:
        hub.refresh(row)


async def _feed(request, stdin, limit: int) -> int:
    """Stream the request body into the backend; the whole body is read (the response needs it so)."""
    total, broken = 0, False
    async for chunk in request.stream():
        total += len(chunk)
        if total > limit:
            raise TooLarge(f"Request body is above this hub's limit of {limit} bytes")
        if chunk and not broken:
            try:
                stdin.write(chunk)
                await stdin.drain()
            except (BrokenPipeError, ConnectionResetError):
                broken = True  # the backend stopped reading (an error it will report): drain the rest
    if not broken:
        stdin.close()
    return total


def _terminate(proc) -> None:
    """SIGTERM to the backend and its git children: git removes its lock files and temporary objects."""
    if proc.returncode is None:
        try:
            os.killpg(proc.pid, signal.SIGTERM)
        except ProcessLookupError:
            pass


def _cgi_headers(head: bytes) -> tuple[int, dict[str, str]]:
    status, headers = 200, {}
    for line in head.decode("latin-1").split("\r\n"):
        name, _, value = line.partition(":")
        if not name:
            continue
        if name.lower() == "status":
            status = int(value.split()[0])
        else:
            headers[name.strip()] = value.strip()
    return status, headers
