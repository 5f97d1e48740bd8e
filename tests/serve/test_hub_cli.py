"""``peluk hub``: serve (first start, default models), users and tokens."""

from __future__ import annotations

import filecmp
import json
import os
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

huggingface_hub = pytest.importorskip("huggingface_hub")
from huggingface_hub import HfApi, hf_hub_download  # noqa: E402

from peluk.errors import ModelNotFoundError  # noqa: E402
from peluk.hub import BUILTIN, builtin_path  # noqa: E402
from peluk.serve.hub import auth, defaults  # noqa: E402
from peluk.serve.hub.cli import main  # noqa: E402
from peluk.serve.hub.service import Hub, Unauthorized  # noqa: E402
from tests.serve.conftest import free_port  # noqa: E402

MINILM = "sentence-transformers/all-MiniLM-L6-v2"
GGUF = "HuggingFaceTB/SmolLM2-135M-Instruct-GGUF"


def hub_cli(capsys, *args: str) -> tuple[int, str, str]:
    code = main(list(args))
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def test_users_and_tokens(tmp_path, capsys):
    home = str(tmp_path / "hub")
    assert hub_cli(capsys, "user", "add", "alice", "--home", home)[0] == 0
    assert (tmp_path / "hub" / "admin_token").exists()  # the first command sets the hub up, with its admin
    code, out, _ = hub_cli(capsys, "token", "create", "--user", "alice", "--role", "write", "--home", home, "--json")
    token = json.loads(out)["token"]
    code, out, _ = hub_cli(capsys, "token", "create", "--user", "alice", "--home", home)  # human output, read role
    read_token = out.split()[0]
    assert code == 0 and read_token.startswith("hf_") and "shown only this once" in out
    hub = Hub(tmp_path / "hub")
    try:
        assert (hub.user_for_token(token).name, hub.user_for_token(token).role) == ("alice", "write")
        assert hub.user_for_token(read_token).role == "read"
        listed = json.loads(hub_cli(capsys, "token", "list", "--user", "alice", "--home", home, "--json")[1])
        assert [t["role"] for t in listed] == ["write", "read"] and token not in json.dumps(listed)
        assert hub_cli(capsys, "token", "revoke", listed[1]["id"], "--home", home)[0] == 0
        assert hub_cli(capsys, "token", "revoke", token, "--home", home)[0] == 0
        for revoked in (token, read_token):
            with pytest.raises(Unauthorized):
                hub.user_for_token(revoked)
        assert hub_cli(capsys, "user", "add", "bob", "--admin", "--home", home)[0] == 0
        users = json.loads(hub_cli(capsys, "user", "list", "--home", home, "--json")[1])
        assert {u["name"]: u["admin"] for u in users} == {"admin": True, "alice": False, "bob": True}
    finally:
        hub.close()
    # mistakes: a message and status 2
    for args, message in [(("user", "add", "alice"), "already exists"),
                          (("token", "create", "--user", "nobody"), "no user named 'nobody'"),
                          (("token", "revoke", "not-a-token"), "neither a token"),
                          (("token", "revoke", token), "no token matches")]:
        code, _, err = hub_cli(capsys, *args, "--home", home)
        assert code == 2 and message in err, (args, err)
    with pytest.raises(SystemExit):
        main(["token", "create", "--user", "alice", "--role", "admin", "--home", home])


