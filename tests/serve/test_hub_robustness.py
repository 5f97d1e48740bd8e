"""Ranges and resumed downloads, concurrent commits, and a server killed during an upload."""

from __future__ import annotations

import hashlib
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

huggingface_hub = pytest.importorskip("huggingface_hub")
import httpx2 as httpx  # noqa: E402
from huggingface_hub import hf_hub_download  # noqa: E402
from huggingface_hub.errors import HfHubHTTPError  # noqa: E402

from tests.serve.conftest import free_port  # noqa: E402


def test_range_requests(server, name):
    api, repo_id = server.api(), f"admin/{name}"
    api.create_repo(repo_id)
    small, big = os.urandom(3000), os.urandom(300_000)
    api.upload_file(path_or_fileobj=small, path_in_repo="small.txt", repo_id=repo_id)
    api.upload_file(path_or_fileobj=big, path_in_repo="big.bin", repo_id=repo_id)  # *.bin: LFS
    for path, data in (("small.txt", small), ("big.bin", big)):
        url = f"{server.url}/{repo_id}/resolve/main/{path}"
        head = httpx.head(url)
        assert head.status_code == 200 and int(head.headers["content-length"]) == len(data)
        assert head.headers["accept-ranges"] == "bytes" and head.headers["x-repo-commit"]
        for spec, lo, hi in (("100-199", 100, 200), ("2000-", 2000, len(data)), ("-50", len(data) - 50, len(data))):
            r = httpx.get(url, headers={"Range": f"bytes={spec}"})
            assert r.status_code == 206 and r.content == data[lo:hi], (path, spec)
            assert r.headers["content-range"] == f"bytes {lo}-{hi - 1}/{len(data)}"
        r = httpx.get(url, headers={"Range": f"bytes={len(data)}-"})
        assert r.status_code == 416
    lfs = httpx.head(f"{server.url}/{repo_id}/resolve/main/big.bin").headers
    assert lfs["x-linked-etag"] == lfs["etag"] == f'"{hashlib.sha256(big).hexdigest()}"'
    assert lfs["x-linked-size"] == str(len(big))


def test_download_resumes_after_dropped_connection(server, name, tmp_path, monkeypatch):
    from huggingface_hub import constants

    monkeypatch.setattr(constants, "DOWNLOAD_CHUNK_SIZE", 64 * 1024)  # (10 MB by default)
    api, repo_id = server.api(), f"admin/{name}"
    api.create_repo(repo_id)
    data = os.urandom(2_000_000)
    api.upload_file(path_or_fileobj=data, path_in_repo="weights.safetensors", repo_id=repo_id)
    server.recorder.drops[f"/{repo_id}/resolve/"] = 700_000
    path = hf_hub_download(repo_id, "weights.safetensors", endpoint=server.url, token=server.admin,
                           cache_dir=tmp_path / "cache")
    assert Path(path).read_bytes() == data
    gets = server.recorder.seen("GET", f"/{repo_id}/resolve/")
    assert len(gets) == 2 and gets[1]["range"].startswith("bytes=") and gets[1]["range"] != "bytes=0-"


def test_broken_lfs_uploads_leave_nothing_behind(server, name):
    """More bytes than announced, other bytes, a client gone mid-body: a 4xx, no object, no temp file."""
    repo_id = f"admin/{name}"
    server.api().create_repo(repo_id)
    data = os.urandom(9 << 20)  # more than one batch of the server's pipelined writer
    oid = hashlib.sha256(data).hexdigest()

    def upload_url(size: int) -> str:
        batch = httpx.post(f"{server.url}/{repo_id}.git/info/lfs/objects/batch",
                           headers={"authorization": f"Bearer {server.admin}"},
                           json={"operation": "upload", "objects": [{"oid": oid, "size": size}]}).json()
        return batch["objects"][0]["actions"]["upload"]["href"]

    assert httpx.put(upload_url(len(data) - 1), content=data).status_code == 400
    assert httpx.put(upload_url(len(data)), content=os.urandom(len(data))).status_code == 400
    href = httpx.URL(upload_url(len(data)))
    with socket.create_connection((href.host, href.port)) as s:  # gone after 7 of the 9 MiB
        s.sendall(f"PUT {href.raw_path.decode()} HTTP/1.1\r\nHost: {href.host}\r\n"
                  f"Content-Length: {len(data)}\r\n\r\n".encode() + data[:7 << 20])
    deadline = time.time() + 10
    while list((server.home / "lfs" / "tmp").glob("upload-*")):
        assert time.time() < deadline, "an upload's temp file stayed behind"
        time.sleep(0.05)
    assert server.hub.storage.lfs.size(oid) is None
    assert httpx.put(upload_url(len(data)), content=data).status_code == 200
    assert server.hub.storage.lfs.size(oid) == len(data)

