"""peluk's hub client (peluk.hub, peluk.hub_api) against a peluk hub on loopback.

Models, tokenizers and datasets by repo id and revision, the cache shared with huggingface_hub,
offline mode, resumed and corrupt downloads, private repositories, pushes from save_pretrained
and the Trainer.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import shutil
from pathlib import Path

import pytest
import torch

import peluk
from peluk.errors import (DatasetNotFoundError, EntryNotFoundError, HubAuthError, HubError, ModelNotFoundError,
                          NotCachedError, RevisionNotFoundError)
from peluk.hub import endpoint, get_token, offline, repo_folder, resolve
from peluk.hub_api import (HubClient, create_repo, delete_repo, hf_hub_download, list_models, list_repo_files,
                           push_to_hub, repo_info, snapshot_download, whoami)

CARD = "---\nlicense: mit\npipeline_tag: text-classification\ntags: [toy]\n---\n# A toy\n"


def resolve_gets(server, repo_id: str) -> int:
    return len(server.recorder.seen("GET", f"/{repo_id}/resolve/"))


def test_settings_from_the_environment(monkeypatch, tmp_path):
    monkeypatch.delenv("PELUK_ENDPOINT")
    assert endpoint() == "http://127.0.0.1:8000"
    monkeypatch.setenv("HF_ENDPOINT", "http://hub.example:9000/")
    assert endpoint() == "http://hub.example:9000"
    monkeypatch.setenv("PELUK_ENDPOINT", "http://127.0.0.1:8001")
    assert endpoint() == "http://127.0.0.1:8001"
    assert get_token() is None and not offline()
    (tmp_path / "hf-home").mkdir()
    (tmp_path / "hf-home" / "token").write_text("hf_saved\n")
    assert get_token() == "hf_saved"
    monkeypatch.setenv("HF_TOKEN", "hf_env")
    assert get_token() == "hf_env"
    monkeypatch.setenv("PELUK_TOKEN", "hf_peluk")
    assert get_token() == "hf_peluk"
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    assert offline()
    assert repo_folder("a/b", "dataset") == tmp_path / "hf-cache" / "datasets--a--b"


def test_builtin_names_and_local_paths_need_no_hub(tmp_path, monkeypatch):
    # PELUK_ENDPOINT is a closed port here: any request would fail
    (tmp_path / "admin" / "thing").mkdir(parents=True)
    monkeypatch.chdir(tmp_path)
    assert resolve("admin/thing") == Path("admin/thing")  # a local directory wins over the repo id
    try:
        assert resolve("sentence-transformers/all-MiniLM-L6-v2").is_dir()
    except ModelNotFoundError:
        pytest.skip("the packaged MiniLM is not installed")


def test_upload_then_load_model_and_tokenizer(hub, name, tiny_dir, tmp_path):
    folder = tmp_path / "tiny"
    shutil.copytree(tiny_dir("bert", "base"), folder)
    (folder / "pytorch_model.bin").write_bytes(b"\0other-format weights that from_pretrained must not fetch")
    (folder / "tf_model.h5").write_bytes(b"\0tensorflow weights")
    repo_id = f"admin/{name}"
    info = push_to_hub(folder, repo_id, commit_message="tiny bert")
    assert sorted(info.files) == sorted(p.name for p in folder.iterdir()) and len(info.oid) == 40
    # binary files went through the LFS batch API: batch, PUT to the signed URL (no token), verify
    assert hub.recorder.seen("POST", f"/{repo_id}.git/info/lfs/objects/batch")
    puts = hub.recorder.seen("PUT", f"/{repo_id}.git/info/lfs/objects/")
    assert len(puts) == 3 and all("authorization" not in h for h in puts)
    assert hub.recorder.seen("POST", f"/{repo_id}.git/info/lfs/objects/verify")
    siblings = hub.api().model_info(repo_id, files_metadata=True).siblings
    assert next(s for s in siblings if s.rfilename == "model.safetensors").lfs is not None

    model, tokenizer = peluk.AutoModel.from_pretrained(repo_id), peluk.AutoTokenizer.from_pretrained(repo_id)
    local_model, local_tokenizer = peluk.AutoModel.from_pretrained(folder), peluk.AutoTokenizer.from_pretrained(folder)
    texts = ["hello world", "a peluk hub on loopback"]
    assert tokenizer(texts)["input_ids"] == local_tokenizer(texts)["input_ids"]
    batch = tokenizer(texts, padding=True, return_tensors="pt")
    with torch.no_grad():
        assert torch.equal(model(**batch).last_hidden_state, local_model(**batch).last_hidden_state)
    snapshot = Path(model.name_or_path)
    assert snapshot == repo_folder(repo_id) / "snapshots" / info.oid
    assert (snapshot / "model.safetensors").is_symlink() and (snapshot / "vocab.txt").exists()
    assert not (snapshot / "pytorch_model.bin").exists() and not (snapshot / "tf_model.h5").exists()
    gets = resolve_gets(hub, repo_id)
    peluk.AutoConfig.from_pretrained(repo_id)  # everything is cached: the revision and file list, no file
    assert resolve_gets(hub, repo_id) == gets


def test_revisions_by_branch_tag_and_commit(hub, name):
    repo_id, client = f"admin/{name}", HubClient()
    client.create_repo(repo_id)
    first = client.upload_file(b'{"v": 1}', "config.json", repo_id).oid
    second = client.upload_file(b'{"v": 2}', "config.json", repo_id).oid
    hub.api().create_branch(repo_id, branch="stable/1", revision=first)
    hub.api().create_tag(repo_id, tag="v1", revision=first)

    def version(revision=None):
        return json.loads((resolve(repo_id, revision) / "config.json").read_text())["v"]
    assert [version(), version("main"), version(second)] == [2, 2, 2]
    assert [version("stable/1"), version("v1"), version(first)] == [1, 1, 1]
    folder = repo_folder(repo_id)
    assert (folder / "refs" / "main").read_text() == second and (folder / "refs" / "stable" / "1").read_text() == first
    requests = len(hub.recorder.requests)
    assert version(first) == 1 and len(hub.recorder.requests) == requests  # a cached commit: no request at all
    assert hf_hub_download(repo_id, "config.json", revision="v1").read_bytes() == b'{"v": 1}'
    assert hf_hub_download(repo_id, "config.json", revision=second).read_bytes() == b'{"v": 2}'
    with pytest.raises(RevisionNotFoundError, match=f"model '{repo_id}' has no revision 'nope'"):
        resolve(repo_id, "nope")
    with pytest.raises(EntryNotFoundError, match=f"model '{repo_id}' has no file 'missing.txt' at revision 'main'"):
        hf_hub_download(repo_id, "missing.txt")
    with pytest.raises(EntryNotFoundError, match="missing.txt"):
        HubClient().snapshot(repo_id, files=["config.json", "missing.txt"])
    with pytest.raises(ModelNotFoundError, match=f"'admin/no-{name}' was not found on the hub at {hub.url}"):
        peluk.AutoModel.from_pretrained(f"admin/no-{name}")


def test_load_dataset_from_a_dataset_repo(hub, name, tmp_path):
    folder = tmp_path / "data"
    folder.mkdir()
    (folder / "train.csv").write_text("text,label\ngood film,1\nbad film,0\nfine,1\n")
    (folder / "test.csv").write_text("text,label\nawful,0\n")
    (folder / "README.md").write_text(CARD)
    repo_id = f"admin/{name}"
    push_to_hub(folder, repo_id, repo_type="dataset")
    data = peluk.load_dataset(repo_id)
    assert data.num_rows == {"train": 3, "test": 1} and data["train"]["text"] == ["good film", "bad film", "fine"]
    assert (repo_folder(repo_id, "dataset") / "refs" / "main").exists()
    assert not repo_folder(repo_id).exists()  # a model repo of that name is another repository
    with pytest.raises(DatasetNotFoundError, match=f"dataset 'admin/no-{name}' was not found on the hub"):
        peluk.load_dataset(f"admin/no-{name}")


def test_cache_is_shared_with_huggingface_hub(hub, name, tmp_path, monkeypatch):
    from huggingface_hub import constants, scan_cache_dir
    from huggingface_hub import hf_hub_download as hf_download
    from huggingface_hub import snapshot_download as hf_snapshot

    cache, weights = tmp_path / "hf-cache", os.urandom(100_000)
    folder = tmp_path / "folder"
    (folder / "sub").mkdir(parents=True)
    (folder / "config.json").write_text('{"model_type": "bert"}')
    (folder / "sub" / "notes.txt").write_text("hello")
    (folder / "weights.bin").write_bytes(weights)
    ours, theirs = f"admin/{name}-ours", f"admin/{name}-theirs"
    for repo_id in (ours, theirs):
        push_to_hub(folder, repo_id)

    snapshot = snapshot_download(ours)  # peluk downloads; huggingface_hub finds it offline
    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", True)
    assert Path(hf_download(ours, "sub/notes.txt", cache_dir=cache)) == snapshot / "sub" / "notes.txt"
    assert Path(hf_download(ours, "weights.bin", cache_dir=cache)).read_bytes() == weights
    assert Path(hf_snapshot(ours, cache_dir=cache)) == snapshot
    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", False)

    hf_snapshot(theirs, endpoint=hub.url, token=hub.admin, cache_dir=cache)  # and the other way round
    monkeypatch.setenv("PELUK_OFFLINE", "1")
    assert (snapshot_download(theirs) / "weights.bin").read_bytes() == weights
    assert hf_hub_download(theirs, "sub/notes.txt").read_text() == "hello"
    monkeypatch.delenv("PELUK_OFFLINE")
    gets = resolve_gets(hub, theirs)
    assert (snapshot_download(theirs) / "config.json").exists()  # online: the blobs are there, nothing to fetch
    assert resolve_gets(hub, theirs) == gets

    report = scan_cache_dir(cache)  # peluk's additions do not upset huggingface_hub's cache scanner
    assert not report.warnings and {r.repo_id for r in report.repos} == {ours, theirs}


def test_offline_mode_and_unreachable_hub(hub, name, monkeypatch, caplog):
    repo_id = f"admin/{name}"
    push_to_hub_files(repo_id, {"config.json": b"{}", "a.txt": b"a", "b.txt": b"b"})
    monkeypatch.setenv("PELUK_OFFLINE", "1")
    requests = len(hub.recorder.requests)
    with pytest.raises(NotCachedError, match=f"offline mode .*model '{repo_id}' at revision 'main' is not in the"):
        resolve(repo_id)
    with pytest.raises(NotCachedError, match=f"the file 'a.txt' of model '{repo_id}' at revision 'main' is not in"):
        hf_hub_download(repo_id, "a.txt")
    assert len(hub.recorder.requests) == requests

    monkeypatch.delenv("PELUK_OFFLINE")
    snapshot = resolve(repo_id)
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    requests = len(hub.recorder.requests)
    assert resolve(repo_id) == snapshot and hf_hub_download(repo_id, "a.txt") == snapshot / "a.txt"
    assert resolve(repo_id, revision=snapshot.name) == snapshot
    assert len(hub.recorder.requests) == requests
    (snapshot / "b.txt").unlink()  # as if the download had been cut there
    with pytest.raises(NotCachedError, match=r"is only partly in the local cache .*missing b\.txt"):
        resolve(repo_id)
    with pytest.raises(NotCachedError, match="revision 'v9' is not in the local cache"):
        resolve(repo_id, "v9")

    monkeypatch.delenv("HF_HUB_OFFLINE")
    assert (resolve(repo_id) / "b.txt").read_text() == "b"  # online again: the missing file is fetched
    monkeypatch.setenv("PELUK_ENDPOINT", "http://127.0.0.1:9")  # a hub that cannot be reached: the cache
    with caplog.at_level(logging.WARNING, logger="peluk.hub"):
        assert resolve(repo_id) == snapshot
    assert "cannot reach the hub at http://127.0.0.1:9" in caplog.text
    with pytest.raises(NotCachedError, match=r"cannot reach the hub at http://127.0.0.1:9 .*'admin/other' .*not in"):
        resolve("admin/other")


def push_to_hub_files(repo_id: str, files: dict[str, bytes], **options):
    client = HubClient()
    client.create_repo(repo_id, exist_ok=True, **options)
    return client.create_commit(repo_id, files)


def test_interrupted_download_resumes(hub, name):
    repo_id, data, rest = f"admin/{name}", os.urandom(2_000_000), os.urandom(1_500_000)
    push_to_hub_files(repo_id, {"weights.bin": data, "rest.bin": rest})
    hub.recorder.drops[f"/{repo_id}/resolve/"] = 700_000  # the server drops the connection after 700 kB
    assert hf_hub_download(repo_id, "weights.bin").read_bytes() == data
    gets = hub.recorder.seen("GET", f"/{repo_id}/resolve/")
    assert len(gets) == 2 and "range" not in gets[0] and gets[1]["range"] == "bytes=700000-"

    # an earlier run stopped after 1.2 MB: only the rest is fetched, then the whole file is verified
    blob = repo_folder(repo_id) / "blobs" / hashlib.sha256(rest).hexdigest()
    blob.with_name(blob.name + ".incomplete").write_bytes(rest[:1_200_000])
    assert snapshot_download(repo_id, allow_patterns=["rest.*"]).joinpath("rest.bin").read_bytes() == rest
    assert hub.recorder.seen("GET", f"/{repo_id}/resolve/")[-1]["range"] == "bytes=1200000-"
    assert not blob.with_name(blob.name + ".incomplete").exists() and blob.read_bytes() == rest


def test_corrupt_download_is_rejected(hub, name):
    repo_id, data = f"admin/{name}", os.urandom(300_000)
    push_to_hub_files(repo_id, {"w.bin": data, "notes.txt": b"regular file, checked by its git blob sha1"})
    oid = hashlib.sha256(data).hexdigest()
    folder = repo_folder(repo_id)
    blob, part = folder / "blobs" / oid, folder / "blobs" / f"{oid}.incomplete"

    part.parent.mkdir(parents=True)
    part.write_bytes(os.urandom(100_000))  # a left-over prefix that is not the file's
    with pytest.raises(HubError, match=r"the download of 'w.bin' from model .* is corrupt.*deleted, not cached"):
        hf_hub_download(repo_id, "w.bin")
    assert not blob.exists() and not part.exists() and not list(folder.glob("snapshots/*/w.bin"))

    stored = hub.home / "lfs" / "objects" / oid[:2] / oid[2:4] / oid  # the server itself sends wrong bytes
    stored.write_bytes(os.urandom(len(data)))
    try:
        with pytest.raises(HubError, match="is corrupt"):
            snapshot_download(repo_id)
    finally:
        stored.write_bytes(data)
    assert not blob.exists() and not part.exists() and not list(folder.glob("snapshots/*/w.bin"))
    snapshot = snapshot_download(repo_id)  # nothing bad was kept: a clean retry works
    assert (snapshot / "w.bin").read_bytes() == data and (snapshot / "notes.txt").exists()


def test_private_repo_needs_a_token(hub, name, monkeypatch):
    repo_id = f"admin/{name}"
    push_to_hub_files(repo_id, {"config.json": b"{}"}, private=True)
    monkeypatch.delenv("PELUK_TOKEN")
    with pytest.raises(ModelNotFoundError, match=f"'{repo_id}' was not found .*if it is private, log in"):
        resolve(repo_id)
    with pytest.raises(HubAuthError, match="needs a token"):
        create_repo(f"admin/{name}-2", token=False)
    monkeypatch.setenv("PELUK_TOKEN", hub.user(f"stranger{name[5:]}", "write"))
    with pytest.raises(ModelNotFoundError, match="or your token may not read it"):
        resolve(repo_id)
    monkeypatch.setenv("PELUK_TOKEN", "hf_not_a_real_token")
    with pytest.raises(HubAuthError, match=f"the hub at {hub.url} rejected the token"):
        resolve(repo_id)
    monkeypatch.setenv("PELUK_TOKEN", hub.admin)
    assert (resolve(repo_id) / "config.json").read_bytes() == b"{}"


def test_repo_management(hub, name):
    url = create_repo(name)  # no namespace: the token's user
    repo_id = f"admin/{name}"
    assert url == f"{hub.url}/{repo_id}" and whoami()["name"] == "admin"
    with pytest.raises(HubError, match="already exists"):
        create_repo(repo_id)
    assert create_repo(repo_id, exist_ok=True) == url
    info = push_to_hub_files(repo_id, {"README.md": CARD.encode(), "sub/a.txt": b"a"})
    assert info.files == ["README.md", "sub/a.txt"] and info.commit_url.endswith(f"/commit/{info.oid}")
    assert list_repo_files(repo_id) == [".gitattributes", "README.md", "sub/a.txt"]
    meta = repo_info(repo_id)
    assert meta["sha"] == info.oid and meta["cardData"]["license"] == "mit" and meta["private"] is False
    assert [m["id"] for m in list_models(search=name)] == [repo_id]
    assert repo_id in [m["id"] for m in list_models(author="admin", filter="text-classification")]
    assert list_models(search=name, filter="not-a-tag") == []
    delete_repo(repo_id)
    with pytest.raises(ModelNotFoundError):
        repo_info(repo_id)
    delete_repo(repo_id, missing_ok=True)


def test_save_pretrained_pushes_to_the_hub(hub, name, tiny_dir, tmp_path):
    source = tiny_dir("bert", "base")
    model, tokenizer = peluk.AutoModel.from_pretrained(source), peluk.AutoTokenizer.from_pretrained(source)
    out = tmp_path / name
    model.save_pretrained(out, push_to_hub=True)  # the repo is named after the folder
    tokenizer.save_pretrained(out, push_to_hub=True, repo_id=f"admin/{name}", private=True)
    repo_id = f"admin/{name}"
    files = set(list_repo_files(repo_id))
    assert {"config.json", "model.safetensors", "tokenizer.json", "tokenizer_config.json"} <= files
    titles = [c.title for c in hub.api().list_repo_commits(repo_id)]
    assert titles == ["Upload tokenizer", "Upload model", "initial commit"]  # the second push sent only new files
    reloaded = peluk.AutoModel.from_pretrained(repo_id)
    assert all(torch.equal(a, b) for a, b in zip(reloaded.state_dict().values(), model.state_dict().values()))


def test_trainer_pushes_the_final_model(hub, name, tiny_dir, tmp_path):
    from peluk.training import Trainer, TrainingArguments

    path = tiny_dir("bert", "sequence-classification", id2label={0: "NEG", 1: "POS"})
    tokenizer = peluk.AutoTokenizer.from_pretrained(path)
    model = peluk.AutoModelForSequenceClassification.from_pretrained(path)
    rows = [{**tokenizer(text), "label": i % 2} for i, text in enumerate(["bad", "good film", "awful", "fine"])]
    args = TrainingArguments(tmp_path / "run", max_steps=1, per_device_train_batch_size=4, save_steps=1,
                             disable_tqdm=True, report_to="none", push_to_hub=True, hub_model_id=f"admin/{name}",
                             hub_private_repo=True)
    Trainer(model, args, train_dataset=rows, processing_class=tokenizer).train()
    assert (tmp_path / "run" / "checkpoint-1").is_dir()
    files = list_repo_files(f"admin/{name}")
    assert {"model.safetensors", "config.json", "tokenizer.json"} <= set(files)
    assert not any(f.startswith("checkpoint-") for f in files)
    assert repo_info(f"admin/{name}")["private"] is True
    assert "hub_token" not in json.loads((tmp_path / "run" / "checkpoint-1" / "training_args.json").read_text())


def cli(capsys, *argv: str) -> tuple[int, str]:
    """Run a hub subcommand as ``peluk`` would (parsers from peluk.hub_cli); returns (exit code, stdout)."""
    import argparse

    from peluk import hub_cli

    parser = argparse.ArgumentParser(prog="peluk")
    hub_cli.add_parsers(parser.add_subparsers(dest="command", required=True))
    args = parser.parse_args(argv)
    code = hub_cli.COMMANDS[args.command](args)
    return code, capsys.readouterr().out


def test_cli(hub, name, tmp_path, capsys, monkeypatch):
    repo_id, folder = f"admin/{name}", tmp_path / "folder"
    (folder / "sub").mkdir(parents=True)
    (folder / "README.md").write_text(CARD)
    (folder / "config.json").write_text("{}")
    (folder / "sub" / "weights.bin").write_bytes(os.urandom(1000))
    assert cli(capsys, "repo", "create", repo_id, "--private") == (0, f"{hub.url}/{repo_id} (private)\n")
    code, out = cli(capsys, "upload", str(folder), repo_id, "-m", "first", "--json")
    uploaded = json.loads(out)
    assert code == 0 and uploaded["files"] == ["README.md", "config.json", "sub/weights.bin"]
    commit = uploaded["commit"]
    assert cli(capsys, "upload", str(folder), repo_id)[1].startswith(f"Nothing to upload: {repo_id} already has")
    out = cli(capsys, "upload", str(folder / "config.json"), repo_id, "--path-in-repo", "copy/config.json")[1]
    assert out.startswith(f"Uploaded 1 file(s) to {repo_id} (0 unchanged): commit ")

    out = cli(capsys, "repo", "ls", "--search", name)[1]
    assert out.startswith(repo_id) and "private" in out
    assert [r["id"] for r in json.loads(cli(capsys, "repo", "ls", "--filter", "toy", "--json")[1])] == [repo_id]
    out = cli(capsys, "repo", "info", repo_id, "--revision", commit)[1]
    assert f"commit         {commit}" in out and "license        mit" in out and "files (4):" in out
    assert json.loads(cli(capsys, "repo", "info", repo_id, "--json")[1])["siblings"]

    out = json.loads(cli(capsys, "download", repo_id, "--revision", commit, "--json")[1])
    assert out["commit"] == commit and out["files"] == [".gitattributes", "README.md", "config.json", "sub/weights.bin"]
    assert Path(out["path"]) == repo_folder(repo_id) / "snapshots" / commit
    out = cli(capsys, "download", repo_id, "sub/weights.bin", "--local-dir", str(tmp_path / "local"))[1]
    assert out.splitlines()[1] == str(tmp_path / "local" / "sub" / "weights.bin")
    assert (tmp_path / "local" / "sub" / "weights.bin").read_bytes() == (folder / "sub" / "weights.bin").read_bytes()

    assert cli(capsys, "repo", "delete", repo_id)[0] == 2  # not without --yes
    assert json.loads(cli(capsys, "repo", "delete", repo_id, "--yes", "--json")[1]) == {"deleted": repo_id,
                                                                                      "repo_type": "model"}
    with pytest.raises(ModelNotFoundError):
        cli(capsys, "repo", "info", repo_id)
    assert cli(capsys, "repo", "create", repo_id, "--repo-type", "dataset")[1] == f"{hub.url}/datasets/{repo_id}\n"

    monkeypatch.delenv("PELUK_TOKEN")
    with pytest.raises(HubAuthError, match="rejected the token"):
        cli(capsys, "login", "--token", "hf_wrong")
    token_file = tmp_path / "hf-home" / "token"
    assert not token_file.exists()
    assert cli(capsys, "login", "--token", hub.admin)[1].startswith(f"Logged in to {hub.url} as admin; token saved")
    assert token_file.read_text() == hub.admin and token_file.stat().st_mode & 0o777 == 0o600
    assert whoami()["name"] == "admin"  # later calls use the saved token
