"""Repositories as bare git repositories, large files as Git LFS objects.

Layout under the hub's home directory::

    repos/{models,datasets,spaces}/{namespace}/{name}.git   a bare git repository per repo
    lfs/objects/ab/cd/<sha256>                               LFS object contents, by sha256
    lfs/tmp/                                                 uploads in progress

Everything git-related goes through the ``git`` command (plumbing only), so a repository here
is an ordinary git repository that ``git http-backend``, ``git fsck`` or a person can work on.
Files stored through LFS appear in git as pointer blobs, as on the Hugging Face Hub.

Crash safety: objects (git blobs, trees, commits, LFS objects) are written first, the branch
ref is moved last with a compare-and-swap (``git update-ref <ref> <new> <old>``), so a killed
process leaves at worst unreferenced objects. LFS uploads are written into ``lfs/tmp`` and
renamed into place only after their sha256 and size are verified; the server empties
``lfs/tmp`` when it starts (``LfsStore.clean_tmp``).

>>> storage = Storage(Path("/srv/hub"))                                   # doctest: +SKIP
>>> repo = storage.create("model", "alice", "tiny", Identity("alice"))    # doctest: +SKIP
>>> blob = repo.write_blob(b'{"model_type": "bert"}')                    # doctest: +SKIP
>>> repo.commit("refs/heads/main", [Put("config.json", blob)], "add config\n", Identity("alice"))  # doctest: +SKIP
'3f1c...'
"""

from __future__ import annotations

import hashlib
import os
import re
import shutil
import subprocess
import tempfile
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Iterable

from peluk.hub import API_SEGMENT, LFS_POINTER_HEADER

ZERO = "0" * 40
SHA1 = re.compile(r"[0-9a-f]{40}")
SHA256 = re.compile(r"[0-9a-f]{64}")
LFS_THRESHOLD = 10 * 1024 * 1024  # files above this are stored through LFS (the Hub's rule)
MAX_POINTER_SIZE = 1024  # git-lfs never writes larger pointer files
COMMIT_RETRIES = 50  # attempts at a branch that keeps moving under a commit without parent
LFS_ATTRS = "filter=lfs diff=lfs merge=lfs -text"
# The patterns the Hugging Face Hub puts in a new repository's .gitattributes.
DEFAULT_LFS_PATTERNS = (
    "*.7z *.arrow *.bin *.bz2 *.ckpt *.ftz *.gguf *.gz *.h5 *.joblib *.lfs.* *.mlmodel *.model "
    "*.msgpack *.npy *.npz *.onnx *.ot *.parquet *.pb *.pickle *.pkl *.pt *.pth *.rar "
    "*.safetensors saved_model/**/* *.tar.* *.tar *.tflite *.tgz *.wasm *.xz *.zip *.zst *tfevents*"
).split()
DATASET_LFS_PATTERNS = ("*.mds *.lz4 *.mp3 *.ogg *.wav *.flac *.jpg *.jpeg *.png *.gif *.webp "
                        "*.mp4 *.webm").split()


class StorageError(Exception):
    """Base of the errors below; the message is meant for the API user."""


class RevisionNotFound(StorageError):
    """No branch, tag, pull request ref or commit of that name."""


class EntryNotFound(StorageError):
    """No file or folder at that path in that revision."""


class Conflict(StorageError):
    """A ref already exists, or a branch moved under a commit that named its parent."""


class Invalid(StorageError):
    """A request the repository cannot apply (bad ref name, file/folder clash, missing LFS object)."""


@dataclass(frozen=True)
class Identity:
    """Author and committer of the commits and tags the hub writes."""
    name: str
    email: str = ""

    def env(self, when: float | None = None) -> dict[str, str]:
        email = self.email or f"{self.name}@users.noreply.peluk"
        date = f"{int(when if when is not None else time.time())} +0000"
        return {"GIT_AUTHOR_NAME": self.name, "GIT_AUTHOR_EMAIL": email, "GIT_AUTHOR_DATE": date,
                "GIT_COMMITTER_NAME": self.name, "GIT_COMMITTER_EMAIL": email, "GIT_COMMITTER_DATE": date}


