"""The ``peluk`` command.

    peluk demo [--json]                                 embeddings and similarity with the packaged MiniLM
    peluk run TASK "text" ... [--model M] [--json]      any pipeline task on the given texts
    peluk info MODEL [--json]                           architecture, parameters, dtype, files, tokenizer
    peluk chat [--model M] [--system S]                 interactive chat that streams its answers
    peluk train TASK --data F --model M --output DIR    fine-tune (text- or token-classification), write a model card
    peluk hub serve | user add | token create ...       a self-hosted model and dataset hub (peluk/serve/hub/cli.py)
    peluk serve [--port 8000] [--models M ...] [--public]  hub + inference API (HF Inference, OpenAI, TGI, TEI)
    peluk download REPO [FILES...] [--revision R]       a hub repo (or some files) into the shared cache
    peluk attention MODEL "text" [--pair P|--target T] [--layer L --head H] --out view.html|map.png|map.svg
    peluk upload PATH REPO [--private] [-m MSG]         a folder or file to a hub repo (created if needed)
    peluk repo create|ls|info|delete ...                hub repositories
    peluk login [--token T]                             save a hub token ($HF_HOME/token)

Human-readable output by default; ``--json`` prints one JSON document.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from peluk import hub_cli as client_cli  # peluk download / upload / repo / login (imports json and sys only)

DEMO_SENTENCES = [  # paraphrase pairs, mixed up; the packaged model is English-only
    "A man is playing a guitar.",
    "The price of rice rose this week.",
    "A cat is sleeping on the sofa.",
    "Someone plays an instrument.",
    "Rice became more expensive.",
    "The kitten naps on the couch.",
]


def cmd_demo(args) -> int:
    """The main job for now: embed a few sentences with the packaged model and compare them."""
    import time

    from peluk import pipeline

    t0 = time.perf_counter()
    embed = pipeline("sentence-embeddings", dtype=args.dtype)
    loaded = time.perf_counter() - t0
    vectors = embed(DEMO_SENTENCES)
    sims = vectors @ vectors.T
    if args.json:
        print(json.dumps({"model": embed.model.name_or_path, "sentences": DEMO_SENTENCES,
                          "dimension": int(vectors.shape[1]), "similarity": sims.round(4).tolist()}))
        return 0
    print(f"peluk demo: all-MiniLM-L6-v2 (packaged, offline), loaded in {loaded:.2f}s, "
          f"{vectors.shape[1]}-dimensional sentence embeddings\n")
    for i, s in enumerate(DEMO_SENTENCES):
        best = max((j for j in range(len(DEMO_SENTENCES)) if j != i), key=lambda j: sims[i, j])
        print(f"  {s:38s} closest: {DEMO_SENTENCES[best]!r} (cosine {sims[i, best]:.3f})")
    print("\nTry: peluk run sentence-similarity \"I like coffee\" \"I love coffee\" \"It is raining\"; peluk chat")
    return 0


def _task_inputs(task: str, texts: list[str], args):
    if task == "question-answering":
        if not args.context:
            raise SystemExit("peluk run question-answering needs --context TEXT (the questions are the texts)")
        return [{"question": q, "context": args.context} for q in texts]
    if task == "sentence-similarity":
        if len(texts) < 2:
            raise SystemExit("peluk run sentence-similarity needs a source sentence and at least one more")
        return {"source_sentence": texts[0], "sentences": texts[1:]}
    if args.pair:
        return [{"text": t, "text_pair": args.pair} for t in texts]
    return texts


def cmd_run(args) -> int:
    from peluk import pipeline
    from peluk.pipelines import ALIASES

    task = ALIASES.get(args.task, args.task)
    params = {}
    if args.labels:
        params["candidate_labels"] = [x.strip() for x in args.labels.split(",") if x.strip()]
    if args.top_k is not None:
        params["top_k"] = args.top_k
    if args.max_new_tokens is not None:
        params["max_new_tokens"] = args.max_new_tokens
    pipe = pipeline(task, model=args.model, dtype=args.dtype)
    result = pipe(_task_inputs(task, args.texts, args), **params)
    if hasattr(result, "tolist"):
        result = result.tolist()
    if args.json:
        print(json.dumps(result, ensure_ascii=False))
        return 0
    if task == "sentence-similarity":
        for s, score in zip(args.texts[1:], result):
            print(f"{score:7.4f}  {s}")
    elif task in ("sentence-embeddings", "feature-extraction"):
        for t, vec in zip(args.texts, result):
            flat = vec if task == "sentence-embeddings" else vec[0][0]
            print(f"{t}\n  [{', '.join(f'{x:.4f}' for x in flat[:6])}, ...] ({len(flat)} dims"
                  + ("" if task == "sentence-embeddings" else f", first of {len(vec[0])} tokens") + ")")
    else:
        for t, r in zip(args.texts, result):
            print(t)
            for line in _lines(r):
                print("  " + line)
    return 0


def _lines(r) -> list[str]:
    """One readable line per label / entity / answer / candidate."""
    if isinstance(r, dict) and "labels" in r:  # zero-shot
        return [f"{s:.4f}  {label}" for label, s in zip(r["labels"], r["scores"])]
    items = r if isinstance(r, list) else [r]
    out = []
    for x in items:
        if isinstance(x, list):
            out.extend(_lines(x))
        elif "generated_text" in x:
            g = x["generated_text"]
            out.append(g[-1]["content"] if isinstance(g, list) else g)
        elif "answer" in x:
            out.append(f"{x['score']:.4f}  {x['answer']!r} (chars {x['start']}-{x['end']})")
        elif "token_str" in x:
            out.append(f"{x['score']:.4f}  {x['token_str']!r}  → {x['sequence']}")
        elif "word" in x:
            out.append(f"{x['score']:.4f}  {x.get('entity_group') or x.get('entity')}: {x['word']!r} ({x['start']}-{x['end']})")
        else:
            out.append(f"{x['score']:.4f}  {x['label']}")
    return out


def cmd_chat(args) -> int:
    """Chat in the terminal: the answer streams as it is generated; the history is kept.

    Commands: /reset (forget the history), /stats (toggle tokens/s), /exit. When standard
    input is not a terminal, each line is one user message (handy for scripts and tests).
    """
    import torch

    from peluk.generation import stream
    from peluk.models import AutoModelForCausalLM
    from peluk.pipelines import SMOLLM2, packaged_model
    from peluk.tokenizer import AutoTokenizer

    path = args.model or packaged_model(SMOLLM2)
    tokenizer = AutoTokenizer.from_pretrained(path)
    model = AutoModelForCausalLM.from_pretrained(path, dtype=args.dtype)
    system = [{"role": "system", "content": args.system}] if args.system else []
    history: list[dict] = []
    show_stats = args.stats
    interactive = sys.stdin.isatty()
    if interactive:
        print(f"peluk chat with {Path(path).name} — /reset, /stats, /exit")
    options = {"max_new_tokens": args.max_new_tokens}
    if args.temperature > 0:
        options.update(do_sample=True, temperature=args.temperature, top_p=args.top_p)
    while True:
        try:
            line = input("you> " if interactive else "")
        except EOFError:
            break
        line = line.strip()
        if not line:
            continue
        if line in ("/exit", "/quit"):
            break
        if line == "/reset":
            history = []
            print("(history cleared)")
            continue
        if line == "/stats":
            show_stats = not show_stats
            print(f"(stats {'on' if show_stats else 'off'})")
            continue
        history.append({"role": "user", "content": line})
        text = tokenizer.apply_chat_template(system + history, add_generation_prompt=True, tokenize=False)
        ids = tokenizer(text, add_special_tokens=False)["input_ids"]
        stats: dict = {}
        print("bot> " if interactive else "", end="", flush=True)
        reply = []
        with torch.inference_mode():
            for chunk in stream(model, tokenizer, ids, stats=stats, seed=args.seed, **options):
                reply.append(chunk)
                print(chunk, end="", flush=True)
        print()
        history.append({"role": "assistant", "content": "".join(reply).strip()})
        if show_stats and stats.get("tokens"):
            decode = (stats["tokens"] - 1) / max(stats["seconds"] - stats["first_token_s"], 1e-9)
            print(f"({stats['tokens']} tokens, first after {stats['first_token_s']:.2f}s, {decode:.1f} tokens/s)")
    return 0


def cmd_info(args) -> int:
    from peluk.config import AutoConfig
    from peluk.hub import resolve
    from peluk.models import AutoModel

    directory = resolve(args.model)
    config = AutoConfig.from_pretrained(directory)
    model = AutoModel.from_pretrained(directory)
    files = sorted(p.name for p in directory.iterdir() if p.is_file())
    info = {
        "path": str(directory),
        "model_type": config.model_type,
        "architectures": config.architectures,
        "parameters": model.num_parameters(),
        "dtype": str(model.dtype).removeprefix("torch."),
        "labels": config.id2label,
        "files": {name: (directory / name).stat().st_size for name in files},
    }
    try:
        from peluk.tokenizer import AutoTokenizer

        tok = AutoTokenizer.from_pretrained(directory)
        info["tokenizer"] = {"class": type(tok).__name__, "vocab_size": len(tok),
                             "model_max_length": tok.model_max_length, "special_tokens": tok.all_special_tokens}
    except Exception as e:  # a model without a tokenizer is still worth describing
        info["tokenizer"] = {"error": str(e)}
    if args.json:
        print(json.dumps(info, ensure_ascii=False))
        return 0
    print(f"{directory}\n  architecture: {config.model_type} {', '.join(config.architectures or [])}")
    print(f"  parameters:   {info['parameters']:,} ({info['dtype']})")
    if config.id2label:
        print(f"  labels:       {', '.join(config.id2label.values())}")
    t = info["tokenizer"]
    described = t.get("error") or f"vocab {t['vocab_size']:,}, max length {t['model_max_length']}"
    print(f"  tokenizer:    {described}")
    print("  files:")
    for name, size in info["files"].items():
        print(f"    {name:40s} {size / 1e6:9.2f} MB")
    return 0


def cmd_train(args) -> int:
    """Fine-tune a model on a labelled file, print the evaluation table, write a model card."""
    from peluk.training import autotrain

    autotrain.env_threads()
    command = "peluk train " + " ".join(sys.argv[2:]) if sys.argv[1:2] == ["train"] else None
    common = dict(model=args.model, output=args.output, validation=args.validation, epochs=args.epochs, lr=args.lr,
                  batch_size=args.batch_size, max_length=args.max_length, bf16=args.bf16, seed=args.seed,
                  max_train_rows=args.max_train_rows, dataset_name=args.dataset_name,
                  language=args.language.split(",") if args.language else None, command=command, quiet=args.json)
    if args.task == "text-classification":
        result = autotrain.train_text_classification(
            args.data, text_column=args.text_column, text_pair_column=args.text_pair_column,
            label_column=args.label_column, label_names=args.label_names.split(",") if args.label_names else None,
            column_names=args.column_names.split(",") if args.column_names else None, lora=args.lora,
            lora_r=args.lora_r, save_dtype=args.save_dtype, class_weights=args.class_weights, **common)
    else:
        result = autotrain.train_token_classification(args.data, **common)
    if args.json:
        print(json.dumps(result, ensure_ascii=False, default=str))
        return 0
    train = result["train"]
    print(f"\ntrained in {train['train_runtime'] / 60:.1f} min ({train['train_samples_per_second']:.0f} samples/s), "
          f"final train loss {train['train_loss']:.4f}")
    print(f"{'metric':<24}{'value':>10}")
    for key, value in result["metrics"].items():
        if isinstance(value, float) and not key.endswith(("runtime", "per_second")):
            print(f"{key.removeprefix('eval_'):<24}{value:>10.4f}")
    print(f"model, tokenizer and model card (README.md) in {result['output']}")
    return 0


def cmd_hub(args) -> int:
    from peluk.serve.hub import cli as hub_cli  # the CLI is a front end: it may reach the services

    return hub_cli.run(args)


def cmd_serve(args) -> int:
    from peluk.serve.cli_serve import cmd_serve as serve  # a front end: it may reach the services

    return serve(args)


COMMANDS = {"demo": cmd_demo, "run": cmd_run, "info": cmd_info, "chat": cmd_chat, "train": cmd_train,
            "hub": cmd_hub, "serve": cmd_serve, **client_cli.COMMANDS}


def _attention(args) -> int:
    from peluk.viz import cli as viz_cli

    return viz_cli.cmd_attention(args)


COMMANDS["attention"] = _attention


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="peluk", description="Offline Hugging Face stack: models, pipelines, tools.")
    sub = parser.add_subparsers(dest="command", required=True)
    demo = sub.add_parser("demo", help="sentence embeddings and similarity with the packaged all-MiniLM-L6-v2")
    run = sub.add_parser("run", help="run a pipeline task on texts")
    run.add_argument("task", help="e.g. sentiment-analysis, fill-mask, ner, question-answering, zero-shot-classification")
    run.add_argument("texts", nargs="+", help="input texts (questions for question-answering)")
    run.add_argument("--model", help="model directory (default: the task's packaged model, where it has one)")
    run.add_argument("--pair", help="second text of a text pair (text-classification)")
    run.add_argument("--context", help="the context for question-answering")
    run.add_argument("--labels", help="comma-separated candidate labels for zero-shot-classification")
    run.add_argument("--top-k", type=int, dest="top_k")
    run.add_argument("--max-new-tokens", type=int, dest="max_new_tokens", help="text-generation: tokens to add")
    info = sub.add_parser("info", help="describe a model directory")
    info.add_argument("model")
    chat = sub.add_parser("chat", help="chat with a model in the terminal (default: the packaged SmolLM2)")
    chat.add_argument("--model", help="a model directory or .gguf file")
    chat.add_argument("--system", help="a system prompt")
    chat.add_argument("--max-new-tokens", type=int, default=512, dest="max_new_tokens")
    chat.add_argument("--temperature", type=float, default=0.0, help="0 (default): greedy")
    chat.add_argument("--top-p", type=float, default=0.95, dest="top_p")
    chat.add_argument("--seed", type=int)
    chat.add_argument("--stats", action="store_true", help="show tokens/s after each answer")
    train = sub.add_parser("train", help="fine-tune a model on a labelled file (no code), with a model card")
    train.add_argument("task", choices=["text-classification", "token-classification"])
    train.add_argument("--data", required=True, help="training file: CSV/TSV/JSON(L)/Parquet, or CoNLL for tokens")
    train.add_argument("--validation", help="evaluation file (default: 10%% of --data, held out)")
    train.add_argument("--model", required=True, help="base model directory or name")
    train.add_argument("--output", required=True, help="where the model, tokenizer and README.md go")
    train.add_argument("--text-column", default="text", dest="text_column", help="name or 0-based position")
    train.add_argument("--text-pair-column", dest="text_pair_column")
    train.add_argument("--label-column", default="label", dest="label_column", help="name or 0-based position")
    train.add_argument("--label-names", dest="label_names", help="comma-separated names of integer labels 0..n-1")
    train.add_argument("--column-names", dest="column_names", help="comma-separated names for a file without header")
    train.add_argument("--epochs", type=float, default=3)
    train.add_argument("--lr", type=float, default=5e-5)
    train.add_argument("--batch-size", type=int, default=32, dest="batch_size")
    train.add_argument("--max-length", type=int, default=128, dest="max_length")
    train.add_argument("--max-train-rows", type=int, dest="max_train_rows", help="train on a random subset")
    train.add_argument("--lora", action="store_true", help="train LoRA adapters (+ the head) instead of all weights")
    train.add_argument("--lora-r", type=int, default=16, dest="lora_r")
    train.add_argument("--bf16", action="store_true", help="bfloat16 autocast (faster on CPUs with AVX512-BF16/AMX)")
    train.add_argument("--seed", type=int, default=42)
    train.add_argument("--class-weights", choices=["balanced"], dest="class_weights",
                       help="weigh the loss by inverse class frequency (rare classes count more)")
    train.add_argument("--save-dtype", choices=["float16", "bfloat16"], dest="save_dtype",
                       help="store the fine-tuned weights in half precision (half the size)")
    train.add_argument("--dataset-name", dest="dataset_name", help="dataset name for the model card")
    train.add_argument("--language", help="comma-separated language codes for the model card, e.g. id")
    from peluk.serve.hub import cli as hub_cli  # the hub's commands live with the hub

    hub_cli.add_parsers(sub)
    from peluk.serve import cli_serve  # `peluk serve`'s flags live with the service

    cli_serve.add_parser(sub)
    client_cli.add_parsers(sub)
    from peluk.viz import cli as viz_cli  # attention views and heat maps

    viz_cli.add_parser(sub)
    for p in (demo, run, info, train):
        p.add_argument("--json", action="store_true", help="print JSON instead of text")
    for p in (demo, run, chat):
        p.add_argument("--dtype", choices=["float32", "bfloat16", "float16"], default=None)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    from peluk.errors import PelukError

    try:
        return COMMANDS[args.command](args)
    except PelukError as e:
        print(f"peluk {args.command}: error: {e}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())


