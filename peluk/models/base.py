"""What every model class shares: outputs, loading without random init, saving.

``PreTrainedModel.from_pretrained`` builds the module on the meta device (no memory, no
random init), then assigns the checkpoint's tensors in place, so loading costs about the
time to read the file. Keys are checked strictly: a missing backbone weight or an
unexpected key raises with its name; a task head absent from the checkpoint is initialised
with a one-line warning that it needs training, as transformers does.
"""

from __future__ import annotations

import contextlib
import logging
import os
from pathlib import Path

import torch
from torch import nn

from peluk.config import PretrainedConfig
from peluk.errors import WeightsError
from peluk.nn.attention import capture_attention
from peluk.nn.layers import init_weights

logger = logging.getLogger("peluk")

DTYPES = {"float32": torch.float32, "fp32": torch.float32, "bfloat16": torch.bfloat16, "bf16": torch.bfloat16,
          "float16": torch.float16, "fp16": torch.float16}


class ModelOutput(dict):
    """A dict of named outputs that also reads as attributes (``out.logits``) and by position
    (``out[0]``), like transformers' outputs. Fields that are None are left out."""

    def __init__(self, **fields):
        super().__init__((k, v) for k, v in fields.items() if v is not None)

    def __getattr__(self, name):
        if name.startswith("__"):
            raise AttributeError(name)
        return self.get(name)

    def __getitem__(self, key):
        if isinstance(key, int):
            return list(self.values())[key]
        return super().__getitem__(key)

    def to_tuple(self) -> tuple:
        return tuple(self.values())


def resolve_dtype(dtype) -> torch.dtype | None:
    if dtype is None or isinstance(dtype, torch.dtype):
        return dtype
    if dtype in DTYPES:
        return DTYPES[dtype]
    raise ValueError(f"unsupported dtype {dtype!r}; use one of {sorted(DTYPES)} or a torch.dtype")


