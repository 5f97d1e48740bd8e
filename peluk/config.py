"""Reading ``config.json``: the common fields every model family shares, and ``AutoConfig``.

Each family declares a dataclass whose field names are its ``config.json`` keys (see
``peluk/models/bert.py``); keys a family does not use are kept in ``extra`` so that
``save_pretrained`` writes them back unchanged.
"""

from __future__ import annotations

import dataclasses
import json
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from peluk.errors import ConfigError, ModelNotFoundError


def read_json(path: str | os.PathLike) -> dict:
    """Read a JSON object from ``path``, with errors that name the file and line."""
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ModelNotFoundError(f"{path} does not exist") from None
    except UnicodeDecodeError as e:
        raise ConfigError(f"{path} is not UTF-8 text ({e})") from None
    try:
        data = json.loads(text)
    except json.JSONDecodeError as e:
        raise ConfigError(f"{path} is not valid JSON: {e.msg} at line {e.lineno}, column {e.colno}") from None
    if not isinstance(data, dict):
        raise ConfigError(f"{path} must hold a JSON object, found {type(data).__name__}")
    return data


@dataclass
class PretrainedConfig:
    """Fields every family shares. Subclasses add their architecture fields."""

    model_type: str = ""
    architectures: list[str] | None = None
    id2label: dict[int, str] | None = None
    label2id: dict[str, int] | None = None
    problem_type: str | None = None  # regression | single_label_classification | multi_label_classification
    pad_token_id: int | None = None
    bos_token_id: int | None = None
    eos_token_id: int | list[int] | None = None
    tie_word_embeddings: bool = True
    initializer_range: float = 0.02
    extra: dict[str, Any] = field(default_factory=dict, repr=False)

    @classmethod
    def from_dict(cls, data: dict, source: str = "config") -> "PretrainedConfig":
        """Build a config from a ``config.json`` dict; unknown keys go to ``extra``."""
        names = {f.name for f in dataclasses.fields(cls)} - {"extra"}
        known = {k: v for k, v in data.items() if k in names}
        extra = {k: v for k, v in data.items() if k not in names}
        num_labels = extra.pop("num_labels", None)
        try:
            config = cls(**known, extra=extra)
        except TypeError as e:
            raise ConfigError(f"{source}: {e}") from None
        if config.id2label is not None:
            try:
                config.id2label = {int(k): str(v) for k, v in config.id2label.items()}
            except (ValueError, AttributeError):
                raise ConfigError(f"{source}: id2label must map integer ids to label names") from None
            if config.label2id is None:
                config.label2id = {v: k for k, v in config.id2label.items()}
        if num_labels is not None and config.id2label is None:
            config.num_labels = int(num_labels)
        return config

    @property
    def num_labels(self) -> int:
        return len(self.id2label) if self.id2label else 2

    @num_labels.setter
    def num_labels(self, n: int) -> None:
        if self.id2label is None or len(self.id2label) != n:
            self.id2label = {i: f"LABEL_{i}" for i in range(n)}
            self.label2id = {v: k for k, v in self.id2label.items()}

    @property
    def max_input_length(self) -> int | None:
        """The longest input the model's position table allows (None: unbounded)."""
        return self.extra.get("max_position_embeddings") or getattr(self, "max_position_embeddings", None)

    def to_dict(self) -> dict:
        data = dict(self.extra)
        for f in dataclasses.fields(self):
            if f.name != "extra":
                data[f.name] = getattr(self, f.name)
        if self.id2label is not None:
            data["id2label"] = {str(k): v for k, v in self.id2label.items()}
        return dict(sorted(data.items()))

    def save_pretrained(self, directory: str | os.PathLike) -> None:
        directory = Path(directory)
        directory.mkdir(parents=True, exist_ok=True)
        tmp = directory / "config.json.tmp"
        tmp.write_text(json.dumps(self.to_dict(), indent=2) + "\n", encoding="utf-8")
        os.replace(tmp, directory / "config.json")


