"""The hub as a Python object: repositories (git + LFS) with their metadata (SQL) and access rules.

Everything that serves the hub (the HTTP API, git smart HTTP, web pages, the CLI) goes through
``Hub``, so the rules live in one place: who may see and write a repository, how files are
stored (git blob or LFS), how commits land, how a README's card becomes searchable metadata.

>>> hub = Hub(Path("/srv/hub"))                                              # doctest: +SKIP
>>> alice = hub.user_for_token(token)                                       # doctest: +SKIP
>>> repo = hub.create_repo("model", "alice", "tiny", private=False, user=alice)  # doctest: +SKIP
>>> with hub.staging(repo) as stage:                                        # doctest: +SKIP
...     stage.add_bytes("config.json", b"{}")
...     sha = hub.commit(repo, "main", stage.ops(), "add config", "", alice)[0]
"""

from __future__ import annotations

import logging
import shutil
import tempfile
import threading
from dataclasses import replace
from pathlib import Path

from peluk.hub import URL_PREFIX
from peluk.serve.hub import cards
from peluk.serve.hub.auth import (RESERVED, User, bootstrap_admin, can_read, can_write, check_name, get_user,
                                  load_secret, sign, user_for_token, verify)
from peluk.serve.hub.db import Database, Repo, now
from peluk.serve.hub.storage import (LFS_THRESHOLD, Conflict, Delete, DeleteFolder, EntryNotFound, GitRepo,
                                     Identity, Invalid, LfsRules, Put, RevisionNotFound, Storage, StorageError,
                                     check_path, lfs_pointer)

log = logging.getLogger("peluk.hub")
MAX_FILE_SIZE = 50 * 1024 ** 3
MAX_REQUEST_SIZE = 2 * 1024 ** 3


class RepoNotFound(StorageError):
    """No such repository, or one the caller may not see (the two are indistinguishable)."""


class Unauthorized(StorageError):
    """The request needs a token (or its token is invalid)."""


class Forbidden(StorageError):
    """The caller sees the repository but may not do this."""


class Gated(StorageError):
    """A gated repository's files are only for its owner (peluk has no access-request workflow)."""


class TooLarge(StorageError):
    """A file or request above the hub's limits."""


