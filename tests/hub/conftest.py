"""peluk's hub client against a real peluk hub on loopback (the server fixtures of tests/serve)."""

from __future__ import annotations

import pytest

from tests.serve.conftest import _hf_client_env, name, server  # noqa: F401  (fixtures, reused as they are)


@pytest.fixture(autouse=True)
def _peluk_env(monkeypatch, tmp_path):
    """peluk's hub settings isolated: the cache huggingface_hub uses in these tests, no token, online,
    and an endpoint where nothing answers unless a test asks for the hub."""
    for var in ("HF_ENDPOINT", "PELUK_TOKEN", "HF_TOKEN", "HF_TOKEN_PATH", "PELUK_OFFLINE", "HF_HUB_OFFLINE"):
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setenv("HF_HOME", str(tmp_path / "hf-home"))
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path / "hf-cache"))  # = huggingface_hub's, see _hf_client_env
    monkeypatch.setenv("PELUK_ENDPOINT", "http://127.0.0.1:9")  # the discard port: connection refused


@pytest.fixture
def hub(server, monkeypatch):
    """The session's hub as peluk's endpoint, with the admin's token in PELUK_TOKEN."""
    monkeypatch.setenv("PELUK_ENDPOINT", server.url)
    monkeypatch.setenv("PELUK_TOKEN", server.admin)
    return server
