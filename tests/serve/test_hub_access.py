"""Private repositories, write permissions, limits and hostile input: 4xx answers, never 500."""

from __future__ import annotations

import base64
import hashlib
import json
import os
import socket

import pytest

huggingface_hub = pytest.importorskip("huggingface_hub")
import httpx2 as httpx  # noqa: E402  (huggingface_hub's own HTTP client)
from huggingface_hub import hf_hub_download  # noqa: E402
from huggingface_hub.errors import GatedRepoError, HfHubHTTPError, RepositoryNotFoundError  # noqa: E402


def bearer(token):
    return {"authorization": f"Bearer {token}"}


def test_private_repos_are_invisible_everywhere(server, name, tmp_path):
    owner, other = f"o{name[5:]}", f"x{name[5:]}"
    owner_token, other_token = server.user(owner), server.user(other)
    read_token = server.user(owner, role="read")
    api = server.api(owner_token)
    repo_id = f"{owner}/{name}"
    api.create_repo(repo_id, private=True)
    data = os.urandom(1000)
    api.upload_file(path_or_fileobj=data, path_in_repo="weights.bin", repo_id=repo_id)  # *.bin → LFS
    oid = hashlib.sha256(data).hexdigest()
    api.create_repo(f"{owner}/{name}-data", repo_type="dataset", private=True)

    for token in (other_token, False):  # another user, anonymous
        outsider = server.api(token)
        with pytest.raises(RepositoryNotFoundError):
            outsider.model_info(repo_id)
        with pytest.raises(RepositoryNotFoundError):
            outsider.dataset_info(f"{owner}/{name}-data")
        with pytest.raises(RepositoryNotFoundError):
            list(outsider.list_repo_tree(repo_id))
        with pytest.raises(RepositoryNotFoundError):
            outsider.list_repo_refs(repo_id)
        with pytest.raises(RepositoryNotFoundError):
            hf_hub_download(repo_id, "weights.bin", endpoint=server.url, token=token, cache_dir=tmp_path / "c")
        assert not outsider.repo_exists(repo_id)
        assert [m.id for m in outsider.list_models(author=owner)] == []
        assert [m.id for m in outsider.list_models(search=name)] == []
        assert list(outsider.list_datasets(author=owner)) == []
        headers = bearer(token) if token else {}
        for method, path, body in [
            ("HEAD", f"/{repo_id}/resolve/main/weights.bin", None),
            ("GET", f"/api/models/{repo_id}/commits/main", None),
            ("POST", f"/api/models/{repo_id}/paths-info/main", None),
            ("POST", f"/{repo_id}.git/info/lfs/objects/batch",
             {"operation": "download", "objects": [{"oid": oid, "size": 1000}]}),
            ("POST", f"/api/models/{repo_id}/preupload/main", {"files": []}),
            ("POST", f"/api/models/{repo_id}/commit/main", None),
            ("DELETE", "/api/repos/delete", {"name": repo_id}),
        ]:
            r = httpx.request(method, server.url + path, headers=headers, json=body)
            assert r.status_code in (401, 404) and r.headers.get("x-error-code") == "RepoNotFound", (method, path)
    # the owner, with a read token too, sees everything
    assert [m.id for m in server.api(read_token).list_models(author=owner)] == [repo_id]
    path = hf_hub_download(repo_id, "weights.bin", endpoint=server.url, token=read_token, cache_dir=tmp_path / "o")
    assert open(path, "rb").read() == data
    with pytest.raises(HfHubHTTPError) as e:  # ... but cannot write with it
        server.api(read_token).upload_file(path_or_fileobj=b"x", path_in_repo="x", repo_id=repo_id)
    assert e.value.response.status_code == 403
    # made public, it appears for everyone
    api.update_repo_settings(repo_id, private=False)
    assert server.api(False).model_info(repo_id).private is False
    with pytest.raises(HfHubHTTPError) as e:  # others still cannot write
        server.api(other_token).upload_file(path_or_fileobj=b"x", path_in_repo="x", repo_id=repo_id)
    assert e.value.response.status_code == 403
    with pytest.raises(HfHubHTTPError) as e:
        server.api(other_token).create_repo(f"{owner}/intruder")
    assert e.value.response.status_code == 403


