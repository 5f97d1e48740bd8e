"""What every web page shares: the ``View`` of one request, the ``page`` decorator, Jinja, Markdown.

A page handler is registered on the hub's one dispatcher (``handlers.route``) through ``page``,
runs in a worker thread like the API's handlers, and gets a ``View``: the caller (the hub token
of the ``Authorization`` header, else the one the ``/login`` page put in the ``peluk_token``
cookie), the interface language and ``render``/``redirect``/``error``. The hub's exceptions become
HTML error pages (404 for what the caller may not see, exactly as the API answers them).

Every page is sent with a Content-Security-Policy that allows only this server's own scripts,
styles, images and fetches: nothing leaves the machine, and HTML injected through a model card
could not run a script even if it got past the Markdown renderer (which escapes raw HTML).
"""

from __future__ import annotations

import hashlib
import logging
import re
from functools import lru_cache
from pathlib import Path
from urllib.parse import quote, urlencode

from starlette.responses import HTMLResponse, RedirectResponse, Response

from peluk.hub import URL_PREFIX
from peluk.serve.hub import protocol
from peluk.serve.hub.auth import RESERVED
from peluk.serve.hub.handlers import route
from peluk.serve.hub.service import Forbidden, Gated, RepoNotFound, Unauthorized
from peluk.serve.hub.storage import EntryNotFound, Invalid, RevisionNotFound
from peluk.serve.web import i18n

log = logging.getLogger("peluk.hub")
HERE = Path(__file__).resolve().parent
STATIC = HERE / "static"
TOKEN_COOKIE, LANG_COOKIE = "peluk_token", "peluk_lang"
MONTH, YEAR = 30 * 86400, 365 * 86400
CSP = ("default-src 'self'; script-src 'self'; style-src 'self' 'unsafe-inline'; img-src 'self' data:; "
       "connect-src 'self'; object-src 'none'; base-uri 'none'; form-action 'self'; frame-ancestors 'none'")
HEADERS = {"Content-Security-Policy": CSP, "X-Content-Type-Options": "nosniff", "Referrer-Policy": "same-origin",
           "Cache-Control": "no-store", "Vary": "Cookie, Accept-Language"}
# (exception, status, title key, message key or None: the exception's own message)
ERROR_PAGES = [((RepoNotFound, RevisionNotFound, EntryNotFound), 404, "not_found", "not_found_message"),
               (Gated, 403, "forbidden", "gated_message"), ((Forbidden, Unauthorized), 403, "forbidden", None),
               (Invalid, 400, "bad_request", None)]


