"""Data-test fixtures: a private peluk cache per test, and the `datasets` library as oracle."""

from __future__ import annotations

import pytest


@pytest.fixture(autouse=True)
def peluk_cache(tmp_path, monkeypatch):
    """Every test gets its own dataset cache (never ~/.cache/peluk)."""
    cache = tmp_path / "peluk-cache"
    monkeypatch.setenv("PELUK_DATASETS_CACHE", str(cache))
    return cache


@pytest.fixture(scope="session")
def hf():
    """The `datasets` library (test-only oracle), offline, with progress bars off."""
    import os

    os.environ.setdefault("HF_DATASETS_OFFLINE", "1")
    datasets = pytest.importorskip("datasets")
    datasets.disable_progress_bars()
    return datasets


@pytest.fixture
def hf_cache(tmp_path):
    return str(tmp_path / "hf-cache")


def write(path, text: str | bytes):
    """Write a small data file; returns its path as a string."""
    path.parent.mkdir(parents=True, exist_ok=True)
    if isinstance(text, bytes):
        path.write_bytes(text)
    else:
        path.write_text(text, encoding="utf-8")
    return str(path)
