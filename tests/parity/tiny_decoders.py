"""Tiny random transformers decoders: GPT-2 and Llama variants (GQA, tied/untied, biases, scaling)."""

from __future__ import annotations

import torch

VARIANTS = {
    "gpt2": dict(arch="gpt2"),
    "llama-gqa-tied": dict(arch="llama", num_key_value_heads=2, tie_word_embeddings=True),
    "llama-mha-untied-bias": dict(arch="llama", num_key_value_heads=4, tie_word_embeddings=False,
                                  attention_bias=True, mlp_bias=True),
    "llama3-scaling": dict(arch="llama", num_key_value_heads=2, rope_scaling={
        "rope_type": "llama3", "factor": 8.0, "low_freq_factor": 1.0, "high_freq_factor": 4.0,
        "original_max_position_embeddings": 16}),
    "llama-linear-scaling": dict(arch="llama", num_key_value_heads=1, rope_scaling={"rope_type": "linear", "factor": 2.0}),
    "mistral-window": dict(arch="mistral", num_key_value_heads=2, sliding_window=5),
}


def tiny_decoder(variant: str, seed: int = 0):
    import transformers as tf

    spec = dict(VARIANTS[variant])
    arch = spec.pop("arch")
    torch.manual_seed(seed)
    if arch == "gpt2":
        config = tf.GPT2Config(vocab_size=128, n_positions=64, n_embd=32, n_layer=3, n_head=4,
                               bos_token_id=1, eos_token_id=2, pad_token_id=0, **spec)
    else:
        cls = tf.MistralConfig if arch == "mistral" else tf.LlamaConfig
        config = cls(vocab_size=128, hidden_size=32, intermediate_size=48, num_hidden_layers=3, num_attention_heads=4,
                     max_position_embeddings=64, bos_token_id=1, eos_token_id=2, pad_token_id=0, **spec)
    model = tf.AutoModelForCausalLM.from_config(config, attn_implementation="eager")
    with torch.no_grad():  # random non-trivial norms and biases, so mistakes in them show
        for name, p in model.named_parameters():
            if "norm" in name or "ln_" in name or name.endswith("bias"):
                p.add_(torch.randn_like(p) * 0.1)
    return model.eval()


def prompts(seed: int = 1):
    """Left-padded batch of three prompts (lengths 9, 5, 7)."""
    g = torch.Generator().manual_seed(seed)
    ids = torch.randint(3, 128, (3, 9), generator=g)
    mask = torch.ones_like(ids)
    mask[1, :4] = 0
    mask[2, :2] = 0
    ids[mask == 0] = 0
    return ids, mask
