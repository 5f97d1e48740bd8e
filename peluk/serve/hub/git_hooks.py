"""The checks a ``git push`` must pass before its refs move: git's pre-receive hook for the hub.

``git receive-pack`` (run by ``git http-backend``, see ``git_http.py``) calls the hook written
by ``install`` with the pushed objects still in quarantine and one ``<old> <new> <ref>`` line per
ref on stdin; a non-zero exit rejects the whole push and the messages on stderr reach the user
as ``remote: ...`` lines. What is refused, and why:

* refs other than branches and tags (and updates of existing ``refs/pr/N``): the hub shows no others;
* deleting ``main``, as the API refuses it; a branch pointing at something that is not a commit;
* a file stored as an LFS pointer whose object is not in the hub's LFS store: git-lfs uploads
  the objects through the batch API before it pushes, so a missing one means a push without
  git-lfs (the file would be unreadable for everyone);
* a regular (non-LFS) file above the hub's LFS threshold, as the Hugging Face Hub refuses it;
* a path the API would reject (``check_path``); git's own fsck already refuses ``.git`` and ``..``.

Force pushes (non-fast-forward updates) are allowed, as on the Hugging Face Hub: the pusher
holds a write token for the namespace, and rewritten history leaves the hub consistent.

The hook needs the LFS store and threshold: ``PELUK_HUB_LFS`` (the ``lfs`` folder) and
``PELUK_HUB_LFS_THRESHOLD`` in its environment (git passes the backend's environment on).
"""

from __future__ import annotations

import os
import shlex
import subprocess
import sys
from pathlib import Path

from peluk.serve.hub.storage import (MAX_POINTER_SIZE, SHA1, ZERO, Invalid, LfsStore, check_path, parse_pointer,
                                     valid_ref_name)

HOOK = "pre-receive"


def install(hooks: Path) -> Path:
    """Write (or refresh) the hook script in ``hooks``; returns the folder for ``core.hooksPath``."""
    hooks.mkdir(parents=True, exist_ok=True)
    package_root = Path(__file__).resolve().parents[3]  # so the hook imports this peluk, installed or not
    script = ("#!/bin/sh\n# Written by the peluk hub (peluk/serve/hub/git_hooks.py): checks a push before it lands.\n"
              f"PYTHONPATH={shlex.quote(str(package_root))}${{PYTHONPATH:+:$PYTHONPATH}} "
              f"exec {shlex.quote(sys.executable)} -m peluk.serve.hub.git_hooks {HOOK}\n")
    path = hooks / HOOK
    if not path.exists() or path.read_text() != script:
        tmp = hooks / f".{HOOK}.{os.getpid()}"
        tmp.write_text(script)
        tmp.chmod(0o755)
        os.replace(tmp, path)
    return hooks


def _git(*args: str, input: bytes | None = None) -> bytes:
    return subprocess.run(["git", *args], input=input, capture_output=True, check=True).stdout


def check_updates(updates: list[tuple[str, str, str]], lfs: LfsStore, threshold: int) -> list[str]:
    """Why a push of ``updates`` ((old, new, ref) each) must be refused; [] when it may land.

    Runs inside the repository being pushed to (git sets GIT_DIR and the quarantine).
    """
    errors, tips = [], []
    for old, new, ref in updates:
        kind, _, name = ref.removeprefix("refs/").partition("/")
        if ref.startswith("refs/pr/"):
            if old == ZERO or new == ZERO or not name.isdigit():
                errors.append(f"{ref}: pull request refs cannot be created or deleted by a push")
                continue
        elif kind not in ("heads", "tags") or not valid_ref_name(name):
            errors.append(f"{ref}: the hub only accepts branches (refs/heads/...) and tags (refs/tags/...)")
            continue
        if new == ZERO:
            if ref == "refs/heads/main":
                errors.append("refs/heads/main: the main branch cannot be deleted")
            continue
        if not SHA1.fullmatch(new):
            errors.append(f"{ref}: {new!r} is not an object id")
            continue
        if kind != "tags" and _git("cat-file", "-t", new).strip() != b"commit":
            errors.append(f"{ref}: a branch must point at a commit")
            continue
        tips.append(new)
    if errors or not tips:
        return errors
    # The objects this push adds (those reachable from the new tips but from no existing ref).
    listed = _git("rev-list", "--objects", *tips, "--not", "--all").decode("utf-8", "surrogateescape").splitlines()
    paths = dict(line.split(" ", 1) if " " in line else (line, "") for line in listed)
    for path in filter(None, paths.values()):
        try:
            check_path(path)
        except Invalid as e:
            errors.append(str(e))
    meta = _git("cat-file", "--batch-check=%(objectname) %(objecttype) %(objectsize)",
                input="".join(f"{oid}\n" for oid in paths).encode()).decode().split("\n")
    small = []
    for line in filter(None, meta):
        oid, kind, size = line.split()
        if kind != "blob":
            continue
        if int(size) <= MAX_POINTER_SIZE:
            small.append(oid)
        elif int(size) > threshold:
            errors.append(f"{paths[oid]} is {int(size):,} bytes: files above {threshold:,} bytes must be stored with "
                          f'Git LFS. Run `git lfs install`, `git lfs track "{paths[oid]}"` and commit again (or '
                          f'`git lfs migrate import --include="{paths[oid]}"` for earlier commits)')
    if small:
        out, pos = _git("cat-file", "--batch", input="".join(f"{oid}\n" for oid in small).encode()), 0
        for oid in small:
            header_end = out.index(b"\n", pos)
            size = int(out[pos:header_end].split()[2])
            pointer = parse_pointer(out[header_end + 1:header_end + 1 + size])
            pos = header_end + 1 + size + 1
            if pointer is not None and lfs.size(pointer.oid) != pointer.size:
                errors.append(f"{paths[oid]}: its Git LFS object {pointer.oid} ({pointer.size:,} bytes) is not on the "
                              "hub. Install git-lfs (`git lfs install`) and push again: git-lfs uploads the objects "
                              "before the commits")
    return errors


def main(argv: list[str]) -> int:
    if argv != [HOOK]:
        print(f"usage: python -m peluk.serve.hub.git_hooks {HOOK}  (run by git receive-pack)", file=sys.stderr)
        return 2
    updates = [tuple(line.split()) for line in sys.stdin.read().splitlines() if line.strip()]
    lfs = LfsStore(Path(os.environ["PELUK_HUB_LFS"]))
    errors = check_updates(updates, lfs, int(os.environ["PELUK_HUB_LFS_THRESHOLD"]))
    for e in errors:
        print(f"peluk hub: push rejected: {e}", file=sys.stderr)
    return 1 if errors else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