class PreTrainedModel(nn.Module):
    """Base of every model class. Subclasses set:

    * ``prefix``: attribute name of the backbone in head models (e.g. ``"bert"``); None on a backbone.
    * ``tied``: {parameter: parameter it shares storage with} (e.g. the MLM decoder and the embeddings).
    """

    prefix: str | None = None
    tied: dict[str, str] = {}
    name_or_path: str | None = None  # the directory it was loaded from

    def __init__(self, config: PretrainedConfig):
        super().__init__()
        self.config = config

    # --- outputs -----------------------------------------------------------------------
    def run_capturing(self, fn, output_attentions: bool):
        """Call ``fn()``; with output_attentions, also return the attention maps it made."""
        if not output_attentions:
            return fn(), None
        with capture_attention() as maps:
            out = fn()
        return out, tuple(maps)

    # --- properties --------------------------------------------------------------------
    @property
    def device(self) -> torch.device:
        return next(self.parameters()).device

    @property
    def dtype(self) -> torch.dtype:
        return next(self.parameters()).dtype

    def num_parameters(self, exclude_embeddings: bool = False) -> int:
        seen, total = set(), 0
        for name, p in self.named_parameters():
            if exclude_embeddings and "embeddings" in name:
                continue
            if p.data_ptr() not in seen:
                seen.add(p.data_ptr())
                total += p.numel()
        return total

    def tie_weights(self) -> None:
        for target, source in self.tied.items():
            _set(self, target, _get(self, source))

    # --- loading -----------------------------------------------------------------------
    @classmethod
    def from_pretrained(cls, name_or_path, *, dtype=None, device=None, revision=None, gguf_file=None,
                        ignore_mismatched_sizes: bool = False, config: PretrainedConfig | None = None,
                        **config_overrides):
        """Load a model from a local directory (repo ids resolve through ``peluk.hub``).

        Args:
            name_or_path: directory with config.json and weights, or a ``.gguf`` file.
            gguf_file: a GGUF file inside ``name_or_path`` (as transformers' ``gguf_file=``).
            dtype: torch.float32 (default), torch.bfloat16, torch.float16, or their names. For a
                GGUF Llama file, None (the default) keeps the weights quantized (fast CPU decoding,
                small memory); give a dtype for dequantized weights (exactly transformers' values).
            device: where to put the weights ("cpu", "cuda", ...).
            ignore_mismatched_sizes: re-initialise (with a warning) weights whose shape differs,
                e.g. a classifier fine-tuned with another number of labels.
            **config_overrides: config fields to change, e.g. ``num_labels=3``, ``id2label=...``.

        Raises:
            ModelNotFoundError, ConfigError, UnsupportedModelError, WeightsError.
        """
        from peluk.config import AutoConfig
        from peluk.hub import resolve
        from peluk.weights import load_state_dict

        directory = resolve(name_or_path, revision)
        if config is None:
            num_labels = config_overrides.pop("num_labels", None)
            config = AutoConfig.from_pretrained(directory, gguf_file=gguf_file, **config_overrides)
            if num_labels is not None:
                config.num_labels = num_labels
        if dtype is None and hasattr(cls, "from_gguf_quantized") and (gguf_file or directory.suffix == ".gguf"):
            from peluk.gguf import gguf_path, read_gguf

            return cls.from_gguf_quantized(read_gguf(gguf_path(directory, gguf_file)), config, device)
        state = load_state_dict(directory, gguf_file)
        model = cls.from_state_dict(config, state, dtype=dtype, device=device,
                                    ignore_mismatched_sizes=ignore_mismatched_sizes, source=str(directory))
        model.name_or_path = str(directory)
        return model

    @classmethod
    def from_state_dict(cls, config, state, *, dtype=None, device=None, ignore_mismatched_sizes=False, source="state dict"):
        dtype = resolve_dtype(dtype) or torch.float32
        family = _family_of(cls)
        state = family.remap(dict(state), config)
        with torch.device("meta"), _no_init():
            model = cls(config)
        state = _align_prefix(model, state)
        expected = model.state_dict()
        for target in model.tied:  # tied copies may be absent from the file; that is fine
            if target not in state:
                expected.pop(target, None)
        unexpected = sorted(set(state) - set(expected))
        other_heads = [k for k in unexpected if model.is_head_key(k)]
        if other_heads:  # e.g. a pre-training head when fine-tuning a classifier: not ours to load
            logger.warning("%s: checkpoint weights not used by %s: %s", source, cls.__name__,
                           ", ".join(other_heads[:6]) + (" ..." if len(other_heads) > 6 else ""))
            unexpected = [k for k in unexpected if k not in other_heads]
            state = {k: v for k, v in state.items() if k not in other_heads}
        if unexpected:
            raise WeightsError(f"{source}: unexpected keys for {cls.__name__}: {unexpected[:20]}"
                               + (f" (+{len(unexpected) - 20} more)" if len(unexpected) > 20 else ""))
        mismatched = [k for k, t in state.items() if t.shape != expected[k].shape]
        if mismatched and not ignore_mismatched_sizes:
            details = "; ".join(f"{k}: checkpoint {tuple(state[k].shape)} vs model {tuple(expected[k].shape)}" for k in mismatched[:5])
            raise WeightsError(f"{source}: shape mismatch ({details}). Check config.json, or pass "
                               "ignore_mismatched_sizes=True to re-initialise those weights")
        for k in mismatched:
            del state[k]
        missing = sorted(set(expected) - set(state))
        backbone_missing = [k for k in missing if not model.is_head_key(k) and k not in mismatched]
        if backbone_missing:
            raise WeightsError(f"{source}: missing keys for {cls.__name__}: {backbone_missing[:20]}"
                               + (f" (+{len(backbone_missing) - 20} more)" if len(backbone_missing) > 20 else ""))
        model.load_state_dict({k: v.to(dtype) if v.is_floating_point() else v for k, v in state.items()},
                              strict=False, assign=True)
        if missing:
            _init_missing(model, missing, dtype)
            logger.warning("%s: %s newly initialised (%s); you should train this model on a down-stream task "
                           "before using it for predictions.", cls.__name__, ", ".join(missing[:6]) +
                           (" ..." if len(missing) > 6 else ""), source)
        model.tie_weights()
        model.eval()
        return model.to(device) if device is not None else model

    @classmethod
    def from_config(cls, config: PretrainedConfig):
        """A randomly initialised model (transformers' initialisation), for training from scratch."""
        model = cls(config)
        init_weights(model, config.initializer_range)
        model.tie_weights()
        return model

    def is_head_key(self, key: str) -> bool:
        """Keys that may be absent from a checkpoint: the task head (and the optional pooler)."""
        if ".pooler." in f".{key}":
            return True
        return self.prefix is not None and not key.startswith(self.prefix + ".")

    def generate(self, input_ids, attention_mask=None, **options):
        """transformers-style ``model.generate(...)``; see ``peluk.generation.generate``."""
        from peluk.generation import generate  # the library's one upward reference, resolved lazily

        return generate(self, input_ids, attention_mask, **options)

    # --- saving ------------------------------------------------------------------------
    def save_pretrained(self, directory: str | os.PathLike, safe_serialization: bool = True,
                        max_shard_size: int | str | None = None, *, push_to_hub: bool = False,
                        repo_id: str | None = None, **hub_options) -> None:
        """Write config.json and the weights in transformers' layout (loadable by both).

        With ``push_to_hub=True`` the directory is then uploaded to the hub repo ``repo_id`` (default:
        the directory's name in the token owner's namespace), created if needed; ``hub_options`` go to
        ``peluk.hub_api.push_to_hub`` (``private``, ``commit_message``, ``token``, ``endpoint``).
        """
        from peluk.weights import save_state_dict

        directory = Path(directory)
        state = {k: v for k, v in self.state_dict().items() if k not in self.tied}
        unmap = getattr(_family_of(type(self)), "unmap", None)
        if unmap is not None:
            state = unmap(state, self.config)
        self.config.architectures = [type(self).__name__]
        save_state_dict(state, directory, safe_serialization=safe_serialization, max_shard_size=max_shard_size)
        self.config.save_pretrained(directory)
        if push_to_hub:
            from peluk.hub_api import push_to_hub as push

            push(directory, repo_id or directory.name, **{"commit_message": "Upload model", **hub_options})


