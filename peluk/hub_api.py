"""The hub client: a peluk hub (or any Hugging Face Hub) over HTTP, with huggingface_hub's names.

    HubClient(endpoint=None, token=None, cache_dir=None)
      downloads  snapshot, snapshot_download, hf_hub_download        (into the shared cache: peluk.hub)
      repos      create_repo, delete_repo, repo_info, list_repo_files, list_models, list_datasets, whoami
      uploads    create_commit, upload_file, upload_folder, push_to_hub

The module functions of the same names (and :func:`login`) use the environment's endpoint and
token (``peluk.hub``) unless given ``endpoint=`` / ``token=``.

>>> from peluk.hub_api import create_repo, upload_folder, snapshot_download
>>> create_repo("alice/tiny-bert", exist_ok=True)                              # doctest: +SKIP
'http://127.0.0.1:8000/alice/tiny-bert'
>>> upload_folder("out/", "alice/tiny-bert", commit_message="first version").oid   # doctest: +SKIP
'5f0c...'
>>> snapshot_download("alice/tiny-bert", revision="main")                      # doctest: +SKIP
PosixPath('/root/.cache/huggingface/hub/models--alice--tiny-bert/snapshots/5f0c...')

Only the standard library speaks HTTP. A download goes to ``blobs/<etag>.incomplete``, resumes
from there with a ``Range`` request (after a dropped connection, or in a later run), is checked
against its ETag (sha256 for LFS files, the git blob sha1 for the others) and renamed into
place only if it matches: a cut or corrupt download is never used as a file. An upload asks
``preupload`` which files are LFS files: those go to the signed URL of the LFS batch API and
are verified, the others travel base64-encoded in the NDJSON commit; unchanged files are skipped.
"""

from __future__ import annotations

import base64
import contextlib
import hashlib
import http.client
import io
import json
import logging
import os
import re
import shutil
import sys
import time
import types
import urllib.error
import urllib.request
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import quote, urlencode, urlsplit

from peluk import __version__, hub
from peluk.errors import (EntryNotFoundError, GatedRepoError, HubAuthError, HubError, HubUnreachableError,
                          ModelNotFoundError, PelukError, RevisionNotFoundError)

try:
    import fcntl
except ImportError:  # Windows: downloads are not locked against other processes
    fcntl = None

log = logging.getLogger("peluk.hub")
TIMEOUT = 10  # seconds to connect, and for each read (huggingface_hub's default too)
WRITE_TIMEOUT = 300  # commits and LFS uploads: the hub hashes and writes before it answers
CHUNK = 1 << 20
PROGRESS_MIN = 5 << 20  # downloads above this size get a progress bar (on a terminal)
RETRIES = 5  # attempts per download, each resuming where the previous one stopped
BATCH = 256  # files per preupload and per LFS batch call, as huggingface_hub
SAMPLE = 512  # first bytes of each file shown to preupload (binary files become LFS files)
# "peluk/" tells a peluk hub that this client speaks the LFS batch API (and not Xet).
USER_AGENT = f"peluk/{__version__}; python/{sys.version.split()[0]}"
OFFLINE = "offline mode (PELUK_OFFLINE or HF_HUB_OFFLINE is set)"


@dataclass
class Snapshot:
    """A downloaded revision: ``path`` holds ``files`` of ``commit``."""

    repo_id: str
    repo_type: str
    revision: str
    commit: str
    path: Path
    files: list[str]


@dataclass
class CommitInfo:
    """An upload: the new commit ``oid`` (the branch head if nothing changed), what was sent and what was not."""

    repo_id: str
    oid: str
    commit_url: str | None
    files: list[str]
    unchanged: list[str]


class _DropTokenOffHost(urllib.request.HTTPRedirectHandler):
    """Follow redirects, without the token when one leaves the hub's host (a CDN gets no credentials)."""

    def redirect_request(self, req, fp, code, msg, headers, newurl):
        new = super().redirect_request(req, fp, code, msg, headers, newurl)
        if new is not None and urlsplit(newurl).netloc != urlsplit(req.full_url).netloc:
            new.remove_header("Authorization")
        return new


_OPENER = urllib.request.build_opener(_DropTokenOffHost)


