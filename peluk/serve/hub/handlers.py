"""The hub's HTTP endpoints: check access, call ``Hub``/git, answer in ``protocol`` shapes.

Routes are matched on the raw (still percent-encoded) path, because clients send revisions
like ``refs%2Fpr%2F1`` that must not be split at the decoded slash (spec §1.4). Placeholders:
``{type}`` models|datasets|spaces (handlers get model|dataset|space), ``{prefix}`` ""|datasets/|spaces/,
``{repo}`` owner/name, ``{rev}`` one encoded segment, ``{path}`` the rest, ``{oid}`` a sha256.
"""

from __future__ import annotations

import html
import re
from dataclasses import dataclass
from typing import Callable

from starlette.requests import Request
from starlette.responses import JSONResponse

from peluk.hub import HEADER_REPO_COMMIT
from peluk.serve.hub import cards, protocol
from peluk.serve.hub.auth import User
from peluk.serve.hub.protocol import BadRequest
from peluk.serve.hub.service import Forbidden, Hub, Unauthorized
from peluk.serve.hub.storage import (ZERO, Conflict, EntryNotFound, Identity, Invalid, RevisionNotFound,
                                     valid_ref_name)

PLACEHOLDERS = {"{type}": r"(?P<type>models|datasets|spaces)", "{prefix}": r"(?P<prefix>(?:datasets/|spaces/)?)",
                "{repo}": r"(?P<repo>[^/]+/[^/]+?)", "{rev}": r"(?P<rev>[^/]+)", "{path}": r"(?P<path>.+)",
                "{oid}": r"(?P<oid>[0-9a-f]{64})"}
ROUTES: list[tuple[str, re.Pattern, Callable, bool]] = []  # (method, raw-path regex, handler, streams its body)


def route(method: str, pattern: str, stream: bool = False):
    """Register a handler; GET routes also answer HEAD. ``stream`` handlers are async and read the body."""
    regex = re.escape(pattern)
    for name, group in PLACEHOLDERS.items():
        regex = regex.replace(re.escape(name), group)

    def register(fn):
        ROUTES.append((method, re.compile(regex), fn, stream))
        return fn
    return register


@dataclass
class Ctx:
    """What a handler knows of its request."""
    hub: Hub
    request: Request
    user: User | None
    base: str  # scheme://host as the client sees us: URLs we hand out must use the client's host
    url: str  # this request's URL without the query, still percent-encoded
    params: list[tuple[str, str]]
    body: object = None  # the request body as a file object (non-stream routes)
    lfs_uploads: str = "auto"

    def q(self, name: str) -> str | None:
        return next((v for k, v in self.params if k == name), None)

    def flag(self, name: str) -> bool:
        return (self.q(name) or "").lower() in ("1", "true")

    def expand(self) -> list[str]:
        return [v for k, v in self.params if k in ("expand", "expand[]")]

    def json(self, *required: str) -> dict:
        return protocol.json_body(self.body.read(), required)

    def open(self, repo_type: str, repo_id: str, rev: str | None = None, write: bool = False):
        """(repo row, git repo, commit of ``rev`` or None) once the caller's access is checked."""
        repo = (self.hub.writable if write else self.hub.find)(repo_type, repo_id, self.user)
        git = self.hub.git(repo)
        return repo, git, git.resolve(rev) if rev is not None else None


def ok(body=None, **headers) -> JSONResponse:
    return JSONResponse({} if body is None else body, headers=headers or None)




@route("GET", "/api/agent-harnesses")
def agent_harnesses(ctx):
    return ok({"standardEnvVars": [], "harnesses": {}})


@route("GET", "/api/whoami-v2")
def whoami(ctx):
    if (u := ctx.user) is None:
        raise Unauthorized("Invalid user token: pass a token (Authorization: Bearer hf_...)")
    return ok({"type": "user", "id": u.name, "name": u.name, "fullname": u.fullname or u.name, "email": u.email,
               "isAdmin": u.is_admin, "orgs": [],
               "auth": {"type": "access_token", "accessToken": {"displayName": u.token_name, "role": u.role}}})


@route("POST", "/api/repos/create")
def create_repo(ctx):
    body = ctx.json("name")
    repo_type, repo_id = protocol.repo_named(body, ctx.user and ctx.user.name)
    url = protocol.repo_url(ctx.base, (repo_type, repo_id))
    try:
        ctx.hub.create_repo(repo_type, *repo_id.split("/", 1), bool(protocol.visibility(body)), ctx.user)
    except Conflict as e:
        return protocol.error(409, str(e), url=url)  # exist_ok=True needs the url in the 409 (spec §4.1)
    return ok({"url": url, "name": repo_id, "id": repo_id})