@contextlib.contextmanager
def _no_init():
    """Skip the random initialisation modules run in __init__ (pointless on meta tensors, and
    the first call imports hundreds of torch modules)."""
    names = ("normal_", "uniform_", "kaiming_uniform_", "zeros_", "ones_", "constant_", "trunc_normal_")
    saved = {n: getattr(torch.nn.init, n) for n in names}
    try:
        for n in names:
            setattr(torch.nn.init, n, lambda t, *a, **k: t)
        yield
    finally:
        for n, f in saved.items():
            setattr(torch.nn.init, n, f)


def _family_of(cls):
    import sys

    return sys.modules[cls.__module__]


def _align_prefix(model: PreTrainedModel, state: dict) -> dict:
    """Let a backbone load a head checkpoint (drop the head) and a head load a backbone one."""
    prefix = model.prefix or getattr(model, "checkpoint_prefix", None)
    if prefix is None:
        return state
    dot = prefix + "."
    if model.prefix is None:  # a backbone: keep the backbone part of a head checkpoint
        if any(k.startswith(dot) for k in state):
            return {k[len(dot):]: v for k, v in state.items() if k.startswith(dot)}
        return state
    if not any(k.startswith(dot) for k in state):  # a head given a bare backbone checkpoint
        return {dot + k: v for k, v in state.items()}
    return state


def _get(module: nn.Module, path: str):
    for part in path.split("."):
        module = getattr(module, part)
    return module


def _set(module: nn.Module, path: str, value) -> None:
    *parents, leaf = path.split(".")
    for part in parents:
        module = getattr(module, part)
    setattr(module, leaf, value)


def _init_missing(model: PreTrainedModel, missing: list[str], dtype: torch.dtype) -> None:
    """Materialise the modules that own missing keys and give them transformers' init."""
    std = model.config.initializer_range
    for name in sorted({k.rsplit(".", 1)[0] if "." in k else "" for k in missing}):
        module = _get(model, name) if name else model
        module.to_empty(device="cpu", recurse=False)
        if isinstance(module, (nn.Linear, nn.Embedding, nn.LayerNorm)):
            init_weights(module, std)
        else:  # a bare parameter, such as an MLM output bias: zeros, as transformers does
            with torch.no_grad():
                for p in module.parameters(recurse=False):
                    p.zero_()
        module.to(dtype)
