"""LoRA adapters (Hu et al. 2021, https://arxiv.org/abs/2106.09685), in PEFT's file format.

A LoRA layer keeps the pre-trained weight ``W`` frozen and learns a low-rank update:
``y = W x + b + (alpha / r) * B A x``, with ``A`` (r × in) and ``B`` (out × r), ``r`` much
smaller than the layer's width. ``B`` starts at zero, so training starts from the
pre-trained model. After training, ``merge_and_unload`` folds ``B A`` into ``W``: the
merged model is a plain model again, as fast as the original.

The API and the files mirror PEFT's (``LoraConfig``, ``get_peft_model``,
``PeftModel.from_pretrained``, ``adapter_config.json`` + ``adapter_model.safetensors`` with
keys like ``base_model.model.bert.encoder.layer.0.attention.self.query.lora_A.weight``), so
an adapter trained here loads onto a transformers model with PEFT, and the reverse.
peluk's module paths equal transformers' state-dict keys, so the keys are the model's own.
One layout quirk: transformers' GPT-2 stores ``Conv1D`` weights (in, out); peluk stores
them as ``nn.Linear`` (out, in). The LoRA matrices are the same either way (PEFT's
``fan_in_fan_out`` only affects merging), so peluk sets ``fan_in_fan_out`` as PEFT would
and transposes only whole GPT-2 ``Conv1D`` weights saved through ``modules_to_save``.

``modules_to_save`` modules (e.g. a new classifier head) are trained in place rather than
as PEFT's separate copy; their weights are saved under the same keys as PEFT's.

>>> config = LoraConfig(r=8, lora_alpha=16, task_type="SEQ_CLS")                 # doctest: +SKIP
>>> model = get_peft_model(AutoModelForSequenceClassification.from_pretrained(path), config)
>>> model.print_trainable_parameters()
trainable params: 296,450 || all params: 109,778,690 || trainable%: 0.2700
>>> model.save_pretrained("adapter"); merged = model.merge_and_unload()
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import math
import os
import re
import sys
from dataclasses import dataclass, field
from enum import Enum
from pathlib import Path
from typing import Any

import torch
from torch import nn

from peluk.errors import ConfigError, ModelNotFoundError, UnsupportedModelError, WeightsError

CONFIG_NAME = "adapter_config.json"
WEIGHTS_NAME = "adapter_model.safetensors"
WEIGHTS_NAME_BIN = "adapter_model.bin"
PREFIX = "base_model.model."  # PEFT's key prefix: PeftModel.base_model (LoraModel) .model (the model)

# PEFT's defaults (peft/utils/constants.py), plus the peluk families PEFT has none for.
DEFAULT_TARGET_MODULES = {
    "bert": ["query", "value"], "roberta": ["query", "value"], "xlm-roberta": ["query", "value"],
    "distilbert": ["q_lin", "v_lin"], "gpt2": ["c_attn"], "llama": ["q_proj", "v_proj"],
    "mistral": ["q_proj", "v_proj"], "t5": ["q", "v"], "bart": ["q_proj", "v_proj"],
    "mbart": ["q_proj", "v_proj"], "marian": ["q_proj", "v_proj"],
}
EMBEDDING_LAYER_NAMES = ("embed_tokens", "lm_head")  # PEFT saves these layers' base weights when targeted
# Task heads PEFT trains (and saves) in full for these task types.
HEAD_MODULES = {"SEQ_CLS": ["classifier", "score"], "TOKEN_CLS": ["classifier", "score"],
                "QUESTION_ANS": ["qa_outputs"]}


class TaskType(str, Enum):
    SEQ_CLS = "SEQ_CLS"
    TOKEN_CLS = "TOKEN_CLS"
    QUESTION_ANS = "QUESTION_ANS"
    CAUSAL_LM = "CAUSAL_LM"
    SEQ_2_SEQ_LM = "SEQ_2_SEQ_LM"
    FEATURE_EXTRACTION = "FEATURE_EXTRACTION"


# PEFT features whose adapters peluk cannot reproduce: (key, value that means "not used").
_UNSUPPORTED = {"use_dora": False, "lora_bias": False, "layers_to_transform": None, "layer_replication": None,
                "target_parameters": None, "trainable_token_indices": None}


@dataclass
class LoraConfig:
    """PEFT's ``LoraConfig`` (the subset peluk implements), field for field.

    Args:
        r: rank of the update; lora_alpha: its scale is ``lora_alpha / r``
            (``lora_alpha / sqrt(r)`` with ``use_rslora``).
        lora_dropout: dropout on the LoRA branch's input.
        target_modules: module names (a module matches when its path is the name or ends with
            ``"." + name``), a regex that must match a whole path, or ``"all-linear"``;
            None: PEFT's default for the model's ``model_type`` (e.g. BERT's query, value).
        exclude_modules: the same kind of names or regex, never targeted.
        modules_to_save: modules trained in full and saved with the adapter (a path ending
            with the name). ``task_type`` SEQ_CLS/TOKEN_CLS adds classifier and score,
            QUESTION_ANS adds qa_outputs, as PEFT does.
        bias: "none", "all" (train every bias) or "lora_only" (the targeted layers' biases).
        init_lora_weights: True (A Kaiming-uniform, B zeros), "gaussian" (A normal, std 1/r),
            or False (both random: the adapter changes the output from the start; for tests).
        rank_pattern, alpha_pattern: per-module ``r``/``lora_alpha`` ({name or regex: value}).
        fan_in_fan_out: recorded for PEFT; set for you (True for GPT-2's Conv1D layers).

    Raises:
        ConfigError: a value PEFT would reject (r < 1, unknown bias, ...).
    """

    r: int = 8
    lora_alpha: float = 8
    lora_dropout: float = 0.0
    target_modules: list[str] | str | None = None
    exclude_modules: list[str] | str | None = None
    modules_to_save: list[str] | None = None
    bias: str = "none"
    task_type: str | None = None
    fan_in_fan_out: bool = False
    init_lora_weights: bool | str = True
    use_rslora: bool = False
    rank_pattern: dict[str, int] = field(default_factory=dict)
    alpha_pattern: dict[str, float] = field(default_factory=dict)
    base_model_name_or_path: str | None = None
    revision: str | None = None
    inference_mode: bool = False
    peft_type = "LORA"

    def __post_init__(self):
        if isinstance(self.task_type, Enum):
            self.task_type = self.task_type.value
        for name in ("target_modules", "exclude_modules", "modules_to_save"):
            value = getattr(self, name)
            if isinstance(value, (list, tuple, set)):
                setattr(self, name, list(dict.fromkeys(value)))  # PEFT keeps sets; keep order, drop repeats
        if not isinstance(self.r, int) or self.r < 1:
            raise ConfigError(f"r must be a positive integer, got {self.r!r}")
        if not 0.0 <= self.lora_dropout < 1.0:
            raise ConfigError(f"lora_dropout must be in [0, 1), got {self.lora_dropout!r}")
        if self.bias not in ("none", "all", "lora_only"):
            raise ConfigError(f"bias must be 'none', 'all' or 'lora_only', got {self.bias!r}")
        if self.init_lora_weights not in (True, False, "gaussian"):
            raise ConfigError("init_lora_weights must be True, False or 'gaussian' in peluk, "
                              f"got {self.init_lora_weights!r}")
        if self.task_type is not None and self.task_type not in TaskType.__members__:
            raise ConfigError(f"task_type must be one of {sorted(TaskType.__members__)} or None, got {self.task_type!r}")
        if self.modules_to_save is not None and not isinstance(self.modules_to_save, list):
            raise ConfigError(f"modules_to_save must be a list of module names, got {self.modules_to_save!r}")

    def to_dict(self) -> dict[str, Any]:
        """The ``adapter_config.json`` fields, with PEFT's names and defaults for what peluk lacks."""
        data = {f.name: getattr(self, f.name) for f in dataclasses.fields(self)}
        data.update(peft_type=self.peft_type, use_dora=False, lora_bias=False, layers_to_transform=None,
                    layers_pattern=None, layer_replication=None, auto_mapping=None)
        return dict(sorted(data.items()))

    def save_pretrained(self, directory: str | os.PathLike) -> None:
        directory = Path(directory)
        directory.mkdir(parents=True, exist_ok=True)
        (directory / CONFIG_NAME).write_text(json.dumps({**self.to_dict(), "inference_mode": True}, indent=2) + "\n",
                                             encoding="utf-8")

    @classmethod
    def from_dict(cls, data: dict, source: str = CONFIG_NAME) -> "LoraConfig":
        """Build from ``adapter_config.json``'s dict; keys peluk has no use for are ignored."""
        if data.get("peft_type", "LORA") != "LORA":
            raise UnsupportedModelError(f"{source}: peft_type {data.get('peft_type')!r} is not supported; "
                                        "peluk implements LoRA adapters (peft_type 'LORA')")
        for key, unused in _UNSUPPORTED.items():
            value = data.get(key, unused)
            if value is not unused and value not in ([], {}):
                raise UnsupportedModelError(f"{source}: {key}={data[key]!r} is a PEFT feature peluk does not "
                                            "implement; use an adapter without it")
        names = {f.name for f in dataclasses.fields(cls)}
        try:
            return cls(**{k: v for k, v in data.items() if k in names})
        except (ConfigError, TypeError) as e:
            raise ConfigError(f"{source}: {e}") from None

    @classmethod
    def from_pretrained(cls, directory: str | os.PathLike) -> "LoraConfig":
        from peluk.config import read_json

        path = Path(directory) / CONFIG_NAME
        return cls.from_dict(read_json(path), source=str(path))


# --- the layer -------------------------------------------------------------------------

class LoraLinear(nn.Module):
    """A linear layer plus its low-rank update: ``base_layer(x) + scaling * lora_B(lora_A(dropout(x)))``.

    Deliberately not an ``nn.Linear`` subclass: ``peluk.nn.linear.fused_linear`` multiplies
    plain linear layers' weights directly (q/k/v as one matmul) and would bypass the adapter;
    for any other module it calls the module.
    """

    def __init__(self, base_layer: nn.Linear, r: int, lora_alpha: float, lora_dropout: float = 0.0,
                 use_rslora: bool = False, init_lora_weights: bool | str = True):
        super().__init__()
        self.base_layer = base_layer
        self.in_features, self.out_features = base_layer.in_features, base_layer.out_features
        w = base_layer.weight
        # half-precision base weights get float32 adapters, as PEFT's autocast_adapter_dtype does
        dtype = torch.float32 if w.dtype in (torch.float16, torch.bfloat16) else w.dtype
        self.lora_A = nn.Linear(self.in_features, r, bias=False, device=w.device, dtype=dtype)
        self.lora_B = nn.Linear(r, self.out_features, bias=False, device=w.device, dtype=dtype)
        self.lora_dropout = nn.Dropout(lora_dropout) if lora_dropout > 0 else nn.Identity()
        self.r, self.lora_alpha = r, lora_alpha
        self.scaling = lora_alpha / math.sqrt(r) if use_rslora else lora_alpha / r
        self.disabled = False
        with torch.no_grad():
            if init_lora_weights is True:  # A as nn.Linear's default init, B zero: the update starts at 0
                nn.init.kaiming_uniform_(self.lora_A.weight, a=math.sqrt(5))
                nn.init.zeros_(self.lora_B.weight)
            elif init_lora_weights == "gaussian":
                nn.init.normal_(self.lora_A.weight, std=1 / r)
                nn.init.zeros_(self.lora_B.weight)
            # False: keep nn.Linear's random init for both (a non-zero update)

    @property
    def weight(self) -> torch.Tensor:
        return self.base_layer.weight

    @property
    def bias(self) -> torch.Tensor | None:
        return self.base_layer.bias

    def forward(self, x: torch.Tensor, **kwargs) -> torch.Tensor:
        y = self.base_layer(x, **kwargs)  # kwargs: e.g. peluk Linear's outside ``bias=``
        if self.disabled:
            return y
        a = self.lora_A.weight
        return y + (self.lora_B(self.lora_A(self.lora_dropout(x.to(a.dtype)))) * self.scaling).to(y.dtype)

    def delta_weight(self) -> torch.Tensor:
        """``scaling * B @ A``: what merging adds to the base weight, (out, in)."""
        return (self.lora_B.weight @ self.lora_A.weight) * self.scaling

    def merge(self) -> nn.Linear:
        """Add the update to the base weight in place and return the base layer. The in-place
        add moves the weight's version counter, so peluk ``Linear``'s packed cache is rebuilt."""
        with torch.no_grad():
            w = self.base_layer.weight
            w.add_(self.delta_weight().to(w.dtype))
        return self.base_layer

    def extra_repr(self) -> str:
        return f"r={self.r}, lora_alpha={self.lora_alpha}, scaling={self.scaling:g}"


# --- which modules -----------------------------------------------------------------------

def _matches(names, key: str) -> bool:
    """PEFT's rule: a string is a regex on the whole path; a list matches the path or its tail."""
    if isinstance(names, str):
        return re.fullmatch(names, key) is not None
    return any(key == n or key.endswith("." + n) for n in names)


def _is_target(config: LoraConfig, key: str) -> bool:
    if config.exclude_modules and _matches(config.exclude_modules, key):
        return False
    # never inside a modules_to_save module (PEFT's rule; the two would conflict)
    if config.modules_to_save and any(re.match(rf"(^|.*\.){m}($|\..*)", key) for m in config.modules_to_save):
        return False
    return _matches(config.target_modules, key)


def _saved_modules(model: nn.Module, config: LoraConfig) -> list[str]:
    """Paths of the modules_to_save modules (PEFT's rule: the path ends with the name)."""
    names = config.modules_to_save or []
    return [key for key, _ in model.named_modules() if key and any(key.endswith(n) for n in names)]


def _family(model: nn.Module):
    """The peluk family module of a peluk model (its remap/unmap, CONV1D); None for other models."""
    module = type(model).__module__
    return sys.modules.get(module) if module.startswith("peluk.models.") else None


def _hf_conv1d(model: nn.Module, name: str) -> bool:
    """Whether transformers stores this layer as a Conv1D (the family lists them, e.g. GPT-2)."""
    return f"{name}.weight".endswith(getattr(_family(model), "CONV1D", ()))


def _prepare(model: nn.Module, config: LoraConfig) -> LoraConfig:
    """Fill in what PEFT fills in: default targets, task heads, "all-linear", fan_in_fan_out."""
    config = dataclasses.replace(config)  # the caller's config stays as it was
    model_type = getattr(getattr(model, "config", None), "model_type", None)
    if config.task_type in HEAD_MODULES:
        config.modules_to_save = list(dict.fromkeys((config.modules_to_save or []) + HEAD_MODULES[config.task_type]))
    if config.target_modules is None:
        if model_type not in DEFAULT_TARGET_MODULES:
            raise ConfigError(f"no default target_modules for model_type {model_type!r}; pass target_modules=[...]")
        config.target_modules = list(DEFAULT_TARGET_MODULES[model_type])
    elif isinstance(config.target_modules, str) and config.target_modules.lower() == "all-linear":
        # every linear layer but the output projection (PEFT: the output embeddings, or the classifier)
        skip = {"lm_head"} | set(HEAD_MODULES.get(config.task_type, []))
        config.target_modules = sorted({k.rsplit(".", 1)[-1] for k, m in model.named_modules()
                                        if isinstance(m, nn.Linear) and k.rsplit(".", 1)[-1] not in skip})
    if config.base_model_name_or_path is None:
        config.base_model_name_or_path = getattr(model, "name_or_path", None)
    return config


def _inject(model: nn.Module, config: LoraConfig) -> None:
    """Replace every targeted linear layer of ``model`` by a ``LoraLinear`` around it."""
    if any(isinstance(m, LoraLinear) for m in model.modules()):
        raise ConfigError(f"{type(model).__name__} already has LoRA layers; merge_and_unload() or unload() first")
    targets = [(k, m) for k, m in model.named_modules() if k and _is_target(config, k)]
    if not targets:
        linear = sorted({k.rsplit(".", 1)[-1] for k, m in model.named_modules() if isinstance(m, nn.Linear)})
        raise ConfigError(f"target_modules {config.target_modules!r} match no module of "
                          f"{type(model).__name__}; its linear layers are named {linear}")
    other = [(k, type(m).__name__) for k, m in targets if not isinstance(m, nn.Linear)]
    if other:
        raise UnsupportedModelError(f"target module {other[0][0]!r} is a {other[0][1]}; peluk's LoRA adapts "
                                    "linear layers only")
    conv1d = False
    for key, module in targets:
        r = config.rank_pattern.get(_pattern_key(config.rank_pattern, key), config.r)
        alpha = config.alpha_pattern.get(_pattern_key(config.alpha_pattern, key), config.lora_alpha)
        _set(model, key, LoraLinear(module, r, alpha, config.lora_dropout, config.use_rslora, config.init_lora_weights))
        conv1d = conv1d or _hf_conv1d(model, key)
    config.fan_in_fan_out = conv1d  # what PEFT records (it corrects the flag per layer type)


def _pattern_key(pattern: dict, key: str) -> str | None:
    """The rank_pattern/alpha_pattern entry for a module path (PEFT's get_pattern_key)."""
    return next((p for p in pattern if re.match(rf"(.*\.)?({p})$", key)), None)


def _set(model: nn.Module, path: str, module: nn.Module) -> None:
    parent, _, leaf = path.rpartition(".")
    setattr(model.get_submodule(parent) if parent else model, leaf, module)


def _set_trainable(model: nn.Module, config: LoraConfig) -> None:
    """Freeze the model, then unfreeze the adapter: LoRA matrices, biases, modules_to_save."""
    model.requires_grad_(False)
    if config.inference_mode:
        return
    for module in model.modules():
        if isinstance(module, LoraLinear):
            module.lora_A.requires_grad_(True)
            module.lora_B.requires_grad_(True)
            if config.bias == "lora_only" and module.base_layer.bias is not None:
                module.base_layer.bias.requires_grad_(True)
    if config.bias == "all":
        for name, p in model.named_parameters():
            if name == "bias" or name.endswith(".bias"):
                p.requires_grad_(True)
    for name in _saved_modules(model, config):
        model.get_submodule(name).requires_grad_(True)


def _adapter_state(model: nn.Module, config: LoraConfig, embeddings: bool = True) -> dict[str, torch.Tensor]:
    """The tensors an adapter file holds, keyed by model path (PEFT's key minus ``base_model.model.``).

    ``embeddings``: include the base weights of a targeted ``lm_head``/``embed_tokens``, which
    PEFT saves too (its ``save_embedding_layers="auto"``)."""
    state = model.state_dict()
    keys = set()
    for name, module in model.named_modules():
        if isinstance(module, LoraLinear):
            keys |= {f"{name}.lora_A.weight", f"{name}.lora_B.weight"}
            if config.bias == "lora_only" and module.base_layer.bias is not None:
                keys.add(f"{name}.base_layer.bias")
            if embeddings and name.rsplit(".", 1)[-1] in EMBEDDING_LAYER_NAMES:
                keys |= {k for k in state if k.startswith(f"{name}.base_layer.")}
    for name in _saved_modules(model, config):
        keys |= {k for k in state if k.startswith(name + ".")}
    if config.bias == "all":  # PEFT's rule, on its names (a targeted layer's bias is ``...base_layer.bias``)
        keys |= {k for k in state if k == "bias" or k.endswith(".bias")}
    return {k: v for k, v in state.items() if k in keys}


def _is_lora_key(key: str) -> bool:
    return key.endswith((".lora_A.weight", ".lora_B.weight"))


def _layout(model: nn.Module, state: dict, direction: str) -> dict:
    """Whole module weights (not LoRA matrices) in transformers' layout ("unmap") or peluk's ("remap")."""
    convert = getattr(_family(model), direction, None)
    plain = {k: v for k, v in state.items() if not _is_lora_key(k)}
    if convert is None or not plain:
        return state
    return {**{k: v for k, v in state.items() if _is_lora_key(k)}, **convert(plain, model.config)}


# --- the wrappers --------------------------------------------------------------------------

class LoraModel(nn.Module):
    """PEFT's ``PeftModel.base_model``: holds the adapted model as ``.model`` (hence the key
    prefix ``base_model.model.``). Attributes it lacks are the model's."""

    def __init__(self, model: nn.Module, config: LoraConfig, adapter_name: str = "default"):
        super().__init__()
        self.model = model
        self.peft_config = {adapter_name: config}

    def forward(self, *args, **kwargs):
        return self.model(*args, **kwargs)

    def __getattr__(self, name: str):
        try:
            return super().__getattr__(name)
        except AttributeError:
            if name == "model":
                raise
            return getattr(self.model, name)


class PeftModel(nn.Module):
    """A model with LoRA adapters; calls and unknown attributes pass through to the model,
    so ``model(**batch).loss``, ``model.config`` and ``model.generate(...)`` work as before.

    Build one with :func:`get_peft_model` (new adapters) or :meth:`PeftModel.from_pretrained`
    (saved ones). ``save_pretrained`` writes the adapter only, in PEFT's format.
    """

    def __init__(self, model: nn.Module, peft_config: LoraConfig, adapter_name: str = "default"):
        super().__init__()
        if isinstance(model, PeftModel):
            raise ConfigError("the model already is a PeftModel; pass model.get_base_model()")
        config = _prepare(model, peft_config)
        _inject(model, config)
        _set_trainable(model, config)
        self.base_model = LoraModel(model, config, adapter_name)
        self.peft_config = {adapter_name: config}
        self.active_adapter = adapter_name

    @property
    def config(self):
        return self.get_base_model().config

    @property
    def active_peft_config(self) -> LoraConfig:
        return self.peft_config[self.active_adapter]

    def get_base_model(self) -> nn.Module:
        """The adapted model itself (its targeted layers are ``LoraLinear`` until merged)."""
        return self.base_model.model

    def forward(self, *args, **kwargs):
        return self.base_model(*args, **kwargs)

    def __getattr__(self, name: str):
        try:
            return super().__getattr__(name)
        except AttributeError:
            if name == "base_model":
                raise
            return getattr(self.base_model, name)

    def get_nb_trainable_parameters(self) -> tuple[int, int]:
        params = list(self.parameters())
        return sum(p.numel() for p in params if p.requires_grad), sum(p.numel() for p in params)

    def print_trainable_parameters(self) -> None:
        trainable, total = self.get_nb_trainable_parameters()
        print(f"trainable params: {trainable:,d} || all params: {total:,d} || trainable%: {100 * trainable / total:.4f}")

    @contextlib.contextmanager
    def disable_adapter(self):
        """Within the block, the model computes without its LoRA updates (modules_to_save stay)."""
        layers = [m for m in self.modules() if isinstance(m, LoraLinear)]
        try:
            for m in layers:
                m.disabled = True
            yield
        finally:
            for m in layers:
                m.disabled = False

    def merge_and_unload(self) -> nn.Module:
        """Fold each update into its base weight (``W += scaling * B @ A``) and return the
        model with plain linear layers again. The PeftModel should not be used afterwards."""
        return self._unload(merge=True)

    def unload(self) -> nn.Module:
        """Remove the LoRA layers without merging: the original model (modules_to_save keep their training)."""
        return self._unload(merge=False)

    def _unload(self, merge: bool) -> nn.Module:
        model = self.get_base_model()
        for name, module in list(model.named_modules()):
            if isinstance(module, LoraLinear):
                _set(model, name, _merge(model, name, module) if merge else module.base_layer)
        return model

    # --- files ---------------------------------------------------------------------------
    def save_pretrained(self, save_directory: str | os.PathLike, safe_serialization: bool = True) -> None:
        """Write ``adapter_config.json`` and ``adapter_model.safetensors`` (or ``.bin``), as PEFT does."""
        directory = Path(save_directory)
        directory.mkdir(parents=True, exist_ok=True)
        model, config = self.get_base_model(), self.active_peft_config
        state = _layout(model, _adapter_state(model, config), "unmap")
        # clone: tied tensors share storage, which safetensors refuses
        tensors = {PREFIX + k: v.detach().to("cpu", copy=True).contiguous() for k, v in state.items()}
        if safe_serialization:
            from safetensors.torch import save_file

            save_file(tensors, directory / WEIGHTS_NAME, metadata={"format": "pt"})
        else:
            torch.save(tensors, directory / WEIGHTS_NAME_BIN)
        config.save_pretrained(directory)

    @classmethod
    def from_pretrained(cls, model: nn.Module, model_id: str | os.PathLike, adapter_name: str = "default",
                        is_trainable: bool = False, config: LoraConfig | None = None) -> "PeftModel":
        """Load a saved adapter (by peluk or PEFT) onto ``model``, a peluk model of the same checkpoint.

        Args:
            model: the base model; its targeted layers are replaced in place.
            model_id: the adapter's directory.
            is_trainable: False (default): frozen and in eval mode, for inference; True: the
                adapter is trainable, to continue training.
            config: use this instead of the directory's adapter_config.json.

        Raises:
            ModelNotFoundError: no such directory or adapter file.
            ConfigError: adapter_config.json is not valid, or its target modules are not in the model.
            UnsupportedModelError: the adapter uses a PEFT feature peluk lacks (DoRA, ...).
            WeightsError: the weights do not fit the model (missing or unexpected keys, shapes).
        """
        from peluk.hub import resolve
        from peluk.weights import load_state_dict

        directory = resolve(model_id)
        if not directory.is_dir():
            raise ModelNotFoundError(f"{directory} is not an adapter directory (with {CONFIG_NAME} and {WEIGHTS_NAME})")
        config_path = directory / CONFIG_NAME
        config = config if config is not None else LoraConfig.from_pretrained(directory)
        config = dataclasses.replace(config, inference_mode=not is_trainable)
        weights = directory / WEIGHTS_NAME
        if not weights.exists() and (directory / WEIGHTS_NAME_BIN).exists():
            weights = directory / WEIGHTS_NAME_BIN
        tensors = load_state_dict(weights)  # ModelNotFoundError / WeightsError name the file
        try:
            peft = cls(model, config, adapter_name)
        except ConfigError as e:
            raise type(e)(f"{config_path}: {e}") from None
        try:
            _load_adapter(model, peft.active_peft_config, tensors, str(weights))
        except WeightsError:
            peft.unload()  # give the model back as it came (its parameters stay frozen)
            raise
        if not is_trainable:
            peft.eval()
        return peft


def _merge(model: nn.Module, name: str, layer: LoraLinear) -> nn.Linear:
    """``layer.merge()``, except that a weight tied to another (e.g. lm_head = input embeddings)
    gets a merged copy of its own, and the model stops declaring the tie (so it saves untied)."""
    weight = layer.base_layer.weight
    if sum(p is weight for _, p in model.named_parameters(remove_duplicate=False)) == 1:
        return layer.merge()
    with torch.no_grad():
        layer.base_layer.weight = nn.Parameter(weight + layer.delta_weight().to(weight.dtype), requires_grad=False)
    tied = getattr(model, "tied", None)
    if isinstance(tied, dict):
        key = f"{name}.weight"
        model.tied = {k: v for k, v in tied.items() if key not in (k, v)}
        if hasattr(getattr(model, "config", None), "tie_word_embeddings"):
            model.config.tie_word_embeddings = False
    return layer.base_layer


def _load_adapter(model: nn.Module, config: LoraConfig, tensors: dict, source: str) -> None:
    state = {}
    for key, value in tensors.items():
        if not key.startswith(PREFIX):
            raise WeightsError(f"{source}: key {key!r} does not start with {PREFIX!r}; not a PEFT LoRA adapter file")
        key = key[len(PREFIX):]
        if ".original_module." in key:  # PEFT's bias="all" also saves the untouched head copies
            continue
        state[key.replace(".modules_to_save.", ".")] = value  # and the trained copies' biases under this name
    state = _layout(model, state, "remap")
    expected = _adapter_state(model, config)
    unexpected = sorted(set(state) - set(expected))
    missing = sorted(set(_adapter_state(model, config, embeddings=False)) - set(state))
    if unexpected or missing:
        problems = ([f"keys the model has no place for: {[PREFIX + k for k in unexpected[:8]]}"] if unexpected else []) + \
                   ([f"missing keys: {[PREFIX + k for k in missing[:8]]}"] if missing else [])
        raise WeightsError(f"{source}: the adapter does not fit {type(model).__name__} ({'; '.join(problems)}); "
                           "was it trained for another model, or with other target_modules / modules_to_save?")
    wrong = [f"{PREFIX + k}: file {tuple(v.shape)} vs model {tuple(expected[k].shape)}"
             for k, v in state.items() if v.shape != expected[k].shape]
    if wrong:
        raise WeightsError(f"{source}: shape mismatch ({'; '.join(wrong[:5])}); check r, rank_pattern and "
                           "that the adapter was trained for this model")
    model.load_state_dict(state, strict=False)


def get_peft_model(model: nn.Module, peft_config: LoraConfig, adapter_name: str = "default") -> PeftModel:
    """Add LoRA adapters to ``model`` (in place) and freeze everything else.

    >>> model = get_peft_model(model, LoraConfig(r=8, target_modules=["q_proj", "v_proj"]))   # doctest: +SKIP

    Raises:
        ConfigError: the target modules match nothing (the message lists the linear layers).
        UnsupportedModelError: a target is not a linear layer.
    """
    return PeftModel(model, peft_config, adapter_name)


__all__ = ["LoraConfig", "TaskType", "LoraLinear", "LoraModel", "PeftModel", "get_peft_model"]