class AutoConfig:
    """Reads ``config.json`` and returns the config class of its ``model_type``.

    >>> config = AutoConfig.from_pretrained("path/to/bert")   # doctest: +SKIP
    >>> config.hidden_size                                     # doctest: +SKIP
    768
    """

    @staticmethod
    def from_pretrained(name_or_path: str | os.PathLike, revision: str | None = None, gguf_file=None,
                        **overrides) -> PretrainedConfig:
        from peluk.hub import resolve
        from peluk.models import family

        directory = resolve(name_or_path, revision)
        path = directory / "config.json" if directory.is_dir() else directory
        if gguf_file is not None or path.suffix == ".gguf":
            from peluk.gguf import gguf_path, read_gguf

            path = gguf_path(directory, gguf_file)
            data = read_gguf(path).config_dict()
        elif directory.is_dir() and not path.exists() and (directory / "adapter_config.json").exists():
            # a PEFT adapter without its own config.json: the base model's config (as transformers + PEFT do)
            base = read_json(directory / "adapter_config.json").get("base_model_name_or_path")
            if not base:
                raise ConfigError(f"{directory / 'adapter_config.json'} has no base_model_name_or_path")
            return AutoConfig.from_pretrained(base, **overrides)
        elif directory.is_dir() and not path.exists():
            raise ModelNotFoundError(f"{directory} has no config.json; is it a model directory?")
        else:
            data = read_json(path)
        data.update(overrides)
        if "model_type" not in data:
            raise ConfigError(f"{path} has no 'model_type' field")
        module = family(data["model_type"], source=str(path))
        return module.config_class(data["model_type"]).from_dict(data, source=str(path))


@dataclass
class GenerationConfig:
    """Defaults for ``generate`` (transformers' ``generation_config.json`` fields and defaults)."""

    max_length: int = 20
    max_new_tokens: int | None = None
    min_length: int = 0
    min_new_tokens: int | None = None
    do_sample: bool = False
    temperature: float = 1.0
    top_k: int | None = 50
    top_p: float = 1.0
    min_p: float | None = None
    repetition_penalty: float = 1.0
    no_repeat_ngram_size: int = 0
    num_beams: int = 1
    length_penalty: float = 1.0
    early_stopping: bool | str = False
    num_return_sequences: int = 1
    bos_token_id: int | None = None
    eos_token_id: int | list[int] | None = None
    pad_token_id: int | None = None
    decoder_start_token_id: int | None = None
    forced_bos_token_id: int | None = None
    forced_eos_token_id: int | None = None
    extra: dict[str, Any] = field(default_factory=dict, repr=False)

    @classmethod
    def from_dict(cls, data: dict) -> "GenerationConfig":
        names = {f.name for f in dataclasses.fields(cls)} - {"extra"}
        return cls(**{k: v for k, v in data.items() if k in names},
                   extra={k: v for k, v in data.items() if k not in names})

    @classmethod
    def for_model(cls, model) -> "GenerationConfig":
        """``generation_config.json`` next to the model's weights, else the token ids of its config."""
        directory = getattr(model, "name_or_path", None)
        path = Path(directory) / "generation_config.json" if directory and Path(directory).is_dir() else None
        if path is not None and path.exists():
            return cls.from_dict(read_json(path))
        c = model.config
        return cls(bos_token_id=c.bos_token_id, eos_token_id=c.eos_token_id, pad_token_id=c.pad_token_id,
                   decoder_start_token_id=c.extra.get("decoder_start_token_id"),
                   forced_bos_token_id=c.extra.get("forced_bos_token_id"),
                   forced_eos_token_id=c.extra.get("forced_eos_token_id"))

    def updated(self, **options) -> "GenerationConfig":
        """A copy with ``options`` (None values ignored); unknown names raise ValueError."""
        names = {f.name for f in dataclasses.fields(self)} - {"extra"}
        unknown = sorted(set(options) - names)
        if unknown:
            raise ConfigError(f"unknown generation option(s) {unknown}; known: {sorted(names)}")
        return dataclasses.replace(self, **{k: v for k, v in options.items() if v is not None})