@dataclass(frozen=True)
class Lfs:
    """What an LFS pointer says: the object's sha256 and size, and the pointer's own size."""
    oid: str
    size: int
    pointer_size: int


@dataclass(frozen=True)
class Entry:
    """A file or directory of a revision. ``size`` is the real size (the object's, for LFS)."""
    type: str  # "file" | "directory"
    path: str
    oid: str  # git blob or tree sha1
    size: int
    lfs: Lfs | None = None


@dataclass(frozen=True)
class CommitInfo:
    id: str
    author: str
    date: float  # unix time
    title: str
    message: str


@dataclass(frozen=True)
class Put:
    """Write a blob (already in the object store, see ``GitRepo.write_blob``) at ``path``."""
    path: str
    blob: str
    lfs: bool = False  # a pointer blob: .gitattributes must route the path through LFS


@dataclass(frozen=True)
class Delete:
    path: str


@dataclass(frozen=True)
class DeleteFolder:
    path: str


def lfs_pointer(oid: str, size: int) -> bytes:
    return f"{LFS_POINTER_HEADER}\noid sha256:{oid}\nsize {size}\n".encode()


def parse_pointer(data: bytes) -> Lfs | None:
    """The LFS pointer in ``data``, or None when ``data`` is ordinary content."""
    if len(data) > MAX_POINTER_SIZE or not data.startswith(LFS_POINTER_HEADER.encode() + b"\n"):
        return None
    fields = dict(line.split(" ", 1) for line in data.decode("utf-8", "replace").splitlines()[1:] if " " in line)
    oid, size = fields.get("oid", "").removeprefix("sha256:"), fields.get("size", "")
    if not SHA256.fullmatch(oid) or not size.isdigit():
        return None
    return Lfs(oid, int(size), len(data))


def check_path(path) -> str:
    """A file path inside a repository, or Invalid saying what is wrong with it."""
    if not isinstance(path, str) or not path:
        raise Invalid(f"Invalid path {path!r}: a non-empty string is required")
    reasons = [("\0" in path, "contains a NUL byte"), ("\\" in path, "contains a backslash"),
               (path.startswith("/"), "is absolute"), (len(path.encode()) > 4096, "is longer than 4096 bytes"),
               (any(c < " " or c == "\x7f" for c in path), "contains a control character")]
    parts = path.split("/")
    reasons += [(any(p in ("", ".", "..") for p in parts), "has an empty, '.' or '..' component"),
                (any(p.lower() == ".git" for p in parts), "has a '.git' component")]
    for bad, why in reasons:
        if bad:
            raise Invalid(f"Invalid path {path!r}: it {why}")
    return path


def _valid(path: str) -> bool:
    try:
        return bool(check_path(path))
    except Invalid:
        return False


def valid_ref_name(name: str) -> bool:
    """git check-ref-format's rules for a branch or tag name (without the refs/heads/ part)."""
    if not name or len(name) > 200 or name.startswith(("-", "/")) or name.endswith(("/", ".", ".lock")):
        return False
    if any(c < " " or c in " ~^:?*[\\\x7f" for c in name) or ".." in name or "@{" in name or name == "@":
        return False
    return all(part and not part.startswith(".") and not part.endswith(".lock") for part in name.split("/"))


def wildmatch(pattern: str) -> re.Pattern:
    """gitattributes/gitignore pattern → regex over the full path (``*`` stays within a folder)."""
    anchored = "/" in pattern.rstrip("/")
    pattern = pattern.lstrip("/")
    out, i = [], 0
    while i < len(pattern):
        c = pattern[i]
        if pattern.startswith("**/", i):
            out.append("(?:.*/)?"); i += 3; continue
        if pattern.startswith("**", i):
            out.append(".*"); i += 2; continue
        if c == "*":
            out.append("[^/]*")
        elif c == "?":
            out.append("[^/]")
        elif c == "\\" and i + 1 < len(pattern):
            i += 1; out.append(re.escape(pattern[i]))
        elif c == "[" and (end := _bracket_end(pattern, i)) is not None:
            out.append(_bracket(pattern[i + 1:end])); i = end
        else:
            out.append(re.escape(c))
        i += 1
    return re.compile(("" if anchored else r"(?:.*/)?") + "".join(out))


