"""Wire shapes of the Hugging Face Hub API (../shared/specs/hub-protocol.md), and nothing else.

JSON bodies the clients parse, typed error responses (``X-Error-Code``), dates with a literal
``Z``, the NDJSON commit format, preupload's upload modes, the LFS batch answer, Range headers
and ``Link`` pagination. Handlers build responses only through these functions.
"""

from __future__ import annotations

import base64
import binascii
import json
import re
from datetime import datetime, timezone
from pathlib import Path
from typing import Callable, Iterable
from urllib.parse import parse_qsl, urlencode

from starlette import responses
from starlette.requests import ClientDisconnect
from starlette.responses import JSONResponse, Response

from peluk.hub import (DATE_FORMAT, ERROR_ENTRY_NOT_FOUND, ERROR_GATED_REPO, ERROR_REPO_NOT_FOUND,
                       ERROR_REVISION_NOT_FOUND, HEADER_ERROR_CODE, HEADER_ERROR_MESSAGE, HEADER_LINKED_ETAG,
                       HEADER_LINKED_SIZE, HEADER_REPO_COMMIT, LFS_CONTENT_TYPE, REPO_TYPES, URL_PREFIX)
from peluk.serve.hub import cards
from peluk.serve.hub.db import Repo
from peluk.serve.hub.service import Forbidden, Gated, RepoNotFound, Staging, TooLarge, Unauthorized
from peluk.serve.hub.storage import (SHA256, Conflict, CommitInfo, Entry, EntryNotFound, Invalid, LfsRules,
                                     RevisionNotFound, wildmatch)

# Exception → (HTTP status, X-Error-Code). Not-found answers always carry their code: it is how
# the client tells a missing file from a broken server (spec §2). A client gone mid-body is no bug.
ERRORS = [(RepoNotFound, 404, ERROR_REPO_NOT_FOUND), (RevisionNotFound, 404, ERROR_REVISION_NOT_FOUND),
          (EntryNotFound, 404, ERROR_ENTRY_NOT_FOUND), (Gated, 403, ERROR_GATED_REPO), (Unauthorized, 401, None),
          (Forbidden, 403, None), (Conflict, 409, None), (TooLarge, 413, None), (Invalid, 400, None),
          (ClientDisconnect, 400, None)]
TREE_PAGE, TREE_EXPAND_PAGE, LIST_PAGE, COMMITS_PAGE = 1000, 50, 1000, 50
PREFIX_TYPE = {prefix: repo_type for repo_type, prefix in URL_PREFIX.items()}  # "datasets/" → "dataset"


class BadRequest(Invalid):
    """Malformed input (not JSON, missing field...): 400 with a message naming the field."""


class FileResponse(responses.FileResponse):
    """Starlette's file answer (HEAD, Range) in 1 MiB reads: each read is a thread hop, and its
    64 KiB default capped a download at a third of the speed on the bench (bench/hub.py)."""
    chunk_size = 1 << 20


def header_safe(text: str) -> str:
    """``text`` as a legal header value: ASCII, control characters escaped, at most 1000 characters."""
    text = str(text).encode("ascii", "backslashreplace").decode()
    return re.sub(r"[\x00-\x1f\x7f]", lambda m: f"\\x{ord(m[0]):02x}", text)[:1000]


def error(status: int, message: str, code: str | None = None, headers: dict | None = None, **extra) -> JSONResponse:
    """The Hub's error answer: JSON ``{"error": ...}`` plus X-Error-Message / X-Error-Code headers."""
    hdrs = {HEADER_ERROR_MESSAGE: header_safe(message), **(headers or {})}
    if code:
        hdrs[HEADER_ERROR_CODE] = code
    return JSONResponse({"error": message, **extra}, status_code=status, headers=hdrs)


def error_for(exc: Exception, headers: dict | None = None) -> JSONResponse | None:
    """The response for a hub exception, None for an unexpected one (a bug: 500)."""
    for cls, status, code in ERRORS:
        if isinstance(exc, cls):
            return error(status, str(exc), code, headers)
    return None


def date(stamp: str | float | None) -> str | None:
    """A stored ISO stamp or a unix time → ``YYYY-MM-DDTHH:MM:SS.000Z`` (the only form clients parse)."""
    if stamp is None or stamp == "":
        return None
    if isinstance(stamp, (int, float)):
        return datetime.fromtimestamp(stamp, timezone.utc).strftime(DATE_FORMAT)
    return stamp[:19] + ".000Z"


