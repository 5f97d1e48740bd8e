"""git smart HTTP and git-lfs against the hub: clone, fetch, push with tokens, seen through the API."""

from __future__ import annotations

import hashlib
import os
import shutil
import subprocess
from pathlib import Path

import pytest

huggingface_hub = pytest.importorskip("huggingface_hub")
import httpx2 as httpx  # noqa: E402  (huggingface_hub's own HTTP client)
from huggingface_hub import get_hf_file_metadata, hf_hub_download, hf_hub_url  # noqa: E402

from peluk.serve.hub.storage import lfs_pointer  # noqa: E402
from tests.serve.conftest import clone_url  # noqa: E402

needs_git_lfs = pytest.mark.skipif(shutil.which("git-lfs") is None,
                                   reason="git-lfs is not installed (scripts/setup.sh --test installs it as root)")


def head(git, folder: str) -> str:
    return git("-C", folder, "rev-parse", "HEAD").stdout.strip()


def test_clone_public_and_private_repositories(server, name, git):
    owner, other = f"o{name[5:]}", f"x{name[5:]}"
    token, read_token, other_token = server.user(owner), server.user(owner, "read"), server.user(other)
    api = server.api(token)
    public, private = f"{owner}/{name}", f"{owner}/{name}-data"
    api.create_repo(public)
    api.upload_file(path_or_fileobj=b"# hello\n", path_in_repo="README.md", repo_id=public)
    api.create_repo(private, repo_type="dataset", private=True)
    api.upload_file(path_or_fileobj=b"a,b\n1,2\n", path_in_repo="data/train.csv", repo_id=private, repo_type="dataset")

    # public: anonymous, with and without .git; the clone's HEAD is the API's sha
    git("clone", clone_url(server, public), "public")
    git("clone", clone_url(server, public, suffix=".git"), "public.git")
    assert (git.cwd / "public" / "README.md").read_bytes() == b"# hello\n"
    assert head(git, "public") == head(git, "public.git") == api.model_info(public).sha
    # private: anonymous gets a Basic challenge (git asks for credentials), others "not found"
    r = httpx.get(f"{server.url}/datasets/{private}/info/refs?service=git-upload-pack")
    assert r.status_code == 401 and r.headers["www-authenticate"].startswith("Basic")
    failed = git("clone", clone_url(server, private, prefix="datasets/"), "anon", check=False)
    assert failed.returncode != 0 and not (git.cwd / "anon" / "data").exists()
    failed = git("clone", clone_url(server, private, other_token, prefix="datasets/"), "other", check=False)
    assert failed.returncode != 0 and "not found" in failed.stderr
    assert git("clone", clone_url(server, f"{owner}/missing", token), "missing", check=False).returncode != 0
    # the owner, even with a read token, clones it (dataset URLs, with and without .git)
    git("clone", clone_url(server, private, read_token, prefix="datasets/", suffix=".git"), "private")
    assert (git.cwd / "private" / "data" / "train.csv").read_bytes() == b"a,b\n1,2\n"
    assert head(git, "private") == api.dataset_info(private).sha
    api.create_repo(f"{owner}/{name}-space", repo_type="space", space_sdk="static")
    git("clone", clone_url(server, f"{owner}/{name}-space", prefix="spaces/"), "space")
    assert (git.cwd / "space" / ".gitattributes").exists()