POSIX_CLASSES = {"space": r"\s", "digit": r"\d", "alpha": "a-zA-Z", "alnum": "a-zA-Z0-9", "upper": "A-Z",
                 "lower": "a-z", "xdigit": "0-9a-fA-F", "punct": re.escape("!\"#$%&'()*+,-./:;<=>?@[\\]^_`{|}~")}


def _bracket_end(pattern: str, start: int) -> int | None:
    """Index of the ``]`` closing the bracket expression at ``start`` (None: a literal ``[``)."""
    j = start + 1 + (pattern[start + 1:start + 2] in ("!", "^"))
    j += pattern[j:j + 1] == "]"  # a leading ] is a member
    while j < len(pattern) and pattern[j] != "]":
        k = pattern.find(":]", j + 2) if pattern.startswith("[:", j) else -1
        j = k + 2 if k != -1 else j + 2 if pattern[j] == "\\" else j + 1
    return j if j < len(pattern) else None


def _bracket(body: str) -> str:
    out, i = ["^"] if body[:1] in ("!", "^") else [], 1 if body[:1] in ("!", "^") else 0
    while i < len(body):
        match = re.match(r"\[:(\w+):\]", body[i:])
        if match:
            out.append(POSIX_CLASSES.get(match[1], "")); i += len(match[0]); continue
        if body[i] == "\\" and i + 1 < len(body):
            i += 1
        out.append(body[i] if body[i] == "-" else re.escape(body[i])); i += 1
    return "[" + "".join(out) + "]"


class LfsRules:
    """Which paths a .gitattributes text routes through LFS (root file only; last match wins)."""

    def __init__(self, text: str):
        self.rules = []
        for line in text.splitlines():
            fields = line.split()
            if not fields or fields[0].startswith("#"):
                continue
            attrs = fields[1:]
            if "filter=lfs" in attrs:
                self.rules.append((wildmatch(fields[0]), True))
            elif any(a in ("-filter", "!filter") or a.startswith("filter=") for a in attrs):
                self.rules.append((wildmatch(fields[0]), False))

    def __contains__(self, path: str) -> bool:
        verdict = False
        for regex, lfs in self.rules:
            if regex.fullmatch(path):
                verdict = lfs
        return verdict

    @staticmethod
    def line_for(path: str) -> str:
        """A .gitattributes line routing exactly ``path`` through LFS (as ``git lfs track`` writes it)."""
        escaped = re.sub(r"([*?\[\]\\!#])", r"\\\1", path).replace(" ", "[[:space:]]")
        return f"/{escaped} {LFS_ATTRS}" if "/" not in path else f"{escaped} {LFS_ATTRS}"


class LfsStore:
    """LFS objects by sha256 under ``root/objects``; uploads are verified before they appear."""

    def __init__(self, root: Path):
        self.objects, self.tmp = root / "objects", root / "tmp"
        self.objects.mkdir(parents=True, exist_ok=True)
        self.tmp.mkdir(parents=True, exist_ok=True)

    def path(self, oid: str) -> Path:
        if not SHA256.fullmatch(oid):
            raise Invalid(f"{oid!r} is not a sha256 LFS object id (64 lowercase hex digits)")
        return self.objects / oid[:2] / oid[2:4] / oid

    def size(self, oid: str) -> int | None:
        """Size of a stored object, None when absent."""
        try:
            return self.path(oid).stat().st_size
        except FileNotFoundError:
            return None

    def clean_tmp(self) -> int:
        """Delete uploads a killed process left behind; returns how many."""
        leftovers = list(self.tmp.iterdir())
        for path in leftovers:
            shutil.rmtree(path) if path.is_dir() else path.unlink(missing_ok=True)
        return len(leftovers)

    def writer(self, oid: str | None = None, size: int | None = None) -> "LfsWriter":
        """A file-like sink: write the content, then ``finish()`` verifies and stores it."""
        return LfsWriter(self, oid, size)

    def put(self, data: bytes) -> str:
        with self.writer() as w:
            w.write(data)
            return w.finish()


