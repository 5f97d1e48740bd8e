"""The peluk hub: a self-hosted Hugging Face Hub that unmodified huggingface_hub, transformers
and git clients can use (../shared/specs/hub-protocol.md).

    storage.py   bare git repositories + LFS objects (git plumbing, compare-and-swap refs)
    db.py        users, tokens, repository metadata in SQLite or PostgreSQL
    auth.py      users and tokens (create_user, create_token), access rules, signed URLs
    cards.py     README.md front matter → cardData, validation, search tags
    service.py   Hub: storage + metadata + access rules, the API every front end goes through
    protocol.py  the Hub's wire shapes (JSON fields, error codes, dates, NDJSON commits, LFS batch)
    handlers.py  the Hub API endpoints;  lfs.py: the Git LFS batch API endpoints
    git_http.py  git smart HTTP (clone, fetch, push) through git http-backend, on the same port
    git_hooks.py the pre-receive checks of a push (LFS objects present, no large non-LFS files, refs)
    app.py       create_app(home) → the ASGI app;  serve(home, port=8000) runs it with uvicorn
    defaults.py  the models that come with peluk, imported as repositories on the first start
    cli.py       `peluk hub serve | user | token | import-defaults`
"""
