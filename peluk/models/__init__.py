"""Model families and the Auto classes.

``MODEL_TYPES`` maps a ``config.json`` ``model_type`` to the module (one file per family)
that implements it. Each family module provides ``config_class(model_type)``,
``HEADS`` ({task: model class}) and ``remap(state_dict, config)``.

>>> model = AutoModel.from_pretrained("path/to/bert")            # doctest: +SKIP
>>> model(**tokenizer("Halo dunia", return_tensors="pt")).last_hidden_state.shape  # doctest: +SKIP
torch.Size([1, 5, 768])
"""

from __future__ import annotations

import importlib
from types import ModuleType

from peluk.errors import UnsupportedModelError

MODEL_TYPES = {
    "bert": "peluk.models.bert",
    "roberta": "peluk.models.bert",
    "xlm-roberta": "peluk.models.bert",
    "distilbert": "peluk.models.bert",
    "gpt2": "peluk.models.gpt2",
    "llama": "peluk.models.llama",
    "mistral": "peluk.models.llama",
    "t5": "peluk.models.t5",
    "bart": "peluk.models.bart",
    "mbart": "peluk.models.bart",
    "marian": "peluk.models.bart",
}


def family(model_type: str, source: str = "config.json") -> ModuleType:
    """The module implementing ``model_type``; an unknown type lists the supported ones."""
    try:
        return importlib.import_module(MODEL_TYPES[model_type])
    except KeyError:
        raise UnsupportedModelError(
            f"{source}: model_type {model_type!r} is not supported; peluk supports {sorted(MODEL_TYPES)}"
        ) from None


class _Auto:
    """Picks the family from config.json and the class from the task the Auto class names."""

    task: str = "base"

    def __init__(self):
        raise TypeError(f"{type(self).__name__} is not instantiated; use {type(self).__name__}.from_pretrained(...)")

    @classmethod
    def model_class(cls, config):
        module = family(config.model_type)
        try:
            return module.HEADS[cls.task]
        except KeyError:
            raise UnsupportedModelError(
                f"{config.model_type!r} has no {cls.task} head in peluk; it has {sorted(module.HEADS)}"
            ) from None

    @classmethod
    def from_pretrained(cls, name_or_path, **kwargs):
        from peluk.config import AutoConfig
        from peluk.hub import resolve

        directory = resolve(name_or_path, kwargs.pop("revision", None))
        num_labels = kwargs.pop("num_labels", None)
        loading = {"dtype", "device", "gguf_file", "ignore_mismatched_sizes", "config"}
        overrides = {k: kwargs.pop(k) for k in list(kwargs) if k not in loading}  # config fields, e.g. dropout
        config = kwargs.pop("config", None) or AutoConfig.from_pretrained(directory, gguf_file=kwargs.get("gguf_file"),
                                                                          **overrides)
        if num_labels is not None:
            config.num_labels = num_labels
        return cls.model_class(config).from_pretrained(directory, config=config, **kwargs)

    @classmethod
    def from_config(cls, config):
        """A randomly initialised model for ``config`` (for training from scratch)."""
        return cls.model_class(config).from_config(config)


class AutoModel(_Auto):
    task = "base"


class AutoModelForMaskedLM(_Auto):
    task = "masked-lm"


class AutoModelForSequenceClassification(_Auto):
    task = "sequence-classification"


class AutoModelForTokenClassification(_Auto):
    task = "token-classification"


class AutoModelForQuestionAnswering(_Auto):
    task = "question-answering"


class AutoModelForCausalLM(_Auto):
    task = "causal-lm"


class AutoModelForSeq2SeqLM(_Auto):
    task = "seq2seq-lm"


__all__ = [
    "MODEL_TYPES",
    "family",
    "AutoModel",
    "AutoModelForMaskedLM",
    "AutoModelForSequenceClassification",
    "AutoModelForTokenClassification",
    "AutoModelForQuestionAnswering",
    "AutoModelForCausalLM",
    "AutoModelForSeq2SeqLM",
]
