"""Fine-tuning: ``Trainer``, ``TrainingArguments``, callbacks, LoRA adapters.

>>> from peluk.training import Trainer, TrainingArguments                      # doctest: +SKIP
"""

from __future__ import annotations

import importlib

_LAZY = {
    "Trainer": "peluk.training.trainer",
    "EvalPrediction": "peluk.training.trainer",
    "PredictionOutput": "peluk.training.trainer",
    "set_seed": "peluk.training.trainer",
    "TrainingArguments": "peluk.training.args",
    "TrainerCallback": "peluk.training.callbacks",
    "TrainerState": "peluk.training.callbacks",
    "TrainerControl": "peluk.training.callbacks",
    "EarlyStoppingCallback": "peluk.training.callbacks",
    "LoraConfig": "peluk.training.lora",
    "get_peft_model": "peluk.training.lora",
    "PeftModel": "peluk.training.lora",
}

__all__ = sorted(_LAZY)


def __getattr__(name: str):
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module 'peluk.training' has no attribute {name!r}")
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value
    return value