class LfsWriter:
    def __init__(self, store: LfsStore, oid: str | None, size: int | None):
        self.store, self.oid, self.expected_size = store, oid, size
        if oid is not None:
            store.path(oid)  # validates the id
        fd, name = tempfile.mkstemp(dir=store.tmp, prefix="upload-")
        self.file, self.tmp_path = os.fdopen(fd, "wb"), Path(name)
        self.sha, self.size = hashlib.sha256(), 0

    def write(self, chunk: bytes) -> None:
        self.sha.update(chunk)
        self.size += len(chunk)
        if self.expected_size is not None and self.size > self.expected_size:
            raise Invalid(f"upload is larger than the announced {self.expected_size} bytes")
        self.file.write(chunk)

    def finish(self) -> str:
        """Verify sha256/size, move the object into place; returns its sha256."""
        self.file.flush()
        os.fsync(self.file.fileno())
        self.file.close()
        oid = self.sha.hexdigest()
        if self.oid is not None and oid != self.oid:
            raise Invalid(f"uploaded content has sha256 {oid}, not the announced {self.oid}")
        if self.expected_size is not None and self.size != self.expected_size:
            raise Invalid(f"uploaded {self.size} bytes, not the announced {self.expected_size}")
        target = self.store.path(oid)
        target.parent.mkdir(parents=True, exist_ok=True)
        os.replace(self.tmp_path, target)  # atomic; an identical object may already be there
        return oid

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.file.close()
        self.tmp_path.unlink(missing_ok=True)


