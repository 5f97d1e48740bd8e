"""Marian translation, beam search: peluk vs transformers, side by side.

A Marian model of opus-mt size (6+6 layers, d_model 512, 8 heads, FFN 2048, vocab 58101) with
random weights from its config (no pretrained weights can be downloaded here), translating 200
English sentences from the shared En–Id corpus with num_beams=4, batch 16, 2 threads, at most
64 new tokens. Source ids come from the packaged MiniLM WordPiece tokenizer (the ids only feed
the encoder; the benchmark measures the model and the search, not a tokenizer). Both libraries
get the same weights; outputs are compared token for token. Contenders alternate per repeat.

    .venv/bin/python bench/seq2seq.py [--repeats 3] [--sentences 200] [--json]
"""

from __future__ import annotations

import argparse
import json
import statistics
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
DATA = ROOT.parent / "shared" / "data" / "en_id_panl_bppt"


def sentences(n: int) -> list[str]:
    files = sorted(DATA.glob("*-EN-*.txt")) if DATA.is_dir() else []
    lines = [l.strip() for f in files for l in f.read_text(errors="ignore").splitlines() if l.strip()]
    if not lines:
        lines = ["The price of rice rose again this week in Jakarta and Surabaya, traders said."] * n
    return lines[:n]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--sentences", type=int, default=200)
    parser.add_argument("--batch", type=int, default=16)
    parser.add_argument("--beams", type=int, default=4)
    parser.add_argument("--max-new-tokens", type=int, default=64, dest="max_new_tokens")
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()

    import torch
    import transformers

    import peluk
    from peluk.pipelines import MINILM, packaged_model

    torch.set_num_threads(2)
    torch.manual_seed(0)
    config = transformers.MarianConfig(vocab_size=58101, d_model=512, encoder_layers=6, decoder_layers=6,
                                       encoder_attention_heads=8, decoder_attention_heads=8, encoder_ffn_dim=2048,
                                       decoder_ffn_dim=2048, max_position_embeddings=512, scale_embedding=True,
                                       pad_token_id=58100, eos_token_id=0, decoder_start_token_id=58100,
                                       forced_eos_token_id=0, activation_function="swish")
    theirs = transformers.MarianMTModel(config).eval()
    with tempfile.TemporaryDirectory() as tmp:
        theirs.save_pretrained(tmp)
        ours = peluk.AutoModelForSeq2SeqLM.from_pretrained(tmp)
    tok = peluk.AutoTokenizer.from_pretrained(packaged_model(MINILM))
    texts = sentences(args.sentences)
    batches = []
    for i in range(0, len(texts), args.batch):
        enc = tok(texts[i:i + args.batch], padding=True, truncation=True, max_length=128, return_tensors="pt")
        ids = enc["input_ids"].masked_fill(enc["attention_mask"] == 0, config.pad_token_id)
        batches.append((ids, enc["attention_mask"]))
    options = dict(num_beams=args.beams, max_new_tokens=args.max_new_tokens, do_sample=False)

    def run(model, hf: bool):
        outs = []
        with torch.inference_mode():
            for ids, mask in batches:
                if hf:
                    outs.append(model.generate(input_ids=ids, attention_mask=mask, **options))
                else:
                    outs.append(model.generate(ids, mask, **options))
        return outs

    times = {"peluk": [], "transformers": []}
    outputs = {}
    for r in range(args.repeats):
        for name in (["peluk", "transformers"] if r % 2 == 0 else ["transformers", "peluk"]):
            t = time.perf_counter()
            outputs[name] = run(ours if name == "peluk" else theirs, hf=name == "transformers")
            times[name].append(time.perf_counter() - t)
    same = all(torch.equal(a, b) for a, b in zip(outputs["peluk"], outputs["transformers"]))
    tokens = sum(int((o[:, 1:] != config.pad_token_id).sum()) for o in outputs["peluk"])
    results = {name: {"seconds": statistics.median(ts), "sentences_per_s": len(texts) / statistics.median(ts),
                      "tokens_per_s": tokens / statistics.median(ts)} for name, ts in times.items()}
    ratio = results["transformers"]["seconds"] / results["peluk"]["seconds"]
    if args.json:
        print(json.dumps({"results": results, "ratio": ratio, "identical_outputs": same, "generated_tokens": tokens}))
        return
    print(f"Marian (opus-mt size, random weights), {len(texts)} sentences, beam {args.beams}, batch {args.batch}, "
          f"2 threads, median of {args.repeats}")
    for name, r in results.items():
        print(f"  {name:13s} {r['seconds']:7.2f} s  {r['sentences_per_s']:6.2f} sentences/s  {r['tokens_per_s']:7.1f} tokens/s")
    print(f"  peluk / transformers: {ratio:.2f}x   identical outputs: {same}")


if __name__ == "__main__":
    main()
