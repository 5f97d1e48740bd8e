"""The Git LFS batch API of the hub, for huggingface_hub uploads and for git-lfs (spec §7.3, §7.4, §10.4).

``POST /{prefix}{repo}.git/info/lfs/objects/batch`` answers with signed transfer URLs on this
server: huggingface_hub sends no Authorization header to them, so the signature (HMAC with the
hub's secret, with an expiry) is the grant. Uploads are streamed into ``lfs/tmp`` and appear in
the object store only once their sha256 and size match.
"""

from __future__ import annotations

import asyncio

from starlette.concurrency import run_in_threadpool
from starlette.responses import JSONResponse, Response

from peluk.hub import ERROR_REPO_NOT_FOUND, LFS_CONTENT_TYPE
from peluk.serve.hub import protocol
from peluk.serve.hub.handlers import route
from peluk.serve.hub.protocol import BadRequest, FileResponse
from peluk.serve.hub.service import RepoNotFound, Unauthorized
from peluk.serve.hub.storage import SHA256, EntryNotFound, Invalid


@route("POST", "/{prefix}{repo}.git/info/lfs/objects/batch")
def lfs_batch(ctx, prefix, repo):
    body = ctx.json("operation", "objects")
    if body["operation"] not in ("upload", "download"):
        raise BadRequest('operation must be "upload" or "download"')
    upload, repo_type = body["operation"] == "upload", protocol.PREFIX_TYPE[prefix]
    try:
        row, _, _ = ctx.open(repo_type, repo, write=upload)
    except (RepoNotFound, Unauthorized) as e:  # git-lfs only sends credentials after a Basic challenge
        if ctx.user is not None:
            raise
        return protocol.error(401, str(e), ERROR_REPO_NOT_FOUND if isinstance(e, RepoNotFound) else None,
                              {"WWW-Authenticate": 'Basic realm="peluk hub"'})
    if not upload:
        ctx.hub.check_gate(row, ctx.user, "")
    actions = lambda oid, size: ctx.hub.lfs_actions(ctx.base, row, oid, size, upload)  # noqa: E731
    return protocol.lfs_response(protocol.lfs_batch(body["objects"], upload, ctx.hub.storage.lfs.size,
                                                    ctx.hub.max_file_size, actions))


@route("PUT", "/{prefix}{repo}.git/info/lfs/objects/{oid}", stream=True)
async def lfs_upload(ctx, prefix, repo, oid):
    """Signed upload URL: the client sends no Authorization here (spec §7.4); the signature is the grant."""
    size = ctx.hub.check_lfs_url(protocol.PREFIX_TYPE[prefix], repo, oid, "upload", ctx.params)
    with ctx.hub.storage.lfs.writer(oid, size) as writer:  # a temp file, renamed once verified
        await pipe(ctx.request.stream(), writer.write)
        await run_in_threadpool(writer.finish)
    return Response()


async def pipe(chunks, write, batch: int = 4 << 20) -> None:
    """``write(chunk)`` every chunk in a worker thread, about ``batch`` bytes at a time.

    One batch is hashed and written while the next one is received, so the network, sha256 and
    the disk overlap; memory stays bounded (about two batches).
    """
    def write_all(parts: list[bytes]) -> None:
        for part in parts:
            write(part)

    writing, parts, size = None, [], 0
    try:
        async for chunk in chunks:
            parts.append(chunk)
            size += len(chunk)
            if size >= batch:
                if writing is not None:
                    await writing
                writing, parts, size = asyncio.ensure_future(run_in_threadpool(write_all, parts)), [], 0
        if writing is not None:
            await writing
        await run_in_threadpool(write_all, parts)
    finally:
        if writing is not None:  # when the upload broke off, the thread ends before the file is closed
            await asyncio.wait([writing])
            if not writing.cancelled():
                writing.exception()  # retrieved: raised above, or superseded by the error being raised


@route("GET", "/{prefix}{repo}.git/info/lfs/objects/{oid}")
def lfs_download(ctx, prefix, repo, oid):
    ctx.hub.check_lfs_url(protocol.PREFIX_TYPE[prefix], repo, oid, "download", ctx.params)  # issued by the batch API
    if ctx.hub.storage.lfs.size(oid) is None:
        raise EntryNotFound(f"Object {oid} does not exist")
    return FileResponse(ctx.hub.storage.lfs.path(oid), media_type="application/octet-stream")


@route("POST", "/{prefix}{repo}.git/info/lfs/objects/verify")
def lfs_verify(ctx, prefix, repo):
    """Signed by the batch API (git-lfs sends no credentials here), or called with a write token."""
    repo_type, signed = protocol.PREFIX_TYPE[prefix], ctx.q("sig") is not None
    if not signed:
        ctx.open(repo_type, repo, write=True)
    body = ctx.json("oid", "size")
    oid, size = str(body["oid"]), body["size"]
    if signed:
        ctx.hub.check_lfs_url(repo_type, repo, oid, "verify", ctx.params, size)
    stored = ctx.hub.storage.lfs.size(oid) if SHA256.fullmatch(oid) else None
    if stored is None or stored != size:
        raise Invalid(f"LFS object {oid} with {size} bytes was not uploaded (found: {stored})")
    return JSONResponse({}, media_type=LFS_CONTENT_TYPE)
