"""A peluk hub on loopback for the end-to-end tests, driven by the real huggingface_hub client."""

from __future__ import annotations

import os
import socket
import subprocess
import threading
import time
import uuid
from pathlib import Path

import pytest

os.environ.setdefault("HF_HUB_DISABLE_TELEMETRY", "1")  # effective only if huggingface_hub is not imported yet

import huggingface_hub  # noqa: E402  (the client under test; a test dependency)
import uvicorn  # noqa: E402  (the serve extra)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Recorder:
    """ASGI wrapper remembering (method, raw path, headers) of every request."""

    def __init__(self, app):
        self.app, self.requests, self.drops, self.failures = app, [], {}, []

    async def __call__(self, scope, receive, send):
        if scope["type"] == "http":
            path = scope["raw_path"].decode()
            self.requests.append((scope["method"], path, {k.decode().lower(): v.decode() for k, v in scope["headers"]}))
            fragment = next((f for f in self.drops if f in path and scope["method"] == "GET"), None)
            if fragment is not None:
                send = self._dropping(send, self.drops.pop(fragment))
            send = self._watching(send, scope["method"], path)
        await self.app(scope, receive, send)

    def _watching(self, send, method: str, path: str):
        async def wrapped(message):
            if message["type"] == "http.response.start" and message["status"] >= 500 and message["status"] != 501:
                self.failures.append((method, path, message["status"]))
            await send(message)
        return wrapped

    @staticmethod
    def _dropping(send, after: int):
        """A send that breaks the connection once ``after`` body bytes went out (a dropped download)."""
        sent = 0

        async def wrapped(message):
            nonlocal sent
            if message["type"] == "http.response.body":
                body = message.get("body", b"")
                if sent + len(body) > after:
                    await send({**message, "body": body[:after - sent], "more_body": True})
                    raise ConnectionAbortedError("test: connection dropped")
                sent += len(body)
            await send(message)
        return wrapped

    def seen(self, method: str, fragment: str) -> list[dict]:
        return [h for m, p, h in self.requests if m == method and fragment in p]


class Server:
    """A hub in a background thread: ``url``, ``home``, ``hub`` (the service), ``admin`` token."""

    def __init__(self, home: Path, **options):
        from peluk.serve.hub.app import create_app

        self.home, self.port = home, free_port()
        self.app = create_app(home, **options)
        self.hub = self.app.state.hub
        self.recorder = Recorder(self.app)
        self.url = f"http://127.0.0.1:{self.port}"
        self.admin = (home / "admin_token").read_text().strip()
        config = uvicorn.Config(self.recorder, host="127.0.0.1", port=self.port, log_level="warning",
                                lifespan="on", timeout_keep_alive=30)
        self.server = uvicorn.Server(config)
        self.thread = threading.Thread(target=self.server.run, daemon=True)
        self.thread.start()
        deadline = time.time() + 20
        while not self.server.started:
            if time.time() > deadline or not self.thread.is_alive():
                raise RuntimeError("the hub did not start")
            time.sleep(0.02)
        self._users = {}

    def user(self, name: str, role: str = "write") -> str:
        """A token for ``name`` (the user is created on first use)."""
        from peluk.serve.hub import auth

        if auth.get_user(self.hub.db, name) is None:
            auth.create_user(self.hub.db, name)
        return auth.create_token(self.hub.db, name, role)

    def api(self, token: str | bool | None = None):
        return huggingface_hub.HfApi(endpoint=self.url, token=self.admin if token is None else token)

    def git(self, repo_type: str, repo_id: str, *args: str) -> str:
        ns, name = repo_id.split("/")
        path = self.hub.storage.path(repo_type, ns, name)
        return subprocess.run(["git", "--git-dir", str(path), *args], capture_output=True, text=True,
                              check=True).stdout

    def stop(self):
        self.server.should_exit = True
        self.thread.join(timeout=10)
        assert self.recorder.failures == [], "the hub answered 5xx (a bug: bad input must get a 4xx)"


@pytest.fixture(autouse=True)
def _hf_client_env(monkeypatch, tmp_path):
    """A fresh huggingface_hub cache and no telemetry side requests, whatever was imported before."""
    from huggingface_hub import constants

    monkeypatch.setattr(constants, "HF_HUB_DISABLE_TELEMETRY", True)
    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", False)
    monkeypatch.setattr(constants, "HF_HUB_CACHE", str(tmp_path / "hf-cache"))
    monkeypatch.setenv("HF_HUB_DISABLE_TELEMETRY", "1")
    monkeypatch.delenv("HF_TOKEN", raising=False)


@pytest.fixture(scope="session")
def server(tmp_path_factory):
    s = Server(tmp_path_factory.mktemp("hub"))
    yield s
    s.stop()


@pytest.fixture(scope="session")
def lfs_server(tmp_path_factory):
    """A hub that answers "lfs" in preupload (for clients with HF_HUB_DISABLE_XET=1)."""
    s = Server(tmp_path_factory.mktemp("hub-lfs"), lfs_uploads="always")
    yield s
    s.stop()


@pytest.fixture
def name():
    """A fresh repository name."""
    return f"repo-{uuid.uuid4().hex[:8]}"


class Git:
    """The git command in ``cwd`` with no system or user configuration (a fresh HOME), no prompts."""

    def __init__(self, cwd: Path):
        self.cwd = cwd
        (cwd / "git-home").mkdir(exist_ok=True)
        self.env = {k: v for k, v in os.environ.items()
                    if not k.startswith("GIT_") and k not in ("SSH_ASKPASS", "HF_TOKEN")}
        self.env.update({"HOME": str(cwd / "git-home"), "XDG_CONFIG_HOME": str(cwd / "git-home"),
                         "GIT_CONFIG_NOSYSTEM": "1", "GIT_TERMINAL_PROMPT": "0",
                         "GIT_AUTHOR_NAME": "Tester", "GIT_AUTHOR_EMAIL": "tester@example.com",
                         "GIT_COMMITTER_NAME": "Tester", "GIT_COMMITTER_EMAIL": "tester@example.com"})

    def __call__(self, *args: str, check: bool = True, env: dict | None = None) -> subprocess.CompletedProcess:
        proc = subprocess.run(["git", *args], cwd=self.cwd, env={**self.env, **(env or {})}, capture_output=True,
                              text=True, timeout=120)
        if check and proc.returncode != 0:
            raise AssertionError(f"git {' '.join(args)} failed ({proc.returncode}):\n{proc.stderr}")
        return proc


@pytest.fixture
def git(tmp_path):
    """``git(*args)`` in ``tmp_path``, isolated from the machine's git configuration."""
    return Git(tmp_path)


def clone_url(server: Server, repo_id: str, token: str | None = None, prefix: str = "", suffix: str = "") -> str:
    """A git URL of a repository on ``server``, with ``token`` as the Basic-auth password."""
    host = server.url.removeprefix("http://")
    return f"http://{'user:' + token + '@' if token else ''}{host}/{prefix}{repo_id}{suffix}"
