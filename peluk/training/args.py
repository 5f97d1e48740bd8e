"""``TrainingArguments``: the knobs of a training run, with the names transformers uses.

Only the settings the loop actually reads are here; unknown keyword arguments are an error
that names them (a typo should not silently train with a default).

>>> args = TrainingArguments("out", learning_rate=2e-5, num_train_epochs=1)
>>> args.eval_strategy
'no'
"""

from __future__ import annotations

import dataclasses
import json
import os
from dataclasses import dataclass, field

from peluk.errors import TrainingError

STRATEGIES = ("no", "steps", "epoch")
SCHEDULES = ("linear", "cosine", "constant", "constant_with_warmup")
REPORTERS = ("none", "jsonl", "tensorboard")


@dataclass
class TrainingArguments:
    """Settings of a :class:`~peluk.training.Trainer` run.

    Args (the transformers names; the common ones):
        output_dir: where checkpoints, logs and the final model go.
        learning_rate, weight_decay, adam_beta1, adam_beta2, adam_epsilon: AdamW settings; bias
            and LayerNorm/RMSNorm weights get no weight decay.
        per_device_train_batch_size, per_device_eval_batch_size: rows per step (per process).
        num_train_epochs, max_steps: length of training (``max_steps > 0`` wins).
        warmup_ratio, warmup_steps, lr_scheduler_type: linear, cosine, constant, constant_with_warmup.
        gradient_accumulation_steps, max_grad_norm: accumulate, then clip the global norm.
        eval_strategy, eval_steps, save_strategy, save_steps, save_total_limit, logging_steps:
            ``"no" | "steps" | "epoch"`` and the step intervals (default: ``logging_steps``).
        load_best_model_at_end, metric_for_best_model, greater_is_better: keep the best checkpoint.
        group_by_length: batch rows of similar length together (less padding; on by default).
        bf16: autocast matmuls to bfloat16 (CPU or GPU).
        report_to: ``"none"``, ``"jsonl"`` (``output_dir/log.jsonl``, the default) or ``"tensorboard"``.
        push_to_hub, hub_model_id, hub_token, hub_private_repo: upload the final model (``output_dir``
            without its checkpoints) to the hub repo ``hub_model_id`` (default: ``output_dir``'s name)
            at the end of ``train()``; see ``Trainer.push_to_hub``.
    """

    output_dir: str = "trainer_output"
    learning_rate: float = 5e-5
    weight_decay: float = 0.0
    adam_beta1: float = 0.9
    adam_beta2: float = 0.999
    adam_epsilon: float = 1e-8
    per_device_train_batch_size: int = 8
    per_device_eval_batch_size: int = 8
    num_train_epochs: float = 3.0
    max_steps: int = -1
    warmup_ratio: float = 0.0
    warmup_steps: int = 0
    lr_scheduler_type: str = "linear"
    gradient_accumulation_steps: int = 1
    max_grad_norm: float = 1.0
    eval_strategy: str = "no"
    eval_steps: int | None = None
    save_strategy: str = "steps"
    save_steps: int = 500
    save_total_limit: int | None = None
    load_best_model_at_end: bool = False
    metric_for_best_model: str | None = None
    greater_is_better: bool | None = None
    logging_steps: int = 50
    seed: int = 42
    bf16: bool = False
    dataloader_num_workers: int = 0
    report_to: str | list[str] = "jsonl"
    group_by_length: bool = True
    remove_unused_columns: bool = True
    label_names: list[str] | None = None
    disable_tqdm: bool = False
    use_cpu: bool = False
    run_name: str | None = None
    push_to_hub: bool = False
    hub_model_id: str | None = None
    hub_token: str | None = None
    hub_private_repo: bool = False
    extra: dict = field(default_factory=dict, repr=False)

    def __init__(self, output_dir: str = "trainer_output", **kwargs):
        names = {f.name for f in dataclasses.fields(self)} - {"extra"}
        # transformers' older spelling, still in many tutorials
        if "evaluation_strategy" in kwargs:
            kwargs.setdefault("eval_strategy", kwargs.pop("evaluation_strategy"))
        unknown = sorted(set(kwargs) - names)
        if unknown:
            raise TrainingError(f"TrainingArguments got unknown argument(s) {unknown}; known: {sorted(names)}")
        for f in dataclasses.fields(self):
            if f.name == "extra":
                continue
            default = f.default if f.default is not dataclasses.MISSING else f.default_factory()
            setattr(self, f.name, kwargs.get(f.name, default))
        self.output_dir = str(output_dir)
        self.extra = {}
        self._validate()

    def _validate(self) -> None:
        for name in ("eval_strategy", "save_strategy"):
            if getattr(self, name) not in STRATEGIES:
                raise TrainingError(f"{name}={getattr(self, name)!r} must be one of {STRATEGIES}")
        if self.lr_scheduler_type not in SCHEDULES:
            raise TrainingError(f"lr_scheduler_type={self.lr_scheduler_type!r} must be one of {SCHEDULES}")
        reporters = [self.report_to] if isinstance(self.report_to, str) else list(self.report_to or ["none"])
        for r in reporters:
            if r not in REPORTERS + ("all",):
                raise TrainingError(f"report_to={r!r} must be one of {REPORTERS}")
        self.report_to = ["jsonl", "tensorboard"] if "all" in reporters else [r for r in reporters if r != "none"]
        for name in ("per_device_train_batch_size", "per_device_eval_batch_size", "gradient_accumulation_steps"):
            if int(getattr(self, name)) < 1:
                raise TrainingError(f"{name} must be >= 1, got {getattr(self, name)}")
        if self.eval_steps is None:
            self.eval_steps = self.logging_steps
        if self.load_best_model_at_end:
            if self.eval_strategy == "no":
                raise TrainingError("load_best_model_at_end needs an eval_strategy ('steps' or 'epoch')")
            if self.save_strategy != self.eval_strategy:
                raise TrainingError(f"load_best_model_at_end needs save_strategy == eval_strategy "
                                    f"(got {self.save_strategy!r} and {self.eval_strategy!r})")
            if self.save_strategy == "steps" and self.save_steps % self.eval_steps:
                raise TrainingError(f"save_steps ({self.save_steps}) must be a multiple of eval_steps ({self.eval_steps})")
        if self.metric_for_best_model is None and self.load_best_model_at_end:
            self.metric_for_best_model = "loss"
        if self.metric_for_best_model is not None and self.greater_is_better is None:
            self.greater_is_better = not self.metric_for_best_model.endswith("loss")

    @property
    def train_batch_size(self) -> int:
        return self.per_device_train_batch_size

    def warmup(self, total_steps: int) -> int:
        """Warm-up steps: ``warmup_steps`` if set, else ``warmup_ratio`` of the total."""
        return self.warmup_steps if self.warmup_steps > 0 else int(-(-total_steps * self.warmup_ratio // 1))

    def to_dict(self) -> dict:
        hidden = {"extra", "hub_token"}  # training_args.json must not carry a secret
        return {f.name: getattr(self, f.name) for f in dataclasses.fields(self) if f.name not in hidden}

    def save(self, directory: str | os.PathLike) -> None:
        with open(os.path.join(directory, "training_args.json"), "w", encoding="utf-8") as f:
            json.dump(self.to_dict(), f, indent=2)
