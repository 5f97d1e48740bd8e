"""Tiny random transformers checkpoints of every supported encoder architecture × head."""

from __future__ import annotations

import torch

ARCHS = ("bert", "roberta", "distilbert", "xlm-roberta")
HEADS = {
    "base": "AutoModel",
    "masked-lm": "AutoModelForMaskedLM",
    "sequence-classification": "AutoModelForSequenceClassification",
    "token-classification": "AutoModelForTokenClassification",
    "question-answering": "AutoModelForQuestionAnswering",
}


def tiny_config(arch: str, **extra):
    import transformers as tf

    extra.setdefault("id2label", {0: "NEG", 1: "NEU", 2: "POS"})
    extra.setdefault("label2id", {v: k for k, v in extra["id2label"].items()})
    common = {"vocab_size": 120, "max_position_embeddings": 64, "pad_token_id": 1 if "roberta" in arch else 0, **extra}
    if arch == "distilbert":
        return tf.DistilBertConfig(dim=32, n_layers=3, n_heads=4, hidden_dim=48, **common)
    cls = {"bert": tf.BertConfig, "roberta": tf.RobertaConfig, "xlm-roberta": tf.XLMRobertaConfig}[arch]
    return cls(hidden_size=32, num_hidden_layers=3, num_attention_heads=4, intermediate_size=48,
               type_vocab_size=1 if "roberta" in arch else 2, **common)


def tiny_model(arch: str, head: str, seed: int = 0, **extra):
    """A transformers model with random weights (eager attention, so it can return probabilities)."""
    import transformers as tf

    torch.manual_seed(seed)
    if head == "question-answering":  # QA heads have exactly two outputs (start, end)
        extra.setdefault("id2label", {0: "LABEL_0", 1: "LABEL_1"})
    config = tiny_config(arch, **extra)
    model = getattr(tf, HEADS[head]).from_config(config, attn_implementation="eager")
    # random (non-zero) biases and norms, so that a mistake in any of them shows
    with torch.no_grad():
        for name, p in model.named_parameters():
            if name.endswith("bias") or "LayerNorm" in name or "layer_norm" in name:
                p.add_(torch.randn_like(p) * 0.1)
    return model.eval()


def batch(pad_id: int, vocab: int = 120, seed: int = 1):
    """A padded batch: two rows of different lengths (right padding) plus a full one."""
    g = torch.Generator().manual_seed(seed)
    ids = torch.randint(5, vocab, (3, 11), generator=g)
    mask = torch.ones_like(ids)
    mask[0, 7:] = 0
    mask[1, 4:] = 0
    ids[mask == 0] = pad_id
    return ids, mask
