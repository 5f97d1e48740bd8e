"""The hub from the command line (subcommands of ``peluk``; ``peluk.cli`` registers them).

    peluk download REPO [FILES...] [--revision R] [--repo-type T] [--local-dir D]   into the shared cache
    peluk upload PATH REPO [--repo-type T] [--private] [--message M] [--revision B]  a folder (or a file)
    peluk repo create REPO [--repo-type T] [--private] [--exist-ok]
    peluk repo ls [--repo-type T] [--search S] [--author A] [--filter TAG]... [--limit N]
    peluk repo info REPO [--repo-type T] [--revision R]
    peluk repo delete REPO [--repo-type T] --yes
    peluk login [--token T]                                                         saved to $HF_HOME/token

Each prints a short summary, or one JSON document with ``--json``. The hub is ``$PELUK_ENDPOINT``
(default http://127.0.0.1:8000); the token ``$PELUK_TOKEN`` or the one ``peluk login`` saved.
"""

from __future__ import annotations

import json
import sys


def _size(n: int) -> str:
    for unit in ("B", "kB", "MB", "GB"):
        if n < 1000 or unit == "GB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1000
    return ""


def cmd_download(args) -> int:
    from peluk.hub_api import HubClient

    snap = HubClient().snapshot(args.repo, revision=args.revision, repo_type=args.repo_type, files=args.files or None,
                                local_dir=args.local_dir)
    if args.json:
        print(json.dumps({"repo_id": snap.repo_id, "repo_type": snap.repo_type, "revision": snap.revision,
                          "commit": snap.commit, "path": str(snap.path), "files": snap.files}))
        return 0
    total = sum((snap.path / f).stat().st_size for f in snap.files)
    print(f"{snap.repo_id} at {snap.revision} (commit {snap.commit[:12]}): {len(snap.files)} files, {_size(total)}")
    print(snap.path / snap.files[0] if args.files and len(snap.files) == 1 else snap.path)
    return 0


def cmd_upload(args) -> int:
    from peluk.hub_api import HubClient

    options = {"commit_message": args.message} if args.message else {}
    info = HubClient().push_to_hub(args.path, args.repo, repo_type=args.repo_type, private=args.private,
                                   revision=args.revision, path_in_repo=args.path_in_repo or "", **options)
    if args.json:
        print(json.dumps({"repo_id": info.repo_id, "repo_type": args.repo_type, "commit": info.oid,
                          "commit_url": info.commit_url, "files": info.files, "unchanged": info.unchanged}))
    elif info.files:
        print(f"Uploaded {len(info.files)} file(s) to {info.repo_id} ({len(info.unchanged)} unchanged): "
              f"commit {info.oid[:12]}\n{info.commit_url}")
    else:
        print(f"Nothing to upload: {info.repo_id} already has these {len(info.unchanged)} file(s) "
              f"(commit {info.oid[:12]})")
    return 0


def cmd_repo(args) -> int:
    from peluk.hub_api import HubClient

    client, kind = HubClient(), args.repo_type
    if args.repo_command == "create":
        url = client.create_repo(args.repo, repo_type=kind, private=args.private, exist_ok=args.exist_ok)
        _out(args, {"url": url, "repo_type": kind, "private": args.private}, f"{url}" + (" (private)" * args.private))
    elif args.repo_command == "ls":
        lister = client.list_datasets if kind == "dataset" else client.list_models
        repos = lister(search=args.search, author=args.author, filter=args.filter, limit=args.limit)
        lines = [f"{r['id']:50s} {r.get('lastModified', '')[:10]}  {r.get('downloads', 0):>7} downloads"
                 + ("  private" if r.get("private") else "") for r in repos]
        _out(args, repos, "\n".join(lines) or f"no {kind} repositories found")
    elif args.repo_command == "info":
        info = client.repo_info(args.repo, repo_type=kind, revision=args.revision)
        card = info.get("cardData") or {}
        lines = [f"{info['id']} ({kind}{', private' if info.get('private') else ''})",
                 f"  commit         {info.get('sha')}", f"  last modified  {info.get('lastModified')}"]
        keys = ("pipeline_tag", "library_name", "license", "base_model")
        lines += [f"  {k:14s} {card[k]}" for k in keys if card.get(k)]
        files = [s["rfilename"] for s in info.get("siblings") or []]
        lines.append(f"  files ({len(files)}): " + ", ".join(files))
        _out(args, info, "\n".join(lines))
    else:  # delete
        if not args.yes:
            print(f"peluk repo delete: this deletes {kind} {args.repo} and its history for good; "
                  "run again with --yes", file=sys.stderr)
            return 2
        client.delete_repo(args.repo, repo_type=kind)
        _out(args, {"deleted": args.repo, "repo_type": kind}, f"Deleted {kind} {args.repo}")
    return 0