def commit_body(*ops, summary="test"):
    lines = [{"key": "header", "value": {"summary": summary, "description": ""}}, *ops]
    return "\n".join(json.dumps(line) for line in lines).encode()


def add(path, content=b"x"):
    return {"key": "file", "value": {"path": path, "encoding": "base64", "content": base64.b64encode(content).decode()}}


BAD_PATHS = ["../escape.txt", "a/../../escape.txt", "/etc/passwd", "a/.git/config", ".git/hooks/post-update",
             "a\\b.txt", "a\0b", "a//b", "./a", "dir/", "", "a/./b", ".GIT/x", "new\nline"]


def test_hostile_input_gets_4xx(server, name):
    repo_id = f"admin/{name}"
    server.api().create_repo(repo_id)
    head = server.git("model", repo_id, "rev-parse", "main")
    url, auth = f"{server.url}/api/models/{repo_id}/commit/main", bearer(server.admin)
    for path in BAD_PATHS:
        r = httpx.post(url, headers=auth, content=commit_body(add(path)))
        assert r.status_code == 400 and "Invalid path" in r.json()["error"], path
        r = httpx.post(url, headers=auth, content=commit_body({"key": "deletedFile", "value": {"path": path}}))
        assert r.status_code == 400, path
    for body, why in [(b"not json", "not JSON"), (b"", "empty commit"), (commit_body(add("a", b"")) + b"\n[1]", "line 3"),
                      (commit_body({"key": "file", "value": {"path": "a", "content": "@@@"}}), "base64"),
                      (commit_body({"key": "lfsFile", "value": {"path": "a", "oid": "0" * 64, "size": 1}}), "never uploaded"),
                      (commit_body({"key": "explode", "value": {}}), "unknown commit operation"),
                      (commit_body(add("f"), add("f/g")), "is a file")]:
        r = httpx.post(url, headers=auth, content=body)
        assert r.status_code == 400 and why in r.json()["error"], (body[:60], r.text)
    assert server.git("model", repo_id, "rev-parse", "main") == head  # nothing landed
    # hostile names, revisions and paths in URLs
    for method, path, body in [
        ("POST", "/api/repos/create", {"name": "../../etc"}),
        ("POST", "/api/repos/create", {"name": "x.git"}),
        ("POST", "/api/repos/create", {"name": "a" * 200}),
        ("POST", "/api/repos/create", {"name": ["list"]}),
        ("POST", "/api/repos/create", [1, 2]),
        ("POST", f"/api/models/{repo_id}/branch/..%2Fescape", {}),
        ("POST", f"/api/models/{repo_id}/branch/a%20b", {}),
        ("POST", f"/api/models/{repo_id}/tag/main", {"tag": "bad..tag"}),
        ("POST", f"/api/models/{repo_id}/preupload/main", {"files": [{"path": 1}]}),
        ("POST", f"/{repo_id}.git/info/lfs/objects/batch", {"operation": "upload", "objects": "nope"}),
        ("GET", "/api/models?limit=abc", None),
        ("GET", "/api/models?cursor=garbage", None),
    ]:
        r = httpx.request(method, server.url + path, headers=auth, json=body)
        assert 400 <= r.status_code < 500 and r.json()["error"], (method, path, r.status_code, r.text)
    for path in ["..%2F..%2F..%2Fetc%2Fpasswd", "../../hub.db", "%2E%2E/secret", ".git/config", "a%00b"]:
        r = httpx.get(f"{server.url}/{repo_id}/resolve/main/{path}", headers=auth)
        assert r.status_code in (400, 404) and b"root:" not in r.content, path
    for rev in ["main~1", "HEAD", "main%5E", "-n", "--all", "%40%7B0%7D"]:
        r = httpx.get(f"{server.url}/api/models/{repo_id}/revision/{rev}", headers=auth)
        assert r.status_code == 404 and r.headers["x-error-code"] == "RevisionNotFound", rev
    with socket.create_connection(("127.0.0.1", server.port)) as s:  # announces 1 TB, sends nothing
        s.sendall(f"POST /api/models/{repo_id}/commit/main HTTP/1.1\r\nHost: x\r\n"
                  f"Authorization: Bearer {server.admin}\r\nContent-Length: {10 ** 12}\r\n\r\n".encode())
        assert s.recv(100).startswith(b"HTTP/1.1 413")


