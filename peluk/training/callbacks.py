"""Trainer events and the callbacks that listen to them.

The loop calls ``on_<event>(args, state, control, **info)`` on every callback that defines
it (events: train_begin, epoch_begin, step_end, log, evaluate, save, epoch_end, train_end).
A callback steers the loop through ``control`` (``should_training_stop``); progress bars,
log files and early stopping are callbacks like any a user writes.

>>> trainer = Trainer(model, args, train_dataset=train, eval_dataset=dev,          # doctest: +SKIP
...                   callbacks=[EarlyStoppingCallback(early_stopping_patience=2)])
"""

from __future__ import annotations

import dataclasses
import json
import math
import os
import sys
from dataclasses import dataclass, field

from tqdm.auto import tqdm


@dataclass
class TrainerState:
    """Where a run is; saved as ``trainer_state.json`` in every checkpoint."""

    global_step: int = 0
    epoch: float = 0.0
    max_steps: int = 0
    num_train_epochs: int = 0
    steps_per_epoch: int = 0
    train_batch_size: int = 0
    log_history: list[dict] = field(default_factory=list)
    best_metric: float | None = None
    best_model_checkpoint: str | None = None
    train_loss_sum: float = 0.0  # over every row trained on (a resumed run continues the sum)
    train_loss_count: int = 0
    is_world_process_zero: bool = True

    def save(self, path: str) -> None:
        with open(path, "w", encoding="utf-8") as f:
            json.dump(dataclasses.asdict(self), f, indent=2)

    @classmethod
    def load(cls, path: str) -> "TrainerState":
        with open(path, encoding="utf-8") as f:
            data = json.load(f)
        names = {f.name for f in dataclasses.fields(cls)}
        return cls(**{k: v for k, v in data.items() if k in names})


@dataclass
class TrainerControl:
    """Flags callbacks set to steer the loop."""

    should_training_stop: bool = False


class TrainerCallback:
    """Base class: override the ``on_<event>`` methods you need (all optional)."""


class ProgressCallback(TrainerCallback):
    """tqdm bars for training steps and evaluation batches; log lines printed above them."""

    def __init__(self):
        self.bar = None

    def on_train_begin(self, args, state, control, **_):
        if state.is_world_process_zero and not args.disable_tqdm:
            self.bar = tqdm(total=state.max_steps, initial=state.global_step, desc="train", unit="step",
                            dynamic_ncols=True, file=sys.stderr)

    def on_step_end(self, args, state, control, **_):
        if self.bar is not None:
            self.bar.update(state.global_step - self.bar.n)

    def on_log(self, args, state, control, logs=None, **_):
        if not state.is_world_process_zero or not logs:
            return
        text = "  ".join(f"{k} {_fmt(v)}" for k, v in logs.items())
        (self.bar.write if self.bar is not None else print)(text, file=sys.stderr)

    def on_train_end(self, args, state, control, **_):
        if self.bar is not None:
            self.bar.close()
            self.bar = None


def _fmt(value) -> str:
    if isinstance(value, float):
        return f"{value:.4g}"
    return str(value)


class JsonlLoggerCallback(TrainerCallback):
    """Append every log record (loss, learning rate, throughput, metrics) to ``output_dir/log.jsonl``."""

    def on_log(self, args, state, control, logs=None, **_):
        if not state.is_world_process_zero or not logs:
            return
        os.makedirs(args.output_dir, exist_ok=True)
        record = {"step": state.global_step, "epoch": round(state.epoch, 4), **logs}
        with open(os.path.join(args.output_dir, "log.jsonl"), "a", encoding="utf-8") as f:
            f.write(json.dumps(record) + "\n")


class TensorBoardCallback(TrainerCallback):
    """Scalars to ``output_dir/runs`` through ``torch.utils.tensorboard`` (needs ``pip install tensorboard``)."""

    def __init__(self):
        self.writer = None

    def on_train_begin(self, args, state, control, **_):
        if not state.is_world_process_zero:
            return
        try:
            from torch.utils.tensorboard import SummaryWriter
        except ImportError as e:
            from peluk.errors import TrainingError

            raise TrainingError("report_to='tensorboard' needs the tensorboard package: "
                                "pip install 'peluk[tensorboard]'") from e
        self.writer = SummaryWriter(os.path.join(args.output_dir, "runs"))

    def on_log(self, args, state, control, logs=None, **_):
        if self.writer is None or not logs:
            return
        for key, value in logs.items():
            if isinstance(value, (int, float)) and math.isfinite(value):
                self.writer.add_scalar(key, value, state.global_step)
        self.writer.flush()

    def on_train_end(self, args, state, control, **_):
        if self.writer is not None:
            self.writer.close()
            self.writer = None


class EarlyStoppingCallback(TrainerCallback):
    """Stop when ``metric_for_best_model`` has not improved for ``early_stopping_patience`` evaluations.

    Args:
        early_stopping_patience: evaluations without improvement before stopping.
        early_stopping_threshold: the smallest change that counts as an improvement.
    """

    def __init__(self, early_stopping_patience: int = 1, early_stopping_threshold: float = 0.0):
        self.patience = early_stopping_patience
        self.threshold = early_stopping_threshold
        self.best = None
        self.waited = 0

    def on_train_begin(self, args, state, control, **_):
        if args.metric_for_best_model is None:
            from peluk.errors import TrainingError

            raise TrainingError("EarlyStoppingCallback needs metric_for_best_model (or load_best_model_at_end=True)")
        if args.eval_strategy == "no":
            from peluk.errors import TrainingError

            raise TrainingError("EarlyStoppingCallback needs an eval_strategy ('steps' or 'epoch')")

    def on_evaluate(self, args, state, control, metrics=None, **_):
        name = args.metric_for_best_model
        key = name if name.startswith("eval_") else f"eval_{name}"
        if metrics is None or key not in metrics:
            return
        value = metrics[key]
        sign = 1.0 if args.greater_is_better else -1.0
        if self.best is None or sign * (value - self.best) > self.threshold:
            self.best, self.waited = value, 0
        else:
            self.waited += 1
            if self.waited >= self.patience:
                control.should_training_stop = True


def default_callbacks(args) -> list[TrainerCallback]:
    """Progress bars, plus the loggers ``args.report_to`` names."""
    callbacks: list[TrainerCallback] = [ProgressCallback()]
    if "jsonl" in args.report_to:
        callbacks.append(JsonlLoggerCallback())
    if "tensorboard" in args.report_to:
        callbacks.append(TensorBoardCallback())
    return callbacks