def cmd_login(args) -> int:
    from peluk import hub
    from peluk.hub_api import login

    token = args.token
    if token is None:
        import getpass

        token = getpass.getpass("Token: ") if sys.stdin.isatty() else sys.stdin.readline()
    name = login(token)
    _out(args, {"name": name, "endpoint": hub.endpoint(), "token_path": str(hub.token_path())},
         f"Logged in to {hub.endpoint()} as {name}; token saved to {hub.token_path()}")
    return 0


def _out(args, data, text: str) -> None:
    print(json.dumps(data) if args.json else text)


COMMANDS = {"download": cmd_download, "upload": cmd_upload, "repo": cmd_repo, "login": cmd_login}


def add_parsers(sub) -> None:
    """Register ``download``, ``upload``, ``repo`` and ``login`` on ``peluk``'s subparsers."""
    def kind(p):
        p.add_argument("--repo-type", dest="repo_type", choices=["model", "dataset", "space"], default="model")

    download = sub.add_parser("download", help="download a hub repository (or some of its files) into the cache")
    download.add_argument("repo", help="owner/name")
    download.add_argument("files", nargs="*", help="paths in the repository (default: all of them)")
    download.add_argument("--revision", help="branch, tag or commit (default: main)")
    download.add_argument("--local-dir", dest="local_dir", help="also copy the files into this folder")
    upload = sub.add_parser("upload", help="upload a folder (or a file) to a hub repository, creating it if needed")
    upload.add_argument("path", help="a folder or a file")
    upload.add_argument("repo", help="owner/name (or name, in your own namespace)")
    upload.add_argument("--private", action="store_true", help="create the repository private")
    upload.add_argument("--message", "-m", help="commit message")
    upload.add_argument("--revision", default="main", help="branch to commit to (default: main)")
    upload.add_argument("--path-in-repo", dest="path_in_repo", help="where in the repository (default: its root)")
    repo = sub.add_parser("repo", help="create, list, describe or delete hub repositories")
    actions = repo.add_subparsers(dest="repo_command", required=True)
    create = actions.add_parser("create", help="create a repository")
    create.add_argument("repo", help="owner/name (or name, in your own namespace)")
    create.add_argument("--private", action="store_true")
    create.add_argument("--exist-ok", dest="exist_ok", action="store_true", help="no error if it exists")
    ls = actions.add_parser("ls", help="list and search repositories")
    ls.add_argument("--search", help="text in the name")
    ls.add_argument("--author", help="owner")
    ls.add_argument("--filter", action="append", help="a tag (pipeline tag, library, license:x...); repeatable")
    ls.add_argument("--limit", type=int, default=50)
    info = actions.add_parser("info", help="a repository's commit, card metadata and files")
    info.add_argument("repo")
    info.add_argument("--revision")
    delete = actions.add_parser("delete", help="delete a repository and its history")
    delete.add_argument("repo")
    delete.add_argument("--yes", action="store_true", help="really delete it")
    login = sub.add_parser("login", help="save a hub token (checked with the hub) for peluk and huggingface_hub")
    login.add_argument("--token", help="the token (default: asked for, or read from stdin)")
    for p in (download, upload, create, ls, info, delete):
        kind(p)
    for p in (download, upload, create, ls, info, delete, login):
        p.add_argument("--json", action="store_true", help="print JSON instead of text")