def test_push_lands_and_refreshes_the_card(server, name, git, tmp_path):
    owner = f"o{name[5:]}"
    token = server.user(owner)
    api, repo_id = server.api(token), f"{owner}/{name}"
    api.create_repo(repo_id)
    git("clone", clone_url(server, repo_id, token), "work")
    work = git.cwd / "work"
    (work / "README.md").write_text("---\nlicense: mit\npipeline_tag: text-classification\ntags:\n- pushed\n---\n"
                                    "# Pushed with git\n")
    (work / "config.json").write_text('{"model_type": "bert"}')
    git("-C", "work", "add", ".")
    git("-C", "work", "commit", "-m", "card and config")
    git("-C", "work", "push")
    info = api.model_info(repo_id)
    assert info.sha == head(git, "work")
    assert info.card_data["license"] == "mit" and info.pipeline_tag == "text-classification"
    assert "pushed" in info.tags and [m.id for m in api.list_models(filter="pushed", author=owner)] == [repo_id]
    assert sorted(api.list_repo_files(repo_id)) == [".gitattributes", "README.md", "config.json"]
    path = hf_hub_download(repo_id, "config.json", endpoint=server.url, token=token, cache_dir=tmp_path / "c")
    assert Path(path).read_text() == '{"model_type": "bert"}'
    assert api.list_repo_commits(repo_id)[0].title == "card and config"

    # tags and branches; a force push is allowed (as on the Hugging Face Hub); deleting main is not
    git("-C", "work", "tag", "v1")
    git("-C", "work", "push", "origin", "v1", "main:dev")
    refs = api.list_repo_refs(repo_id)
    assert {t.name for t in refs.tags} == {"v1"} and {b.name for b in refs.branches} == {"main", "dev"}
    (work / "config.json").write_text('{"model_type": "roberta"}')
    git("-C", "work", "commit", "-a", "--amend", "-m", "rewritten")
    git("-C", "work", "push", "--force")
    assert api.model_info(repo_id).sha == head(git, "work")
    refused = git("-C", "work", "push", "origin", ":main", check=False)
    assert refused.returncode != 0 and "main branch cannot be deleted" in refused.stderr
    # the API commits on top of what git pushed, and git pulls it
    api.upload_file(path_or_fileobj=b"from the API", path_in_repo="api.txt", repo_id=repo_id)
    git("-C", "work", "pull", "--ff-only")
    assert (work / "api.txt").read_bytes() == b"from the API" and head(git, "work") == api.model_info(repo_id).sha


def test_push_needs_a_write_token(server, name, git):
    owner, other = f"o{name[5:]}", f"x{name[5:]}"
    token, read_token, other_token = server.user(owner), server.user(owner, "read"), server.user(other)
    api, repo_id = server.api(token), f"{owner}/{name}"
    api.create_repo(repo_id)
    before = api.model_info(repo_id).sha
    git("clone", clone_url(server, repo_id), "work")
    (git.cwd / "work" / "x.txt").write_text("x")
    git("-C", "work", "add", ".")
    git("-C", "work", "commit", "-m", "x")
    r = httpx.get(f"{server.url}/{repo_id}/info/refs?service=git-receive-pack")
    assert r.status_code == 401 and r.headers["www-authenticate"].startswith("Basic")
    assert git("-C", "work", "push", check=False).returncode != 0  # no credentials (and no prompt)
    for denied in (read_token, other_token):
        refused = git("-C", "work", "push", clone_url(server, repo_id, denied), "main", check=False)
        assert refused.returncode != 0 and "403" in refused.stderr
    assert api.model_info(repo_id).sha == before
    git("-C", "work", "push", clone_url(server, repo_id, token), "main")
    assert api.model_info(repo_id).sha == head(git, "work")


def test_push_checks_keep_the_hub_consistent(server, name, git):
    """Pointers to LFS objects the hub lacks, large files outside LFS and odd refs are refused."""
    owner = f"o{name[5:]}"
    token = server.user(owner)
    api, repo_id = server.api(token), f"{owner}/{name}"
    api.create_repo(repo_id)
    before = api.model_info(repo_id).sha
    git("clone", clone_url(server, repo_id, token), "work")
    work = git.cwd / "work"

    def refused(message: str, *push: str):
        proc = git("-C", "work", "push", *(push or ("origin", "main")), check=False)
        assert proc.returncode != 0 and message in proc.stderr, proc.stderr
        git("-C", "work", "reset", "--hard", "origin/main")

    data = os.urandom(1000)  # a pointer committed without git-lfs uploading its object
    (work / "weights.bin").write_bytes(lfs_pointer(hashlib.sha256(data).hexdigest(), len(data)))
    git("-C", "work", "add", ".")
    git("-C", "work", "commit", "-m", "pointer only")
    refused("is not on the hub")
    (work / "big.txt").write_bytes(b"0" * (server.hub.storage.lfs_threshold + 1))
    git("-C", "work", "add", ".")
    git("-C", "work", "commit", "-m", "large file outside LFS")
    refused("must be stored with Git LFS")
    refused("only accepts branches", "origin", "main:refs/notes/x")
    assert api.model_info(repo_id).sha == before and [b.name for b in api.list_repo_refs(repo_id).branches] == ["main"]


