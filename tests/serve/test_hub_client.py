"""The peluk hub driven by the real huggingface_hub client (HfApi, hf_hub_download, snapshot_download)."""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

import pytest

huggingface_hub = pytest.importorskip("huggingface_hub")
from huggingface_hub import CommitOperationAdd, CommitOperationCopy, hf_hub_download, snapshot_download  # noqa: E402
from huggingface_hub.errors import (EntryNotFoundError, HfHubHTTPError, RepositoryNotFoundError,  # noqa: E402
                                    RevisionNotFoundError)

CARD = """---
license: apache-2.0
pipeline_tag: text-classification
library_name: transformers
language: [en, id]
tags: [sentiment]
---
# A tiny model
"""


def make_folder(root: Path, big: int = 11 * 1024 * 1024) -> dict[str, bytes]:
    files = {"config.json": b'{"model_type": "bert"}', "README.md": CARD.encode(),
             "sub/deeper/notes.txt": "héllo wörld\n".encode(), "data/a file #1 (ü).txt": b"spaces",
             "big.dat": os.urandom(big)}
    for rel, data in files.items():
        (root / rel).parent.mkdir(parents=True, exist_ok=True)
        (root / rel).write_bytes(data)
    return files


def test_whoami(server):
    assert server.api().whoami()["name"] == "admin"
    assert (server.home / "admin_token").stat().st_mode & 0o777 == 0o600
    assert server.api(server.user("whoami-user")).whoami()["name"] == "whoami-user"
    with pytest.raises(HfHubHTTPError) as e:
        server.api("hf_not_a_real_token").whoami()
    assert e.value.response.status_code == 401


def test_upload_folder_download_snapshot(server, name, tmp_path):
    """Stock client (Xet available): large files travel inline and still land in LFS on the server."""
    api, repo_id = server.api(), f"admin/{name}"
    url = api.create_repo(repo_id)
    assert url == f"{server.url}/{repo_id}"
    files = make_folder(tmp_path / "folder")
    info = api.upload_folder(folder_path=tmp_path / "folder", repo_id=repo_id, commit_message="add model")
    sha = info.oid
    assert len(sha) == 40 and server.git("model", repo_id, "rev-parse", "main").strip() == sha

    assert sorted(api.list_repo_files(repo_id)) == sorted([".gitattributes", *files])
    model = api.model_info(repo_id, files_metadata=True)
    assert model.sha == sha and model.pipeline_tag == "text-classification"
    assert model.card_data["license"] == "apache-2.0" and "sentiment" in model.tags
    big = next(s for s in model.siblings if s.rfilename == "big.dat")
    assert big.lfs.sha256 == hashlib.sha256(files["big.dat"]).hexdigest() and big.size == len(files["big.dat"])
    pointer = server.git("model", repo_id, "show", f"{sha}:big.dat")
    assert pointer.startswith("version https://git-lfs.github.com/spec/v1") and big.lfs.sha256 in pointer
    assert "big.dat filter=lfs" in server.git("model", repo_id, "show", f"{sha}:.gitattributes")

    cache = tmp_path / "cache"
    for revision in ("main", sha):
        for rel, data in files.items():
            path = hf_hub_download(repo_id, rel, revision=revision, endpoint=server.url, token=server.admin,
                                   cache_dir=cache)
            assert Path(path).read_bytes() == data and f"snapshots/{sha}/" in path
    snap = snapshot_download(repo_id, endpoint=server.url, token=server.admin, cache_dir=tmp_path / "cache2")
    assert {str(p.relative_to(snap)) for p in Path(snap).rglob("*") if p.is_file()} == {".gitattributes", *files}
    assert (Path(snap) / "big.dat").read_bytes() == files["big.dat"]
    assert "missing" not in server.git("model", repo_id, "fsck", "--strict")
    assert server.recorder.seen("POST", f"/api/models/{repo_id}/preupload/main")
    assert not server.recorder.seen("POST", f"/{repo_id}.git/info/lfs/")  # no Xet, no LFS batch: inline
    again = api.upload_folder(folder_path=tmp_path / "folder", repo_id=repo_id, commit_message="same again")
    assert again.oid == sha  # identical content: no empty commit


