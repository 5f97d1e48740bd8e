"""Tiny random transformers encoder-decoders: T5 v1.0 / v1.1, BART, mBART, Marian."""

from __future__ import annotations

import torch

VARIANTS = ("t5-v1.0", "t5-v1.1", "bart", "mbart", "marian")


def tiny_seq2seq(variant: str, seed: int = 0):
    import transformers as tf

    torch.manual_seed(seed)
    common = dict(vocab_size=100, pad_token_id=0, eos_token_id=2, bos_token_id=1)
    if variant.startswith("t5"):
        v11 = variant == "t5-v1.1"
        # equal layer counts: transformers 5.23's T5 generate breaks when encoder and decoder differ
        config = tf.T5Config(d_model=32, d_kv=8, d_ff=48, num_layers=2, num_decoder_layers=2, num_heads=4,
                             relative_attention_num_buckets=8, relative_attention_max_distance=20,
                             feed_forward_proj="gated-gelu" if v11 else "relu", decoder_start_token_id=0,
                             tie_word_embeddings=not v11, **common)
    else:
        cls = {"bart": tf.BartConfig, "mbart": tf.MBartConfig, "marian": tf.MarianConfig}[variant]
        extra = dict(decoder_start_token_id=0 if variant == "marian" else 2, forced_eos_token_id=2,
                     scale_embedding=variant == "marian")
        if variant == "mbart":
            extra["forced_bos_token_id"] = 7  # a language code
        config = cls(d_model=32, encoder_layers=2, decoder_layers=3, encoder_attention_heads=4,
                     decoder_attention_heads=4, encoder_ffn_dim=48, decoder_ffn_dim=48, max_position_embeddings=64,
                     activation_function="gelu" if variant != "marian" else "swish", **extra, **common)
    model = tf.AutoModelForSeq2SeqLM.from_config(config, attn_implementation="eager")
    with torch.no_grad():  # random non-trivial norms, biases and logits bias, so mistakes in them show
        for name, p in model.named_parameters():
            if "norm" in name or name.endswith("bias"):
                p.add_(torch.randn_like(p) * 0.1)
        if hasattr(model, "final_logits_bias"):
            model.final_logits_bias.add_(torch.randn_like(model.final_logits_bias) * 0.1)
    return model.eval()


def sources(seed: int = 1):
    """Right-padded encoder inputs (lengths 9, 5, 7) ending with EOS."""
    g = torch.Generator().manual_seed(seed)
    ids = torch.randint(3, 100, (3, 9), generator=g)
    mask = torch.ones_like(ids)
    mask[1, 5:] = 0
    mask[2, 7:] = 0
    ids[mask == 0] = 0
    return ids, mask