class HubClient:
    """One hub, one token.

    Args:
        endpoint: the hub's URL (default: ``peluk.hub.endpoint()``, i.e. ``$PELUK_ENDPOINT``).
        token: an access token; None reads ``$PELUK_TOKEN`` / ``$HF_TOKEN`` / the saved login; False sends none.
        cache_dir: the download cache (default: ``peluk.hub.cache_dir()``, shared with huggingface_hub).

    Raises (every method): ``ModelNotFoundError`` (no such repo, or a private one the token cannot
    read), ``RevisionNotFoundError``, ``EntryNotFoundError``, ``HubAuthError`` (401/403; ``GatedRepoError``),
    ``HubUnreachableError``, ``HubError`` (any other refusal; ``.status`` is the HTTP status).
    """

    def __init__(self, endpoint: str | None = None, token: str | bool | None = None,
                 cache_dir: str | os.PathLike | None = None):
        self.endpoint = (endpoint or hub.endpoint()).rstrip("/")
        self.token = hub.get_token() if token is None else (token or None)
        self.cache_dir = Path(cache_dir).expanduser() if cache_dir else hub.cache_dir()

    # --- HTTP -----------------------------------------------------------------------------
    def _request(self, method: str, url: str, *, body=None, headers: dict | None = None, ctx: dict | None = None,
                 auth: bool = True, timeout: float = TIMEOUT):
        """Send one request and return the open response; an error answer becomes a typed exception."""
        headers = {"User-Agent": USER_AGENT, **(headers or {})}
        request = urllib.request.Request(url, data=body, method=method, headers=headers)
        if auth and self.token:
            request.add_header("Authorization", f"Bearer {self.token}")
        try:
            return _OPENER.open(request, timeout=timeout)
        except urllib.error.HTTPError as e:
            try:
                data = e.read()
            except (OSError, http.client.HTTPException):
                data = b""
            e.close()
            raise self._error(e.code, e.headers, data, method, url, ctx or {}) from None
        except (OSError, http.client.HTTPException) as e:  # refused, unknown host, timeout, reset
            raise HubUnreachableError(f"cannot reach the hub at {self.endpoint} ({getattr(e, 'reason', e)})") from None

    def _error(self, status: int, headers, body: bytes, method: str, url: str, ctx: dict) -> PelukError:
        """The exception for an error answer, from its ``X-Error-Code`` first (spec §2), then its status."""
        code, message = headers.get(hub.HEADER_ERROR_CODE), headers.get(hub.HEADER_ERROR_MESSAGE) or _message(body)
        message = message or f"HTTP {status}"
        what = f"{ctx.get('repo_type', 'model')} {ctx['repo_id']!r}" if "repo_id" in ctx else "the request"
        revision = ctx.get("revision") or "main"
        if code == hub.ERROR_REPO_NOT_FOUND:
            hint = " (or your token may not read it)" if self.token else \
                "; if it is private, log in (peluk login) or set PELUK_TOKEN"
            return ModelNotFoundError(f"{what} was not found on the hub at {self.endpoint}: check the name{hint}")
        if code == hub.ERROR_REVISION_NOT_FOUND:
            return RevisionNotFoundError(f"{what} has no revision {revision!r} (branch, tag or commit) "
                                         f"on the hub at {self.endpoint}")
        if code == hub.ERROR_ENTRY_NOT_FOUND:
            entry = f"file {ctx['filename']!r}" if "filename" in ctx else "such file"
            return EntryNotFoundError(f"{what} has no {entry} at revision {revision!r} ({message})")
        if code == hub.ERROR_GATED_REPO:
            error = GatedRepoError(f"{what} is gated: {message}")
        elif status == 401 and self.token:
            error = HubAuthError(f"the hub at {self.endpoint} rejected the token ({message}): run `peluk login` "
                                 "with a valid token, or set PELUK_TOKEN")
        elif status == 401:
            error = HubAuthError(f"the hub at {self.endpoint} needs a token for this ({message}): run `peluk login` "
                                 "or set PELUK_TOKEN")
        elif status == 403:
            error = HubAuthError(f"{what}: {message}")
        else:
            error = HubError(f"{method} {url} failed with HTTP {status}: {message}")
        error.status = status
        return error

    def _json(self, method: str, url: str, payload=None, *, body: bytes | None = None, ctx: dict | None = None,
              content_type: str = "application/json", headers: dict | None = None, timeout: float = TIMEOUT,
              auth: bool = True):
        if payload is not None:
            body = json.dumps(payload).encode()
        headers = {**({"Content-Type": content_type} if body is not None else {}), **(headers or {})}
        with self._request(method, url, body=body, headers=headers, ctx=ctx, timeout=timeout, auth=auth) as r:
            data = r.read()
        return json.loads(data) if data.strip() else None

    def _pages(self, url: str, ctx: dict | None = None):
        """The items of a paginated list, following ``Link: <...>; rel="next"`` headers."""
        while url:
            with self._request("GET", url, ctx=ctx) as r:
                items, url = json.load(r), _next_link(r.headers.get("Link"))
            yield from items

    def _api(self, repo_type: str, repo_id: str, suffix: str = "") -> str:
        return f"{self.endpoint}/api/{hub.API_SEGMENT[repo_type]}/{repo_id}{suffix}"

    def _file_url(self, repo_type: str, repo_id: str, revision: str, path: str) -> str:
        return f"{self.endpoint}/{hub.URL_PREFIX[repo_type]}{repo_id}/resolve/{quote(revision, safe='')}/{quote(path)}"

    # --- downloads ------------------------------------------------------------------------
    def snapshot(self, repo_id: str, *, revision: str | None = None, repo_type: str = "model", allow_patterns=None,
                 ignore_patterns=None, files: list[str] | None = None, local_dir: str | os.PathLike | None = None,
                 prefer_safetensors: bool = False) -> Snapshot:
        """Download what the cache lacks of ``revision`` and describe the result (see ``snapshot_download``).

        Args:
            files: exact paths to fetch instead of patterns (a missing one is ``EntryNotFoundError``).
            prefer_safetensors: skip ``pytorch_model*.bin`` when the repo has ``*.safetensors`` weights.
        """
        revision, folder = revision or "main", hub.repo_folder(repo_id, repo_type, self.cache_dir)
        ctx = {"repo_id": repo_id, "repo_type": repo_type, "revision": revision}

        def wanted(paths):
            return list(files) if files is not None else hub.select(paths, allow_patterns, ignore_patterns,
                                                                     prefer_safetensors)
        if hub.offline():
            return self._cached(repo_id, repo_type, revision, folder, OFFLINE, wanted, local_dir)
        if hub.is_commit(revision) and (names := hub.complete_snapshot(folder, revision, wanted)) is not None:
            snap = Snapshot(repo_id, repo_type, revision, revision, folder / "snapshots" / revision, names)
            return _into(snap, local_dir)  # a commit never changes: no request
        try:
            url = self._api(repo_type, repo_id, f"/revision/{quote(revision, safe='')}")
            commit = self._json("GET", url, ctx=ctx)["sha"]
            tree = self._tree(repo_id, repo_type, commit, ctx)
        except HubUnreachableError as e:
            log.warning("%s; using the local cache", e)
            return self._cached(repo_id, repo_type, revision, folder, str(e), wanted, local_dir)
        hub.write_manifest(folder, commit, tree)
        hub.write_ref(folder, revision, commit)
        names, snapshot = wanted(sorted(tree)), folder / "snapshots" / commit
        if unknown := [n for n in names if n not in tree]:
            raise EntryNotFoundError(f"{repo_type} {repo_id!r} has no file {unknown[0]!r} at revision {revision!r} "
                                     f"(commit {commit})")
        snapshot.mkdir(parents=True, exist_ok=True)
        for name in names:
            if not (snapshot / name).exists():
                etag, size = tree[name]
                blob = folder / "blobs" / etag
                url = self._file_url(repo_type, repo_id, commit, name)
                self._fetch(url, blob, etag, size, {**ctx, "filename": name})
                hub.link(blob, snapshot / name)
        return _into(Snapshot(repo_id, repo_type, revision, commit, snapshot, names), local_dir)

    def _cached(self, repo_id, repo_type, revision, folder, why, wanted, local_dir) -> Snapshot:
        path, names = hub.cached_snapshot(repo_id, revision, repo_type, folder, why, wanted)
        return _into(Snapshot(repo_id, repo_type, revision, path.name, path, names), local_dir)

    def snapshot_download(self, repo_id: str, **options) -> Path:
        """Download a revision (every file, or those matching ``allow_patterns`` and no ``ignore_patterns``).

        Args:
            repo_id: ``"owner/name"``.
            revision: branch, tag or commit sha (default ``"main"``).
            repo_type: ``"model"``, ``"dataset"`` or ``"space"``.
            allow_patterns, ignore_patterns: fnmatch patterns (``"*.json"``, ``"onnx/"``).
            local_dir: also copy the files there, and return it.

        Returns:
            ``<cache>/models--owner--name/snapshots/<commit>`` (or ``local_dir``). Offline, or when the
            hub cannot be reached, the cached snapshot without a request (``NotCachedError`` if absent).
        """
        return self.snapshot(repo_id, **options).path

    def hf_hub_download(self, repo_id: str, filename: str, *, revision: str | None = None, repo_type: str = "model",
                        local_dir: str | os.PathLike | None = None) -> Path:
        """Download one file (a HEAD for its commit and ETag, then a GET unless its blob is cached); return its path."""
        revision, folder = revision or "main", hub.repo_folder(repo_id, repo_type, self.cache_dir)
        ctx = {"repo_id": repo_id, "repo_type": repo_type, "revision": revision, "filename": filename}
        _safe(filename)
        cached = folder / "snapshots" / revision / filename
        if hub.offline():
            path = hub.cached_file(repo_id, filename, revision, repo_type, folder, OFFLINE)
        elif hub.is_commit(revision) and cached.exists():
            path = cached
        else:
            try:
                with self._request("HEAD", self._file_url(repo_type, repo_id, revision, filename),
                                   headers={"Accept-Encoding": "identity"}, ctx=ctx) as r:
                    headers = r.headers
            except HubUnreachableError as e:
                log.warning("%s; using the local cache", e)
                return _copy_into(hub.cached_file(repo_id, filename, revision, repo_type, folder, str(e)),
                                  local_dir, filename)
            commit = headers.get(hub.HEADER_REPO_COMMIT) or ""
            etag = (headers.get(hub.HEADER_LINKED_ETAG) or headers.get("ETag") or "").removeprefix("W/").strip('"')
            size = headers.get(hub.HEADER_LINKED_SIZE) or headers.get("Content-Length")
            if not hub.is_commit(commit) or not re.fullmatch(r"[\w.-]+", etag):
                raise HubError(f"{self.endpoint} answered for {filename!r} without a commit ({hub.HEADER_REPO_COMMIT}) "
                               "or a usable ETag: is it a Hugging Face Hub endpoint?")
            hub.write_ref(folder, revision, commit)
            path = folder / "snapshots" / commit / filename
            if not path.exists():
                blob = folder / "blobs" / etag
                self._fetch(self._file_url(repo_type, repo_id, commit, filename), blob, etag,
                            int(size) if size and size.isdigit() else None, ctx)
                hub.link(blob, path)
        return _copy_into(path, local_dir, filename)

    def _fetch(self, url: str, blob: Path, etag: str, size: int | None, ctx: dict) -> None:
        """Download ``url`` into ``blob`` through ``blob.incomplete`` (resumed), verified against ``etag``."""
        name, what = ctx["filename"], f"{ctx['repo_type']} {ctx['repo_id']!r}"
        with _locked(self.cache_dir / ".locks" / blob.parent.parent.name / f"{etag}.lock"):  # huggingface_hub's lock
            if blob.exists():
                return  # another process finished it meanwhile
            part = blob.with_name(blob.name + ".incomplete")
            blob.parent.mkdir(parents=True, exist_ok=True)
            for attempt in range(RETRIES):
                try:
                    self._get_into(url, part, size, name, ctx)
                    break
                except (HubUnreachableError, ConnectionError, TimeoutError, http.client.HTTPException) as e:
                    error = e  # the hub went away, the connection dropped, or a read took too long: resume
                if attempt < RETRIES - 1:
                    time.sleep(0.5 * 2 ** attempt)
            else:
                have = part.stat().st_size if part.exists() else 0
                raise HubError(f"the download of {name!r} from {what} stopped at {have} of {size} bytes ({error}); "
                               "run again to resume it") from None
            _verify(part, etag, size, f"{name!r} from {what}")
            os.replace(part, blob)

    def _get_into(self, url: str, part: Path, size: int | None, name: str, ctx: dict) -> None:
        have = part.stat().st_size if part.exists() else 0
        if size is not None and have >= size:
            if have == size:
                return
            have = 0  # longer than the file: not a prefix of it
        with self._request("GET", url, headers={"Range": f"bytes={have}-"} if have else {}, ctx=ctx) as r:
            if r.status != 206:
                have = 0  # a whole file, not the rest of one: start again
            with open(part, "ab" if have else "wb") as f, _progress(size, have, name) as bar:
                while chunk := r.read(CHUNK):
                    f.write(chunk)
                    bar.update(len(chunk))
        if size is not None and part.stat().st_size < size:
            raise ConnectionError(f"the connection closed after {part.stat().st_size} of {size} bytes")

    def _tree(self, repo_id: str, repo_type: str, revision: str, ctx: dict) -> dict[str, tuple[str, int]]:
        """``{path: (etag, size)}`` of every file at ``revision`` (the etag the /resolve/ answers carry)."""
        url = self._api(repo_type, repo_id, f"/tree/{quote(revision, safe='')}?recursive=true&expand=false")
        files = {}
        for entry in self._pages(url, ctx):
            if entry.get("type") == "file":
                lfs = entry.get("lfs")
                etag, size = (lfs["oid"], lfs["size"]) if lfs else (entry["oid"], entry["size"])
                files[_safe(entry["path"])] = (etag, int(size))
        return files

    # --- repositories ---------------------------------------------------------------------
    def whoami(self) -> dict:
        """``{"name": ..., "orgs": [...], "auth": {...}}`` of the token's user."""
        if not self.token:
            raise HubAuthError("this needs a token (to know who you are): run `peluk login` or set PELUK_TOKEN")
        return self._json("GET", f"{self.endpoint}/api/whoami-v2")

    def _full_id(self, repo_id: str) -> str:
        return repo_id if "/" in repo_id else f"{self.whoami()['name']}/{repo_id}"

    def create_repo(self, repo_id: str, *, repo_type: str = "model", private: bool = False,
                    exist_ok: bool = False) -> str:
        """Create a repository (in the token owner's namespace without ``owner/``); returns its URL.

        Raises:
            HubError: it exists (status 409; unless ``exist_ok``), or the name is invalid (400).
        """
        repo_id = self._full_id(repo_id)
        namespace, name = repo_id.split("/", 1)
        payload = {"name": name, "organization": namespace, "private": bool(private),
                   **({"type": repo_type} if repo_type != "model" else {})}
        try:
            return self._json("POST", f"{self.endpoint}/api/repos/create", payload)["url"]
        except HubError as e:
            if e.status != 409:
                raise
            if exist_ok:
                return f"{self.endpoint}/{hub.URL_PREFIX[repo_type]}{repo_id}"
            error = HubError(f"{repo_type} {repo_id!r} already exists on the hub at {self.endpoint} "
                             "(pass exist_ok=True to use it)")
            error.status = 409
            raise error from None

    def delete_repo(self, repo_id: str, *, repo_type: str = "model", missing_ok: bool = False) -> None:
        """Delete a repository and its history (for good)."""
        namespace, _, name = repo_id.rpartition("/")
        try:
            self._json("DELETE", f"{self.endpoint}/api/repos/delete",
                       {"name": name, "organization": namespace or None, "type": repo_type},
                       ctx={"repo_id": repo_id, "repo_type": repo_type})
        except ModelNotFoundError:
            if not missing_ok:
                raise

    def repo_info(self, repo_id: str, *, repo_type: str = "model", revision: str | None = None) -> dict:
        """The hub's JSON about a repository: ``id``, ``sha``, ``private``, ``siblings``, ``cardData``, dates..."""
        suffix = f"/revision/{quote(revision, safe='')}" if revision else ""
        return self._json("GET", self._api(repo_type, repo_id, suffix),
                          ctx={"repo_id": repo_id, "repo_type": repo_type, "revision": revision})

    def list_repo_files(self, repo_id: str, *, repo_type: str = "model", revision: str | None = None) -> list[str]:
        """Every file path of a revision (default ``main``)."""
        revision = revision or "main"
        return sorted(self._tree(repo_id, repo_type, revision,
                                 {"repo_id": repo_id, "repo_type": repo_type, "revision": revision}))

    def list_models(self, *, search: str | None = None, author: str | None = None, filter=None,
                    sort: str | None = None, limit: int | None = None) -> list[dict]:
        """Model repositories the token may see: ``search`` in the name, ``author``, ``filter`` tags (all of them)."""
        return self._list("model", search, author, filter, sort, limit)

    def list_datasets(self, *, search: str | None = None, author: str | None = None, filter=None,
                      sort: str | None = None, limit: int | None = None) -> list[dict]:
        """Dataset repositories, as :meth:`list_models`."""
        return self._list("dataset", search, author, filter, sort, limit)

    def _list(self, repo_type, search, author, filter, sort, limit) -> list[dict]:
        tags = [filter] if isinstance(filter, str) else list(filter or [])
        query = [("search", search), ("author", author), ("sort", sort), ("limit", limit)]
        query = [(k, v) for k, v in query if v is not None] + [("filter", t) for t in tags]
        url = f"{self.endpoint}/api/{hub.API_SEGMENT[repo_type]}?{urlencode(query)}"
        found = []
        for item in self._pages(url):
            found.append(item)
            if limit is not None and len(found) >= limit:
                break
        return found

    # --- uploads --------------------------------------------------------------------------
    def create_commit(self, repo_id: str, files: dict, *, repo_type: str = "model", revision: str = "main",
                      commit_message: str = "Upload with peluk", commit_description: str = "",
                      parent_commit: str | None = None) -> CommitInfo:
        """Add or replace ``files`` (``{path in repo: local path or bytes}``) in one commit on branch ``revision``.

        Files the branch already has with the same content are left out; with nothing left there is
        no commit and ``oid`` is the branch head. ``parent_commit`` makes the commit fail (409) if the
        branch moved meanwhile.
        """
        ctx = {"repo_id": repo_id, "repo_type": repo_type, "revision": revision}
        uploads = [_Upload(path, source) for path, source in files.items()]
        if not uploads:
            raise HubError(f"nothing to upload to {repo_type} {repo_id!r}")
        rev = quote(revision, safe="")
        modes = {}
        for chunk in _chunks(uploads):
            answer = self._json("POST", self._api(repo_type, repo_id, f"/preupload/{rev}"), {"files": [
                {"path": u.path, "size": u.size, "sample": base64.b64encode(u.sample()).decode()} for u in chunk]},
                ctx=ctx, timeout=WRITE_TIMEOUT)
            modes.update({f["path"]: f for f in answer["files"]})
        lfs, regular, unchanged = [], [], []
        for u in uploads:
            mode = modes.get(u.path, {})
            if mode.get("shouldIgnore"):
                continue  # the repository's .gitignore excludes it
            u.lfs = mode.get("uploadMode") == "lfs"
            if mode.get("oid") == u.oid():
                unchanged.append(u.path)
            else:
                (lfs if u.lfs else regular).append(u)
        if not lfs and not regular:
            return CommitInfo(repo_id, self.repo_info(repo_id, repo_type=repo_type, revision=revision)["sha"], None,
                              [], unchanged)
        self._upload_lfs(repo_id, repo_type, revision, lfs, ctx)
        header = {"summary": commit_message, "description": commit_description,
                  **({"parentCommit": parent_commit} if parent_commit else {})}
        lines = [{"key": "header", "value": header}]
        lines += [{"key": "lfsFile", "value": {"path": u.path, "algo": "sha256", "oid": u.oid(), "size": u.size}}
                  for u in lfs]
        lines += [{"key": "file", "value": {"path": u.path, "encoding": "base64",
                                            "content": base64.b64encode(u.read()).decode()}} for u in regular]
        body = "\n".join(json.dumps(line) for line in lines).encode()
        answer = self._json("POST", self._api(repo_type, repo_id, f"/commit/{rev}"), body=body, ctx=ctx,
                            content_type="application/x-ndjson", timeout=WRITE_TIMEOUT)
        sent = sorted(u.path for u in lfs + regular)
        return CommitInfo(repo_id, answer["commitOid"], answer.get("commitUrl"), sent, unchanged)

    def _upload_lfs(self, repo_id: str, repo_type: str, revision: str, uploads: list, ctx: dict) -> None:
        """The LFS batch API: ask for upload URLs, PUT each file there, then let the hub verify it (spec §7.3-7.4)."""
        url = f"{self.endpoint}/{hub.URL_PREFIX[repo_type]}{repo_id}.git/info/lfs/objects/batch"
        for chunk in _chunks(uploads):
            by_oid = {u.oid(): u for u in chunk}
            answer = self._json("POST", url, {"operation": "upload", "transfers": ["basic"], "hash_algo": "sha256",
                                              "ref": {"name": revision},
                                              "objects": [{"oid": u.oid(), "size": u.size} for u in chunk]},
                                content_type=hub.LFS_CONTENT_TYPE, headers={"Accept": hub.LFS_CONTENT_TYPE}, ctx=ctx,
                                timeout=WRITE_TIMEOUT)
            for obj in answer.get("objects") or []:
                u, actions = by_oid.get(obj.get("oid")), obj.get("actions") or {}
                if "error" in obj or u is None:
                    raise HubError(f"the hub refused the LFS upload of {u.path if u else obj.get('oid')!r}: "
                                   f"{(obj.get('error') or {}).get('message', 'unknown object')}")
                if "upload" in actions:
                    action = actions["upload"]
                    if "chunk_size" in (action.get("header") or {}):
                        raise HubError("the hub asks for a multipart LFS upload, which peluk's client does not do")
                    with u.open() as f:
                        self._request("PUT", action["href"], body=f, auth=False, timeout=WRITE_TIMEOUT,
                                      headers={**(action.get("header") or {}), "Content-Length": str(u.size)}).close()
                if "verify" in actions:
                    href = actions["verify"]["href"]
                    self._json("POST", href, {"oid": u.oid(), "size": u.size}, content_type=hub.LFS_CONTENT_TYPE,
                               headers={"Accept": hub.LFS_CONTENT_TYPE}, ctx=ctx, timeout=WRITE_TIMEOUT,
                               auth=urlsplit(href).netloc == urlsplit(self.endpoint).netloc)

    def upload_file(self, path_or_fileobj, path_in_repo: str, repo_id: str, **options) -> CommitInfo:
        """Upload one file (a path, bytes or a binary file object) as ``path_in_repo`` (see :meth:`create_commit`)."""
        source = path_or_fileobj
        if hasattr(source, "read"):
            source = source.read()
        elif not isinstance(source, bytes):
            source = Path(source).expanduser()
        options.setdefault("commit_message", f"Upload {path_in_repo} with peluk")
        return self.create_commit(repo_id, {path_in_repo: source}, **options)

    def upload_folder(self, folder_path: str | os.PathLike, repo_id: str, *, path_in_repo: str = "",
                      allow_patterns=None, ignore_patterns=None, **options) -> CommitInfo:
        """Upload a folder's files (not ``.git/`` nor ``.cache/huggingface/``) in one commit.

        Args:
            path_in_repo: a folder of the repository to put them in (default: its root).
            allow_patterns, ignore_patterns: fnmatch patterns on the paths relative to ``folder_path``.
            **options: ``repo_type``, ``revision``, ``commit_message``... as :meth:`create_commit`.
        """
        root = Path(folder_path).expanduser()
        if not root.is_dir():
            raise ModelNotFoundError(f"{root} is not a directory: nothing to upload")
        names = sorted(p.relative_to(root).as_posix() for p in root.rglob("*") if p.is_file())
        names = [n for n in names if not n.startswith((".git/", ".cache/huggingface/"))]
        prefix = path_in_repo.strip("/")
        files = {f"{prefix}/{n}" if prefix else n: root / n for n in hub.select(names, allow_patterns, ignore_patterns)}
        options.setdefault("commit_message", "Upload folder with peluk")
        return self.create_commit(repo_id, files, **options)

    def push_to_hub(self, path: str | os.PathLike, repo_id: str, *, repo_type: str = "model", private: bool = False,
                    path_in_repo: str = "", **options) -> CommitInfo:
        """Create the repository if needed (in the token owner's namespace without ``owner/``), then upload
        the folder ``path`` (as :meth:`upload_folder`) or the file ``path`` (into ``path_in_repo``, default its name).
        """
        path = Path(path).expanduser()
        if not path.exists():
            raise ModelNotFoundError(f"{path} does not exist: nothing to upload")
        repo_id = self._full_id(repo_id)
        self.create_repo(repo_id, repo_type=repo_type, private=private, exist_ok=True)
        if path.is_file():
            return self.upload_file(path, path_in_repo or path.name, repo_id, repo_type=repo_type, **options)
        return self.upload_folder(path, repo_id, repo_type=repo_type, path_in_repo=path_in_repo, **options)


