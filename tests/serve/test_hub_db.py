"""The metadata layer on SQLite and on a real PostgreSQL server (started here when installed)."""

from __future__ import annotations

import os
import pwd
import shutil
import subprocess
import tempfile
import uuid
from pathlib import Path

import pytest

from peluk.serve.hub import auth
from peluk.serve.hub.db import Database, Repo, now
from tests.serve.conftest import free_port


def _bindir() -> Path | None:
    """The directory of initdb and pg_ctl: on PATH, else Debian's newest /usr/lib/postgresql/<version>/bin."""
    if found := shutil.which("initdb"):
        return Path(found).parent
    debian = [d for d in Path("/usr/lib/postgresql").glob("*/bin") if (d / "initdb").exists()]
    return max(debian, key=lambda d: [int(x) for x in d.parent.name.split(".") if x.isdigit()], default=None)


def _account() -> str | None:
    """The account to run PostgreSQL as when we are root (it refuses to run as root): Debian's postgres."""
    for name in ("postgres", "nobody"):
        try:
            pwd.getpwnam(name)
            return name
        except KeyError:
            pass
    return None


@pytest.fixture(scope="module")
def postgres_url():
    """A throwaway PostgreSQL server on a free loopback port, stopped and removed afterwards.

    Skips (saying why) without PostgreSQL's binaries, psycopg, or, as root, an account to run it as.
    A server that is installed but does not start is an error, with its log.
    """
    bindir = _bindir()
    if bindir is None or not (bindir / "pg_ctl").exists():
        pytest.skip("PostgreSQL is not installed (no initdb/pg_ctl on PATH or in /usr/lib/postgresql/*/bin; "
                    "Debian: apt-get install postgresql)")
    pytest.importorskip("psycopg", reason="the PostgreSQL driver is not installed (pip install 'psycopg[binary]')")
    as_user, account = [], None
    if os.geteuid() == 0:
        account = _account()
        if account is None or not shutil.which("runuser"):
            pytest.skip("running as root without a postgres/nobody account and runuser to start PostgreSQL as")
        as_user = ["runuser", "-u", account, "--"]
    # /tmp: reachable by that account (TMPDIR may be under root's home), and short enough for the
    # socket path (-k: the server's unix socket goes in this directory it owns, not /var/run/postgresql).
    root = Path(tempfile.mkdtemp(prefix="peluk-pg-", dir="/tmp" if account else None))
    if account:
        shutil.chown(root, account)
    data, log, port = root / "data", root / "log", free_port()

    def run(*cmd: str):
        proc = subprocess.run([*as_user, str(bindir / cmd[0]), *cmd[1:]], capture_output=True, text=True, cwd=root,
                              timeout=120)
        if proc.returncode != 0:
            server_log = log.read_text(errors="replace")[-2000:] if log.exists() else ""
            raise RuntimeError(f"{cmd[0]} failed ({proc.returncode}):\n{proc.stderr}\n{server_log}")

    try:
        run("initdb", "-D", str(data), "-A", "trust", "-U", "peluk", "--no-sync", "--encoding=UTF8", "--no-locale")
        run("pg_ctl", "-D", str(data), "-l", str(log), "-w", "-t", "60", "-o",
            f"-p {port} -k {root} -c listen_addresses=127.0.0.1 -c fsync=off", "start")
        yield f"postgresql://peluk@127.0.0.1:{port}/postgres"
    finally:
        if (data / "postmaster.pid").exists():
            subprocess.run([*as_user, str(bindir / "pg_ctl"), "-D", str(data), "-m", "immediate", "-w", "stop"],
                           capture_output=True, cwd=root, timeout=60)
        shutil.rmtree(root, ignore_errors=True)


@pytest.fixture(params=["sqlite", "postgresql"])
def db(request, tmp_path):
    url = str(tmp_path / "hub.db") if request.param == "sqlite" else request.getfixturevalue("postgres_url")
    database = Database(url)
    yield database
    database.close()