class Hub:
    """Storage + metadata + access rules under one home directory."""

    def __init__(self, home: Path, db_url: str | None = None, lfs_threshold: int = LFS_THRESHOLD,
                 max_file_size: int = MAX_FILE_SIZE, max_request_size: int = MAX_REQUEST_SIZE,
                 admin_name: str = "admin"):
        self.home = Path(home)
        self.home.mkdir(parents=True, exist_ok=True)
        self.db = Database(db_url or self.home / "hub.db")
        self.storage = Storage(self.home, lfs_threshold)
        self.secret = load_secret(self.home)
        self.max_file_size, self.max_request_size = max_file_size, max_request_size
        self.admin_token_path = bootstrap_admin(self.db, self.home, admin_name)
        self._refresh_lock = threading.Lock()

    def close(self) -> None:
        self.db.close()

    # -- access --------------------------------------------------------------------------------

    def user_for_token(self, token: str | None) -> User | None:
        """The caller of a request; None for anonymous. Raises Unauthorized for an unknown token."""
        if not token:
            return None
        user = user_for_token(self.db, token)
        if user is None:
            raise Unauthorized("Invalid credentials in Authorization header")
        return user

    def find(self, repo_type: str, repo_id: str, user: User | None) -> Repo:
        """A repository ``user`` may read. Raises RepoNotFound otherwise (never "forbidden")."""
        namespace, _, name = repo_id.partition("/")
        repo = self.db.get_repo(repo_type, namespace, name) if name else None
        if repo is None or not can_read(user, repo.namespace, repo.private):
            raise RepoNotFound(f"Repository Not Found for url: {repo_type} {repo_id}. Please make sure you "
                               "specified the correct `repo_id` and `repo_type`. If you are trying to access a "
                               "private or gated repo, make sure you are authenticated.")
        return repo

    def writable(self, repo_type: str, repo_id: str, user: User | None) -> Repo:
        """A repository ``user`` may write. Raises RepoNotFound, Unauthorized or Forbidden."""
        repo = self.find(repo_type, repo_id, user)
        self.check_write(user, repo.namespace)
        return repo

    def check_gate(self, repo: Repo, user: User | None, path: str) -> None:
        """Raise Gated when ``user`` may see a gated repository but not download ``path`` from it."""
        owner = user is not None and (user.is_admin or user.name == repo.namespace)
        if repo.gated and not owner and path not in ("README.md", ".gitattributes"):
            raise Gated(f"Access to {repo.type} {repo.id} is restricted: its files are for its owner only "
                        "(the repository is gated)")

    def check_write(self, user: User | None, namespace: str) -> None:
        if user is None:
            raise Unauthorized("Authentication required: pass a write token (Authorization: Bearer hf_...)")
        if not can_write(user, namespace):
            why = "a read token" if user.role != "write" else f"user {user.name}"
            raise Forbidden(f"You don't have the rights to write in the namespace {namespace!r} with {why}")

    def git(self, repo: Repo) -> GitRepo:
        return self.storage.repo(*repo.key)

    # -- repositories --------------------------------------------------------------------------

    def create_repo(self, repo_type: str, namespace: str, name: str, private: bool, user: User | None) -> Repo:
        """Raises Invalid (bad name), Unauthorized/Forbidden, Conflict (exists)."""
        if user is None:
            raise Unauthorized("Authentication required: pass a write token (Authorization: Bearer hf_...)")
        try:
            check_name(namespace, "namespace")
            check_name(name, "repository name")
        except ValueError as e:
            raise Invalid(str(e)) from None
        self.check_write(user, namespace)
        if namespace.lower() in RESERVED:
            raise Invalid(f"{namespace!r} is reserved by the hub's URLs")
        if get_user(self.db, namespace) is None:
            raise Invalid(f"No user or organization named {namespace!r}")
        if self.db.get_repo(repo_type, namespace, name) is not None:
            raise Conflict(f"You already created this {repo_type} repo")
        git = self.storage.create(repo_type, namespace, name, Identity(user.name, user.email or ""))
        stamp = now()
        repo = Repo(repo_type, namespace, name, private, created=stamp, last_modified=stamp,
                    sha=git.head("refs/heads/main"))
        try:
            self.db.insert_repo(repo)
        except BaseException:
            self.storage.delete(repo_type, namespace, name)  # no repository without its metadata
            raise
        return repo

    def delete_repo(self, repo: Repo) -> None:
        self.db.delete_repo(repo)
        self.storage.delete(*repo.key)

    def move_repo(self, repo: Repo, to_id: str, user: User) -> Repo:
        namespace, _, name = to_id.partition("/")
        try:
            check_name(namespace, "namespace")
            check_name(name, "repository name")
        except ValueError as e:
            raise Invalid(str(e)) from None
        self.check_write(user, namespace)
        if get_user(self.db, namespace) is None:
            raise Invalid(f"No user or organization named {namespace!r}")
        if self.db.get_repo(repo.type, namespace, name) is not None:
            raise Conflict(f"{to_id} already exists")
        self.storage.move(repo.type, (repo.namespace, repo.name), (namespace, name))
        self.db.rename_repo(repo, namespace, name)
        return replace(repo, namespace=namespace, name=name)

    def update_settings(self, repo: Repo, private: bool | None = None, gated=None) -> Repo:
        """Change visibility (``private``) or gating (``"auto"``, ``"manual"``, False)."""
        with self._refresh_lock:  # a read-modify-write of the row, like refresh
            repo = self.db.get_repo(*repo.key) or repo
            repo = replace(repo, private=repo.private if private is None else bool(private),
                           gated=repo.gated if gated is None else (gated or None))
            self.db.update_repo(repo)
        return repo

    def refresh(self, repo: Repo) -> Repo:
        """Re-read a repository's metadata from git (main's README card, tags, head).

        Call it after anything changed the repository outside ``commit`` (e.g. a git push).
        """
        with self._refresh_lock:  # one at a time: the last refresh must see the newest head
            repo = self.db.get_repo(*repo.key) or repo
            return self._refresh(repo)

    def _refresh(self, repo: Repo) -> Repo:
        git = self.git(repo)
        sha = git.head("refs/heads/main")
        card, files = None, []
        if sha:
            files = [e.path for e in git.tree(sha, recursive=True) if e.type == "file"]
            readme = git.read_file(sha, "README.md")
            try:
                card = cards.metadata(readme.decode("utf-8", "replace")) if readme else None
            except cards.CardError:
                card = None
        card = card or None
        text = {k: v for k, v in (card or {}).items() if k in ("pipeline_tag", "library_name") and isinstance(v, str)}
        repo = replace(repo, sha=sha, last_modified=now(), card_data=card, pipeline_tag=text.get("pipeline_tag"),
                       library_name=text.get("library_name"), tags=cards.search_tags(card or {}, repo.type, files))
        self.db.update_repo(repo)
        return repo

    def count_download(self, repo: Repo, path: str) -> None:
        """Count a download, roughly as the Hub does: a model's config.json or GGUF, any dataset data file."""
        if (path == "config.json" or path.endswith(".gguf")) if repo.type == "model" else \
                (repo.type == "dataset" and not path.startswith(".") and path != "README.md"):
            self.db.count_download(repo)

    # -- LFS transfer URLs: signed, because huggingface_hub sends no Authorization to them ------

    def lfs_actions(self, base: str, repo: Repo, oid: str, size: int, upload: bool) -> dict:
        """The ``actions`` of one LFS batch object: a signed upload (+ verify) or download URL."""
        action = "upload" if upload else "download"
        href = f"{base}/{URL_PREFIX[repo.type]}{repo.id}.git/info/lfs/objects"
        expires, signature = sign(self.secret, f"{action}:{repo.type}/{repo.id}:{oid}:{size}")
        out = {action: {"href": f"{href}/{oid}?size={size}&exp={expires}&sig={signature}", "expires_in": 3600}}
        if not upload:
            return out
        # Signed too: git-lfs sends no credentials to the verify URL of an "authenticated" object.
        expires, signature = sign(self.secret, f"verify:{repo.type}/{repo.id}:{oid}:{size}")
        return {**out, "verify": {"href": f"{href}/verify?exp={expires}&sig={signature}", "expires_in": 3600}}

    def check_lfs_url(self, repo_type: str, repo_id: str, oid: str, action: str, query: list[tuple[str, str]],
                      size=None) -> int:
        """The size a signed LFS URL was issued for (``size``: the one claimed, when not in the URL).

        Raises Forbidden for a bad or expired signature.
        """
        q = dict(query)
        size = str(size) if size is not None else q.get("size", "")
        if not size.isdigit() or not verify(self.secret, f"{action}:{repo_type}/{repo_id}:{oid}:{size}",
                                            q.get("exp"), q.get("sig", "")):
            raise Forbidden(f"Invalid or expired {action} URL: ask the LFS batch API for a new one")
        return int(size)

    # -- commits -------------------------------------------------------------------------------

    def staging(self, repo: Repo) -> "Staging":
        return Staging(self, self.git(repo))

    def lfs_rules(self, git: GitRepo, commit: str | None) -> LfsRules:
        data = git.read_file(commit, ".gitattributes") if commit else None
        return LfsRules(data.decode("utf-8", "replace") if data else "")

    def commit(self, repo: Repo, revision: str, ops: list, summary: str, description: str, user: User,
               parent: str | None = None, create_pr: bool = False) -> tuple[str, int | None]:
        """Commit ``ops`` on a branch (or ``refs/pr/N``), or on a new pull request ref from it.

        Returns (commit sha, pull request number or None). Raises RevisionNotFound, Conflict,
        EntryNotFound, Invalid.
        """
        git = self.git(repo)
        ref = revision if revision.startswith("refs/pr/") else f"refs/heads/{revision}"
        pr = None
        if create_pr:
            base = git.resolve(revision)
            numbers = [int(r.rsplit("/", 1)[1]) for r in git.refs() if r.startswith("refs/pr/") and r[8:].isdigit()]
            pr = max(numbers, default=0) + 1
            ref = f"refs/pr/{pr}"
            if not git.update_ref(ref, base, "0" * 40):
                raise Conflict("Another pull request was opened at the same time; retry")
        elif git.head(ref) is None:
            raise RevisionNotFound(f"Invalid rev id: {revision}")
        message = summary.strip() + (f"\n\n{description.strip()}" if description and description.strip() else "")
        sha = git.commit(ref, ops, message + "\n", Identity(user.name, user.email or ""), parent=parent)
        self.refresh(repo)
        return sha, pr


