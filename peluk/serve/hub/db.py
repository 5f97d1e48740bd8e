"""The hub's metadata in SQL: users, tokens, repositories (with their card metadata and tags).

One thin layer over DB-API drivers, portable SQL only, ``?`` placeholders everywhere
(translated to ``%s`` for PostgreSQL). SQLite (the standard library) is the default; a
``postgresql://`` URL uses ``psycopg`` (3.x) when it is installed.

>>> db = Database("sqlite:////srv/hub/hub.db")          # or a path, or "postgresql://user@host/db"
>>> db.query("SELECT name FROM users WHERE name = ?", ("alice",))
[]
"""

from __future__ import annotations

import json
import sqlite3
import threading
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Iterator

SCHEMA = [
    """CREATE TABLE IF NOT EXISTS users (
        name VARCHAR(96) PRIMARY KEY, fullname TEXT, email TEXT,
        is_admin INTEGER NOT NULL DEFAULT 0, created VARCHAR(32) NOT NULL)""",
    """CREATE TABLE IF NOT EXISTS tokens (
        hash CHAR(64) PRIMARY KEY, username VARCHAR(96) NOT NULL, display_name TEXT,
        role VARCHAR(8) NOT NULL, created VARCHAR(32) NOT NULL)""",
    """CREATE TABLE IF NOT EXISTS repos (
        type VARCHAR(8) NOT NULL, namespace VARCHAR(96) NOT NULL, name VARCHAR(96) NOT NULL,
        private INTEGER NOT NULL DEFAULT 0, gated VARCHAR(8), created VARCHAR(32) NOT NULL,
        last_modified VARCHAR(32) NOT NULL, sha CHAR(40), card_data TEXT, pipeline_tag TEXT,
        library_name TEXT, tags TEXT, downloads INTEGER NOT NULL DEFAULT 0,
        likes INTEGER NOT NULL DEFAULT 0, PRIMARY KEY (type, namespace, name))""",
    """CREATE TABLE IF NOT EXISTS repo_tags (
        type VARCHAR(8) NOT NULL, namespace VARCHAR(96) NOT NULL, name VARCHAR(96) NOT NULL,
        tag VARCHAR(200) NOT NULL, PRIMARY KEY (type, namespace, name, tag))""",
    "CREATE INDEX IF NOT EXISTS repo_tags_tag ON repo_tags (tag)",
]
SORT_COLUMNS = {"lastModified": "last_modified", "createdAt": "created", "downloads": "downloads",
                "likes": "likes", "trendingScore": "downloads", "id": "namespace"}


def now() -> str:
    """The current time as stored: ISO 8601 UTC, fixed width, so text order is time order."""
    return datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


@dataclass
class Repo:
    """A row of ``repos``."""
    type: str
    namespace: str
    name: str
    private: bool = False
    gated: str | None = None
    created: str = ""
    last_modified: str = ""
    sha: str | None = None
    card_data: dict | None = None
    pipeline_tag: str | None = None
    library_name: str | None = None
    tags: list[str] = field(default_factory=list)
    downloads: int = 0
    likes: int = 0

    @property
    def id(self) -> str:
        return f"{self.namespace}/{self.name}"

    @property
    def key(self) -> tuple[str, str, str]:
        return self.type, self.namespace, self.name

    @classmethod
    def from_row(cls, row: dict) -> "Repo":
        return cls(row["type"], row["namespace"], row["name"], bool(row["private"]), row["gated"],
                   row["created"], row["last_modified"], row["sha"],
                   json.loads(row["card_data"]) if row["card_data"] else None, row["pipeline_tag"],
                   row["library_name"], json.loads(row["tags"]) if row["tags"] else [],
                   int(row["downloads"]), int(row["likes"]))