def repo_url(base: str, repo: Repo | tuple[str, str]) -> str:
    repo_type, repo_id = (repo.type, repo.id) if isinstance(repo, Repo) else repo
    return f"{base}/{URL_PREFIX[repo_type]}{repo_id}"


def file_entry(e: Entry, last_commit: CommitInfo | None = None) -> dict:
    """A tree / paths-info entry; for LFS files ``size`` is the real size and ``lfs`` says so."""
    out = {"type": e.type, "oid": e.oid, "size": e.size, "path": e.path}
    if e.lfs is not None:
        out["lfs"] = {"oid": e.lfs.oid, "size": e.lfs.size, "pointerSize": e.lfs.pointer_size}
    if last_commit is not None:
        out["lastCommit"] = {"id": last_commit.id, "title": last_commit.title, "date": date(last_commit.date)}
    return out


def sibling(e: Entry, blobs: bool) -> dict:
    out = {"rfilename": e.path}
    if blobs:
        out.update(size=e.size, blobId=e.oid)
        if e.lfs is not None:
            out["lfs"] = {"size": e.lfs.size, "sha256": e.lfs.oid, "pointerSize": e.lfs.pointer_size}
    return out


def repo_info(repo: Repo, sha: str | None, files: list[Entry] | None, blobs: bool = False,
              expand: list[str] | None = None) -> dict:
    """ModelInfo / DatasetInfo / SpaceInfo JSON. ``files=None`` leaves ``siblings`` out (listings)."""
    card = repo.card_data or {}
    info = {"_id": f"{repo.type}:{repo.id}", "id": repo.id, "author": repo.namespace, "sha": sha,
            "lastModified": date(repo.last_modified), "createdAt": date(repo.created), "private": repo.private,
            "gated": repo.gated or False, "disabled": False, "downloads": repo.downloads,
            "downloadsAllTime": repo.downloads, "likes": repo.likes, "tags": repo.tags}
    if repo.type == "model":
        info.update(modelId=repo.id, pipeline_tag=repo.pipeline_tag, library_name=repo.library_name)
    if repo.type == "space":
        info["sdk"] = card.get("sdk")
    if repo.card_data is not None:
        info["cardData"] = repo.card_data
    if files is not None:
        info["siblings"] = [sibling(e, blobs) for e in files if e.type == "file"]
    if expand:
        info = {k: v for k, v in info.items() if k in expand or k in ("_id", "id")}
    return info


def refs(all_refs: dict[str, str], include_prs: bool) -> dict:
    """``/refs`` JSON: branches, converts and tags are all required by the client."""
    def pick(prefix):
        return [{"name": r.removeprefix(prefix), "ref": r, "targetCommit": sha}
                for r, sha in sorted(all_refs.items()) if r.startswith(prefix)]
    out = {"branches": pick("refs/heads/"), "converts": [], "tags": pick("refs/tags/")}
    if include_prs:
        out["pullRequests"] = [{**p, "name": p["ref"]} for p in pick("refs/pr/")]
    return out


def commit(c: CommitInfo) -> dict:
    body = c.message.split("\n", 1)[1].strip() if "\n" in c.message else ""
    return {"id": c.id, "authors": [{"user": c.author, "avatar": None}], "date": date(c.date),
            "title": c.title, "message": body}


def commit_result(base: str, repo: Repo, sha: str, summary: str, pr: int | None) -> dict:
    url = repo_url(base, repo)
    return {"success": True, "commitOid": sha, "commitMessage": summary, "commitUrl": f"{url}/commit/{sha}",
            "pullRequestUrl": f"{url}/discussions/{pr}" if pr is not None else None, "hookOutput": ""}


def next_link(url: str, params: list[tuple[str, str]], offset: int) -> dict:
    """``Link: <url?...&cursor=...>; rel="next"``: the next page URL carries every query parameter."""
    kept = [(k, v) for k, v in params if k != "cursor"]
    cursor = base64.urlsafe_b64encode(json.dumps({"offset": offset}).encode()).decode()
    return {"Link": f'<{url}?{urlencode(kept + [("cursor", cursor)])}>; rel="next"'}


def cursor_offset(cursor: str | None) -> int:
    if not cursor:
        return 0
    try:
        offset = json.loads(base64.urlsafe_b64decode(cursor.encode()))["offset"]
        if isinstance(offset, int) and offset >= 0:
            return offset
    except (ValueError, KeyError, TypeError, binascii.Error):
        pass
    raise BadRequest(f"invalid cursor {cursor!r}: use the Link header of the previous page")


