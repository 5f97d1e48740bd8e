"""Checkpoint files → state dicts, and back.

Reads ``model.safetensors``, sharded checkpoints (``*.index.json``) and legacy
``pytorch_model.bin`` files (``torch.load(weights_only=True)``: tensors only, never
arbitrary pickled code). Writes safetensors, sharded when asked, atomically.
"""

from __future__ import annotations

import json
import os
import tempfile
from pathlib import Path

import torch

from peluk.config import read_json
from peluk.errors import ModelNotFoundError, WeightsError

# Looked for in this order, as transformers does (safetensors preferred).
WEIGHT_FILES = (
    "model.safetensors",
    "model.safetensors.index.json",
    "pytorch_model.bin",
    "pytorch_model.bin.index.json",
)


def find_weights(directory: Path) -> Path:
    """Return the checkpoint file (or shard index) in ``directory``."""
    for name in WEIGHT_FILES:
        if (directory / name).exists():
            return directory / name
    present = sorted(p.name for p in directory.iterdir()) if directory.is_dir() else []
    raise ModelNotFoundError(
        f"no weights in {directory}: looked for {', '.join(WEIGHT_FILES)}; found {present or 'nothing'}"
    )


def load_state_dict(path: str | os.PathLike, gguf_file: str | os.PathLike | None = None) -> dict[str, torch.Tensor]:
    """Read every tensor of a checkpoint: a directory, a weight file, a shard index, or a GGUF
    file (dequantized to float32, under transformers' names)."""
    path = Path(path)
    if gguf_file is not None or path.suffix == ".gguf":
        from peluk.gguf import gguf_path, read_gguf

        return read_gguf(gguf_path(path, gguf_file)).state_dict()
    if path.is_dir() and (path / ADAPTER_CONFIG).exists() and not _has_weights(path):
        return merged_adapter_state(path)
    if path.is_dir():
        path = find_weights(path)
    if path.name.endswith(".index.json"):
        index = read_json(path)
        try:
            shards = sorted(set(index["weight_map"].values()))
        except (KeyError, AttributeError):
            raise WeightsError(f"{path} has no 'weight_map' object") from None
        state: dict[str, torch.Tensor] = {}
        for shard in shards:
            state.update(_load_file(path.parent / shard))
        missing = sorted(set(index["weight_map"]) - set(state))
        if missing:
            raise WeightsError(f"{path} lists tensors its shards do not contain: {missing[:10]}")
        return state
    return _load_file(path)


ADAPTER_CONFIG = "adapter_config.json"
PEFT_PREFIX = "base_model.model."


def _has_weights(directory: Path) -> bool:
    try:
        find_weights(directory)
        return True
    except ModelNotFoundError:
        return False


def merged_adapter_state(directory: Path) -> dict[str, torch.Tensor]:
    """The state dict of a PEFT LoRA adapter directory merged into its base model's weights.

    ``adapter_config.json`` names the base (``base_model_name_or_path``, resolved through
    ``peluk.hub``); each ``lora_A``/``lora_B`` pair adds ``scaling * B @ A`` to its layer's
    weight, and saved whole modules (``modules_to_save``, biases) replace the base's tensors.
    This is what transformers does when loading an adapter directory with PEFT installed,
    done on tensors so that every model class can load adapters (training/lora.py trains them).

    Raises:
        WeightsError: an adapter type other than LoRA, or a key with no matching base weight.
    """
    from peluk.hub import resolve

    config = read_json(directory / ADAPTER_CONFIG)
    source = directory / ADAPTER_CONFIG
    if config.get("peft_type", "LORA") != "LORA" or config.get("use_dora"):
        raise WeightsError(f"{source}: only LoRA adapters can be loaded (peft_type {config.get('peft_type')!r})")
    base = config.get("base_model_name_or_path")
    if not base:
        raise WeightsError(f"{source} has no base_model_name_or_path: load the base model and apply the adapter "
                           f"with peluk.training.PeftModel.from_pretrained(model, {str(directory)!r})")
    state = load_state_dict(resolve(base, config.get("revision")))
    files = [directory / "adapter_model.safetensors", directory / "adapter_model.bin"]
    adapter = _load_file(next((f for f in files if f.exists()), files[0]))
    # A base checkpoint of the bare model (BertModel: "encoder.…") lacks the prefix the adapter's keys
    # carry ("bert.encoder.…"): add it, so that new heads and base weights share one naming.
    names = [k.removeprefix(PEFT_PREFIX) for k in adapter]
    lora = [n.split(".lora_A.")[0] + ".weight" for n in names if ".lora_A." in n]
    if lora and lora[0] not in state and lora[0].partition(".")[2] in state:
        prefix = lora[0].partition(".")[0] + "."
        state = {prefix + k: v for k, v in state.items()}

    def target(name: str, new: bool = False) -> str:
        key = name.removeprefix(PEFT_PREFIX)
        if key in state or new:  # new: a head the base does not have (modules_to_save)
            return key
        raise WeightsError(f"{directory}: adapter tensor {name} has no matching weight in the base model {base}")

    r, alpha = config.get("r", 8), config.get("lora_alpha", 8)
    for name, a in adapter.items():
        if ".lora_A." in name:
            module = name.split(".lora_A.")[0]
            b = adapter.get(f"{module}.lora_B.weight")
            if b is None:
                raise WeightsError(f"{directory}: {name} has no matching lora_B")
            short = module.removeprefix(PEFT_PREFIX)
            rank = _pattern(config.get("rank_pattern") or {}, short, r)
            scale = _pattern(config.get("alpha_pattern") or {}, short, alpha) / (
                rank ** 0.5 if config.get("use_rslora") else rank)
            key = target(f"{module}.weight")
            delta = (b.float() @ a.float()) * scale  # (out, in)
            if config.get("fan_in_fan_out"):
                delta = delta.T  # GPT-2's Conv1D stores (in, out)
            state[key] = (state[key].float() + delta).to(state[key].dtype)
        elif ".lora_B." not in name and ".original_module." not in name:
            plain = name.replace(".base_layer.", ".").replace(".modules_to_save.default.", ".")
            state[target(plain, new=True)] = adapter[name]
    return state