class Database:
    """A connection shared by the threads of the server, one statement at a time."""

    def __init__(self, url: str | Path):
        url = str(url)
        self.lock = threading.RLock()
        if url.startswith(("postgresql://", "postgres://")):
            try:
                import psycopg
            except ImportError as e:
                raise RuntimeError(f"a PostgreSQL database ({url.split('@')[-1]}) needs the psycopg package: "
                                   "pip install 'psycopg[binary]'") from e
            self.conn, self.paramstyle = psycopg.connect(url, autocommit=True), "%s"
        else:
            path = url.removeprefix("sqlite:///") if url.startswith("sqlite:///") else url
            self.conn = sqlite3.connect(path, check_same_thread=False, isolation_level=None, timeout=30)
            self.conn.execute("PRAGMA journal_mode=WAL")
            self.paramstyle = "?"
        self.depth = 0
        for statement in SCHEMA:
            self.execute(statement)

    def _sql(self, sql: str) -> str:
        return sql.replace("?", "%s") if self.paramstyle == "%s" else sql

    def execute(self, sql: str, params: tuple | list = ()) -> int:
        """Run a statement; returns the number of rows it changed."""
        with self.lock:
            cur = self.conn.cursor()
            try:
                cur.execute(self._sql(sql), tuple(params))
                return cur.rowcount
            finally:
                cur.close()

    def query(self, sql: str, params: tuple | list = ()) -> list[dict[str, Any]]:
        with self.lock:
            cur = self.conn.cursor()
            try:
                cur.execute(self._sql(sql), tuple(params))
                names = [d[0] for d in cur.description]
                return [dict(zip(names, row)) for row in cur.fetchall()]
            finally:
                cur.close()

    @contextmanager
    def transaction(self) -> Iterator["Database"]:
        """Statements inside run atomically (nested uses join the outer transaction)."""
        with self.lock:
            self.depth += 1
            if self.depth == 1:
                self.execute("BEGIN")
            try:
                yield self
            except BaseException:
                if self.depth == 1:
                    self.execute("ROLLBACK")
                raise
            else:
                if self.depth == 1:
                    self.execute("COMMIT")
            finally:
                self.depth -= 1

    def close(self) -> None:
        with self.lock:
            self.conn.close()

    # -- repositories ------------------------------------------------------------------------

    def get_repo(self, repo_type: str, namespace: str, name: str) -> Repo | None:
        rows = self.query("SELECT * FROM repos WHERE type = ? AND namespace = ? AND name = ?",
                          (repo_type, namespace, name))
        return Repo.from_row(rows[0]) if rows else None

    def insert_repo(self, repo: Repo) -> None:
        self.execute("INSERT INTO repos (type, namespace, name, private, created, last_modified, sha) "
                     "VALUES (?, ?, ?, ?, ?, ?, ?)",
                     (repo.type, repo.namespace, repo.name, int(repo.private), repo.created,
                      repo.last_modified, repo.sha))

    def update_repo(self, repo: Repo) -> None:
        """Write every mutable column of ``repo`` and replace its search tags."""
        with self.transaction():
            self.execute("UPDATE repos SET private = ?, gated = ?, last_modified = ?, sha = ?, card_data = ?, "
                          "pipeline_tag = ?, library_name = ?, tags = ? WHERE type = ? AND namespace = ? AND name = ?",
                          (int(repo.private), repo.gated, repo.last_modified, repo.sha,
                           json.dumps(repo.card_data) if repo.card_data is not None else None,
                           repo.pipeline_tag, repo.library_name, json.dumps(repo.tags), *repo.key))
            self.execute("DELETE FROM repo_tags WHERE type = ? AND namespace = ? AND name = ?", repo.key)
            for tag in sorted(set(repo.tags)):
                self.execute("INSERT INTO repo_tags (type, namespace, name, tag) VALUES (?, ?, ?, ?)",
                             (*repo.key, tag[:200]))

    def delete_repo(self, repo: Repo) -> None:
        with self.transaction():
            self.execute("DELETE FROM repo_tags WHERE type = ? AND namespace = ? AND name = ?", repo.key)
            self.execute("DELETE FROM repos WHERE type = ? AND namespace = ? AND name = ?", repo.key)

    def rename_repo(self, repo: Repo, namespace: str, name: str) -> None:
        with self.transaction():
            for table in ("repos", "repo_tags"):
                self.execute(f"UPDATE {table} SET namespace = ?, name = ? "
                             "WHERE type = ? AND namespace = ? AND name = ?", (namespace, name, *repo.key))

    def count_download(self, repo: Repo) -> None:
        self.execute("UPDATE repos SET downloads = downloads + 1 WHERE type = ? AND namespace = ? AND name = ?",
                     repo.key)

    def search_repos(self, repo_type: str, viewer: str | None, viewer_is_admin: bool = False, *,
                     search: str | None = None, author: str | None = None, tags: list[str] = (),
                     sort: str = "lastModified", descending: bool = True, offset: int = 0,
                     limit: int = 1000) -> list[Repo]:
        """Repositories ``viewer`` may see, filtered and sorted, one page of them.

        ``search`` is a case-insensitive substring of the id; each of ``tags`` must be a tag
        (``text-classification``, ``license:mit``, ``transformers``, ``en``, ``dataset:x``...).
        """
        where, params = ["type = ?"], [repo_type]
        if not viewer_is_admin:
            where.append("(private = 0 OR namespace = ?)")
            params.append(viewer or "")
        if author:
            where.append("namespace = ?")
            params.append(author)
        if search:
            escaped = search.lower().replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
            where.append("LOWER(namespace || '/' || name) LIKE ? ESCAPE '\\'")
            params.append(f"%{escaped}%")
        for tag in tags:
            where.append("EXISTS (SELECT 1 FROM repo_tags t WHERE t.type = repos.type AND "
                         "t.namespace = repos.namespace AND t.name = repos.name AND t.tag = ?)")
            params.append(tag)
        column = SORT_COLUMNS.get(sort, "last_modified")
        order = "DESC" if descending else "ASC"
        rows = self.query(f"SELECT * FROM repos WHERE {' AND '.join(where)} "
                          f"ORDER BY {column} {order}, namespace {order}, name {order} LIMIT ? OFFSET ?",
                          (*params, limit, offset))
        return [Repo.from_row(r) for r in rows]