@route("DELETE", "/api/repos/delete")
def delete_repo(ctx):
    repo, _, _ = ctx.open(*protocol.repo_named(ctx.json("name"), ctx.user and ctx.user.name), write=True)
    ctx.hub.delete_repo(repo)
    return ok()


@route("POST", "/api/repos/move")
def move_repo(ctx):
    body = ctx.json("fromRepo", "toRepo")
    repo, _, _ = ctx.open(body.get("type") or "model", str(body["fromRepo"]), write=True)
    return ok({"url": protocol.repo_url(ctx.base, ctx.hub.move_repo(repo, str(body["toRepo"]), ctx.user))})


@route("PUT", "/api/{type}/{repo}/settings")
def settings(ctx, type, repo):
    row, _, _ = ctx.open(type, repo, write=True)
    body = ctx.json()
    ctx.hub.update_settings(row, private=protocol.visibility(body), gated=body.get("gated"))
    return ok()


@route("GET", "/api/{type}")
def list_repos(ctx, type):
    query, user = protocol.search_query(ctx.params, type), ctx.user
    rows = ctx.hub.db.search_repos(type, user and user.name, bool(user and user.is_admin),
                                   **{**query, "limit": query["limit"] + 1})
    full = ctx.flag("full")
    items = [protocol.repo_info(r, r.sha, ctx.hub.git(r).tree(r.sha, recursive=True) if full and r.sha else None,
                                expand=ctx.expand()) for r in rows[:query["limit"]]]
    more = len(rows) > query["limit"]
    return ok(items, **(protocol.next_link(ctx.url, ctx.params, query["offset"] + query["limit"]) if more else {}))


@route("GET", "/api/{type}/{repo}")
@route("GET", "/api/{type}/{repo}/revision/{rev}")
def repo_info(ctx, type, repo, rev=None):
    row, git, commit = ctx.open(type, repo, rev)
    commit, expand = commit or git.head("refs/heads/main"), ctx.expand()
    files = git.tree(commit, recursive=True) if commit and (not expand or "siblings" in expand) else []
    return ok(protocol.repo_info(row, commit, files, blobs=ctx.flag("blobs"), expand=expand))


@route("GET", "/api/{type}/{repo}/tree/{rev}")
@route("GET", "/api/{type}/{repo}/tree/{rev}/{path}")
def tree(ctx, type, repo, rev, path=""):
    _, git, commit = ctx.open(type, repo, rev)
    expand = ctx.flag("expand")
    entries, headers = protocol.page(git.tree(commit, path.strip("/"), recursive=ctx.flag("recursive")), ctx.url,
                                     ctx.params, protocol.TREE_EXPAND_PAGE if expand else protocol.TREE_PAGE)
    return ok([protocol.file_entry(e, git.log(commit, limit=1, path=e.path)[0] if expand else None)
               for e in entries], **headers)


@route("POST", "/api/{type}/{repo}/paths-info/{rev}")
def paths_info(ctx, type, repo, rev):
    _, git, commit = ctx.open(type, repo, rev)
    paths, expand = protocol.paths_request(ctx.body.read(), ctx.request.headers.get("content-type", ""))
    return ok([protocol.file_entry(e, git.log(commit, limit=1, path=e.path)[0] if expand else None)
               for e in git.entries(commit, paths)])


@route("GET", "/api/{type}/{repo}/refs")
def list_refs(ctx, type, repo):
    _, git, _ = ctx.open(type, repo)
    return ok(protocol.refs(git.refs(), ctx.flag("include_prs")))


@route("GET", "/api/{type}/{repo}/commits/{rev}")
def list_commits(ctx, type, repo, rev):
    _, git, commit = ctx.open(type, repo, rev)
    offset, size = protocol.cursor_offset(ctx.q("cursor")), protocol.COMMITS_PAGE
    commits = [protocol.commit(c) for c in git.log(commit, skip=offset, limit=size + 1)]
    for c in commits if "formatted" in ctx.expand() else []:
        c["formatted"] = {"title": html.escape(c["title"]), "message": html.escape(c["message"])}
    more = protocol.next_link(ctx.url, ctx.params, offset + size) if len(commits) > size else {}
    return ok(commits[:size], **more, **{"X-Total-Count": str(git.count_commits(commit))})


@route("POST", "/api/{type}/{repo}/branch/{rev}")
def create_branch(ctx, type, repo, rev):
    _, git, _ = ctx.open(type, repo, write=True)
    if not valid_ref_name(rev):
        raise BadRequest(f"Invalid branch name {rev!r}")
    if not git.update_ref(f"refs/heads/{rev}", git.resolve(str(ctx.json().get("startingPoint") or "main")), ZERO):
        raise Conflict(f"Reference already exists: refs/heads/{rev}")
    return ok()


