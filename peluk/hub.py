"""Where names become local directories.

``resolve(name_or_path)`` is the single place every ``from_pretrained`` turns a model name
into a directory on disk. Today it accepts local directories (and files, for GGUF); the hub
client (repo ids like ``owner/name`` with revisions, an HF-compatible cache and offline
mode) plugs in here, so loading code elsewhere never changes.
"""

from __future__ import annotations

import os
from pathlib import Path

from peluk.errors import ModelNotFoundError


def resolve(name_or_path: str | os.PathLike, revision: str | None = None) -> Path:
    """Return the local path that holds ``name_or_path``.

    Args:
        name_or_path: a local directory (or file), or a repo id such as ``"owner/name"``.
        revision: branch, tag or commit of a repo id (used once the hub client exists).

    Raises:
        ModelNotFoundError: the path does not exist and no hub can provide it.
    """
    path = Path(name_or_path).expanduser()
    if path.exists():
        return path
    name = str(name_or_path)
    looks_like_repo = name.count("/") == 1 and not name.startswith((".", "/", "~"))
    hint = (
        "peluk has no hub client yet: download the repository and pass its local directory"
        if looks_like_repo
        else "pass an existing local directory that contains config.json and the weights"
    )
    raise ModelNotFoundError(f"{name!r} is not a local directory or file; {hint}.")