def page(items: list, url: str, params: list[tuple[str, str]], size: int) -> tuple[list, dict]:
    """One page of ``items`` after the request's cursor, with the Link header to the next one."""
    offset = cursor_offset(dict(params).get("cursor"))
    chunk = items[offset:offset + size]
    return chunk, (next_link(url, params, offset + size) if offset + size < len(items) else {})


def json_body(data: bytes, required: Iterable[str] = ()) -> dict:
    try:
        body = json.loads(data or b"{}")
    except ValueError:
        raise BadRequest("the request body is not valid JSON") from None
    if not isinstance(body, dict):
        raise BadRequest("the request body must be a JSON object")
    missing = [k for k in required if k not in body]
    if missing:
        raise BadRequest(f"missing field(s) in the request body: {', '.join(missing)}")
    return body


def repo_named(body: dict, user_name: str | None) -> tuple[str, str]:
    """(repo type, "namespace/name") of a create/delete body ``{"name", "organization", "type"}``."""
    repo_type = body.get("type") or "model"
    if repo_type not in REPO_TYPES or not isinstance(body.get("name"), str):
        raise BadRequest(f'"type" must be one of {REPO_TYPES} and "name" a string')
    namespace, _, name = body["name"].rpartition("/")
    return repo_type, f"{body.get('organization') or namespace or user_name or ''}/{name}"


def visibility(body: dict) -> bool | None:
    """``private`` from a create/settings body (``visibility`` since huggingface_hub 1.31, ``private`` before)."""
    return body["visibility"] == "private" if "visibility" in body else body.get("private")


def search_query(params: list[tuple[str, str]], repo_type: str) -> dict:
    """Keyword arguments of ``Database.search_repos`` from a listing's query string."""
    values = lambda key: [v for k, v in params if k in (key, f"{key}[]")]  # noqa: E731
    first = dict(reversed(params))
    tags = values("filter") + values("library") + values("pipeline_tag")
    tags += [lang if repo_type == "model" else f"language:{lang}" for lang in values("language")]
    try:
        limit = min(max(int(first.get("limit") or LIST_PAGE), 1), LIST_PAGE)
    except ValueError:
        raise BadRequest(f"limit must be an integer, not {first['limit']!r}") from None
    return {"search": " ".join(values("search")) or None, "author": first.get("author"), "tags": tags,
            "sort": first.get("sort") or "lastModified", "descending": first.get("direction") != "1",
            "offset": cursor_offset(first.get("cursor")), "limit": limit}


def paths_request(data: bytes, content_type: str) -> tuple[list[str], bool]:
    """(paths, expand) of a paths-info body: form-encoded (huggingface_hub) or JSON."""
    if content_type.startswith("application/json"):
        body = json_body(data)
        paths, expand = body.get("paths") or [], bool(body.get("expand"))
    else:
        form = parse_qsl(data.decode("utf-8", "replace"))
        paths, expand = [v for k, v in form if k == "paths"], ("expand", "true") in form
    if not isinstance(paths, list) or len(paths) > 1000 or not all(isinstance(p, str) for p in paths):
        raise BadRequest("paths must be a list of at most 1000 strings")
    return paths, expand