class Staging:
    """Collects the files of one commit: contents go to the object stores before the ref moves.

    Regular files are written as git blobs in one ``git hash-object`` call (in ``ops``); files
    above the LFS threshold or matched by .gitattributes' LFS rules become LFS objects and
    pointer blobs, whichever way they arrived.
    """

    def __init__(self, hub: Hub, git: GitRepo):
        self.hub, self.git = hub, git
        self.tmp = Path(tempfile.mkdtemp(prefix="commit-", dir=hub.storage.lfs.tmp))
        self.rules: LfsRules | None = None
        self.pending: list[tuple[str, Path]] = []
        self.done: list = []
        self.readme: bytes | None = None

    def set_base(self, commit: str | None) -> None:
        """The revision whose .gitattributes decides which small files still go to LFS."""
        self.rules = self.hub.lfs_rules(self.git, commit)

    def add_bytes(self, path: str, data: bytes) -> None:
        check_path(path)
        if len(data) > self.hub.max_file_size:
            raise TooLarge(f"{path} is {len(data)} bytes, above this hub's limit of {self.hub.max_file_size}")
        if path == "README.md":
            self.readme = data
        if path == ".gitattributes":
            self.rules = LfsRules(data.decode("utf-8", "replace"))
        if len(data) > self.hub.storage.lfs_threshold or (self.rules is not None and path in self.rules and data):
            oid = self.hub.storage.lfs.put(data)
            self.done.append(Put(path, self.git.write_blob(lfs_pointer(oid, len(data))), lfs=True))
        else:
            file = self.tmp / str(len(self.pending))
            file.write_bytes(data)
            self.pending.append((path, file))

    def add_lfs(self, path: str, oid: str, size: int | None) -> None:
        """A file whose content was uploaded through the LFS batch API (or is copied from one)."""
        check_path(path)
        stored = self.hub.storage.lfs.size(oid)
        if stored is None:
            raise Invalid(f"LFS object {oid} for {path} was never uploaded: upload it through the LFS batch API "
                          "before committing")
        if size is not None and size != stored:
            raise Invalid(f"LFS object {oid} for {path} has {stored} bytes, not {size}")
        self.done.append(Put(path, self.git.write_blob(lfs_pointer(oid, stored)), lfs=True))

    def delete(self, path: str, folder: bool = False) -> None:
        check_path(path.rstrip("/") if folder else path)
        self.done.append(DeleteFolder(path) if folder else Delete(path))

    def ops(self) -> list:
        """The operations with every blob written: deletions first (so "delete folder x/, add x/y"
        works), then additions in the order given."""
        blobs = self.git.write_blob_files([f for _, f in self.pending])
        puts = [Put(p, blob) for (p, _), blob in zip(self.pending, blobs)]
        return ([op for op in self.done if not isinstance(op, Put)] + puts
                + [op for op in self.done if isinstance(op, Put)])

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        shutil.rmtree(self.tmp, ignore_errors=True)


__all__ = ["Hub", "Staging", "RepoNotFound", "Gated", "Unauthorized", "Forbidden", "TooLarge", "RevisionNotFound",
           "EntryNotFound", "Conflict", "Invalid", "StorageError", "check_path"]
