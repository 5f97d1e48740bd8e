"""Small layers and activations shared by the model families."""

from __future__ import annotations


import torch
import torch.nn.functional as F
from torch import nn

from peluk.errors import UnsupportedModelError


def _gelu_tanh(x: torch.Tensor) -> torch.Tensor:
    return F.gelu(x, approximate="tanh")


def _quick_gelu(x: torch.Tensor) -> torch.Tensor:
    return x * torch.sigmoid(1.702 * x)


# config.json activation names -> functions (the names transformers' ACT2FN uses)
ACTIVATIONS = {
    "gelu": F.gelu,
    "gelu_new": _gelu_tanh,
    "gelu_pytorch_tanh": _gelu_tanh,
    "gelu_fast": _gelu_tanh,
    "quick_gelu": _quick_gelu,
    "relu": F.relu,
    "silu": F.silu,
    "swish": F.silu,
    "tanh": torch.tanh,
}


def activation(name: str):
    """Look up an activation by its config.json name; unknown names list the known ones."""
    try:
        return ACTIVATIONS[name]
    except KeyError:
        raise UnsupportedModelError(f"unsupported activation {name!r}; peluk knows {sorted(ACTIVATIONS)}") from None


def init_weights(module: nn.Module, std: float) -> None:
    """transformers' default initialisation: normal(0, std) weights, zero bias, unit norms."""
    for m in module.modules():
        if isinstance(m, nn.Linear):
            nn.init.normal_(m.weight, std=std)
            if m.bias is not None:
                nn.init.zeros_(m.bias)
        elif isinstance(m, nn.Embedding):
            nn.init.normal_(m.weight, std=std)
        elif isinstance(m, nn.LayerNorm):
            nn.init.ones_(m.weight)
            nn.init.zeros_(m.bias)


__all__ = ["ACTIVATIONS", "activation", "init_weights"]