def read_commit(lines: Iterable[bytes], staging: Staging) -> dict:
    """Feed an NDJSON commit body into ``staging``; returns its header (summary, description, parentCommit)."""
    header = None
    for n, line in enumerate(lines, 1):
        if not line.strip():
            continue
        try:
            item = json.loads(line)
        except ValueError:
            raise BadRequest(f"line {n} of the commit body is not JSON") from None
        if not isinstance(item, dict) or not isinstance(item.get("value"), dict):
            raise BadRequest(f'line {n} of the commit body must be {{"key": ..., "value": {{...}}}}')
        key, value = item.get("key"), item["value"]
        if header is None:
            if key != "header":
                raise BadRequest("the first line of a commit body must be its header")
            header = value
            if not isinstance(header.get("summary"), str) or not header["summary"].strip():
                raise BadRequest("the commit header needs a non-empty summary")
            parent = header.get("parentCommit")
            if parent is not None and not re.fullmatch(r"[0-9a-f]{40}", str(parent)):
                raise BadRequest(f"parentCommit {header['parentCommit']!r} is not a full commit sha")
        elif key == "file":
            if value.get("encoding", "base64") != "base64" or not isinstance(value.get("content"), str):
                raise BadRequest(f"line {n}: a file needs base64 content (encoding 'base64')")
            try:
                data = base64.b64decode(value["content"], validate=True)
            except (binascii.Error, ValueError):
                raise BadRequest(f"line {n}: the content of {value.get('path')!r} is not valid base64") from None
            staging.add_bytes(value.get("path"), data)
        elif key == "lfsFile":
            if value.get("algo", "sha256") != "sha256" or not isinstance(value.get("oid"), str):
                raise BadRequest(f"line {n}: an lfsFile needs a sha256 oid")
            size = value.get("size")
            if size is not None and not isinstance(size, int):
                raise BadRequest(f"line {n}: size must be an integer")
            staging.add_lfs(value.get("path"), value["oid"], size)
        elif key in ("deletedFile", "deletedFolder"):
            staging.delete(value.get("path"), folder=key == "deletedFolder")
        else:
            raise BadRequest(f"line {n}: unknown commit operation {key!r}")
    if header is None:
        raise BadRequest("empty commit body: a header line is required")
    return header


def client_uploads_lfs(user_agent: str, policy: str = "auto") -> bool:
    """Whether preupload may answer "lfs": the client sends such files through the LFS batch API (spec §7.0).

    ``policy`` "always"/"never" overrides the guess (``create_app(lfs_uploads=...)``).

    huggingface_hub >= 1.1 with hf_xet installed uploads every "lfs" file through Xet, which
    peluk does not speak, and says nothing about it in its requests: such clients get
    "regular" (inline) uploads, and the hub moves large files into LFS itself. Clients known
    to use the LFS batch API get "lfs": huggingface_hub 0.x/1.0, git-lfs, peluk's own client.
    """
    if policy != "auto":
        return policy == "always"
    version = re.search(r"hf_hub/(\d+)\.(\d+)", user_agent)
    if version:
        return (int(version[1]), int(version[2])) < (1, 1)
    return user_agent.startswith(("peluk/", "git-lfs/"))


def validate_yaml(data: bytes) -> JSONResponse:
    """``/api/validate-yaml``: always JSON, even for a bad request (the client parses it before the status)."""
    try:
        body = json_body(data, ["content"])
    except BadRequest as e:
        return JSONResponse({"errors": [{"message": str(e)}], "warnings": []}, status_code=400)
    errors, warnings = cards.validate(str(body["content"]), body.get("repoType") or "model")
    return JSONResponse({"errors": [{"message": m} for m in errors], "warnings": [{"message": m} for m in warnings]},
                        status_code=400 if errors else 200)


def ignored(path: str, gitignore: str) -> bool:
    """Whether a .gitignore text ignores ``path`` (last matching pattern wins; ``!`` re-includes)."""
    verdict = False
    for line in gitignore.splitlines():
        line = line.rstrip()
        if not line or line.startswith("#"):
            continue
        negate, pattern = line.startswith("!"), line.lstrip("!")
        regex, dirs = wildmatch(pattern.rstrip("/")), path.split("/")
        candidates = ["/".join(dirs[:i]) for i in range(1, len(dirs))]
        if not pattern.endswith("/"):
            candidates.append(path)
        if any(regex.fullmatch(c) for c in candidates):
            verdict = not negate
    return verdict


def preupload(files: list, existing: dict[str, Entry], rules: LfsRules, threshold: int, use_lfs: bool,
              gitignore: str, max_file_size: int) -> dict:
    """Upload mode, ignore flag and remote oid of each file a client is about to commit."""
    answer = []
    for f in files:
        if not isinstance(f, dict) or not isinstance(f.get("path"), str) or not isinstance(f.get("size"), int):
            raise BadRequest('each entry of "files" needs a path (string) and a size (integer)')
        if f["size"] > max_file_size:
            raise TooLarge(f"{f['path']} is {f['size']} bytes, above this hub's limit of {max_file_size}")
        try:
            sample = base64.b64decode(f.get("sample") or "")
        except (binascii.Error, ValueError):
            raise BadRequest(f"the sample of {f['path']} is not base64") from None
        lfs = f["size"] > 0 and (f["size"] > threshold or b"\0" in sample or f["path"] in rules)
        remote = existing.get(f["path"])
        answer.append({"path": f["path"], "uploadMode": "lfs" if lfs and use_lfs else "regular",
                       "shouldIgnore": ignored(f["path"], gitignore),
                       "oid": (remote.lfs.oid if remote.lfs else remote.oid) if remote else None})
    return {"files": answer}