class _Upload:
    """One file of a commit: bytes, or a local file read when needed."""

    def __init__(self, path: str, source: bytes | Path):
        self.path, self.source, self.lfs, self._oid = path, source, False, None
        self.size = len(source) if isinstance(source, bytes) else os.path.getsize(source)

    def open(self):
        return io.BytesIO(self.source) if isinstance(self.source, bytes) else open(self.source, "rb")

    def sample(self) -> bytes:
        with self.open() as f:
            return f.read(SAMPLE)

    def read(self) -> bytes:
        with self.open() as f:
            return f.read()

    def oid(self) -> str:
        """What the hub calls this content: sha256 for an LFS file, the git blob sha1 for the others."""
        if self._oid is None:
            self._oid = _hash(self.open(), self.size, self.lfs)
        return self._oid


def _hash(f, size: int, sha256: bool) -> str:
    h = hashlib.sha256() if sha256 else hashlib.sha1(b"blob %d\0" % size)
    with f:
        while chunk := f.read(CHUNK):
            h.update(chunk)
    return h.hexdigest()


def _verify(part: Path, etag: str, size: int | None, what: str) -> None:
    """Keep ``part`` only if its size and content hash match the ETag (sha256, or git blob sha1)."""
    actual = part.stat().st_size
    etag = etag.lower()
    digest = _hash(open(part, "rb"), actual, len(etag) == 64) if len(etag) in (40, 64) else etag  # else: size only
    if (size is not None and actual != size) or digest != etag:
        part.unlink(missing_ok=True)
        raise HubError(f"the download of {what} is corrupt: expected {size} bytes hashing to {etag}, got {actual} "
                       f"bytes hashing to {digest}. It was deleted, not cached; try again")


