"""``peluk hub serve`` on loopback: a large file through the API vs a plain copy; many small readers.

1. Transfer: a ``--size-mb`` (1024) file of random bytes uploaded with huggingface_hub's
   ``HfApi.upload_file`` (``HF_HUB_DISABLE_XET=1``, the hub answering "lfs": preupload, LFS batch,
   PUT, verify, commit; the client's sha256 of the file included) and downloaded with
   ``hf_hub_download`` into a fresh cache, vs ``shutil.copyfile`` of the same file on the same
   disk (and the copy followed by fsync, as the hub fsyncs what it stores). Contenders
   alternate within each of ``--repeats``; medians. Every upload is new content (its first bytes
   change), so nothing is deduplicated.
2. Small files: ``--clients`` (64) concurrent clients (asyncio + httpx2, one connection each)
   GET ``/resolve/main/<path>`` of ``--files`` regular git files of 1-10 KB for ``--seconds`` (30):
   requests/s, p50 and p99 latency, errors.

Targets (issue 6 §9): upload and download each >= 0.7x the plain copy's speed; zero errors.

    .venv/bin/python bench/hub.py [--size-mb 1024] [--repeats 3] [--seconds 30] [--clients 64] [--json]
    .venv/bin/python bench/hub.py --size-mb 64 --repeats 1 --seconds 3 --clients 8    # a quick run

The hub is a subprocess (``python -m peluk.serve.hub.cli serve --lfs-uploads always``: with
"auto", huggingface_hub >= 1.1 would be told to send large files inline); the clients run in this
process on the same machine. Each row also gives the CPU seconds spent here and in the hub (its
git processes included), which stay meaningful when other jobs share the machine. Files go under ``--dir`` (default: the temporary folder), which
needs about 4x ``--size-mb`` free; everything is removed at the end.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import random
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

os.environ["HF_HUB_DISABLE_XET"] = "1"  # before huggingface_hub is imported: uploads go through Git LFS
os.environ["HF_HUB_DISABLE_TELEMETRY"] = "1"
os.environ["HF_HUB_DISABLE_PROGRESS_BARS"] = "1"

ROOT = Path(__file__).resolve().parents[1]
TARGET = 0.7


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@dataclass
class Hub:
    url: str
    home: Path
    token: str
    pid: int


@contextmanager
def hub_server(home: Path):
    """``peluk hub serve`` in a subprocess on loopback, answering "lfs" to preupload; stopped on exit."""
    import httpx2

    url, log = f"http://127.0.0.1:{(port := free_port())}", home.parent / "hub.log"
    argv = [sys.executable, "-m", "peluk.serve.hub.cli", "serve", "--home", str(home), "--port", str(port),
            "--no-defaults", "--lfs-uploads", "always", "--log-level", "warning"]
    with open(log, "wb") as out:
        proc = subprocess.Popen(argv, cwd=ROOT, stdout=out, stderr=subprocess.STDOUT)
    try:
        deadline = time.time() + 60
        while True:
            if proc.poll() is not None or time.time() > deadline:
                raise RuntimeError(f"the hub did not start: {log.read_text()[-2000:]}")
            try:
                if httpx2.get(url + "/api/models", timeout=5).status_code == 200:
                    break
            except httpx2.TransportError:
                time.sleep(0.2)
        yield Hub(url, home, (home / "admin_token").read_text().strip(), proc.pid)
    finally:
        proc.terminate()
        try:
            proc.wait(30)
        except subprocess.TimeoutExpired:
            proc.kill()


def random_file(path: Path, size: int) -> None:
    with open(path, "wb") as f:
        for start in range(0, size, 1 << 24):
            f.write(os.urandom(min(1 << 24, size - start)))


def cpu_seconds(pid: int | None = None) -> float:
    """CPU time (user + system, waited-for children included) of this process or of ``pid`` (Linux)."""
    if pid is None:
        return sum(os.times()[:4])
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return sum(int(f) for f in fields[11:15]) / os.sysconf("SC_CLK_TCK")


def timed(fn, hub_pid: int) -> dict:
    """Wall time of ``fn()``, and the CPU time it took here and in the hub."""
    before = time.perf_counter(), cpu_seconds(), cpu_seconds(hub_pid)
    fn()
    after = time.perf_counter(), cpu_seconds(), cpu_seconds(hub_pid)
    return dict(zip(("seconds", "client_cpu", "hub_cpu"), (b - a for a, b in zip(before, after))))


def transfer(hub: Hub, work: Path, size: int, repeats: int, log) -> dict:
    """Per contender (upload, download, copy, copy + fsync), a ``timed`` dict per repeat."""
    from huggingface_hub import HfApi, hf_hub_download

    api = HfApi(endpoint=hub.url, token=hub.token)
    repo_id = api.create_repo("big").repo_id
    source, copy, cache = work / "source.bin", work / "copy.bin", work / "hf-cache"

    def copy_file(sync: bool):
        shutil.copyfile(source, copy)
        if sync:
            with open(copy, "rb+") as f:
                os.fsync(f.fileno())

    def upload(name: str):
        api.upload_file(path_or_fileobj=str(source), path_in_repo=name, repo_id=repo_id)

    def download(name: str):
        path = hf_hub_download(repo_id, name, endpoint=hub.url, token=hub.token, cache_dir=cache)
        assert os.path.getsize(path) == source.stat().st_size
        shutil.rmtree(cache)

    def drop_stored():  # the bench's own hub: its LFS objects go, to keep memory and disk use flat
        shutil.rmtree(hub.home / "lfs" / "objects", ignore_errors=True)

    random_file(source, 1 << 20)  # warm up the code paths and connections on 1 MiB
    upload("warm-up.bin")
    download("warm-up.bin")
    drop_stored()
    random_file(source, size)
    runs: dict[str, list[dict]] = {"copy": [], "copy + fsync": [], "upload": [], "download": []}
    for i in range(repeats):
        with open(source, "rb+") as f:  # new content each repeat: the hub must store it again
            f.write(f"repeat {i:08d} {time.time():.6f}".encode())
        name = f"big-{i}.bin"
        contenders = [("copy", lambda: copy_file(False)), ("upload", lambda: upload(name)),
                      ("copy + fsync", lambda: copy_file(True)), ("download", lambda: download(name))]
        if i % 2:  # alternate which of each pair goes first
            contenders = [contenders[1], contenders[0], contenders[3], contenders[2]]
        for contender, fn in contenders:
            run = timed(fn, hub.pid)
            runs[contender].append(run)
            copy.unlink(missing_ok=True)
            log(f"repeat {i + 1}/{repeats}: {contender:13s} {run['seconds']:7.2f} s  "
                f"{size / run['seconds'] / 2**20:8.1f} MiB/s  CPU s: here {run['client_cpu']:5.2f}, "
                f"hub {run['hub_cpu']:5.2f}")
        drop_stored()
    source.unlink()
    return runs


def small_files_repo(hub: Hub, count: int) -> list[str]:
    """A repository of ``count`` regular files of 1-10 KB in a few folders, in one commit."""
    from huggingface_hub import CommitOperationAdd, HfApi

    api, rng = HfApi(endpoint=hub.url, token=hub.token), random.Random(0)
    repo_id = api.create_repo("small").repo_id
    paths = [f"{['', 'data/', 'data/shards/', 'configs/'][i % 4]}file-{i:04d}.{['json', 'txt', 'py'][i % 3]}"
             for i in range(count)]
    api.create_commit(repo_id, [CommitOperationAdd(p, rng.randbytes(rng.randint(1024, 10240))) for p in paths],
                      commit_message="small files")
    return [f"/{repo_id}/resolve/main/{p}" for p in paths]


async def readers(url: str, token: str, urls: list[str], clients: int, seconds: float) -> dict:
    """``clients`` loops of GET on ``urls`` for ``seconds``: requests/s and latency percentiles."""
    import httpx2

    latencies, errors = [], []
    limits = httpx2.Limits(max_connections=clients, max_keepalive_connections=clients)
    async with httpx2.AsyncClient(base_url=url, timeout=60, limits=limits,
                                  headers={"authorization": f"Bearer {token}"}) as http:
        deadline = time.perf_counter() + seconds

        async def client(k: int):
            i = k
            while time.perf_counter() < deadline:
                started = time.perf_counter()
                try:
                    r = await http.get(urls[i % len(urls)])
                    ok = r.status_code == 200 and len(r.content) >= 1024
                except httpx2.HTTPError as e:
                    ok, r = False, e
                if ok:
                    latencies.append(time.perf_counter() - started)
                else:
                    errors.append(str(getattr(r, "status_code", r)))
                i += clients
        began = time.perf_counter()
        await asyncio.gather(*(client(k) for k in range(clients)))
        elapsed = time.perf_counter() - began
    latencies.sort()

    def pick(q: float) -> float:
        return latencies[min(len(latencies) - 1, int(q * len(latencies)))] * 1000 if latencies else float("nan")
    return {"clients": clients, "seconds": round(elapsed, 2), "requests": len(latencies), "errors": len(errors),
            "error_kinds": sorted(set(errors))[:5], "rps": len(latencies) / elapsed, "p50_ms": pick(0.50),
            "p99_ms": pick(0.99)}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--size-mb", type=int, default=1024, dest="size_mb", help="the large file, in MiB")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--seconds", type=float, default=30.0, help="of the small-file load")
    parser.add_argument("--clients", type=int, default=64)
    parser.add_argument("--files", type=int, default=200, help="small files in the repository read")
    parser.add_argument("--only", choices=["transfer", "small"])
    parser.add_argument("--dir", type=Path, default=None, help="where the hub and the files go (one disk)")
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    log = (lambda *a: None) if args.json else (lambda *a: print(*a, flush=True))
    size = args.size_mb << 20
    results: dict = {"size_mb": args.size_mb, "repeats": args.repeats, "load_average": os.getloadavg()}
    with tempfile.TemporaryDirectory(prefix="peluk-bench-hub-", dir=args.dir) as tmp, \
            hub_server(Path(tmp) / "hub") as hub:
        if args.only in (None, "transfer"):
            runs = transfer(hub, Path(tmp), size, args.repeats, log)
            results["transfer"] = {name: {key: statistics.median(r[key] for r in rows) for key in rows[0]}
                                   for name, rows in runs.items()}
            for name, row in results["transfer"].items():
                row.update(mib_per_s=size / row["seconds"] / 2**20, all_seconds=[r["seconds"] for r in runs[name]])
            median = {name: row["seconds"] for name, row in results["transfer"].items()}
            results["ratios"] = {f"{op} / copy": median["copy"] / median[op] for op in ("upload", "download")}
            results["ratios"].update({f"{op} / copy + fsync": median["copy + fsync"] / median[op]
                                      for op in ("upload", "download")})
        if args.only in (None, "small"):
            urls = small_files_repo(hub, args.files)
            hub_cpu = cpu_seconds(hub.pid)
            results["small_files"] = asyncio.run(readers(hub.url, hub.token, urls, args.clients, args.seconds))
            s = results["small_files"]
            s["hub_cpu_ms_per_request"] = (cpu_seconds(hub.pid) - hub_cpu) * 1000 / max(s["requests"], 1)
    if args.json:
        print(json.dumps(results, indent=1))
        return 0
    print(f"\nload average at the start: {' '.join(f'{x:.2f}' for x in results['load_average'])}")
    if "transfer" in results:
        print(f"{args.size_mb} MiB file, median of {args.repeats}:")
        for name, row in results["transfer"].items():
            print(f"  {name:13s} {row['seconds']:7.2f} s  {row['mib_per_s']:8.1f} MiB/s  "
                  f"CPU s: here {row['client_cpu']:5.2f}, hub {row['hub_cpu']:5.2f}")
        for name, ratio in results["ratios"].items():
            verdict = "" if "fsync" in name else f"  (target >= {TARGET}x: {'met' if ratio >= TARGET else 'NOT met'})"
            print(f"  {name:24s} {ratio:5.2f}x{verdict}")
    if "small_files" in results:
        s = results["small_files"]
        print(f"\n{s['clients']} clients reading {args.files} files of 1-10 KB for {s['seconds']} s: {s['rps']:.1f} "
              f"requests/s, p50 {s['p50_ms']:.1f} ms, p99 {s['p99_ms']:.1f} ms, errors {s['errors']} "
              f"{s['error_kinds'] or ''}(hub CPU {s['hub_cpu_ms_per_request']:.2f} ms a request)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
