"""``peluk attention MODEL "text" [--pair P | --target T] [--generate N] [--layer L --head H]
[--neurons] --out view.html|view.json|map.png|map.svg`` and ``--attributions`` (which words mattered).

peluk/cli.py registers it with ``add_parser(sub)`` and ``COMMANDS["attention"] = cmd_attention``.
"""

from __future__ import annotations

import json


def add_parser(sub):
    p = sub.add_parser("attention", help="look inside a model: attention head/model views, heat maps, attributions")
    p.add_argument("model", help="model directory or hub name")
    p.add_argument("text")
    p.add_argument("--pair", help="second text (encoders: sentence pairs)")
    p.add_argument("--target", help="encoder-decoders: the target text, teacher-forced")
    p.add_argument("--generate", type=int, default=0, help="decoders (and seq2seq without --target): greedy tokens to add")
    p.add_argument("--layer", type=int, default=-1, help="heat maps: the layer (default: the last)")
    p.add_argument("--head", type=int, default=None, help="heat maps: the head (default: the mean over heads)")
    p.add_argument("--kind", choices=["encoder", "decoder", "cross"], help="heat maps of seq2seq models: which attention")
    p.add_argument("--max-length", type=int, dest="max_length", help="truncate the input to this many tokens")
    p.add_argument("--neurons", action="store_true",
                   help="also keep every head's queries and keys: adds the neuron view to .html/.json")
    p.add_argument("--attributions", action="store_true",
                   help="which words mattered for a classifier: attention rollout and gradient x input (.html/.json)")
    p.add_argument("--out", default="attention.html", help=".html (interactive, standalone), .json, .png or .svg")
    p.add_argument("--json", action="store_true", help="print a JSON summary")
    return p


def _load(name: str, classifier: bool):
    from peluk.config import AutoConfig
    from peluk.hub import resolve
    from peluk.models import (AutoModel, AutoModelForCausalLM, AutoModelForSeq2SeqLM,
                              AutoModelForSequenceClassification, MODEL_TYPES)
    from peluk.tokenizer import AutoTokenizer

    directory = resolve(name)
    config = AutoConfig.from_pretrained(directory)
    module = MODEL_TYPES.get(config.model_type, "")
    if classifier:
        cls = AutoModelForSequenceClassification if module == "peluk.models.bert" else AutoModelForCausalLM
    elif module in ("peluk.models.t5", "peluk.models.bart"):
        cls = AutoModelForSeq2SeqLM
    elif module == "peluk.models.bert":
        cls = AutoModel
    else:
        cls = AutoModelForCausalLM
    return cls.from_pretrained(directory), AutoTokenizer.from_pretrained(directory)


def cmd_attention(args) -> int:
    from pathlib import Path

    import peluk.viz as viz

    model, tok = _load(args.model, args.attributions)
    out = Path(args.out)
    if args.attributions:
        a = viz.attributions(model, tok, args.text, text_pair=args.pair, max_length=args.max_length)
        a.save(out)
        summary = {"out": str(out), "label": a.label, "tokens": a.tokens,
                   "rollout": [round(v, 4) for v in a.scores["rollout"]],
                   "grad_x_input": [round(v, 4) for v in a.scores["grad_x_input"]]}
    else:
        view = viz.attention(model, tok, args.text, text_pair=args.pair, target=args.target, generate=args.generate,
                             max_length=args.max_length, neurons=args.neurons)
        if out.suffix.lower() in (".png", ".svg", ".pdf"):
            view.heatmap(layer=args.layer, head=args.head, kind=args.kind, path=out)
        else:
            view.save(out)
        summary = {"out": str(out), "model_type": view.model_type, "tokens": view.tokens,
                   "attentions": {k: list(a.shape) for k, a in view.attentions.items()}}
    if args.json:
        print(json.dumps(summary, ensure_ascii=False))
    else:
        shapes = ", ".join(f"{k} {tuple(v)}" for k, v in summary.get("attentions", {}).items())
        print(f"wrote {out}" + (f" ({shapes}; layers, heads, queries, keys)" if shapes else f" (prediction: {summary.get('label')})"))
    return 0