def _into(snap: Snapshot, local_dir) -> Snapshot:
    """``snap`` copied into ``local_dir`` (when given), which becomes its path."""
    if local_dir is None:
        return snap
    for name in snap.files:
        _copy_into(snap.path / name, local_dir, name)
    snap.path = Path(local_dir).expanduser()
    return snap


def _copy_into(path: Path, local_dir, name: str) -> Path:
    if local_dir is None:
        return path
    dest = Path(local_dir).expanduser() / name
    dest.parent.mkdir(parents=True, exist_ok=True)
    tmp = dest.with_name(f".{dest.name}.tmp")
    shutil.copyfile(path, tmp)
    os.replace(tmp, dest)
    return dest


@contextlib.contextmanager
def _locked(path: Path):
    """An exclusive lock on ``path`` between processes (flock, as huggingface_hub's filelock)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "w") as f:
        if fcntl is not None:
            fcntl.flock(f, fcntl.LOCK_EX)
        yield


def _progress(total: int | None, initial: int, name: str):
    if total is None or total < PROGRESS_MIN:
        return contextlib.nullcontext(types.SimpleNamespace(update=lambda n: None))
    from tqdm.auto import tqdm

    return tqdm(total=total, initial=initial, unit="B", unit_scale=True, unit_divisor=1024, desc=name, disable=None)


def _safe(path: str) -> str:
    """A repository path that stays inside the snapshot folder."""
    parts = path.split("/")
    if not path or path.startswith("/") or "\\" in path or any(p in ("", ".", "..") for p in parts):
        raise HubError(f"refusing the repository path {path!r}: it would leave the snapshot folder")
    return path


def _chunks(items: list):
    return (items[i:i + BATCH] for i in range(0, len(items), BATCH))


def _next_link(header: str | None) -> str | None:
    match = re.search(r'<([^>]+)>\s*;\s*rel="next"', header or "")
    return match[1] if match else None


def _message(body: bytes) -> str:
    """The error text of a Hub answer: ``{"error": ...}``, ``{"errors": [{"message"}]}`` or plain text."""
    try:
        data = json.loads(body)
    except ValueError:
        text = body.decode("utf-8", "replace").strip()
        return "" if text.startswith("<") else text[:500]
    error = (data.get("error") or data.get("errors")) if isinstance(data, dict) else None
    if isinstance(error, list):
        return "; ".join(str(e.get("message", e)) if isinstance(e, dict) else str(e) for e in error)
    return str(error or "")


# --- module functions: a HubClient from the environment (or endpoint= / token=) --------------------
def snapshot_download(repo_id: str, *, endpoint: str | None = None, token: str | bool | None = None,
                      cache_dir=None, **options) -> Path:
    """See :meth:`HubClient.snapshot_download`."""
    return HubClient(endpoint, token, cache_dir).snapshot_download(repo_id, **options)


def hf_hub_download(repo_id: str, filename: str, *, endpoint: str | None = None, token: str | bool | None = None,
                    cache_dir=None, **options) -> Path:
    """See :meth:`HubClient.hf_hub_download`."""
    return HubClient(endpoint, token, cache_dir).hf_hub_download(repo_id, filename, **options)


def create_repo(repo_id: str, *, endpoint: str | None = None, token: str | None = None, **options) -> str:
    """See :meth:`HubClient.create_repo`."""
    return HubClient(endpoint, token).create_repo(repo_id, **options)


def delete_repo(repo_id: str, *, endpoint: str | None = None, token: str | None = None, **options) -> None:
    """See :meth:`HubClient.delete_repo`."""
    HubClient(endpoint, token).delete_repo(repo_id, **options)


def repo_info(repo_id: str, *, endpoint: str | None = None, token: str | bool | None = None, **options) -> dict:
    """See :meth:`HubClient.repo_info`."""
    return HubClient(endpoint, token).repo_info(repo_id, **options)


def list_repo_files(repo_id: str, *, endpoint: str | None = None, token: str | bool | None = None,
                    **options) -> list[str]:
    """See :meth:`HubClient.list_repo_files`."""
    return HubClient(endpoint, token).list_repo_files(repo_id, **options)


def list_models(*, endpoint: str | None = None, token: str | bool | None = None, **options) -> list[dict]:
    """See :meth:`HubClient.list_models`."""
    return HubClient(endpoint, token).list_models(**options)


def list_datasets(*, endpoint: str | None = None, token: str | bool | None = None, **options) -> list[dict]:
    """See :meth:`HubClient.list_datasets`."""
    return HubClient(endpoint, token).list_datasets(**options)


def whoami(*, endpoint: str | None = None, token: str | None = None) -> dict:
    """See :meth:`HubClient.whoami`."""
    return HubClient(endpoint, token).whoami()


def upload_file(path_or_fileobj, path_in_repo: str, repo_id: str, *, endpoint: str | None = None,
                token: str | None = None, **options) -> CommitInfo:
    """See :meth:`HubClient.upload_file`."""
    return HubClient(endpoint, token).upload_file(path_or_fileobj, path_in_repo, repo_id, **options)


def upload_folder(folder_path, repo_id: str, *, endpoint: str | None = None, token: str | None = None,
                  **options) -> CommitInfo:
    """See :meth:`HubClient.upload_folder`."""
    return HubClient(endpoint, token).upload_folder(folder_path, repo_id, **options)


def push_to_hub(folder, repo_id: str, *, endpoint: str | None = None, token: str | None = None,
                **options) -> CommitInfo:
    """See :meth:`HubClient.push_to_hub`."""
    return HubClient(endpoint, token).push_to_hub(folder, repo_id, **options)


def login(token: str, *, endpoint: str | None = None) -> str:
    """Check ``token`` with the hub, then save it where huggingface_hub looks too (``$HF_HOME/token``, mode 600).

    Returns:
        The token's user name.

    Raises:
        HubAuthError: the hub rejects the token (nothing is saved).
    """
    token = token.strip()
    name = HubClient(endpoint, token).whoami()["name"]
    hub.write_atomic(hub.token_path(), token.encode(), mode=0o600)
    return name
