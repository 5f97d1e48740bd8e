"""The hub's HTML pages, at huggingface.co's URLs (GET only; the API, git and ``/resolve/`` keep theirs).

    /                                    recent models and datasets
    /models  /datasets                   lists: ?search=, ?pipeline_tag= ?library= ?language= ?filter=, ?sort=, ?p=
    /{owner}/{name}  /datasets/{owner}/{name}            the rendered card, tags, widget (peluk serve)
    /{repo}/tree/{rev}[/{path}]          files: sizes, LFS marks, download links (``/resolve/``)
    /{repo}/blob/{rev}/{path}            a file: text shown escaped; binary, large or LFS: facts + download
    /{repo}/commits/{rev}                history, 50 a page    /{repo}/refs   branches, tags, pull requests
    /{owner}/{name}/explore              attention views (peluk serve)
    /playground                          the models the inference API serves (peluk serve)
    /login  /logout                      a hub token in an HttpOnly cookie (SameSite=Lax)

Every page reads through ``Hub`` with the caller's user, so a private repository is visible to
its owner (and admins) only and a gated one's files to its owner only, exactly as the API decides.
"""

from __future__ import annotations

from collections import Counter
from urllib.parse import parse_qs

from peluk.serve.hub import protocol
from peluk.serve.hub.protocol import PREFIX_TYPE
from peluk.serve.hub.service import RepoNotFound, Unauthorized
from peluk.serve.web import inference
from peluk.serve.web.common import Links, card_body, markdown, page

PAGE_SIZE = 30
MAX_SHOWN = 512 * 1024  # larger files are not shown in the viewer, only offered for download
SORTS = ("lastModified", "downloads", "likes", "createdAt", "id")
FACETS = {"model": ("pipeline_tag", "library", "language", "filter"), "dataset": ("language", "filter")}


def _search(v, repo_type: str, **query):
    user = v.user
    return v.hub.db.search_repos(repo_type, user and user.name, bool(user and user.is_admin), **query)


def _page_number(v) -> int:
    p = v.ctx.q("p") or "1"
    return min(max(int(p), 1), 10_000) if p.isdigit() else 1


@page("/")
def home(v):
    return v.render("home.html", models=_search(v, "model", limit=10), datasets=_search(v, "dataset", limit=10))


@page("/models")
def models(v):
    return _listing(v, "model")


@page("/datasets")
def datasets(v):
    return _listing(v, "dataset")


def _listing(v, repo_type: str):
    query = protocol.search_query(v.ctx.params, repo_type)
    if query["sort"] not in SORTS:
        query["sort"] = "lastModified"
    if v.ctx.q("direction") is None:
        query["descending"] = query["sort"] != "id"
    number = _page_number(v)
    rows = _search(v, repo_type, **{**query, "offset": (number - 1) * PAGE_SIZE, "limit": PAGE_SIZE + 1})
    active = {k: [val for key, val in v.ctx.params if key == k] for k in FACETS[repo_type]}
    counts = _facets(_search(v, repo_type, limit=1000), repo_type)
    facets = {key: _facet_links(v, key, counts[key], active[key]) for key in FACETS[repo_type]}
    return v.render("list.html", repo_type=repo_type, rows=rows[:PAGE_SIZE], more=len(rows) > PAGE_SIZE,
                    number=number, search=v.ctx.q("search") or "", sort=query["sort"], sorts=SORTS, facets=facets,
                    active=active, clear=v.url(p=None, **dict.fromkeys(FACETS[repo_type])))


def _facets(rows, repo_type: str) -> dict[str, list[tuple[str, int]]]:
    """The most common tasks, libraries, languages and other tags of the repositories a user sees."""
    counts = {key: Counter() for key in FACETS[repo_type]}
    for r in rows:
        langs = (r.card_data or {}).get("language") or []
        langs = [x for x in (langs if isinstance(langs, list) else [langs]) if isinstance(x, str)]
        counts["language"].update(langs)
        shown = {*langs, *(f"language:{x}" for x in langs)}
        if repo_type == "model":
            counts["pipeline_tag"].update([r.pipeline_tag] if r.pipeline_tag else [])
            counts["library"].update([r.library_name] if r.library_name else [])
            shown |= {r.pipeline_tag, r.library_name}
        counts["filter"].update(t for t in r.tags if t not in shown)
    return {key: c.most_common(12) for key, c in counts.items()}


def _facet_links(v, key: str, counts: list[tuple[str, int]], chosen: list[str]) -> list[tuple[str, int, bool, str]]:
    """(value, count, chosen, URL toggling it) of one facet; chosen values always show, to be removed."""
    counted = dict(counts)
    items = counts + [(value, 0) for value in chosen if value not in counted]
    return [(value, n, value in chosen, v.url(p=None, **{key: [x for x in chosen if x != value] if value in chosen
                                                            else chosen + [value]})) for value, n in items]


# --- a repository ---------------------------------------------------------------------------------

def _open(v, prefix: str, repo: str, rev: str | None = None):
    row, git, commit = v.ctx.open(PREFIX_TYPE[prefix], repo, rev)
    return row, git, commit, Links(row.type, row.id)


def _served(v, prefix: str, repo: str):
    """(Source, widget) of a model the inference API serves (None, None under ``peluk hub serve``)."""
    if v.inference is None or prefix:
        return None, None
    source = inference.source_for(v.inference, repo, v.user)
    return source, source and inference.widget(source)