class GitRepo:
    """One bare repository, driven with git plumbing commands."""

    # Blob sha → LFS pointer (or None). Blobs never change, so this never goes stale.
    _pointers: dict[str, Lfs | None] = {}
    _pointers_lock = threading.Lock()

    def __init__(self, path: Path, lfs: LfsStore):
        self.path, self.lfs = path, lfs

    def git(self, *args: str, input: bytes | None = None, env: dict | None = None, check: bool = True) -> bytes:
        full_env = {**os.environ, "GIT_DIR": str(self.path), "GIT_LITERAL_PATHSPECS": "1",
                    "GIT_CONFIG_NOSYSTEM": "1", "GIT_TERMINAL_PROMPT": "0", "LC_ALL": "C", **(env or {})}
        proc = subprocess.run(["git", *args], input=input, env=full_env, capture_output=True)
        if check and proc.returncode != 0:
            raise GitError(f"git {args[0]} failed in {self.path}: {proc.stderr.decode(errors='replace').strip()}",
                           proc.returncode, proc.stderr.decode(errors="replace"))
        return proc.stdout

    # -- reading -------------------------------------------------------------------------------

    def refs(self) -> dict[str, str]:
        """Every ref → the commit it points at (annotated tags peeled)."""
        out = self.git("for-each-ref", "--format=%(refname)%00%(objectname)%00%(*objectname)")
        refs = {}
        for line in out.decode().splitlines():
            name, obj, peeled = line.split("\0")
            refs[name] = peeled or obj
        return refs

    def resolve(self, rev: str) -> str:
        """Commit sha of a branch, tag, ``refs/pr/N``, full ref name or full commit sha.

        Raises:
            RevisionNotFound: none of these.
        """
        if SHA1.fullmatch(rev):
            if self.git("cat-file", "-t", rev, check=False).strip() == b"commit":
                return rev
            raise RevisionNotFound(f"Invalid rev id: {rev}")
        if valid_ref_name(rev):
            refs = self.refs()
            for name in (f"refs/heads/{rev}", f"refs/tags/{rev}", rev if rev.startswith("refs/") else None):
                if name in refs:
                    return refs[name]
        raise RevisionNotFound(f"Invalid rev id: {rev}")

    def head(self, ref: str) -> str | None:
        """Commit a full ref name points at, None if the ref does not exist."""
        return self.refs().get(ref)

    def tree(self, commit: str, path: str = "", recursive: bool = False) -> list[Entry]:
        """Entries under the folder ``path`` (children, or with ``recursive`` every file and folder).

        Raises:
            EntryNotFound: ``path`` is not a folder of that commit.
        """
        if path and not _valid(path):
            raise EntryNotFound(f"{path} does not exist on {commit}")
        args = ["ls-tree", "-l", "-z"] + (["-r", "-t"] if recursive else []) + [commit]
        entries = self._ls_tree(args + (["--", path.rstrip("/") + "/"] if path else []))
        if path and not entries:
            raise EntryNotFound(f"{path} does not exist on {commit}")
        return entries

    def entries(self, commit: str, paths: Iterable[str]) -> list[Entry]:
        """The entries at exactly these paths (files or folders); missing paths are left out."""
        wanted, found = [p.strip("/") for p in paths if _valid(p.strip("/"))], []
        for i in range(0, len(wanted), 500):
            found += [e for e in self._ls_tree(["ls-tree", "-l", "-z", commit, "--", *wanted[i:i + 500]])
                      if e.path in wanted[i:i + 500]]
        return found

    def entry(self, commit: str, path: str) -> Entry:
        """The file or folder at ``path``.

        Raises:
            EntryNotFound: nothing there.
        """
        found = self.entries(commit, [path])
        if not found:
            raise EntryNotFound(f"{path} does not exist on {commit}")
        return found[0]

    def _ls_tree(self, args: list[str]) -> list[Entry]:
        rows = []
        for record in self.git(*args).split(b"\0"):
            if record:
                meta, path = record.split(b"\t", 1)
                mode, kind, oid, size = meta.decode().split()
                rows.append((kind, path.decode("utf-8", "surrogateescape"), oid, 0 if size == "-" else int(size)))
        pointers = self.pointers([oid for kind, _, oid, size in rows if kind == "blob" and size <= MAX_POINTER_SIZE])
        entries = []
        for kind, path, oid, size in rows:
            if kind == "blob":
                lfs = pointers.get(oid)
                entries.append(Entry("file", path, oid, lfs.size if lfs else size, lfs))
            elif kind == "tree":
                entries.append(Entry("directory", path, oid, 0))
        return entries  # submodule (commit) entries are not files: left out

    def pointers(self, blobs: list[str]) -> dict[str, Lfs | None]:
        """LFS pointer info of small blobs, read in one ``git cat-file --batch`` call."""
        with self._pointers_lock:
            known = {b: self._pointers[b] for b in blobs if b in self._pointers}
        missing = sorted(set(blobs) - set(known))
        if missing:
            out, pos = self.git("cat-file", "--batch", input="\n".join(missing).encode() + b"\n"), 0
            for oid in missing:
                header_end = out.index(b"\n", pos)
                size = int(out[pos:header_end].split()[2])
                known[oid] = parse_pointer(out[header_end + 1:header_end + 1 + size])
                pos = header_end + 1 + size + 1
            with self._pointers_lock:
                if len(self._pointers) > 200_000:
                    self._pointers.clear()
                self._pointers.update({oid: known[oid] for oid in missing})
        return known

    def read(self, blob: str) -> bytes:
        return self.git("cat-file", "blob", blob)

    def file(self, commit: str, path: str, content: bool = True) -> tuple[Entry, bytes | None]:
        """The file at ``path`` and, with ``content``, its blob's bytes (an LFS file's pointer), in one git call.

        Raises:
            EntryNotFound: no file there (nothing, or a folder).
        """
        path = path.strip("/")
        if not _valid(path):
            raise EntryNotFound(f"{path} does not exist on {commit}")
        out = self.git("cat-file", "--batch" if content else "--batch-check", input=f"{commit}:{path}\n".encode())
        header, _, data = out.partition(b"\n")
        found = re.fullmatch(rb"([0-9a-f]{40,64}) (\w+) (\d+)", header)  # else "<name> missing"
        if not found or found[2] != b"blob":  # nothing, a folder (tree) or a submodule (commit)
            raise EntryNotFound(f"{path} is a folder on {commit}" if found and found[2] == b"tree"
                                else f"{path} does not exist on {commit}")
        oid, size = found[1].decode(), int(found[3])
        data = data[:size] if content else None
        lfs = None
        if size <= MAX_POINTER_SIZE:
            lfs = parse_pointer(data) if content else self.pointers([oid])[oid]
        return Entry("file", path, oid, lfs.size if lfs else size, lfs), data

    def read_file(self, commit: str, path: str) -> bytes | None:
        """Content of a regular (non-LFS) file, None when absent or a folder."""
        try:
            entry, data = self.file(commit, path)
        except EntryNotFound:
            return None
        return data if entry.lfs is None else None

    def open(self, entry: Entry) -> tuple[Path | None, bytes | None]:
        """Where a file's content is: an LFS object path, or the git blob's bytes."""
        if entry.lfs is not None:
            return self.lfs.path(entry.lfs.oid), None
        return None, self.read(entry.oid)

    def log(self, commit: str, skip: int = 0, limit: int = 50, path: str | None = None) -> list[CommitInfo]:
        """Commits reachable from ``commit`` (that touched ``path``, if given), newest first."""
        out = self.git("log", f"--skip={skip}", f"--max-count={limit}", "--format=%H%x00%an%x00%at%x00%B%x1e",
                       commit, *(["--", path] if path else []))
        commits = []
        for record in out.decode("utf-8", "replace").split("\x1e"):
            if record.strip():
                sha, author, when, message = record.lstrip("\n").split("\0", 3)
                message = message.strip("\n")
                commits.append(CommitInfo(sha, author, float(when), message.split("\n", 1)[0], message))
        return commits

    def count_commits(self, commit: str) -> int:
        return int(self.git("rev-list", "--count", commit))

    # -- writing -------------------------------------------------------------------------------

    def write_blob(self, data: bytes) -> str:
        return self.git("hash-object", "-w", "--no-filters", "--stdin", input=data).decode().strip()

    def write_blob_files(self, files: list[Path]) -> list[str]:
        """Store many files as blobs with a single git call; returns their shas in order."""
        if not files:
            return []
        out = self.git("hash-object", "-w", "--no-filters", "--stdin-paths",
                       input="".join(f"{f}\n" for f in files).encode())
        return out.decode().split()

    def commit(self, ref: str, ops: list, message: str, author: Identity,
               parent: str | None = None, create: bool = False) -> str:
        """Apply ``ops`` (Put/Delete/DeleteFolder) on top of ``ref`` and move ``ref`` to the new commit.

        The ref moves by compare-and-swap. With ``parent`` the commit applies only if ``ref`` is
        still there; without, a commit that lost a race is rebuilt on the new head and retried.
        ``create`` allows ``ref`` not to exist yet (the commit then has no parent). A commit that
        would change nothing is not made: the current head is returned.

        Raises:
            RevisionNotFound: ``ref`` does not exist (and not ``create``).
            Conflict: ``ref`` moved away from ``parent``.
            EntryNotFound: a deleted file or folder does not exist.
            Invalid: a file would replace a folder or the reverse.
        """
        for _ in range(COMMIT_RETRIES):
            head = self.head(ref)
            if head is None and not create:
                raise RevisionNotFound(f"Invalid rev id: {ref.removeprefix('refs/heads/')}")
            if parent is not None and head != parent:
                raise Conflict(f"A commit has happened since {parent}: {ref.removeprefix('refs/heads/')} is now "
                               f"at {head}. Please retry with the new parent commit (or none).")
            tree = self._build_tree(head, ops)
            if head and tree == self.git("rev-parse", f"{head}^{{tree}}").decode().strip():
                return head  # nothing changed (e.g. a client re-sent identical files): no empty commit
            args = ["commit-tree", tree, "-F", "-"] + (["-p", head] if head else [])
            new = self.git(*args, input=message.encode(), env=author.env()).decode().strip()
            if self.update_ref(ref, new, head or ZERO):
                return new
            if parent is not None:
                raise Conflict(f"A commit has happened since {parent}: {ref.removeprefix('refs/heads/')} moved "
                               "while this commit was made. Please retry with the new parent commit (or none).")
            time.sleep(0.005)
        raise Conflict(f"{ref} kept moving; {COMMIT_RETRIES} attempts to commit failed, try again later")

    def update_ref(self, ref: str, new: str, old: str) -> bool:
        """Compare-and-swap ``ref`` from ``old`` (ZERO: must not exist) to ``new`` (ZERO: delete)."""
        args = ["update-ref", "-d", ref, old] if new == ZERO else ["update-ref", ref, new, old]
        try:
            self.git(*args)
            return True
        except GitError as e:
            if "cannot lock ref" in e.stderr or "reference already exists" in e.stderr:
                return False
            raise

    def create_tag(self, name: str, commit: str, message: str | None, tagger: Identity) -> None:
        """Lightweight tag, or annotated with ``message``. Raises Conflict if it exists."""
        target = commit
        if message is not None:
            body = (f"object {commit}\ntype commit\ntag {name}\n"
                    f"tagger {tagger.name} <{tagger.env()['GIT_COMMITTER_EMAIL']}> {int(time.time())} +0000\n\n"
                    f"{message}\n")
            target = self.git("mktag", input=body.encode()).decode().strip()
        if not self.update_ref(f"refs/tags/{name}", target, ZERO):
            raise Conflict(f"Tag {name} already exists")

    def _build_tree(self, head: str | None, ops: list) -> str:
        """Tree of ``head`` with ``ops`` applied, made on a temporary index."""
        with tempfile.TemporaryDirectory(prefix="peluk-index-", dir=self.lfs.tmp) as tmp:
            env = {"GIT_INDEX_FILE": os.path.join(tmp, "index")}
            self.git("read-tree", *([head] if head else ["--empty"]), env=env)
            listing = self.git("ls-files", "-z", "-s", env=env).split(b"\0")
            files = {}
            for rec in listing:
                if rec:
                    meta, path = rec.split(b"\t", 1)
                    files[path.decode("utf-8", "surrogateescape")] = meta.split()[1].decode()
            before, lfs_paths = dict(files), []
            for op in ops:
                check_path(op.path.rstrip("/") if isinstance(op, DeleteFolder) else op.path)
                if isinstance(op, Put):
                    _check_no_clash(files, op.path)
                    files[op.path] = op.blob
                    if op.lfs:
                        lfs_paths.append(op.path)
                elif isinstance(op, Delete):
                    if files.pop(op.path, None) is None:
                        raise EntryNotFound(f"A file with this name doesn't exist: {op.path}")
                else:
                    prefix = op.path.strip("/") + "/"
                    doomed = [p for p in files if p.startswith(prefix) or prefix == "/"]
                    if not doomed:
                        raise EntryNotFound(f"A folder with this name doesn't exist: {op.path}")
                    for p in doomed:
                        del files[p]
            self._cover_lfs_paths(files, [p for p in lfs_paths if files.get(p)])
            lines = [f"0 {ZERO}\t{p}" for p in before if p not in files]
            lines += [f"100644 {b}\t{p}" for p, b in files.items() if before.get(p) != b]
            if lines:
                data = "".join(line + "\0" for line in lines).encode("utf-8", "surrogateescape")
                self.git("update-index", "-z", "--index-info", input=data, env=env)
            return self.git("write-tree", env=env).decode().strip()

    def _cover_lfs_paths(self, files: dict[str, str], lfs_paths: list[str]) -> None:
        """Make .gitattributes route every LFS file through LFS, so git clients see pointers as such."""
        if not lfs_paths:
            return
        text = self.read(files[".gitattributes"]).decode("utf-8", "replace") if ".gitattributes" in files else ""
        rules = LfsRules(text)
        missing = [p for p in lfs_paths if p not in rules]
        if missing:
            text = (text if not text or text.endswith("\n") else text + "\n") + "".join(
                LfsRules.line_for(p) + "\n" for p in missing)
            files[".gitattributes"] = self.write_blob(text.encode())