def _pattern(patterns: dict, module: str, default):
    import re

    for pattern, value in patterns.items():
        if re.fullmatch(pattern, module) or re.fullmatch(rf"(.*\.)?{pattern}", module):
            return value
    return default


def _load_file(path: Path) -> dict[str, torch.Tensor]:
    if not path.exists():
        raise ModelNotFoundError(f"weight file {path} does not exist")
    if path.suffix == ".safetensors":
        from safetensors import SafetensorError
        from safetensors.torch import load_file

        try:
            return load_file(path)
        except (SafetensorError, OSError, ValueError) as e:
            raise WeightsError(f"{path} is not a readable safetensors file ({e}); the file may be truncated or corrupt") from None
    if path.suffix in (".bin", ".pt", ".pth"):
        try:
            state = torch.load(path, map_location="cpu", weights_only=True)
        except Exception as e:  # pickle, zip and unpickler errors have no common base class
            raise WeightsError(f"{path} could not be read as a tensor-only PyTorch checkpoint: {e}") from None
        if not isinstance(state, dict):
            raise WeightsError(f"{path} holds a {type(state).__name__}, not a state dict")
        return state
    raise WeightsError(f"{path}: unknown weight file type {path.suffix!r}")


def save_state_dict(
    state: dict[str, torch.Tensor],
    directory: str | os.PathLike,
    safe_serialization: bool = True,
    max_shard_size: int | str | None = None,
) -> list[Path]:
    """Write ``state`` to ``directory`` as transformers names its files; returns the files.

    Every file is written to a temporary name and renamed into place, so an interrupted
    save never leaves a truncated checkpoint under the final name.
    """
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    base, ext = ("model", ".safetensors") if safe_serialization else ("pytorch_model", ".bin")
    # Tied weights share storage; safetensors refuses shared tensors, so store each storage once.
    seen: dict[tuple, str] = {}
    tensors: dict[str, torch.Tensor] = {}
    for name, t in state.items():
        key = (t.untyped_storage().data_ptr(), t.storage_offset(), tuple(t.shape))
        if key in seen:
            continue
        seen[key] = name
        tensors[name] = t.detach().contiguous().cpu()
    shards = _split(tensors, _parse_size(max_shard_size))
    written = []
    for i, shard in enumerate(shards):
        name = f"{base}{ext}" if len(shards) == 1 else f"{base}-{i + 1:05d}-of-{len(shards):05d}{ext}"
        _atomic_write(directory / name, lambda p, s=shard: _write(s, p, safe_serialization))
        written.append(directory / name)
    if len(shards) > 1:
        index = {
            "metadata": {"total_size": sum(t.numel() * t.element_size() for t in tensors.values())},
            "weight_map": {k: p.name for p, s in zip(written, shards) for k in s},
        }
        index_path = directory / f"{base}{ext}.index.json"
        _atomic_write(index_path, lambda p: p.write_text(json.dumps(index, indent=2) + "\n"))
        written.append(index_path)
    return written


def _write(tensors: dict[str, torch.Tensor], path: Path, safe: bool) -> None:
    if safe:
        from safetensors.torch import save_file

        save_file(tensors, path, metadata={"format": "pt"})
    else:
        torch.save(tensors, path)


def _atomic_write(path: Path, write) -> None:
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    os.close(fd)
    try:
        write(Path(tmp))
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def _parse_size(size: int | str | None) -> int | None:
    if size is None or isinstance(size, int):
        return size
    units = {"KB": 10**3, "MB": 10**6, "GB": 10**9, "KIB": 2**10, "MIB": 2**20, "GIB": 2**30}
    s = size.strip().upper()
    for unit, factor in sorted(units.items(), key=lambda u: -len(u[0])):
        if s.endswith(unit):
            return int(float(s[: -len(unit)]) * factor)
    return int(s)


def _split(tensors: dict[str, torch.Tensor], limit: int | None) -> list[dict[str, torch.Tensor]]:
    if limit is None:
        return [tensors]
    shards: list[dict[str, torch.Tensor]] = [{}]
    size = 0
    for name, t in tensors.items():
        n = t.numel() * t.element_size()
        if shards[-1] and size + n > limit:
            shards.append({})
            size = 0
        shards[-1][name] = t
        size += n
    return shards
