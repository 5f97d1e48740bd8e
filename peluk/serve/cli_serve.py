"""``peluk serve``: the hub, the inference API (and later the web pages) in one process.

    peluk serve [--host 127.0.0.1] [--port 8000] [--home DIR] [--models NAME ...] [--public]
                [--memory-budget MB] [--quantize ID=int8|int4|none ...] [--rate-limit N] ...

``add_parser(subparsers)`` registers it in the ``peluk`` command; ``cmd_serve(args)`` runs it.
Heavy imports (FastAPI, uvicorn, torch) happen in ``cmd_serve`` only.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path


def add_parser(subparsers) -> argparse.ArgumentParser:
    serve = subparsers.add_parser("serve", help="serve the hub and an inference API (HF Inference, OpenAI, TGI, TEI)")
    serve.add_argument("--host", default="127.0.0.1", help="address to listen on (0.0.0.0: every interface)")
    serve.add_argument("--port", type=int, default=8000)
    serve.add_argument("--home", type=Path, default=None, help="the hub's data folder (default: ~/.peluk/hub)")
    serve.add_argument("--db", default=None, help="postgresql://... for PostgreSQL (default: SQLite HOME/hub.db)")
    serve.add_argument("--models", nargs="+", default=[], metavar="NAME",
                       help="models to serve and preload: built-in names, repo ids of this hub, local paths "
                            "(served as local/<folder>) or ID=PATH (default: the packaged models)")
    serve.add_argument("--public", action="store_true", help="anonymous callers may use public models")
    serve.add_argument("--memory-budget", type=float, default=4096, dest="memory_budget", metavar="MB",
                       help="keep loaded models' weights under this many MB (least recently used evicted)")
    serve.add_argument("--quantize", action="append", default=[], metavar="ID=MODE",
                       help="per model: int8 or int4 (weight-only, decoder LMs), bf16, or none (float32; a GGUF "
                            "file is served quantized as stored unless told otherwise)")
    serve.add_argument("--no-preload", action="store_false", dest="preload", help="load models on first use only")
    serve.add_argument("--no-batching", action="store_false", dest="batching", help="run every request alone")
    serve.add_argument("--max-batch-size", type=int, default=32, dest="max_batch_size")
    serve.add_argument("--max-wait-ms", type=float, default=5.0, dest="max_wait_ms",
                       help="how long a request may wait for others to share its batch")
    serve.add_argument("--max-running", type=int, default=16, dest="max_rows",
                       help="generation requests decoding together per model (continuous batching)")
    serve.add_argument("--max-queue", type=int, default=256, dest="max_queue",
                       help="inputs waiting per model before 429 Too Many Requests")
    serve.add_argument("--max-new-tokens", type=int, default=1024, dest="max_new_tokens")
    serve.add_argument("--timeout", type=float, default=120.0, dest="request_timeout_s", help="seconds per request")
    serve.add_argument("--rate-limit", type=float, default=0.0, dest="rate_limit_per_minute", metavar="N",
                       help="requests a minute per token (or client address); 0: no limit")
    serve.add_argument("--max-request-bytes", type=int, default=2 * 1024 * 1024, dest="max_request_bytes")
    serve.add_argument("--cache-entries", type=int, default=1024, dest="cache_entries",
                       help="answers kept for identical deterministic requests (0: no cache)")
    serve.add_argument("--no-defaults", action="store_false", dest="import_defaults",
                       help="do not import the default models into an empty hub")
    serve.add_argument("--threads", type=int, default=None,
                       help="torch's threads per operation (default: torch's, one per core; fewer on a shared machine)")
    serve.add_argument("--log-level", default="info", dest="log_level", help="uvicorn's log level")
    return serve


def cmd_serve(args) -> int:
    import logging

    try:
        import uvicorn

        from peluk.serve.api.settings import Settings
        from peluk.serve.app import create_app
        from peluk.serve.hub.cli import default_home
        from peluk.serve.hub.defaults import import_on_first_start
    except ImportError as e:
        print(f"peluk serve: {e.name} is missing; install the serve extra: pip install 'peluk[serve]'", file=sys.stderr)
        return 2
    quantize = {}
    for item in args.quantize:
        model_id, _, mode = item.rpartition("=")
        if not model_id or mode not in ("int8", "int4", "bf16", "none"):
            print(f"peluk serve: --quantize takes ID=int8|int4|bf16|none, not {item!r}", file=sys.stderr)
            return 2
        quantize[model_id] = mode
    for name in ("peluk.hub", "peluk.serve"):  # notices (admin created, models loaded), unprefixed
        logger = logging.getLogger(name)
        if not logger.handlers:
            handler = logging.StreamHandler()
            handler.setFormatter(logging.Formatter("%(message)s"))
            logger.addHandler(handler)
            logger.setLevel(logging.INFO)
    settings = Settings(public=args.public, models=list(args.models), preload=args.preload,
                        memory_budget_mb=args.memory_budget, quantize=quantize, batching=args.batching,
                        max_batch_size=args.max_batch_size, max_wait_ms=args.max_wait_ms, max_rows=args.max_rows,
                        max_queue=args.max_queue, max_new_tokens=args.max_new_tokens,
                        request_timeout_s=args.request_timeout_s, rate_limit_per_minute=args.rate_limit_per_minute,
                        max_request_bytes=args.max_request_bytes, cache_entries=args.cache_entries)
    if args.threads:
        import torch

        torch.set_num_threads(args.threads)
    home = args.home or default_home()
    app = create_app(home, settings, db_url=args.db)
    hub = app.state.hub
    print(f"peluk serve: data in {hub.home}")
    if hub.admin_token_path:
        print(f"peluk serve: first start: the admin's token is in {hub.admin_token_path} (keep it secret)")
    if args.import_defaults:
        t0 = time.perf_counter()
        results = import_on_first_start(hub)
        done = [r["repo"] for r in results or [] if r["status"] == "imported"]
        if done:
            print(f"peluk serve: imported the default models in {time.perf_counter() - t0:.1f}s: {', '.join(done)}")
    url = f"http://{args.host}:{args.port}"
    access = "anyone may use public models" if args.public else "requests need a hub token (--public: anonymous too)"
    print(f"peluk serve: serving on {url}  (web UI {url}/ and playground {url}/playground; hub: "
          f"HF_ENDPOINT={url}; inference: {url}/models/OWNER/NAME, OpenAI base_url {url}/v1, docs {url}/docs; "
          f"{access})", flush=True)
    uvicorn.run(app, host=args.host, port=args.port, log_level=args.log_level, timeout_graceful_shutdown=30)
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="peluk")
    add_parser(parser.add_subparsers(dest="command", required=True))
    return cmd_serve(parser.parse_args(["serve", *(sys.argv[1:] if argv is None else argv)]))


if __name__ == "__main__":
    sys.exit(main())