def test_users_tokens_and_search(db):
    tag = uuid.uuid4().hex[:6]
    alice, bob = f"alice{tag}", f"bob{tag}"
    auth.create_user(db, alice)
    auth.create_user(db, bob, fullname="Bob")
    with pytest.raises(ValueError, match="already exists"):
        auth.create_user(db, alice.upper())
    with pytest.raises(ValueError, match="Invalid"):
        auth.create_user(db, "../evil")
    token = auth.create_token(db, alice, "read")
    assert token.startswith("hf_") and auth.user_for_token(db, token).role == "read"
    assert db.query("SELECT hash FROM tokens WHERE hash = ?", (token,)) == []  # only the hash is stored
    assert auth.revoke_token(db, token) and auth.user_for_token(db, token) is None

    for i, (owner, private, tags) in enumerate([(alice, False, ["text-classification", "license:mit"]),
                                                (alice, True, ["text-classification"]),
                                                (bob, False, ["license:mit", "100%_sure"])]):
        repo = Repo("model", owner, f"m{i}-{tag}", private, created=now(), last_modified=now())
        db.insert_repo(repo)
        repo.tags, repo.downloads = tags, i
        db.update_repo(repo)
    search = lambda viewer, **kw: [r.id for r in db.search_repos("model", viewer, search=tag, sort="createdAt",  # noqa: E731
                                                                 descending=False, **kw)]
    assert search(None) == [f"{alice}/m0-{tag}", f"{bob}/m2-{tag}"]
    assert search(alice) == [f"{alice}/m0-{tag}", f"{alice}/m1-{tag}", f"{bob}/m2-{tag}"]
    assert search(bob, tags=["text-classification"]) == [f"{alice}/m0-{tag}"]
    assert search(bob, tags=["license:mit", "text-classification"]) == [f"{alice}/m0-{tag}"]
    assert search(alice, author=alice, offset=1, limit=5) == [f"{alice}/m1-{tag}"]
    assert search(None, tags=["100%_sure"]) == [f"{bob}/m2-{tag}"]
    assert [r.id for r in db.search_repos("model", None, search=f"_{tag}")] == []  # LIKE wildcards are escaped
    assert [r.id for r in db.search_repos("model", None, search=f"2-{tag}".upper())] == [f"{bob}/m2-{tag}"]
    with db.transaction():
        db.count_download(db.get_repo("model", bob, f"m2-{tag}"))
    assert db.get_repo("model", bob, f"m2-{tag}").downloads == 1
    with pytest.raises(RuntimeError), db.transaction():
        db.delete_repo(db.get_repo("model", bob, f"m2-{tag}"))
        raise RuntimeError("rolled back")
    assert db.get_repo("model", bob, f"m2-{tag}") is not None


def test_hub_api_on_postgresql(postgres_url, tmp_path):
    from starlette.testclient import TestClient

    from peluk.serve.hub.app import create_app

    app = create_app(tmp_path / "hub", db_url=postgres_url)  # the database has users already: no admin
    user = f"pg{uuid.uuid4().hex[:6]}"
    auth.create_user(app.state.hub.db, user)
    token = auth.create_token(app.state.hub.db, user)
    with TestClient(app) as client:
        headers = {"authorization": f"Bearer {token}"}
        name = client.get("/api/whoami-v2", headers=headers).json()["name"]
        assert client.post("/api/repos/create", json={"name": "card"}, headers=headers).status_code == 200
        body = ('{"key": "header", "value": {"summary": "card"}}\n{"key": "file", "value": {"path": "README.md", '
                '"encoding": "base64", "content": "LS0tCnBpcGVsaW5lX3RhZzogZmlsbC1tYXNrCi0tLQo="}}')  # pipeline_tag: fill-mask
        assert client.post(f"/api/models/{name}/card/commit/main", content=body, headers=headers).status_code == 200
        found = client.get(f"/api/models?author={name}&filter=fill-mask").json()
        assert [m["id"] for m in found] == [f"{name}/card"] and found[0]["pipeline_tag"] == "fill-mask"