def test_upload_through_lfs_batch_api(lfs_server, name, tmp_path, monkeypatch):
    """With HF_HUB_DISABLE_XET=1 and an "lfs" preupload answer, the file goes batch → PUT → verify."""
    from huggingface_hub import constants

    monkeypatch.setattr(constants, "HF_HUB_DISABLE_XET", True)
    api, repo_id = lfs_server.api(), f"admin/{name}"
    api.create_repo(repo_id, repo_type="dataset", private=True)
    files = make_folder(tmp_path / "folder")
    api.upload_folder(folder_path=tmp_path / "folder", repo_id=repo_id, repo_type="dataset")
    assert lfs_server.recorder.seen("POST", f"/datasets/{repo_id}.git/info/lfs/objects/batch")
    puts = lfs_server.recorder.seen("PUT", "/info/lfs/objects/")
    assert puts and all("authorization" not in h for h in puts)  # the signed URL is the grant
    assert lfs_server.recorder.seen("POST", "/info/lfs/objects/verify")
    oid = hashlib.sha256(files["big.dat"]).hexdigest()
    assert (lfs_server.home / "lfs" / "objects" / oid[:2] / oid[2:4] / oid).read_bytes() == files["big.dat"]
    path = hf_hub_download(repo_id, "big.dat", repo_type="dataset", endpoint=lfs_server.url, token=lfs_server.admin,
                           cache_dir=tmp_path / "cache")
    assert Path(path).read_bytes() == files["big.dat"]
    # uploading the same folder again changes nothing: the server reports the remote oids
    before = api.repo_info(repo_id, repo_type="dataset").sha
    api.upload_folder(folder_path=tmp_path / "folder", repo_id=repo_id, repo_type="dataset")
    assert api.repo_info(repo_id, repo_type="dataset").sha == before