class Serving:
    """``peluk hub serve`` in a subprocess (python -m peluk.serve.hub.cli), stopped by its pid."""

    def __init__(self, home: Path, *options: str):
        self.port, self.home = free_port(), home
        self.url = f"http://127.0.0.1:{self.port}"
        self.proc = subprocess.Popen([sys.executable, "-m", "peluk.serve.hub.cli", "serve", "--home", str(home),
                                      "--port", str(self.port), "--log-level", "warning", *options],
                                     stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
        deadline = time.time() + 60
        while True:
            try:
                socket.create_connection(("127.0.0.1", self.port), timeout=1).close()
                break
            except OSError:
                if self.proc.poll() is not None or time.time() > deadline:
                    raise RuntimeError(f"peluk hub serve did not start: {self.stop()}")
                time.sleep(0.1)

    def stop(self) -> str:
        if self.proc.poll() is None:
            self.proc.terminate()
        return self.proc.communicate(timeout=30)[0]


def test_serve_first_start(tmp_path):
    serving = Serving(tmp_path / "hub", "--no-defaults")
    try:
        admin = (tmp_path / "hub" / "admin_token").read_text().strip()
        api = HfApi(endpoint=serving.url, token=admin)
        assert api.whoami()["name"] == "admin"
        assert list(api.list_models()) == []  # --no-defaults
    finally:
        out = serving.stop()
    assert f"admin's token is in {tmp_path / 'hub' / 'admin_token'}" in out and f"serving on {serving.url}" in out
    assert not (tmp_path / "hub" / defaults.MARKER).exists()  # a later start without the flag still imports


@pytest.mark.slow
def test_serve_imports_the_default_models_once(tmp_path):
    try:
        minilm, gguf = builtin_path(BUILTIN[MINILM]), builtin_path(BUILTIN[GGUF])
    except ModelNotFoundError as e:
        pytest.skip(f"the packaged models are not installed: {e}")
    serving = Serving(tmp_path / "hub")
    try:
        api = HfApi(endpoint=serving.url, token=False)
        info = api.model_info(MINILM)
        assert info.card_data["pipeline_tag"] == "sentence-similarity" and info.card_data["license"] == "apache-2.0"
        assert sorted(api.list_repo_files(MINILM)) == sorted(p for p, _ in defaults._files(minilm))
        path = hf_hub_download(MINILM, "model.safetensors", endpoint=serving.url, token=False,
                               cache_dir=tmp_path / "cache")
        assert filecmp.cmp(path, minilm / "model.safetensors", shallow=False)
        [weights] = api.get_paths_info(MINILM, ["model.safetensors"])
        assert weights.lfs is not None  # stored as LFS, as on the Hugging Face Hub
        info = api.model_info(GGUF, files_metadata=True)
        assert (info.pipeline_tag, info.library_name) == ("text-generation", "gguf")
        assert info.card_data["base_model"] == "HuggingFaceTB/SmolLM2-135M-Instruct"
        sizes = {s.rfilename: s.size for s in info.siblings}
        assert sizes[gguf.name] == gguf.stat().st_size and "README.md" in sizes
        assert {m.id for m in api.list_models(filter="gguf")} >= {GGUF}
    finally:
        out = serving.stop()
    assert "imported the default models" in out and MINILM in out
    imported = json.loads((tmp_path / "hub" / defaults.MARKER).read_text())
    assert {r["repo"] for r in imported} >= {MINILM, GGUF}
    hub = Hub(tmp_path / "hub")
    try:
        assert defaults.import_on_first_start(hub) is None  # done once
        assert {r["status"] for r in defaults.import_defaults(hub)} == {"exists"}
    finally:
        hub.close()


def test_defaults_import_model_directories(tmp_path, monkeypatch):
    """Asset folders become repositories only once they hold a model; logs of a running training don't count."""
    built, training = tmp_path / "built", tmp_path / "training"
    (built / "checkpoint-10").mkdir(parents=True)
    training.mkdir()
    (training / "log.jsonl").write_text("{}\n")
    (built / "config.json").write_text('{"model_type": "bert"}')
    (built / "model.safetensors").write_bytes(os.urandom(5000))  # *.safetensors: LFS by .gitattributes
    (built / "README.md").write_text("---\nlicense: mit\npipeline_tag: text-classification\n---\n# Mine\n")
    (built / ".hidden").write_text("x")
    (built / "checkpoint-10" / "optimizer.pt").write_bytes(b"x")
    monkeypatch.setattr(defaults, "BUILTIN", {"peluk/built": f"assets:{built}", "peluk/training": f"assets:{training}"})
    monkeypatch.setattr(defaults, "builtin_path", lambda spec: Path(spec.removeprefix("assets:")))
    hub = Hub(tmp_path / "hub")
    try:
        [result] = defaults.import_defaults(hub)
        assert result["repo"] == "peluk/built" and result["status"] == "imported"
        repo = hub.db.get_repo("model", "peluk", "built")
        assert repo.pipeline_tag == "text-classification" and auth.get_user(hub.db, "peluk") is not None
        files = {e.path: e for e in hub.git(repo).tree(repo.sha, recursive=True) if e.type == "file"}
        assert sorted(files) == [".gitattributes", "README.md", "config.json", "model.safetensors"]
        assert files["model.safetensors"].lfs is not None and files["config.json"].lfs is None
        assert hub.storage.lfs.path(files["model.safetensors"].lfs.oid).read_bytes() == \
            (built / "model.safetensors").read_bytes()
    finally:
        hub.close()