def lfs_object(oid: str, size: int, actions: dict | None = None, error_code: int | None = None,
               message: str = "") -> dict:
    """One object of a batch answer. No ``actions`` key at all when there is nothing to do (spec §7.3)."""
    out = {"oid": oid, "size": size, "authenticated": True}
    if error_code is not None:
        out["error"] = {"code": error_code, "message": message}
    elif actions:
        out["actions"] = actions
    return out


def lfs_response(objects: list[dict]) -> JSONResponse:
    return JSONResponse({"transfer": "basic", "objects": objects, "hash_algo": "sha256"},
                        media_type=LFS_CONTENT_TYPE)


class RangeNotSatisfiable(Exception):
    pass


def byte_range(header: str | None, total: int) -> tuple[int, int] | None:
    """(start, end exclusive) of a single ``Range: bytes=a-b`` header; None = whole file.

    Raises:
        RangeNotSatisfiable: the range starts past the end (answer 416).
    """
    match = re.fullmatch(r"\s*bytes\s*=\s*(\d*)\s*-\s*(\d*)\s*", header or "")
    if not match or match[1] == match[2] == "":
        return None  # absent, malformed or multi-range: serve everything (allowed by RFC 9110)
    if match[1] == "":
        return max(total - int(match[2]), 0), total
    start, end = int(match[1]), int(match[2]) + 1 if match[2] else total
    if start >= total or end <= start:
        raise RangeNotSatisfiable()
    return start, min(end, total)


def lfs_batch(objects, upload: bool, stored_size: Callable[[str], int | None], max_size: int,
              actions: Callable[[str, int], dict]) -> list[dict]:
    """The objects of a batch answer: ``actions(oid, size)`` for work to do, an error per bad object."""
    if not isinstance(objects, list):
        raise BadRequest('"objects" must be a list')
    answer = []
    for obj in objects:
        oid, size = (obj.get("oid"), obj.get("size")) if isinstance(obj, dict) else (None, None)
        if not isinstance(oid, str) or not SHA256.fullmatch(oid) or not isinstance(size, int) or size < 0:
            answer.append(lfs_object(str(oid), size if isinstance(size, int) else 0, error_code=422,
                                     message="oid must be a sha256 (64 hex digits) and size an integer"))
            continue
        stored = stored_size(oid)
        if upload and size > max_size:
            answer.append(lfs_object(oid, size, error_code=422, message=f"{size} bytes is above the limit {max_size}"))
        elif upload:
            answer.append(lfs_object(oid, size, actions(oid, size) if stored != size else None))
        elif stored is None:
            answer.append(lfs_object(oid, size, error_code=404, message=f"Object {oid} does not exist"))
        else:
            answer.append(lfs_object(oid, stored, actions(oid, stored)))
    return answer


def file_response(entry: Entry, commit: str, method: str, range_header: str | None, lfs_file: Path | None,
                  read: Callable[[], bytes]) -> Response:
    """A /resolve/ answer, served directly (spec §5.2): the headers the client requires, HEAD, Range."""
    etag = entry.lfs.oid if entry.lfs else entry.oid
    headers = {HEADER_REPO_COMMIT: commit, "ETag": f'"{etag}"', "Accept-Ranges": "bytes",
               "Content-Disposition": f'inline; filename="{header_safe(entry.path.rsplit("/", 1)[-1])}"'}
    if entry.lfs:
        headers.update({HEADER_LINKED_ETAG: f'"{etag}"', HEADER_LINKED_SIZE: str(entry.size)})
        return FileResponse(lfs_file, headers=headers, media_type="application/octet-stream")  # does HEAD, Range
    if method == "HEAD":
        return Response(headers={**headers, "Content-Length": str(entry.size)}, media_type="application/octet-stream")
    data = read()
    try:
        span = byte_range(range_header, len(data))
    except RangeNotSatisfiable:
        return Response(status_code=416, headers={**headers, "Content-Range": f"bytes */{len(data)}"})
    if span is None:
        return Response(data, headers=headers, media_type="application/octet-stream")
    headers["Content-Range"] = f"bytes {span[0]}-{span[1] - 1}/{len(data)}"
    return Response(data[span[0]:span[1]], 206, headers=headers, media_type="application/octet-stream")