def test_branches_tags_refs_commits(server, name, tmp_path):
    api, repo_id = server.api(), f"admin/{name}"
    api.create_repo(repo_id)
    first = api.upload_file(path_or_fileobj=b"v1", path_in_repo="a.txt", repo_id=repo_id).oid
    api.create_branch(repo_id, branch="feature/x")
    on_branch = api.upload_file(path_or_fileobj=b"v2", path_in_repo="a.txt", repo_id=repo_id,
                                revision="feature/x", commit_message="change on branch",
                                commit_description="longer\ntext").oid
    api.create_tag(repo_id, tag="v1.0", revision=first, tag_message="release 1.0")
    api.create_tag(repo_id, tag="light", revision="feature/x")
    cache = tmp_path / "cache"
    read = lambda rev: Path(hf_hub_download(repo_id, "a.txt", revision=rev, endpoint=server.url,  # noqa: E731
                                            token=server.admin, cache_dir=cache)).read_bytes()
    assert (read("main"), read("feature/x"), read("v1.0"), read("light"), read(first)) == (b"v1", b"v2", b"v1", b"v2", b"v1")
    refs = api.list_repo_refs(repo_id)
    assert {b.name: b.target_commit for b in refs.branches} == {"main": first, "feature/x": on_branch}
    assert {t.name: t.target_commit for t in refs.tags} == {"v1.0": first, "light": on_branch}  # peeled
    commits = api.list_repo_commits(repo_id, revision="feature/x")
    assert [c.commit_id for c in commits][:2] == [on_branch, first] and commits[-1].title == "initial commit"
    assert commits[0].title == "change on branch" and commits[0].message == "longer\ntext"
    assert commits[0].authors == ["admin"] and commits[0].created_at.tzinfo is not None
    assert api.model_info(repo_id, revision="v1.0").sha == first
    assert api.revision_exists(repo_id, "feature/x") and not api.revision_exists(repo_id, "nope")
    with pytest.raises(HfHubHTTPError) as e:
        api.create_branch(repo_id, branch="feature/x")
    assert e.value.response.status_code == 409
    api.create_branch(repo_id, branch="feature/x", exist_ok=True)
    api.delete_branch(repo_id, branch="feature/x")
    api.delete_tag(repo_id, tag="v1.0")
    assert not api.revision_exists(repo_id, "feature/x") and not api.revision_exists(repo_id, "v1.0")
    with pytest.raises(RevisionNotFoundError):
        api.delete_branch(repo_id, branch="feature/x")
    pr = api.upload_file(path_or_fileobj=b"v3", path_in_repo="a.txt", repo_id=repo_id, create_pr=True)
    assert pr.pr_num == 1 and pr.pr_revision == "refs/pr/1" and read("refs/pr/1") == b"v3" and read("main") == b"v1"
    assert [p.ref for p in api.list_repo_refs(repo_id, include_pull_requests=True).pull_requests] == ["refs/pr/1"]
    # tree, paths-info, deletes
    api.upload_file(path_or_fileobj=b"x", path_in_repo="d/e/f.txt", repo_id=repo_id)
    tree = {e.path: e for e in api.list_repo_tree(repo_id, recursive=True, expand=True)}
    assert {"d", "d/e", "d/e/f.txt", "a.txt"} <= set(tree) and len(tree["d/e/f.txt"].last_commit.oid) == 40
    assert [e.path for e in api.list_repo_tree(repo_id, path_in_repo="d")] == ["d/e"]
    info = api.get_paths_info(repo_id, ["a.txt", "d", "nope.txt"])
    assert sorted(i.path for i in info) == ["a.txt", "d"]
    # copies (an LFS file is copied by reference, a regular one re-sent) and .gitignore'd files
    api.upload_file(path_or_fileobj=os.urandom(100), path_in_repo="w.bin", repo_id=repo_id)
    api.create_commit(repo_id, commit_message="copies and ignores", operations=[
        CommitOperationCopy("w.bin", "copy/w.bin"), CommitOperationCopy("a.txt", "copy/a.txt"),
        CommitOperationAdd(".gitignore", b"*.log\n"), CommitOperationAdd("x.log", b"ignored"),
        CommitOperationAdd("kept.txt", b"kept")])
    files = {e.path: e for e in api.list_repo_tree(repo_id, recursive=True)}
    assert files["copy/w.bin"].lfs.sha256 == files["w.bin"].lfs.sha256 and files["copy/a.txt"].blob_id == files["a.txt"].blob_id
    assert "x.log" not in files and "kept.txt" in files
    api.delete_files(repo_id, delete_patterns=["copy/*", "w.bin", "kept.txt", ".gitignore"])
    api.delete_folder("d", repo_id=repo_id)
    api.delete_file("a.txt", repo_id=repo_id)
    assert api.list_repo_files(repo_id) == [".gitattributes"]
    with pytest.raises(EntryNotFoundError):
        api.delete_file("a.txt", repo_id=repo_id)


def test_errors_are_typed(server, name, tmp_path):
    api, repo_id = server.api(), f"admin/{name}"
    kw = dict(endpoint=server.url, token=server.admin, cache_dir=tmp_path / "cache")
    with pytest.raises(RepositoryNotFoundError):
        api.model_info("admin/does-not-exist")
    with pytest.raises(RepositoryNotFoundError):
        hf_hub_download("admin/does-not-exist", "config.json", **kw)
    api.create_repo(repo_id)
    with pytest.raises(RevisionNotFoundError):
        hf_hub_download(repo_id, "config.json", revision="nope", **kw)
    with pytest.raises(RevisionNotFoundError):
        api.model_info(repo_id, revision="f" * 40)
    with pytest.raises(EntryNotFoundError):
        hf_hub_download(repo_id, "config.json", **kw)
    assert not api.repo_exists("admin/does-not-exist") and api.repo_exists(repo_id)
    assert not api.file_exists(repo_id, "config.json") and api.file_exists(repo_id, ".gitattributes")
    assert api.create_repo(repo_id, exist_ok=True) == f"{server.url}/{repo_id}"
    with pytest.raises(HfHubHTTPError) as e:
        api.create_repo(repo_id)
    assert e.value.response.status_code == 409
    with pytest.raises(ValueError, match="Invalid metadata"):
        api.upload_file(path_or_fileobj=b"---\ntags: [a\n---\n", path_in_repo="README.md", repo_id=repo_id)
    with pytest.raises(HfHubHTTPError) as e:  # a parent commit that is not the head any more
        api.upload_file(path_or_fileobj=b"x", path_in_repo="x", repo_id=repo_id, parent_commit="0" * 40)
    assert e.value.response.status_code == 409
    api.delete_repo(repo_id)
    api.delete_repo(repo_id, missing_ok=True)
    assert not api.repo_exists(repo_id)