def test_concurrent_commits(server, name):
    api, repo_id = server.api(), f"admin/{name}"
    api.create_repo(repo_id)
    with ThreadPoolExecutor(16) as pool:
        shas = list(pool.map(lambda i: api.upload_file(path_or_fileobj=f"file {i}".encode(),
                                                        path_in_repo=f"f{i:02d}.txt", repo_id=repo_id).oid, range(16)))
    assert len(set(shas)) == 16
    log = server.git("model", repo_id, "log", "--format=%H", "main").split()
    assert len(log) == 17 and set(shas) <= set(log)  # every commit landed, one after another
    assert sorted(api.list_repo_files(repo_id)) == [".gitattributes"] + [f"f{i:02d}.txt" for i in range(16)]
    assert server.git("model", repo_id, "fsck", "--strict", "--no-dangling") == ""

    head = log[0]

    def commit_on(i):
        try:
            return api.upload_file(path_or_fileobj=b"x", path_in_repo=f"g{i}.txt", repo_id=repo_id,
                                   parent_commit=head).oid
        except HfHubHTTPError as e:
            assert e.response.status_code == 409 and "commit has happened" in str(e).lower() + e.response.text.lower()
            return None
    with ThreadPoolExecutor(8) as pool:
        results = list(pool.map(commit_on, range(8)))
    winners = [r for r in results if r]
    assert len(winners) == 1 and server.git("model", repo_id, "rev-parse", "main").strip() == winners[0]


def start_server(home: Path, port: int) -> subprocess.Popen:
    code = f"from peluk.serve.hub.app import serve; serve({str(home)!r}, port={port})"
    proc = subprocess.Popen([sys.executable, "-c", code], cwd=Path(__file__).resolve().parents[2],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.time() + 60
    while time.time() < deadline:
        try:
            httpx.get(f"http://127.0.0.1:{port}/api/agent-harnesses", timeout=1)
            return proc
        except httpx.TransportError:
            assert proc.poll() is None, "the hub process died"
            time.sleep(0.1)
    proc.kill()
    raise RuntimeError("the hub did not start")


def test_killed_during_lfs_upload_leaves_repo_unchanged(tmp_path):
    home, port = tmp_path / "hub", free_port()
    proc = start_server(home, port)
    url, token = f"http://127.0.0.1:{port}", (home / "admin_token").read_text().strip()
    try:
        api = huggingface_hub.HfApi(endpoint=url, token=token)
        api.create_repo("admin/victim")
        api.upload_file(path_or_fileobj=b"{}", path_in_repo="config.json", repo_id="admin/victim")
        repo = home / "repos" / "models" / "admin" / "victim.git"
        refs_before = subprocess.run(["git", "--git-dir", str(repo), "show-ref"], capture_output=True, text=True).stdout
        data = os.urandom(8 << 20)
        oid = hashlib.sha256(data).hexdigest()
        batch = httpx.post(f"{url}/admin/victim.git/info/lfs/objects/batch", headers={"authorization": f"Bearer {token}"},
                           json={"operation": "upload", "objects": [{"oid": oid, "size": len(data)}]}).json()
        href = batch["objects"][0]["actions"]["upload"]["href"]
        sent = threading.Event()

        def slow_body():
            for i in range(0, len(data), 1 << 20):
                yield data[i:i + (1 << 20)]
                if i >= 5 << 20:
                    sent.set()
                    time.sleep(30)  # the server dies meanwhile

        uploader = threading.Thread(target=lambda: _swallow(lambda: httpx.put(
            href, content=slow_body(), headers={"content-length": str(len(data))}, timeout=60)), daemon=True)
        uploader.start()
        assert sent.wait(30)
        deadline = time.time() + 10
        while not any(p.stat().st_size >= 4 << 20 for p in (home / "lfs" / "tmp").glob("upload-*")):
            assert time.time() < deadline, "the upload never reached the server's temp file"
            time.sleep(0.05)
        proc.send_signal(signal.SIGKILL)
        proc.wait()
        assert list((home / "lfs" / "tmp").glob("upload-*"))  # the half-written upload is there...
        proc = start_server(home, port)
        assert list((home / "lfs" / "tmp").iterdir()) == []  # ...and cleaned at the next start
        assert not (home / "lfs" / "objects" / oid[:2] / oid[2:4] / oid).exists()
        refs_after = subprocess.run(["git", "--git-dir", str(repo), "show-ref"], capture_output=True, text=True).stdout
        assert refs_after == refs_before
        assert subprocess.run(["git", "--git-dir", str(repo), "fsck", "--strict"], capture_output=True).returncode == 0
        commit = (b'{"key": "header", "value": {"summary": "x"}}\n{"key": "lfsFile", "value": {"path": "w.bin", '
                  b'"algo": "sha256", "oid": "%s", "size": %d}}' % (oid.encode(), len(data)))
        r = httpx.post(f"{url}/api/models/admin/victim/commit/main", content=commit,
                       headers={"authorization": f"Bearer {token}"})
        assert r.status_code == 400 and "never uploaded" in r.text  # the object that never arrived
        assert api.list_repo_files("admin/victim") == [".gitattributes", "config.json"]
    finally:
        proc.kill()
        proc.wait()


def _swallow(fn):
    try:
        fn()
    except Exception:
        pass
