"""Checkpoints: everything needed to continue a run bit for bit, written atomically.

A checkpoint directory ``checkpoint-<step>`` holds the model in Hugging Face's format
(``save_pretrained``: loadable by transformers and peluk), the tokenizer, and the training
state: trainable parameters exactly as they are in memory (``trainable.safetensors``),
optimizer and scheduler states, every RNG state, ``trainer_state.json`` and
``training_args.json``. It is written to a temporary directory and renamed into place, so
a run killed while saving never leaves a checkpoint that looks complete.
"""

from __future__ import annotations

import os
import random
import re
import shutil
from pathlib import Path

import numpy as np
import torch
from safetensors.torch import load_file, save_file

from peluk.errors import TrainingError

PREFIX = "checkpoint-"


def _unwrap(model):
    return getattr(model, "module", model)  # DistributedDataParallel keeps the model in .module


def rng_state() -> dict:
    state = {"python": random.getstate(), "numpy": np.random.get_state(), "cpu": torch.get_rng_state()}
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def set_rng_state(state: dict) -> None:
    random.setstate(state["python"])
    np.random.set_state(state["numpy"])
    torch.set_rng_state(state["cpu"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


def save_checkpoint(directory: Path, model, tokenizer, optimizer, scheduler, state, args) -> Path:
    """Write checkpoint ``directory`` atomically (temporary sibling, then rename)."""
    directory = Path(directory)
    tmp = directory.with_name(f".tmp-{directory.name}-{os.getpid()}")
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    inner = _unwrap(model)
    if hasattr(inner, "save_pretrained"):
        inner.save_pretrained(tmp)
    if tokenizer is not None and hasattr(tokenizer, "save_pretrained"):
        tokenizer.save_pretrained(tmp)
    trainable = {n: p.detach().cpu().contiguous().clone() for n, p in inner.named_parameters() if p.requires_grad}
    save_file(trainable, str(tmp / "trainable.safetensors"))
    torch.save(optimizer.state_dict(), tmp / "optimizer.pt")
    torch.save(scheduler.state_dict(), tmp / "scheduler.pt")
    torch.save(rng_state(), tmp / "rng_state.pth")
    state.save(str(tmp / "trainer_state.json"))
    args.save(tmp)
    for path in tmp.iterdir():  # flush file contents before the rename makes them "complete"
        with open(path, "rb") as f:
            os.fsync(f.fileno())
    if directory.exists():
        shutil.rmtree(directory)
    os.replace(tmp, directory)
    return directory


def load_weights(directory: Path, model) -> None:
    """Put the trainable parameters saved in ``directory`` back into ``model`` (in place, exactly)."""
    path = Path(directory) / "trainable.safetensors"
    if not path.exists():
        raise TrainingError(f"{path} is missing: {directory} is not a complete peluk checkpoint")
    saved = load_file(str(path))
    params = dict(_unwrap(model).named_parameters())
    missing = sorted(set(n for n, p in params.items() if p.requires_grad) - set(saved))
    unknown = sorted(set(saved) - set(params))
    if missing or unknown:
        raise TrainingError(f"{path} does not match the model: missing {missing[:5]}, unexpected {unknown[:5]}")
    with torch.no_grad():
        for name, tensor in saved.items():
            if params[name].shape != tensor.shape:
                raise TrainingError(f"{path}: {name} has shape {tuple(tensor.shape)}, "
                                    f"the model's is {tuple(params[name].shape)}")
            params[name].copy_(tensor)


def load_training_state(directory: Path, optimizer, scheduler) -> dict:
    """Restore optimizer and scheduler; return the RNG states (set them when data skipping is done)."""
    directory = Path(directory)
    try:
        optimizer.load_state_dict(torch.load(directory / "optimizer.pt", weights_only=True))
        scheduler.load_state_dict(torch.load(directory / "scheduler.pt", weights_only=True))
        return torch.load(directory / "rng_state.pth", weights_only=False)
    except FileNotFoundError as e:
        raise TrainingError(f"{directory} is not a complete checkpoint: {Path(e.filename).name} is missing") from None


def checkpoints(output_dir: str | Path) -> list[Path]:
    """Complete checkpoints in ``output_dir``, oldest (lowest step) first."""
    root = Path(output_dir)
    if not root.is_dir():
        return []
    found = [p for p in root.iterdir() if p.is_dir() and re.fullmatch(rf"{PREFIX}\d+", p.name)]
    return sorted(found, key=lambda p: int(p.name[len(PREFIX):]))


def latest_checkpoint(output_dir: str | Path) -> Path:
    found = checkpoints(output_dir)
    if not found:
        raise TrainingError(f"resume_from_checkpoint=True but {output_dir} has no {PREFIX}<step> directory")
    return found[-1]


def rotate(output_dir: str | Path, limit: int | None, keep: str | None = None) -> None:
    """Delete the oldest checkpoints beyond ``limit``, never the one named ``keep`` (the best)."""
    if not limit:
        return
    found = checkpoints(output_dir)
    if keep is not None and len(found) > limit:
        limit = max(limit, 2) if Path(keep) != found[-1] else limit  # the best and the latest both stay
    excess = len(found) - limit
    for path in found:
        if excess <= 0:
            break
        if keep is not None and Path(path) == Path(keep):
            continue
        shutil.rmtree(path, ignore_errors=True)
        excess -= 1
