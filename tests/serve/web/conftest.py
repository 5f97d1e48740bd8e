"""The web UI in headless Chromium (Playwright) against a real ``peluk serve`` on loopback.

One server per session (tests/serve/api's ``ApiServer`` over its tiny random models, the packaged
MiniLM, and a 12-layer × 12-head BERT for the render timing), one browser per session, a fresh
browser context per test in which every request that does not go to 127.0.0.1 is aborted and
counted: the tests end by checking that the pages asked for nothing outside (no CDN).
Screenshots go to ``$PELUK_TEST_ARTIFACTS`` (default ``build/test-artifacts/web/``).
"""

from __future__ import annotations

import os
from pathlib import Path
from urllib.parse import urlparse

import pytest

from peluk.serve.hub.service import RepoNotFound
from peluk.serve.hub.storage import Identity
from tests.serve.api.conftest import ApiServer, _copy_tokenizer, _settings, smol_tokenizer_dir, zoo  # noqa: F401

CHROMIUM = Path("/usr/bin/chromium")
ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update",
        "--disable-sync", "--no-first-run", "--disable-quic"]
ROOT = Path(__file__).resolve().parents[3]
ARTIFACTS = Path(os.environ.get("PELUK_TEST_ARTIFACTS") or ROOT / "build" / "test-artifacts" / "web")

CARD = """---
license: apache-2.0
language:
- en
- id
library_name: transformers
pipeline_tag: text-classification
tags:
- sentiment
---
# Tiny sentiment

A tiny random **BERT** for tests. See [the config](config.json) and the table:

| split | accuracy |
|-------|----------|
| test  | 0.50     |

<script>window.__pwned = 1</script>
<img src="x" onerror="window.__pwned = 2">
[click me](javascript:window.__pwned=3)
"""


@pytest.fixture(scope="session")
def browser():
    sync_api = pytest.importorskip("playwright.sync_api", reason="playwright is not installed (the test extra)")
    if not CHROMIUM.exists():
        pytest.skip(f"no Chromium at {CHROMIUM} (Debian's chromium package; scripts/setup.sh --test installs it)")
    with sync_api.sync_playwright() as p:
        browser = p.chromium.launch(executable_path=str(CHROMIUM), args=ARGS)
        yield browser
        browser.close()


@pytest.fixture(scope="session")
def bert12(tmp_path_factory, minilm_dir) -> Path:
    """A tiny random BERT with 12 layers × 12 heads and 512 positions (the render timing)."""
    import torch
    import transformers

    path = tmp_path_factory.mktemp("bert12")
    torch.manual_seed(0)
    config = transformers.BertConfig(vocab_size=30522, hidden_size=48, num_hidden_layers=12, num_attention_heads=12,
                                     intermediate_size=64, max_position_embeddings=512, initializer_range=0.5)
    transformers.BertModel(config).save_pretrained(path)
    _copy_tokenizer(minilm_dir, path)
    return path


@pytest.fixture(scope="session")
def web(tmp_path_factory, zoo, bert12, smol_path):  # noqa: F811
    """``peluk serve`` (public) with hub content: alice's public model (a copy of tiny/sentiment with
    a card), her private model, a gated model, a dataset; ``web.alice`` is her token."""
    settings = _settings(zoo, default_max_new_tokens=24)
    settings["models"].append(f"tiny/bert12={bert12}")
    server = ApiServer(tmp_path_factory.mktemp("web"), **settings)
    hub = server.hub
    server.alice = server.token("alice", "write")
    alice = hub.user_for_token(server.alice)
    files = {p.name: p.read_bytes() for p in zoo["tiny/sentiment"].iterdir() if p.is_file()}
    commit(hub, alice, "model", "alice/tiny-sentiment", {**files, "README.md": CARD.encode()}, "add the model")
    commit(hub, alice, "model", "alice/tiny-sentiment", {"notes/todo.txt": b"1 < 2 & <b>not bold</b>\n"}, "notes")
    commit(hub, alice, "model", "alice/secret-model", {"README.md": b"# Secret\n"}, "secret", private=True)
    repo = commit(hub, alice, "model", "alice/gated-model", {"README.md": b"# Gated\n", "w.txt": b"weights"}, "gated")
    hub.update_settings(repo, gated="auto")
    commit(hub, alice, "dataset", "alice/reviews", {"README.md": b"---\nlanguage: [id]\n---\n# Reviews\n",
                                                    "train.csv": b"text,label\nbagus,1\n"}, "data")
    repo = hub.find("model", "alice/tiny-sentiment", alice)
    hub.git(repo).create_tag("v1", repo.sha, None, Identity("alice"))
    yield server
    server.stop()


def commit(hub, user, repo_type: str, repo_id: str, files: dict[str, bytes], message: str, private: bool = False):
    """Create ``repo_id`` if needed and commit ``files`` to main, through the hub's service layer."""
    try:
        repo = hub.find(repo_type, repo_id, user)
    except RepoNotFound:
        repo = hub.create_repo(repo_type, *repo_id.split("/"), private, user)
    with hub.staging(repo) as stage:
        stage.set_base(hub.git(repo).head("refs/heads/main"))
        for path, data in files.items():
            stage.add_bytes(path, data)
        hub.commit(repo, "main", stage.ops(), message, "", user)
    return hub.find(repo_type, repo_id, user)


class Page:
    """A Playwright page in its own context, offline but for 127.0.0.1; ``shot(name)`` saves a PNG."""

    def __init__(self, browser, server, locale: str = "en-US"):
        self.server, self.external = server, []
        self.context = browser.new_context(locale=locale, viewport={"width": 1280, "height": 900})
        self.context.route("**/*", self._only_loopback)
        self.page = self.context.new_page()
        self.page.set_default_timeout(30_000)

    def _only_loopback(self, route):
        url = route.request.url
        if urlparse(url).hostname == "127.0.0.1" or url.startswith(("data:", "blob:")):
            route.continue_()
        else:
            self.external.append(url)
            route.abort()

    def goto(self, path: str, status: int = 200):
        response = self.page.goto(self.server.url + path)
        assert response.status == status, (path, response.status)
        return self.page

    def shot(self, name: str) -> Path:
        ARTIFACTS.mkdir(parents=True, exist_ok=True)
        path = ARTIFACTS / f"{name}.png"
        self.page.screenshot(path=str(path), full_page=True)
        return path

    def close(self):
        self.context.close()
        assert self.external == [], f"the pages asked for outside resources: {self.external[:5]}"


@pytest.fixture
def open_page(browser, web):
    """``open_page(locale=..., server=...)`` → a ``Page``; each is checked for outside requests at the end."""
    pages = []

    def make(locale: str = "en-US", server=None) -> Page:
        pages.append(Page(browser, server or web, locale))
        return pages[-1]
    yield make
    for p in pages:
        p.close()

