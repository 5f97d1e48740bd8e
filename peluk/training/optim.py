"""AdamW with decay / no-decay parameter groups, and the learning-rate schedules.

As transformers does, biases and normalisation weights get no weight decay: decaying a
LayerNorm gain toward zero only hurts. Schedules are ``LambdaLR`` multipliers, so their state
is the step count and a checkpoint restores them exactly.
"""

from __future__ import annotations

import math

import torch
from torch import nn
from torch.optim.lr_scheduler import LambdaLR

_NORMS = (nn.LayerNorm, nn.GroupNorm, nn.RMSNorm)


def _no_decay_names(model: nn.Module) -> set[str]:
    """Parameter names that should not be decayed: biases and weights of norm layers."""
    names = set()
    for module_name, module in model.named_modules():
        is_norm = isinstance(module, _NORMS) or "norm" in type(module).__name__.lower()
        for name, _ in module.named_parameters(recurse=False):
            full = f"{module_name}.{name}" if module_name else name
            if name == "bias" or is_norm or "layernorm" in full.lower() or "layer_norm" in full.lower():
                names.add(full)
    return names


def make_optimizer(model: nn.Module, lr: float, weight_decay: float, betas=(0.9, 0.999), eps: float = 1e-8):
    """AdamW over the trainable parameters, in two groups (decay, no decay).

    Frozen parameters (``requires_grad=False``) are left out entirely, so freezing the encoder
    and training only the classifier costs optimizer memory for the classifier only.
    """
    no_decay = _no_decay_names(model)
    decay, plain = [], []
    for name, p in model.named_parameters():
        if p.requires_grad:
            (plain if name in no_decay else decay).append(p)
    if not decay and not plain:
        from peluk.errors import TrainingError

        raise TrainingError("the model has no trainable parameters (every parameter has requires_grad=False)")
    groups = [g for g in ({"params": decay, "weight_decay": weight_decay}, {"params": plain, "weight_decay": 0.0})
              if g["params"]]
    # the fused kernel (one pass per tensor; ~5x foreach's speed on CPU for MiniLM's 22M parameters),
    # else foreach kernels (one update over all tensors instead of a Python loop per tensor)
    try:
        return torch.optim.AdamW(groups, lr=lr, betas=betas, eps=eps, fused=True)
    except (RuntimeError, ValueError):  # an older torch or a device/dtype without the fused kernel
        return torch.optim.AdamW(groups, lr=lr, betas=betas, eps=eps, foreach=True)


def make_schedule(optimizer, kind: str, warmup: int, total: int) -> LambdaLR:
    """The multiplier schedule ``kind`` (linear, cosine, constant, constant_with_warmup).

    As in transformers, ``constant`` ignores warm-up; use ``constant_with_warmup`` for it.
    """
    def linear(step: int) -> float:
        if step < warmup:
            return step / max(1, warmup)
        return max(0.0, (total - step) / max(1, total - warmup))

    def cosine(step: int) -> float:
        if step < warmup:
            return step / max(1, warmup)
        progress = (step - warmup) / max(1, total - warmup)
        return max(0.0, 0.5 * (1.0 + math.cos(math.pi * progress)))

    def constant(step: int) -> float:
        return 1.0

    def constant_with_warmup(step: int) -> float:
        return step / max(1, warmup) if step < warmup else 1.0

    fn = {"linear": linear, "cosine": cosine, "constant": constant, "constant_with_warmup": constant_with_warmup}[kind]
    return LambdaLR(optimizer, fn)