class GitError(StorageError):
    def __init__(self, message: str, returncode: int, stderr: str):
        super().__init__(message)
        self.returncode, self.stderr = returncode, stderr


def _check_no_clash(files: dict[str, str], path: str) -> None:
    parts = path.split("/")
    for i in range(1, len(parts)):
        if "/".join(parts[:i]) in files:
            raise Invalid(f"Cannot add {path}: {'/'.join(parts[:i])} is a file in this revision")
    prefix = path + "/"
    if any(p.startswith(prefix) for p in files):
        raise Invalid(f"Cannot add the file {path}: a folder of that name exists in this revision")


def default_gitattributes(repo_type: str) -> bytes:
    patterns = DEFAULT_LFS_PATTERNS + (DATASET_LFS_PATTERNS if repo_type == "dataset" else [])
    return "".join(f"{p} {LFS_ATTRS}\n" for p in patterns).encode()


class Storage:
    """All repositories and the LFS store under one home directory."""

    def __init__(self, home: Path, lfs_threshold: int = LFS_THRESHOLD):
        self.home, self.lfs_threshold = Path(home), lfs_threshold
        self.lfs = LfsStore(self.home / "lfs")

    def path(self, repo_type: str, namespace: str, name: str) -> Path:
        return self.home / "repos" / API_SEGMENT[repo_type] / namespace / f"{name}.git"

    def repo(self, repo_type: str, namespace: str, name: str) -> GitRepo:
        return GitRepo(self.path(repo_type, namespace, name), self.lfs)

    def create(self, repo_type: str, namespace: str, name: str, author: Identity) -> GitRepo:
        """A new bare repository with the Hub's "initial commit" (a default .gitattributes).

        Raises:
            Conflict: the repository exists.
        """
        path = self.path(repo_type, namespace, name)
        if path.exists():
            raise Conflict(f"{namespace}/{name} already exists")
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = Path(tempfile.mkdtemp(prefix=f".{name}-", dir=path.parent))
        try:
            subprocess.run(["git", "init", "--quiet", "--bare", "--initial-branch=main", str(tmp)],
                           check=True, capture_output=True)
            repo = GitRepo(tmp, self.lfs)
            repo.git("config", "http.receivepack", "true")  # for git push through smart HTTP
            blob = repo.write_blob(default_gitattributes(repo_type))
            repo.commit("refs/heads/main", [Put(".gitattributes", blob)], "initial commit\n", author, create=True)
            try:
                os.rename(tmp, path)  # appears complete or not at all
            except OSError:
                if path.exists():  # created meanwhile by a concurrent request
                    raise Conflict(f"{namespace}/{name} already exists") from None
                raise
        except BaseException:
            shutil.rmtree(tmp, ignore_errors=True)
            raise
        return GitRepo(path, self.lfs)

    def delete(self, repo_type: str, namespace: str, name: str) -> None:
        """Remove a repository (its LFS objects stay: they may be shared with other repositories)."""
        path = self.path(repo_type, namespace, name)
        if path.exists():
            trash = Path(tempfile.mkdtemp(prefix="deleted-", dir=self.lfs.tmp))
            os.rename(path, trash / path.name)
            shutil.rmtree(trash, ignore_errors=True)

    def move(self, repo_type: str, src: tuple[str, str], dst: tuple[str, str]) -> None:
        target = self.path(repo_type, *dst)
        if target.exists():
            raise Conflict(f"{dst[0]}/{dst[1]} already exists")
        target.parent.mkdir(parents=True, exist_ok=True)
        os.rename(self.path(repo_type, *src), target)