@route("DELETE", "/api/{type}/{repo}/branch/{rev}")
def delete_branch(ctx, type, repo, rev):
    return _delete_ref(ctx, type, repo, f"refs/heads/{rev}")


@route("DELETE", "/api/{type}/{repo}/tag/{rev}")
def delete_tag(ctx, type, repo, rev):
    return _delete_ref(ctx, type, repo, f"refs/tags/{rev}")


def _delete_ref(ctx, type, repo, ref):
    _, git, _ = ctx.open(type, repo, write=True)
    rev = ref.split("/", 2)[2]
    if ref == "refs/heads/main":
        raise Forbidden("The main branch cannot be deleted")
    target = git.git("rev-parse", "--verify", "-q", ref, check=False).decode().strip() if valid_ref_name(rev) else ""
    if not target or not git.update_ref(ref, ZERO, target):
        raise RevisionNotFound(f"Invalid rev id: {rev}")
    return ok()


@route("POST", "/api/{type}/{repo}/tag/{rev}")
def create_tag(ctx, type, repo, rev):
    _, git, commit = ctx.open(type, repo, rev, write=True)
    body = ctx.json("tag")
    if not isinstance(body["tag"], str) or not valid_ref_name(body["tag"]):
        raise BadRequest(f"Invalid tag name {body['tag']!r}")
    message = None if body.get("message") is None else str(body["message"])
    git.create_tag(body["tag"], commit, message, Identity(ctx.user.name, ctx.user.email or ""))
    return ok()


@route("POST", "/api/{type}/{repo}/preupload/{rev}")
def preupload(ctx, type, repo, rev):
    _, git, commit = ctx.open(type, repo, rev, write=True)
    body = ctx.json("files")
    gitignore = body.get("gitIgnore")
    if not isinstance(gitignore, str):
        gitignore = (git.read_file(commit, ".gitignore") or b"").decode("utf-8", "replace")
    if not isinstance(files := body["files"], list):
        raise BadRequest('"files" must be a list')
    paths = [f["path"] for f in files if isinstance(f, dict) and isinstance(f.get("path"), str)]
    use_lfs = protocol.client_uploads_lfs(ctx.request.headers.get("user-agent", ""), ctx.lfs_uploads)
    return ok(protocol.preupload(files, {e.path: e for e in git.entries(commit, paths)}, ctx.hub.lfs_rules(git, commit),
                                 ctx.hub.storage.lfs_threshold, use_lfs, gitignore, ctx.hub.max_file_size))


@route("POST", "/api/{type}/{repo}/commit/{rev}")
def commit(ctx, type, repo, rev):
    row, git, base = ctx.open(type, repo, rev, write=True)
    with ctx.hub.staging(row) as stage:
        stage.set_base(base)
        header = protocol.read_commit(ctx.body, stage)
        errors = cards.validate(stage.readme.decode("utf-8", "replace"), row.type)[0] if stage.readme else []
        if errors:
            raise Invalid("Invalid metadata in README.md: " + "; ".join(errors))
        sha, pr = ctx.hub.commit(row, rev, stage.ops(), header["summary"], header.get("description") or "",
                                 ctx.user, parent=header.get("parentCommit"), create_pr=ctx.flag("create_pr"))
    return ok(protocol.commit_result(ctx.base, row, sha, header["summary"], pr))


@route("POST", "/api/validate-yaml")
def validate_yaml(ctx):
    return protocol.validate_yaml(ctx.body.read())


@route("GET", "/api/{type}/{repo}/xet-write-token/{rev}")
@route("GET", "/api/{type}/{repo}/xet-read-token/{rev}")
def xet_token(ctx, type, repo, rev):
    ctx.open(type, repo)
    return protocol.error(501, "This peluk hub does not implement Xet storage: set HF_HUB_DISABLE_XET=1 on the client "
                               "to upload large files through Git LFS")


@route("GET", "/{prefix}{repo}/resolve/{rev}/{path}")
def resolve(ctx, prefix, repo, rev, path):
    row, git, commit = ctx.open(protocol.PREFIX_TYPE[prefix], repo, rev)
    ctx.hub.check_gate(row, ctx.user, path)
    method, range_header = ctx.request.method, ctx.request.headers.get("range")
    try:
        entry, data = git.file(commit, path, content=method == "GET")  # HEAD: no need to read the blob
    except EntryNotFound as e:  # with X-Repo-Commit, so the client can cache the absence
        return protocol.error_for(e, {HEADER_REPO_COMMIT: commit})
    if method == "GET" and (range_header or "bytes=0-").startswith("bytes=0-"):  # not the rest of a resumed one
        ctx.hub.count_download(row, path)
    lfs_file = ctx.hub.storage.lfs.path(entry.lfs.oid) if entry.lfs else None
    return protocol.file_response(entry, commit, method, range_header, lfs_file, lambda: data)