class View:
    """One page request: ``user``, ``lang``, ``t`` (strings), ``inference`` (the API under ``peluk serve``)."""

    def __init__(self, ctx):
        self.ctx, self.hub, self.request = ctx, ctx.hub, ctx.request
        cookies = self.request.cookies
        self.new_cookies: list[tuple[str, str | None, int, bool]] = []  # (name, value or None: delete, age, httponly)
        asked = ctx.q("lang")
        self.lang = i18n.pick(asked, cookies.get(LANG_COOKIE), self.request.headers.get("accept-language"))
        if asked in i18n.LANGUAGES and asked != cookies.get(LANG_COOKIE):
            self.new_cookies.append((LANG_COOKIE, asked, YEAR, False))
        self.t = i18n.translate(self.lang)
        self.user = ctx.user or self._cookie_user(cookies.get(TOKEN_COOKIE))
        ctx.user = self.user  # so ctx.open() applies the hub's access rules to this user
        self.inference = getattr(self.request.app.state, "inference", None)

    @property
    def script_strings(self) -> dict[str, str]:
        return i18n.script_strings(self.lang)

    def _cookie_user(self, token: str | None):
        if not token:
            return None
        try:
            return self.hub.user_for_token(token)
        except Unauthorized:  # revoked since the login: forget it
            self.new_cookies.append((TOKEN_COOKIE, None, 0, True))
            return None

    def set_token(self, token: str | None) -> None:
        self.new_cookies.append((TOKEN_COOKIE, token, MONTH if token else 0, True))

    def _finish(self, response: Response) -> Response:
        secure = self.ctx.base.startswith("https:")
        for name, value, age, httponly in self.new_cookies:
            if value is None:
                response.delete_cookie(name, path="/", httponly=httponly, samesite="lax", secure=secure)
            else:
                response.set_cookie(name, value, max_age=age, path="/", httponly=httponly, samesite="lax",
                                    secure=secure)
        return response

    def render(self, template: str, status: int = 200, **values) -> Response:
        page = env().get_template(template).render(v=self, t=self.t, lang=self.lang, user=self.user, **values)
        return self._finish(HTMLResponse(page, status, headers=HEADERS))

    def redirect(self, location: str) -> Response:
        return self._finish(RedirectResponse(location, 303, headers={"Cache-Control": "no-store"}))

    def error(self, status: int, title: str, message: str) -> Response:
        return self.render("error.html", status, title=self.t(title), message=message)

    def lang_url(self, lang: str) -> str:
        """This page in another language (the switch in the header)."""
        kept = [(k, v) for k, v in self.ctx.params if k != "lang"] + [("lang", lang)]
        return self.request.url.path + "?" + urlencode(kept)

    def url(self, **changes) -> str:
        """This page's URL with query parameters replaced (``None`` removes one; a list repeats it)."""
        params = [(k, v) for k, v in self.ctx.params if k not in changes and k != "lang"]
        for key, value in changes.items():
            for item in value if isinstance(value, list) else [] if value is None else [value]:
                params.append((key, str(item)))
        return self.request.url.path + ("?" + urlencode(params) if params else "")

    @property
    def here(self) -> str:
        """This page's path and query (where logging in or out comes back to)."""
        return self.url()

    def same_origin(self) -> bool:
        """A form post from one of our pages (browsers send Origin with every POST)."""
        origin = self.request.headers.get("origin")
        return origin is None or origin == self.ctx.base


def page(pattern: str, *methods: str):
    """Register an HTML page ``fn(view, **params)`` on the hub's dispatcher (GET unless told)."""
    def register(fn):
        def handler(ctx, **params):
            if params.get("repo", "").split("/")[0].lower() in RESERVED:  # /api/..., /models/...: not repositories
                return protocol.error(404, f"Not found: {ctx.request.method} {ctx.url.removeprefix(ctx.base)}")
            view = View(ctx)
            try:
                return fn(view, **params)
            except Exception as e:
                for errors, status, title, message in ERROR_PAGES:
                    if isinstance(e, errors):
                        return view.error(status, title, view.t(message) if message else str(e))
                if getattr(e, "status", 0) in (404, 413, 422):  # the inference API's ApiError
                    return view.error(e.status, "not_found" if e.status == 404 else "bad_request", e.message)
                log.exception("peluk web: %s failed", ctx.url)
                return view.error(500, "server_error", f"{type(e).__name__}; the server log has details")
        for method in methods or ("GET",):
            route(method, pattern)(handler)
        return fn
    return register


# --- links ------------------------------------------------------------------------------------

class Links:
    """URLs of one repository's pages, as huggingface.co lays them out."""

    def __init__(self, repo_type: str, repo_id: str):
        self.type, self.id = repo_type, repo_id
        self.home = f"/{URL_PREFIX[repo_type]}{repo_id}"

    def _at(self, kind: str, rev: str, path: str = "") -> str:
        return f"{self.home}/{kind}/{quote(rev, safe='')}" + (f"/{quote(path)}" if path else "")

    def tree(self, rev: str = "main", path: str = "") -> str:
        return self._at("tree", rev, path)

    def blob(self, rev: str, path: str) -> str:
        return self._at("blob", rev, path)

    def resolve(self, rev: str, path: str) -> str:
        return self._at("resolve", rev, path)

    def commits(self, rev: str = "main") -> str:
        return self._at("commits", rev)

    @property
    def refs(self) -> str:
        return f"{self.home}/refs"

    @property
    def explore(self) -> str:
        return f"{self.home}/explore"