def test_move_and_dataset_space_types(server, name):
    api = server.api()
    api.create_repo(f"admin/{name}", repo_type="space", space_sdk="static")
    api.upload_file(path_or_fileobj=b"<html></html>", path_in_repo="index.html", repo_id=f"admin/{name}",
                    repo_type="space")
    api.move_repo(f"admin/{name}", f"admin/{name}-moved", repo_type="space")
    assert api.list_repo_files(f"admin/{name}-moved", repo_type="space") == [".gitattributes", "index.html"]
    assert not api.repo_exists(f"admin/{name}", repo_type="space")


def test_list_and_search(server, name):
    owner = f"u{name[5:]}"
    api = server.api(server.user(owner))
    cards = {"cls": CARD, "gen": CARD.replace("text-classification", "text-generation").replace("apache-2.0", "mit"),
             "bare": "# no metadata\n"}
    for suffix, card in cards.items():
        api.create_repo(f"{owner}/{suffix}")
        api.upload_file(path_or_fileobj=card.encode(), path_in_repo="README.md", repo_id=f"{owner}/{suffix}")
    api.create_repo(f"{owner}/data", repo_type="dataset")
    api.upload_file(path_or_fileobj=b"---\nlanguage: [id]\ntask_categories: [text-classification]\n---\n",
                    path_in_repo="README.md", repo_id=f"{owner}/data", repo_type="dataset")
    ids = lambda **kw: sorted(m.id for m in api.list_models(author=owner, **kw))  # noqa: E731
    assert ids() == [f"{owner}/{s}" for s in ("bare", "cls", "gen")]
    assert ids(filter="text-classification") == [f"{owner}/cls"]
    assert ids(filter="license:mit") == [f"{owner}/gen"]
    assert ids(filter=["transformers", "en"]) == [f"{owner}/cls", f"{owner}/gen"]
    assert ids(pipeline_tag="text-generation") == [f"{owner}/gen"]
    assert ids(search="CL") == [f"{owner}/cls"]
    assert [m.id for m in api.list_models(search=owner, sort="created_at", limit=2)] == [f"{owner}/bare", f"{owner}/gen"]
    assert [d.id for d in api.list_datasets(author=owner, language="id")] == [f"{owner}/data"]
    assert [d.id for d in api.list_datasets(author=owner, task_categories="text-classification")] == [f"{owner}/data"]
    model = next(iter(api.list_models(author=owner, search="cls", cardData=True)))
    assert model.last_modified is not None and model.pipeline_tag == "text-classification"


def test_pagination_link_header(server, name, monkeypatch):
    import httpx2 as httpx

    from peluk.serve.hub import protocol

    owner = f"p{name[5:]}"
    api = server.api(server.user(owner))
    for i in range(3):
        api.create_repo(f"{owner}/m{i}")
    url, seen = f"{server.url}/api/models?author={owner}&limit=2&sort=createdAt&direction=1", []
    while url:
        r = httpx.get(url)
        seen += [m["id"] for m in r.json()]
        url = r.links.get("next", {}).get("url")
    assert seen == [f"{owner}/m0", f"{owner}/m1", f"{owner}/m2"]
    api.create_commit(f"{owner}/m0", [CommitOperationAdd(f"d/f{i}.txt", b"x") for i in range(5)], commit_message="5")
    monkeypatch.setattr(protocol, "TREE_PAGE", 2)
    monkeypatch.setattr(protocol, "COMMITS_PAGE", 1)
    assert len(api.list_repo_files(f"{owner}/m0")) == 6 and len(list(api.list_repo_commits(f"{owner}/m0"))) == 2
    assert len(server.recorder.seen("GET", f"/api/models/{owner}/m0/tree/main")) >= 4  # pages followed