@page("/{prefix}{repo}")
def repository(v, prefix, repo):
    try:
        row, git, _, links = _open(v, prefix, repo)
    except RepoNotFound:
        source, widget = _served(v, prefix, repo)
        if source is None or source.revision not in ("local", "builtin"):
            raise
        card = inference.card_of(source)  # a model served from local files: its card and widget only
        return v.render("repo.html", tab="card", repo=None, repo_id=source.id, links=Links("model", source.id),
                        card=markdown(card_body(card)) if card else None, meta={}, widget=widget,
                        source=source, last=None)
    sha = row.sha or git.head("refs/heads/main")
    readme = git.read_file(sha, "README.md") if sha else None
    card = markdown(card_body(readme.decode("utf-8", "replace")), links) if readme else None
    source, widget = _served(v, prefix, repo) if row.type == "model" else (None, None)
    return v.render("repo.html", tab="card", repo=row, repo_id=row.id, links=links, card=card,
                    meta=row.card_data or {}, widget=widget, source=source,
                    last=git.log(sha, limit=1)[0] if sha else None)


def _repo_page(v, template: str, row, links, tab: str, **values):
    source = _served(v, "", row.id)[0] if row.type == "model" else None
    return v.render(template, tab=tab, repo=row, repo_id=row.id, links=links, source=source, **values)


def _crumbs(path: str) -> list[tuple[str, str]]:
    """(name, path so far) of each folder of ``path``."""
    parts = [p for p in path.split("/") if p]
    return [(p, "/".join(parts[:i + 1])) for i, p in enumerate(parts)]


@page("/{prefix}{repo}/tree/{rev}")
@page("/{prefix}{repo}/tree/{rev}/{path}")
def tree(v, prefix, repo, rev, path=""):
    row, git, commit, links = _open(v, prefix, repo, rev)
    path = path.strip("/")
    if path and git.entry(commit, path).type == "file":
        return v.redirect(links.blob(rev, path))
    entries = sorted(git.tree(commit, path), key=lambda e: (e.type != "directory", e.path.lower()))
    return _repo_page(v, "tree.html", row, links, "files", rev=rev, path=path, crumbs=_crumbs(path),
                      entries=entries, refs=protocol.refs(git.refs(), False), commit=commit,
                      last=git.log(commit, limit=1, path=path or None)[0])


@page("/{prefix}{repo}/blob/{rev}/{path}")
def blob(v, prefix, repo, rev, path):
    row, git, commit, links = _open(v, prefix, repo, rev)
    entry = git.entry(commit, path)
    if entry.type != "file":
        return v.redirect(links.tree(rev, path))
    v.hub.check_gate(row, v.user, path)
    lines, reason = None, "lfs_file" if entry.lfs else "large_file" if entry.size > MAX_SHOWN else None
    if reason is None:
        data = git.read(entry.oid)
        try:
            lines = data.decode("utf-8").splitlines() if b"\0" not in data[:8000] else None
        except UnicodeDecodeError:
            lines = None
        reason = None if lines is not None else "binary_file"
    return _repo_page(v, "blob.html", row, links, "files", rev=rev, path=path, crumbs=_crumbs(path), entry=entry,
                      lines=lines, reason=reason)


@page("/{prefix}{repo}/commits/{rev}")
def commits(v, prefix, repo, rev):
    row, git, commit, links = _open(v, prefix, repo, rev)
    number, size = _page_number(v), protocol.COMMITS_PAGE
    log = git.log(commit, skip=(number - 1) * size, limit=size + 1)
    return _repo_page(v, "commits.html", row, links, "commits", rev=rev, commits=log[:size], more=len(log) > size,
                      number=number, total=git.count_commits(commit))


@page("/{prefix}{repo}/refs")
def refs(v, prefix, repo):
    row, git, _, links = _open(v, prefix, repo)
    return _repo_page(v, "refs.html", row, links, "files", refs=protocol.refs(git.refs(), True))


@page("/{prefix}{repo}/explore")
def explore(v, prefix, repo):
    source = _served(v, prefix, repo)[0]
    if source is None:
        raise RepoNotFound(f"{repo} is not served here")
    try:
        row = v.hub.find("model", repo, v.user)
    except RepoNotFound:
        row = None
    return v.render("explore.html", tab="explore", repo=row, repo_id=source.id, links=Links("model", source.id),
                    source=source)


@page("/playground")
def playground(v):
    if v.inference is None:
        raise RepoNotFound("the playground needs the inference API (peluk serve)")
    return v.render("playground.html", rows=inference.served(v.inference, v.user))


# --- login ---------------------------------------------------------------------------------------

def _next(v, value: str | None) -> str:
    """Where to go after logging in or out: a path of this site only (no open redirect)."""
    value = value or v.ctx.q("next") or "/"
    return value if value.startswith("/") and not value.startswith(("//", "/\\")) else "/"


@page("/login")
def login_form(v):
    return v.render("login.html", next=_next(v, None), failed=False)


def _form(v) -> dict[str, str]:
    form = parse_qs(v.ctx.body.read(16384).decode("utf-8", "replace")) if v.request.method == "POST" else {}
    return {key: values[0] for key, values in form.items()}


@page("/login", "POST")
def login(v):
    form = _form(v)
    token, target = form.get("token", "").strip(), _next(v, form.get("next"))
    if not v.same_origin():
        return v.error(403, "forbidden", "cross-site login refused")
    try:
        user = v.hub.user_for_token(token) if token else None
    except Unauthorized:
        user = None
    if user is None:
        return v.render("login.html", 401, next=target, failed=True)
    v.set_token(token)
    return v.redirect(target)


@page("/logout", "GET", "POST")
def logout(v):
    if not v.same_origin():
        return v.error(403, "forbidden", "cross-site logout refused")
    v.set_token(None)
    return v.redirect(_next(v, _form(v).get("next")))