# --- Jinja and Markdown -------------------------------------------------------------------------

@lru_cache(maxsize=None)
def static_url(name: str) -> str:
    """``/-/static/NAME?v=<content hash>``: cached by browsers, refreshed when the file changes."""
    data = static_file(name)
    return f"/-/static/{name}?v={hashlib.sha256(data[0]).hexdigest()[:10]}" if data else f"/-/static/{name}"


@lru_cache(maxsize=None)
def static_file(name: str) -> tuple[bytes, str] | None:
    """(content, media type) of a static asset; the attention renderer comes from peluk.viz."""
    types = {".css": "text/css; charset=utf-8", ".js": "text/javascript; charset=utf-8"}
    if name == "attention.js":
        from peluk.viz.render import renderer_js

        return renderer_js().encode(), types[".js"]
    path = STATIC / name
    if "/" in name or path.suffix not in types or not path.is_file():
        return None
    return path.read_bytes(), types[path.suffix]


@route("GET", "/-/static/{path}")
def static(ctx, path):
    found = static_file(path)
    if found is None:
        return protocol.error(404, f"No static file {path!r}")
    return Response(found[0], media_type=found[1], headers={"Cache-Control": "public, max-age=86400",
                                                            "X-Content-Type-Options": "nosniff"})


def human_size(n: int | None) -> str:
    if n is None:
        return ""
    for unit in ("Bytes", "kB", "MB", "GB", "TB"):
        if n < 1000 or unit == "TB":
            return f"{n} {unit}" if unit == "Bytes" else f"{n:.1f} {unit}".replace(".0 ", " ")
        n /= 1000
    return ""


def day(stamp) -> str:
    """A stored ISO stamp or a unix time as YYYY-MM-DD."""
    return (protocol.date(stamp) or "")[:10]


@lru_cache(maxsize=1)
def env():
    import jinja2

    environment = jinja2.Environment(loader=jinja2.FileSystemLoader(HERE / "templates"), autoescape=True,
                                     trim_blocks=True, lstrip_blocks=True, auto_reload=False)
    environment.globals.update(static=static_url, languages=i18n.LANGUAGES)
    environment.filters.update(size=human_size, day=day, short=lambda sha: (sha or "")[:7])
    return environment


@lru_cache(maxsize=1)
def _markdown():
    from markdown_it import MarkdownIt

    md = MarkdownIt("js-default")  # CommonMark + tables and strikethrough; raw HTML is escaped, not passed

    def rebase(state):  # relative links and images of a card point into the repository, as on the Hub
        base = state.env.get("base")
        for token in state.tokens:
            for child in token.children or []:
                attr = {"image": "src", "link_open": "href"}.get(child.type)
                value = child.attrGet(attr) if attr else None
                if not value:
                    continue
                if re.match(r"^https?:", value):
                    child.attrSet("rel", "nofollow noopener")
                elif base and not re.match(r"^([a-z][a-z0-9+.-]*:|/|#)", value, re.I):
                    kind = "resolve" if child.type == "image" else "blob"
                    child.attrSet(attr, f"{base.home}/{kind}/main/{quote(value.removeprefix('./'), safe='/#?&=%')}")
    md.core.ruler.push("peluk_rebase", rebase)
    return md


def markdown(text: str, links: Links | None = None) -> str:
    """Markdown → HTML, untrusted input welcome: raw HTML is escaped, ``javascript:`` links refused."""
    return _markdown().render(text, {"base": links})


def card_body(readme: str) -> str:
    """A README without its YAML front matter (the metadata shown elsewhere on the page)."""
    from peluk.serve.hub.cards import FRONT_MATTER

    match = FRONT_MATTER.match(readme)
    return readme[match.end():] if match else readme
