"""Users, access tokens and signed URLs of the hub.

Tokens look like the Hub's (``hf_`` + 34 letters and digits), are shown once and stored as
their sha256. A token has a role: ``read`` (read private repositories of its user) or
``write`` (also create repositories and commit in the user's namespace). Admins may read and
write everything.

>>> db = Database(home / "hub.db")                             # doctest: +SKIP
>>> create_user(db, "alice")                                  # doctest: +SKIP
>>> token = create_token(db, "alice", role="write")           # doctest: +SKIP
>>> user_for_token(db, token).name                            # doctest: +SKIP
'alice'
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import logging
import os
import re
import secrets
import string
import time
from dataclasses import dataclass
from pathlib import Path

from peluk.serve.hub.db import Database, now

log = logging.getLogger("peluk.hub")

NAME = re.compile(r"[A-Za-z0-9](?:[A-Za-z0-9._-]{0,94}[A-Za-z0-9])?")
# Names that would collide with the hub's own URL space (/api/..., /datasets/owner/name, ...),
# or with the inference API's (/models/..., /v1/... of peluk serve).
RESERVED = {"api", "models", "datasets", "spaces", "kernels", "new", "settings", "login", "logout",
            "static", "docs", "organizations", "search", "lfs-objects", "join", "v1"}
ROLES = ("read", "write")


@dataclass(frozen=True)
class User:
    name: str
    fullname: str | None = None
    email: str | None = None
    is_admin: bool = False
    role: str = "write"  # the role of the token this user came with
    token_name: str | None = None


def check_name(name: str, what: str = "name") -> str:
    """Validate a user, organisation or repository name (the Hub's rules); returns it.

    Raises:
        ValueError: the message says which rule ``name`` breaks.
    """
    if not isinstance(name, str) or not NAME.fullmatch(name) or "--" in name or ".." in name:
        raise ValueError(f"Invalid {what} {name!r}: use letters, digits, '-', '_' and '.', at most 96 "
                         "characters, not starting or ending with '-' or '.', without '--' or '..'")
    if name.endswith(".git"):
        raise ValueError(f"Invalid {what} {name!r}: it may not end with '.git'")
    return name


def create_user(db: Database, name: str, fullname: str | None = None, email: str | None = None,
                admin: bool = False) -> User:
    """Add a user. Raises ValueError for a bad or taken name."""
    check_name(name, "user name")
    if name.lower() in RESERVED:
        raise ValueError(f"{name!r} is reserved by the hub's URLs; choose another user name")
    if db.query("SELECT name FROM users WHERE LOWER(name) = ?", (name.lower(),)):
        raise ValueError(f"user {name!r} already exists")
    db.execute("INSERT INTO users (name, fullname, email, is_admin, created) VALUES (?, ?, ?, ?, ?)",
               (name, fullname, email, int(admin), now()))
    return User(name, fullname, email, admin)


def get_user(db: Database, name: str) -> User | None:
    rows = db.query("SELECT * FROM users WHERE name = ?", (name,))
    return User(rows[0]["name"], rows[0]["fullname"], rows[0]["email"], bool(rows[0]["is_admin"])) if rows else None


def list_users(db: Database) -> list[User]:
    return [User(r["name"], r["fullname"], r["email"], bool(r["is_admin"]))
            for r in db.query("SELECT * FROM users ORDER BY name")]


def hash_token(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def create_token(db: Database, username: str, role: str = "write", display_name: str | None = None) -> str:
    """A new token for ``username``; returned once, only its hash is kept.

    Raises:
        ValueError: unknown user or role.
    """
    if role not in ROLES:
        raise ValueError(f"token role must be one of {ROLES}, not {role!r}")
    if get_user(db, username) is None:
        raise ValueError(f"no user named {username!r}; create it first")
    alphabet = string.ascii_letters + string.digits
    token = "hf_" + "".join(secrets.choice(alphabet) for _ in range(34))
    db.execute("INSERT INTO tokens (hash, username, display_name, role, created) VALUES (?, ?, ?, ?, ?)",
               (hash_token(token), username, display_name or f"{role} token", role, now()))
    return token


def revoke_token(db: Database, token: str) -> bool:
    return db.execute("DELETE FROM tokens WHERE hash = ?", (hash_token(token),)) > 0


def user_for_token(db: Database, token: str) -> User | None:
    """The user a token belongs to (with the token's role), None for an unknown token."""
    rows = db.query("SELECT u.name, u.fullname, u.email, u.is_admin, t.role, t.display_name FROM tokens t "
                    "JOIN users u ON u.name = t.username WHERE t.hash = ?", (hash_token(token),))
    if not rows:
        return None
    r = rows[0]
    return User(r["name"], r["fullname"], r["email"], bool(r["is_admin"]), r["role"], r["display_name"])


def can_read(user: User | None, namespace: str, private: bool) -> bool:
    return not private or (user is not None and (user.is_admin or user.name == namespace))


def can_write(user: User | None, namespace: str) -> bool:
    """Write needs a write token of the namespace's owner (organisations: not yet) or an admin."""
    return user is not None and user.role == "write" and (user.is_admin or user.name == namespace)


def bootstrap_admin(db: Database, home: Path, name: str = "admin") -> str | None:
    """On a hub without users: create the admin and write its token to ``home/admin_token`` (0600).

    Returns the token file's path, or None when users already exist.
    """
    if db.query("SELECT name FROM users"):
        return None
    create_user(db, name, admin=True)
    token = create_token(db, name, "write", "admin token")
    path = Path(home) / "admin_token"
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as f:
        f.write(token + "\n")
    log.warning("peluk hub: created the admin user %r; its token is in %s", name, path)
    return str(path)


def load_secret(home: Path) -> bytes:
    """The server's signing key (``home/secret``, created once, mode 0600)."""
    path = Path(home) / "secret"
    try:
        return bytes.fromhex(path.read_text().strip())
    except FileNotFoundError:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        key = secrets.token_bytes(32)
        with os.fdopen(fd, "w") as f:
            f.write(key.hex())
        return key


def sign(secret: bytes, message: str, ttl: int = 3600) -> tuple[int, str]:
    """(expiry, signature) authorising ``message`` (e.g. "upload:models/alice/x:<oid>:<size>")."""
    expires = int(time.time()) + ttl
    return expires, hmac.new(secret, f"{message}:{expires}".encode(), hashlib.sha256).hexdigest()


def verify(secret: bytes, message: str, expires: str | int, signature: str) -> bool:
    try:
        expires = int(expires)
    except (TypeError, ValueError):
        return False
    good = hmac.new(secret, f"{message}:{expires}".encode(), hashlib.sha256).hexdigest()
    return expires >= time.time() and hmac.compare_digest(good, str(signature))


def token_from_header(authorization: str | None) -> str | None:
    """The token of ``Bearer <token>``, or the password of Basic auth (git and git-lfs send those)."""
    scheme, _, value = (authorization or "").partition(" ")
    if scheme.lower() == "bearer":
        return value.strip() or None
    if scheme.lower() == "basic":
        try:
            return base64.b64decode(value.strip()).decode().partition(":")[2] or None
        except (ValueError, UnicodeDecodeError):
            return None
    return None