def test_fetch_and_push_with_gzip_and_chunked_bodies(server, name, git, tmp_path):
    token = server.user(f"o{name[5:]}")
    api, repo_id = server.api(token), f"o{name[5:]}/{name}"
    api.create_repo(repo_id)
    git("clone", clone_url(server, repo_id, token), "work")
    # 300 local commits the hub lacks, newer than the rest so git offers them first: many "have" lines
    # make a fetch request above 1 KB, which git sends gzipped
    stream = "".join(f"commit refs/heads/local\ncommitter T <t@x> {2000000000 + i} +0000\ndata 4\nc{i:03d}\n"
                     + ("from refs/heads/main\n" if i == 0 else "") + "\n" for i in range(300))
    proc = subprocess.run(["git", "-C", str(git.cwd / "work"), "fast-import", "--quiet"], input=stream, text=True,
                          env=git.env, capture_output=True)
    assert proc.returncode == 0, proc.stderr
    for version in ("2", "0"):
        sha = api.upload_file(path_or_fileobj=version.encode(), path_in_repo=f"v{version}.txt", repo_id=repo_id).oid
        git("-c", f"protocol.version={version}", "-C", "work", "pull", "-q", "--ff-only")
        assert head(git, "work") == sha
    posts = server.recorder.seen("POST", f"/{repo_id}/git-upload-pack")
    assert any(h.get("content-encoding") == "gzip" for h in posts)
    assert {h.get("git-protocol") for h in posts} >= {"version=2", None}
    data = os.urandom(3 << 20)  # a pack above http.postBuffer (1 MB) is sent chunked
    (git.cwd / "work" / "blob.dat").write_bytes(data)
    git("-C", "work", "add", ".")
    git("-C", "work", "commit", "-m", "3 MB")
    git("-C", "work", "push")
    assert any(h.get("transfer-encoding") == "chunked" for h in server.recorder.seen("POST", "/git-receive-pack"))
    path = hf_hub_download(repo_id, "blob.dat", endpoint=server.url, token=token, cache_dir=tmp_path / "c")
    assert Path(path).read_bytes() == data


@needs_git_lfs
def test_git_lfs_clone_and_push(server, name, git, tmp_path):
    owner = f"o{name[5:]}"
    token = server.user(owner)
    api, repo_id = server.api(token), f"{owner}/{name}"
    api.create_repo(repo_id, private=True)
    weights = os.urandom(200_000)
    api.upload_file(path_or_fileobj=weights, path_in_repo="weights.bin", repo_id=repo_id)  # *.bin: LFS
    git("lfs", "install", "--skip-repo")
    git("clone", clone_url(server, repo_id, token), "work")
    work = git.cwd / "work"
    assert (work / "weights.bin").read_bytes() == weights  # smudged through the batch API
    pointer = git("-C", "work", "cat-file", "-p", "HEAD:weights.bin").stdout
    assert pointer.startswith("version https://git-lfs") and hashlib.sha256(weights).hexdigest() in pointer

    git("-C", "work", "lfs", "track", "*.dat")
    data = os.urandom(300_000)
    (work / "tensors.dat").write_bytes(data)
    git("-C", "work", "add", ".")
    git("-C", "work", "commit", "-m", "LFS file from git")
    pushed = git("-C", "work", "push")
    assert "locking" not in pushed.stderr.lower()  # the hub's 501 turns git-lfs' lock check off silently
    oid = hashlib.sha256(data).hexdigest()
    assert api.model_info(repo_id).sha == head(git, "work")
    path = hf_hub_download(repo_id, "tensors.dat", endpoint=server.url, token=token, cache_dir=tmp_path / "c")
    assert Path(path).read_bytes() == data
    meta = get_hf_file_metadata(hf_hub_url(repo_id, "tensors.dat", endpoint=server.url), token=token)
    assert meta.etag == oid and meta.size == len(data)
    r = httpx.head(hf_hub_url(repo_id, "tensors.dat", endpoint=server.url), headers={"authorization": f"Bearer {token}"})
    assert r.headers["x-linked-etag"].strip('"') == oid
    [entry] = api.get_paths_info(repo_id, ["tensors.dat"])
    assert entry.lfs.sha256 == oid and entry.size == len(data)