def test_limits(tmp_path):
    from starlette.testclient import TestClient

    from peluk.serve.hub.app import create_app

    app = create_app(tmp_path / "hub", max_file_size=1000, max_request_size=5000)
    token = (tmp_path / "hub" / "admin_token").read_text().strip()
    with TestClient(app) as client:
        auth = bearer(token)
        client.post("/api/repos/create", json={"name": "x"}, headers=auth)
        r = client.post("/api/models/admin/x/commit/main", headers=auth, content=commit_body(add("big", b"y" * 1001)))
        assert r.status_code == 413 and "limit" in r.json()["error"]
        r = client.post("/api/models/admin/x/commit/main", headers=auth, content=commit_body(add("big", b"y" * 4000)))
        assert r.status_code == 413
        r = client.post("/admin/x.git/info/lfs/objects/batch", headers=auth,
                        json={"operation": "upload", "objects": [{"oid": "a" * 64, "size": 1001}]})
        assert r.json()["objects"][0]["error"]["code"] == 422
        r = client.post("/api/models/admin/x/preupload/main", headers=auth, json={"files": [{"path": "a", "size": 2000}]})
        assert r.status_code == 413


def test_lfs_upload_url_is_signed(server, name):
    repo_id, data = f"admin/{name}", os.urandom(5000)
    oid = hashlib.sha256(data).hexdigest()
    server.api().create_repo(repo_id)
    batch = httpx.post(f"{server.url}/{repo_id}.git/info/lfs/objects/batch", headers=bearer(server.admin),
                       json={"operation": "upload", "transfers": ["basic"], "objects": [{"oid": oid, "size": 5000}]})
    href = batch.json()["objects"][0]["actions"]["upload"]["href"]
    assert batch.headers["content-type"].startswith("application/vnd.git-lfs+json")
    assert httpx.put(href.replace("sig=", "sig=0"), content=data).status_code == 403
    assert httpx.put(href, content=data[:-1] + bytes([data[-1] ^ 1])).status_code == 400  # sha256 mismatch
    assert httpx.put(href, content=data).status_code == 200
    again = httpx.post(f"{server.url}/{repo_id}.git/info/lfs/objects/batch", headers=bearer(server.admin),
                       json={"operation": "upload", "objects": [{"oid": oid, "size": 5000}]}).json()
    assert "actions" not in again["objects"][0]  # already stored: nothing to do (and no "actions": null)
    down = httpx.post(f"{server.url}/{repo_id}.git/info/lfs/objects/batch",  # what git-lfs asks on clone
                      json={"operation": "download", "objects": [{"oid": oid, "size": 5000}, {"oid": "e" * 64, "size": 1}]})
    found, missing = down.json()["objects"]
    assert httpx.get(found["actions"]["download"]["href"]).content == data and missing["error"]["code"] == 404
    assert httpx.get(found["actions"]["download"]["href"].replace("sig=", "sig=0")).status_code == 403
    assert list((server.home / "lfs" / "tmp").glob("upload-*")) == []


def test_gated_repo(server, name, tmp_path):
    owner = f"g{name[5:]}"
    api, repo_id = server.api(server.user(owner)), f"{owner}/{name}"
    api.create_repo(repo_id)
    api.upload_file(path_or_fileobj=b"{}", path_in_repo="config.json", repo_id=repo_id)
    api.update_repo_settings(repo_id, gated="auto")
    outsider = server.api(server.user(f"h{name[5:]}"))
    assert outsider.model_info(repo_id).gated == "auto"  # visible...
    with pytest.raises(GatedRepoError):  # ...but its files are not
        hf_hub_download(repo_id, "config.json", endpoint=server.url, token=outsider.token, cache_dir=tmp_path / "c")
    assert hf_hub_download(repo_id, ".gitattributes", endpoint=server.url, token=outsider.token, cache_dir=tmp_path / "c")
    assert hf_hub_download(repo_id, "config.json", endpoint=server.url, token=api.token, cache_dir=tmp_path / "o")
