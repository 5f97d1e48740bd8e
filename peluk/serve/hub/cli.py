"""``peluk hub``: run the hub, manage its users and tokens.

    peluk hub serve [--host 127.0.0.1] [--port 8000] [--no-defaults]   run the hub (first start: admin + default models)
    peluk hub user add NAME [--admin] [--fullname F] [--email E]      add a user
    peluk hub user list
    peluk hub token create --user NAME [--role read|write] [--name L]  print a new token (shown once, stored hashed)
    peluk hub token list [--user NAME]                               token ids (a hash prefix), never the tokens
    peluk hub token revoke TOKEN_OR_ID
    peluk hub import-defaults                                        import the default models now (skips existing)

Every command takes ``--home DIR`` (default ``$PELUK_HUB_HOME``, else ``$PELUK_HOME/hub``, else
``~/.peluk/hub``) and ``--db URL`` (default SQLite ``DIR/hub.db``); all but ``serve`` take
``--json``. The first command on a new home creates it with an admin, whose token is written to
``DIR/admin_token``. Users and tokens can be managed while the hub runs.

``add_parsers(subparsers)`` registers ``hub`` in the ``peluk`` command, ``run(args)`` runs it;
``python -m peluk.serve.hub.cli ...`` works too. Heavy imports (FastAPI, uvicorn) happen in
``serve`` only.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from contextlib import contextmanager
from pathlib import Path


def default_home() -> Path:
    if os.environ.get("PELUK_HUB_HOME"):
        return Path(os.environ["PELUK_HUB_HOME"]).expanduser()
    if os.environ.get("PELUK_HOME"):
        return Path(os.environ["PELUK_HOME"]).expanduser() / "hub"
    return Path("~/.peluk/hub").expanduser()


@contextmanager
def _hub(args):
    from peluk.serve.hub.service import Hub

    hub = Hub(args.home, args.db)
    try:
        yield hub
    finally:
        hub.close()


def _emit(args, data, text: str) -> None:
    print(json.dumps(data, ensure_ascii=False) if args.json else text)


def cmd_serve(args) -> int:
    import logging

    try:
        import uvicorn

        from peluk.serve.hub.app import create_app
        from peluk.serve.hub.defaults import import_on_first_start
    except ImportError as e:
        print(f"peluk hub serve: {e.name} is missing; install the serve extra: pip install 'peluk[serve]'",
              file=sys.stderr)
        return 2
    hub_log = logging.getLogger("peluk.hub")
    if not hub_log.handlers:  # the hub's own notices (admin created, leftovers cleaned), unprefixed
        handler = logging.StreamHandler()
        handler.setFormatter(logging.Formatter("%(message)s"))
        hub_log.addHandler(handler)
        hub_log.setLevel(logging.INFO)
    app = create_app(args.home, db_url=args.db, lfs_uploads=args.lfs_uploads)
    hub = app.state.hub
    print(f"peluk hub: data in {hub.home}" + ("" if args.db else f" (metadata: {hub.home / 'hub.db'})"))
    if hub.admin_token_path:
        print(f"peluk hub: first start: the admin's token is in {hub.admin_token_path} (keep it secret)")
    if not args.no_defaults:
        t0 = time.perf_counter()
        results = import_on_first_start(hub)
        done = [r["repo"] for r in results or [] if r["status"] == "imported"]
        if done:
            print(f"peluk hub: imported the default models in {time.perf_counter() - t0:.1f}s: {', '.join(done)}")
    url = f"http://{args.host}:{args.port}"
    print(f"peluk hub: serving on {url}  (clients: HF_ENDPOINT={url}; git clone {url}/OWNER/NAME)", flush=True)
    uvicorn.run(app, host=args.host, port=args.port, log_level=args.log_level)
    return 0


def cmd_user_add(args) -> int:
    from peluk.serve.hub.auth import create_user

    with _hub(args) as hub:
        user = create_user(hub.db, args.name, args.fullname, args.email, admin=args.admin)
    _emit(args, {"name": user.name, "admin": user.is_admin, "fullname": user.fullname, "email": user.email},
          f"peluk hub: added {'admin ' if user.is_admin else ''}user {user.name}; "
          f"give them a token: peluk hub token create --user {user.name} --role write")
    return 0


def cmd_user_list(args) -> int:
    from peluk.serve.hub.auth import list_users

    with _hub(args) as hub:
        users = [{"name": u.name, "admin": u.is_admin, "fullname": u.fullname, "email": u.email}
                 for u in list_users(hub.db)]
    _emit(args, users, "\n".join(f"{u['name']}{'  (admin)' if u['admin'] else ''}" for u in users))
    return 0


def cmd_token_create(args) -> int:
    from peluk.serve.hub.auth import create_token

    with _hub(args) as hub:
        token = create_token(hub.db, args.user, args.role, args.name)
    _emit(args, {"token": token, "user": args.user, "role": args.role, "name": args.name or f"{args.role} token"},
          f"{token}\n(a {args.role} token for {args.user}; it is shown only this once. Clients: "
          f"HfApi(token=...), HF_TOKEN=..., or git with the token as password)")
    return 0


def _tokens(db, user: str | None = None) -> list[dict]:
    rows = db.query("SELECT hash, username, display_name, role, created FROM tokens"
                    + (" WHERE username = ?" if user else "") + " ORDER BY created", (user,) if user else ())
    return [{"id": r["hash"][:12], "user": r["username"], "role": r["role"], "name": r["display_name"],
             "created": r["created"]} for r in rows]


def cmd_token_list(args) -> int:
    with _hub(args) as hub:
        tokens = _tokens(hub.db, args.user)
    _emit(args, tokens, "\n".join(f"{t['id']}  {t['user']:20s} {t['role']:6s} {t['created'][:19]}  {t['name'] or ''}"
                                  for t in tokens) or "no tokens")
    return 0


def cmd_token_revoke(args) -> int:
    from peluk.serve.hub.auth import hash_token

    key = args.token.strip()
    with _hub(args) as hub:
        db = hub.db
        if key.startswith("hf_"):
            found = db.query("SELECT hash FROM tokens WHERE hash = ?", (hash_token(key),))
            matches = [r["hash"] for r in found]
        elif len(key) >= 6 and all(c in "0123456789abcdef" for c in key):
            matches = [r["hash"] for r in db.query("SELECT hash FROM tokens") if r["hash"].startswith(key)]
        else:
            raise ValueError(f"{key!r} is neither a token (hf_...) nor a token id from `peluk hub token list`")
        if len(matches) != 1:
            raise ValueError(f"no token matches {key!r}" if not matches else f"{key!r} matches several tokens")
        db.execute("DELETE FROM tokens WHERE hash = ?", (matches[0],))
    _emit(args, {"revoked": matches[0][:12]}, f"peluk hub: revoked token {matches[0][:12]}")
    return 0


def cmd_import_defaults(args) -> int:
    from peluk.serve.hub.defaults import import_defaults

    with _hub(args) as hub:
        results = import_defaults(hub)
    _emit(args, results, "\n".join(f"{r['repo']}: {r['status']}" for r in results) or "no default model is installed")
    return 0


def add_parsers(subparsers) -> argparse.ArgumentParser:
    """Add ``hub`` (with its subcommands) to the ``peluk`` command's subparsers."""
    hub = subparsers.add_parser("hub", help="run a self-hosted model and dataset hub; manage its users and tokens")
    commands = hub.add_subparsers(dest="hub_command", required=True)

    def command(parent, name: str, func, help: str, json_output: bool = True):
        p = parent.add_parser(name, help=help)
        p.set_defaults(hub_func=func)
        p.add_argument("--home", type=Path, default=None, help="the hub's data folder (default: ~/.peluk/hub)")
        p.add_argument("--db", default=None, help="postgresql://... for PostgreSQL (default: SQLite HOME/hub.db)")
        if json_output:
            p.add_argument("--json", action="store_true", help="print JSON instead of text")
        return p

    serve = command(commands, "serve", cmd_serve, "run the hub (HTTP API and git) until interrupted", False)
    serve.add_argument("--host", default="127.0.0.1", help="address to listen on (0.0.0.0: every interface)")
    serve.add_argument("--port", type=int, default=8000)
    serve.add_argument("--no-defaults", action="store_true", dest="no_defaults",
                       help="do not import the default models into an empty hub")
    serve.add_argument("--lfs-uploads", choices=["auto", "always", "never"], default="auto", dest="lfs_uploads",
                       help="what preupload answers for large files (see peluk.serve.hub.app.create_app)")
    serve.add_argument("--log-level", default="info", dest="log_level", help="uvicorn's log level")

    user = commands.add_parser("user", help="users").add_subparsers(dest="user_command", required=True)
    add = command(user, "add", cmd_user_add, "add a user")
    add.add_argument("name")
    add.add_argument("--admin", action="store_true", help="may read and write every repository")
    add.add_argument("--fullname")
    add.add_argument("--email")
    command(user, "list", cmd_user_list, "list the users")

    token = commands.add_parser("token", help="access tokens").add_subparsers(dest="token_command", required=True)
    create = command(token, "create", cmd_token_create, "create a token and print it (only this once)")
    create.add_argument("--user", required=True)
    create.add_argument("--role", choices=["read", "write"], default="read",
                        help="read: private repositories of the user; write: also create and push")
    create.add_argument("--name", help="a label to recognise the token by")
    listing = command(token, "list", cmd_token_list, "list tokens (ids and labels, never the tokens)")
    listing.add_argument("--user")
    revoke = command(token, "revoke", cmd_token_revoke, "revoke a token (the token itself or its id)")
    revoke.add_argument("token", help="hf_... or an id from `peluk hub token list`")

    command(commands, "import-defaults", cmd_import_defaults, "import the default models (skips existing ones)")
    return hub


def run(args) -> int:
    """Run a parsed ``peluk hub ...`` command; errors become a message and exit status 2."""
    args.home = args.home or default_home()
    try:
        return args.hub_func(args)
    except ValueError as e:  # bad names, unknown users or tokens
        print(f"peluk hub: error: {e}", file=sys.stderr)
        return 2


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="peluk")
    add_parsers(parser.add_subparsers(dest="command", required=True))
    return run(parser.parse_args(["hub", *(sys.argv[1:] if argv is None else argv)]))


if __name__ == "__main__":
    sys.exit(main())
