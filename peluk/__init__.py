"""peluk: a self-hostable, offline-first Hugging Face stack in readable PyTorch.

>>> import peluk
>>> embed = peluk.pipeline("sentence-embeddings")          # doctest: +SKIP
>>> embed(["Saya seorang siswa.", "I am a student."]).shape  # doctest: +SKIP
(2, 384)

Heavy modules (torch, tokenizers) load on first use, so ``import peluk`` stays fast.
"""

from __future__ import annotations

import importlib

__version__ = "0.1.0"

# public name -> module that defines it; resolved lazily by __getattr__ (PEP 562)
_LAZY = {
    "pipeline": "peluk.pipelines",
    "AutoConfig": "peluk.config",
    "AutoTokenizer": "peluk.tokenizer",
    "Tokenizer": "peluk.tokenizer",
    "AutoModel": "peluk.models",
    "AutoModelForMaskedLM": "peluk.models",
    "AutoModelForSequenceClassification": "peluk.models",
    "AutoModelForTokenClassification": "peluk.models",
    "AutoModelForQuestionAnswering": "peluk.models",
    "AutoModelForCausalLM": "peluk.models",
    "AutoModelForSeq2SeqLM": "peluk.models",
    "errors": "peluk.errors",
    "viz": "peluk.viz",
    "load_dataset": "peluk.data",
    "load_from_disk": "peluk.data",
    "Dataset": "peluk.data",
    "DatasetDict": "peluk.data",
    "Features": "peluk.data",
    "Value": "peluk.data",
    "ClassLabel": "peluk.data",
}

__all__ = sorted(_LAZY) + ["__version__"]


def __getattr__(name: str):
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module 'peluk' has no attribute {name!r}")
    mod = importlib.import_module(module)
    value = mod if module.endswith("." + name) else getattr(mod, name)
    globals()[name] = value
    return value


def __dir__():
    return __all__
