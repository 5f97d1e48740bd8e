"""``Trainer``: an explicit training loop for peluk (and any PyTorch) models.

Batch, forward, loss, backward (accumulate), clip, step, schedule; evaluate, checkpoint,
log. Everything else is a callback (``peluk.training.callbacks``). Batches are grouped by
length and padded per batch, so CPU time goes to tokens, not padding. Under ``torchrun``
(``WORLD_SIZE`` > 1) the same script trains data-parallel: each process takes its slice of
every global batch and gradients are averaged (gloo on CPU, NCCL on GPUs).

>>> args = TrainingArguments("out", num_train_epochs=1, learning_rate=5e-5)       # doctest: +SKIP
>>> trainer = Trainer(model, args, train_dataset=ds["train"], eval_dataset=ds["validation"],
...                   processing_class=tokenizer, compute_metrics=accuracy)
>>> trainer.train(); trainer.evaluate()["eval_accuracy"]
0.91
"""

from __future__ import annotations

import inspect
import math
import os
import random
import time
from pathlib import Path
from typing import Any, Callable, NamedTuple

import numpy as np
import torch
from torch import nn

from peluk.data.collate import DataCollatorWithPadding, default_data_collator
from peluk.errors import TrainingError
from peluk.training import checkpoint as ckpt
from peluk.training.args import TrainingArguments
from peluk.training.callbacks import TrainerControl, TrainerState, default_callbacks
from peluk.training.optim import make_optimizer, make_schedule

LABEL_KEYS = ("labels", "label", "label_ids", "start_positions", "end_positions")


class EvalPrediction(NamedTuple):
    """What ``compute_metrics`` receives: predictions (logits) and labels as numpy arrays."""

    predictions: Any
    label_ids: Any


class PredictionOutput(NamedTuple):
    predictions: Any
    label_ids: Any
    metrics: dict


def set_seed(seed: int) -> None:
    """Seed Python, numpy and torch (all devices)."""
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


def _distributed() -> tuple[int, int]:
    """(rank, world size); joins the process group torchrun describes, once."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world <= 1:
        return 0, 1
    import torch.distributed as dist

    if not dist.is_initialized():
        dist.init_process_group("nccl" if torch.cuda.is_available() else "gloo")
    return dist.get_rank(), world


class Trainer:
    """Train, evaluate and predict.

    Args:
        model: a peluk model (or any ``nn.Module`` returning ``.loss``/``.logits`` given ``labels``).
        args: :class:`TrainingArguments`.
        train_dataset, eval_dataset: indexable datasets of dict rows (peluk/HF ``Dataset``, a list of dicts).
        processing_class / tokenizer: pads batches (``DataCollatorWithPadding``) and is saved with the model.
        data_collator: rows → batch of tensors; default pads with the tokenizer, or stacks.
        compute_metrics: ``EvalPrediction`` → dict of floats (``eval_`` is prefixed to the keys).
        callbacks: extra :class:`TrainerCallback` objects.
        optimizers: ``(optimizer, scheduler)`` to use instead of AdamW + the configured schedule.
    """

    def __init__(self, model: nn.Module, args: TrainingArguments | None = None, data_collator: Callable | None = None,
                 train_dataset=None, eval_dataset=None, processing_class=None, tokenizer=None,
                 compute_metrics: Callable | None = None, callbacks: list | None = None,
                 optimizers: tuple = (None, None), preprocess_logits_for_metrics: Callable | None = None):
        self.args = args or TrainingArguments()
        self.rank, self.world = _distributed()
        set_seed(self.args.seed)
        self.tokenizer = processing_class if processing_class is not None else tokenizer
        self.device = torch.device("cuda" if torch.cuda.is_available() and not self.args.use_cpu else "cpu")
        self.model = model.to(self.device)
        self.train_dataset, self.eval_dataset = train_dataset, eval_dataset
        self.data_collator = data_collator or (
            DataCollatorWithPadding(self.tokenizer) if self.tokenizer is not None else default_data_collator)
        self.compute_metrics = compute_metrics
        self.preprocess_logits_for_metrics = preprocess_logits_for_metrics
        self.callbacks = default_callbacks(self.args) + list(callbacks or [])
        self.optimizer, self.scheduler = optimizers
        self.state = TrainerState(is_world_process_zero=self.rank == 0)
        self.control = TrainerControl()
        forward = inspect.signature(getattr(model, "forward", model)).parameters
        self._inputs = None if any(p.kind == p.VAR_KEYWORD for p in forward.values()) else set(forward)

    # ---- data -------------------------------------------------------------------------
    def _rows(self, dataset, indices: list[int]) -> list[dict]:
        if hasattr(dataset, "__getitems__"):
            rows = dataset.__getitems__(indices)
        elif hasattr(dataset, "column_names"):  # Arrow datasets: one columnar read for the batch
            cols = dataset[indices]
            rows = [dict(zip(cols, values)) for values in zip(*cols.values())]
        else:
            rows = [dataset[i] for i in indices]
        if self._inputs is not None and self.args.remove_unused_columns:
            keep = self._inputs | set(LABEL_KEYS)
            rows = [{k: v for k, v in row.items() if k in keep} for row in rows]
        return rows

    def _batch(self, dataset, indices: list[int]) -> dict:
        batch = self.data_collator(self._rows(dataset, indices))
        return {k: v.to(self.device) if hasattr(v, "to") else v for k, v in batch.items()}

    @staticmethod
    def _lengths(dataset) -> list[int] | None:
        try:
            return [len(ids) for ids in dataset["input_ids"]]
        except (KeyError, TypeError, IndexError):
            return None

    def _epoch_batches(self, epoch: int, effective: int) -> list[list[int]]:
        """The epoch's optimizer steps as lists of row indices (the same for every process).

        Shuffled with a generator seeded by (seed, epoch), so a resumed run sees the same
        order. With ``group_by_length``: mega-batches of 50 steps sorted by length, then the
        steps shuffled, as transformers' LengthGroupedSampler does.
        """
        n = len(self.train_dataset)
        g = torch.Generator().manual_seed(self.args.seed + epoch)
        order = torch.randperm(n, generator=g).tolist()
        if self.world > 1 and n % effective:  # every process needs rows in every step
            order += order[: effective - n % effective]
        lengths = self._train_lengths if self.args.group_by_length else None
        if lengths is not None:
            mega = effective * 50
            order = [i for s in range(0, len(order), mega)
                     for i in sorted(order[s:s + mega], key=lambda i: -lengths[i])]
        steps = [order[s:s + effective] for s in range(0, len(order), effective)]
        if lengths is not None and len(steps) > 1:
            first = max(range(len(steps)), key=lambda s: lengths[steps[s][0]])
            rest = [steps[s] for s in torch.randperm(len(steps), generator=g).tolist() if s != first]
            steps = [steps[first]] + rest  # the longest step first: out-of-memory shows up at once
        return steps

    def _micro_batches(self, step_rows: list[int]) -> list[list[int]]:
        """Split one optimizer step into this process's accumulation micro-batches."""
        accum, world = self.args.gradient_accumulation_steps, self.world
        per = -(-len(step_rows) // accum)
        micro = [step_rows[s:s + per] for s in range(0, len(step_rows), per)]
        out = []
        for rows in micro:
            share = -(-len(rows) // world)
            mine = rows[self.rank * share:(self.rank + 1) * share]
            if mine:
                out.append(mine)
        return out

    # ---- training ---------------------------------------------------------------------
    def _emit(self, event: str, **info) -> None:
        for cb in self.callbacks:
            handler = getattr(cb, f"on_{event}", None)
            if handler is not None:
                handler(self.args, self.state, self.control, **info)

    def _setup(self, steps_per_epoch: int) -> None:
        args = self.args
        epochs = args.num_train_epochs
        total = args.max_steps if args.max_steps > 0 else math.ceil(epochs * steps_per_epoch)
        self.state.max_steps = total
        self.state.steps_per_epoch = steps_per_epoch
        self.state.num_train_epochs = math.ceil(total / steps_per_epoch)
        self.state.train_batch_size = args.per_device_train_batch_size
        if self.optimizer is None:
            self.optimizer = make_optimizer(self.model, args.learning_rate, args.weight_decay,
                                            (args.adam_beta1, args.adam_beta2), args.adam_epsilon)
        if self.scheduler is None:
            self.scheduler = make_schedule(self.optimizer, args.lr_scheduler_type, args.warmup(total), total)
        if self.world > 1 and not isinstance(self.model, nn.parallel.DistributedDataParallel):
            self.model = nn.parallel.DistributedDataParallel(self.model)

    def train(self, resume_from_checkpoint: str | bool | None = None) -> dict:
        """Run training; returns ``{"train_loss", "train_runtime", "train_samples_per_second", ...}``.

        Args:
            resume_from_checkpoint: a checkpoint directory, or True for the latest in ``output_dir``.
                The run continues to the same weights and loss as an uninterrupted one.
        """
        args = self.args
        if self.train_dataset is None:
            raise TrainingError("Trainer.train() needs a train_dataset")
        if len(self.train_dataset) == 0:
            raise TrainingError("train_dataset is empty")
        effective = args.per_device_train_batch_size * args.gradient_accumulation_steps * self.world
        self._train_lengths = self._lengths(self.train_dataset) if args.group_by_length else None
        steps_per_epoch = math.ceil(len(self.train_dataset) / effective)
        self._setup(steps_per_epoch)
        rng = None
        if resume_from_checkpoint:
            path = ckpt.latest_checkpoint(args.output_dir) if resume_from_checkpoint is True else Path(resume_from_checkpoint)
            ckpt.load_weights(path, self.model)
            rng = ckpt.load_training_state(path, self.optimizer, self.scheduler)
            saved = TrainerState.load(str(path / "trainer_state.json"))
            for name in ("global_step", "epoch", "log_history", "best_metric", "best_model_checkpoint",
                         "train_loss_sum", "train_loss_count"):
                setattr(self.state, name, getattr(saved, name))
        if rng is not None:
            ckpt.set_rng_state(rng)
        self.model.train()
        self._emit("train_begin")
        start, samples, first_step = time.perf_counter(), 0, self.state.global_step
        self._loss_sum, self._loss_count, self._log_start = 0.0, 0, time.perf_counter()
        for epoch in range(self.state.global_step // steps_per_epoch, self.state.num_train_epochs):
            steps = self._epoch_batches(epoch, effective)
            self._emit("epoch_begin")
            for i, step_rows in enumerate(steps):
                if epoch * steps_per_epoch + i < self.state.global_step:
                    continue  # resuming: these steps are already in the weights
                samples += len(step_rows)
                self._training_step(step_rows)
                self.state.global_step += 1
                self.state.epoch = epoch + (i + 1) / len(steps)
                self._emit("step_end")
                self._maybe_log_eval_save(epoch_end=i == len(steps) - 1)
                if self.state.global_step >= self.state.max_steps or self.control.should_training_stop:
                    break
            self._emit("epoch_end")
            if self.state.global_step >= self.state.max_steps or self.control.should_training_stop:
                break
        runtime = time.perf_counter() - start
        if args.load_best_model_at_end and self.state.best_model_checkpoint:
            ckpt.load_weights(Path(self.state.best_model_checkpoint), self.model)
        metrics = {"train_runtime": round(runtime, 3),
                   "train_samples_per_second": round(samples * 1.0 / max(runtime, 1e-9), 3),
                   "train_steps_per_second": round((self.state.global_step - first_step) / max(runtime, 1e-9), 3),
                   "train_loss": self.state.train_loss_sum / max(1, self.state.train_loss_count), "epoch": self.state.epoch}
        self.state.log_history.append({**metrics, "step": self.state.global_step})
        self._emit("log", logs=metrics)
        self._emit("train_end")
        if args.push_to_hub:
            self.push_to_hub()
        return metrics

    def compute_loss(self, model, inputs: dict, return_outputs: bool = False):
        """The training loss of one batch: the model's own (``labels`` given). Override it in a
        subclass for another loss (class weights, distillation), as with transformers' Trainer."""
        out = model(**inputs)
        loss = out.get("loss") if isinstance(out, dict) else out[0]
        return (loss, out) if return_outputs else loss

    def _training_step(self, step_rows: list[int]) -> None:
        micro = self._micro_batches(step_rows)
        total_rows = len(step_rows)
        for j, rows in enumerate(micro):
            batch = self._batch(self.train_dataset, rows)
            sync = j == len(micro) - 1 or self.world == 1
            context = self.model.no_sync() if not sync and hasattr(self.model, "no_sync") else _null()
            with context, torch.autocast(self.device.type, dtype=torch.bfloat16, enabled=self.args.bf16):
                loss = self.compute_loss(self.model, batch)
            if loss is None:
                raise TrainingError("the model returned no loss: does the dataset have a 'label'/'labels' column?")
            # Each micro-batch's mean loss, weighted by its share of the step's rows, so the
            # accumulated gradient equals that of one big batch.
            (loss * (len(rows) * self.world / total_rows)).backward()
            self._loss_sum += loss.item() * len(rows)
            self._loss_count += len(rows)
            self.state.train_loss_sum += loss.item() * len(rows)
            self.state.train_loss_count += len(rows)
        params = [p for p in self.model.parameters() if p.grad is not None]
        self._grad_norm = float(nn.utils.clip_grad_norm_(params, self.args.max_grad_norm)) \
            if self.args.max_grad_norm and params else None
        self.optimizer.step()
        self.scheduler.step()
        self.optimizer.zero_grad(set_to_none=True)

    def _maybe_log_eval_save(self, epoch_end: bool) -> None:
        args, step = self.args, self.state.global_step
        last = step >= self.state.max_steps
        if step % args.logging_steps == 0 or last:
            elapsed = time.perf_counter() - self._log_start
            logs = {"loss": self._loss_sum / max(1, self._loss_count),
                    "learning_rate": self.scheduler.get_last_lr()[0],
                    "samples_per_second": round(self._loss_count * self.world / max(elapsed, 1e-9), 2),
                    "epoch": round(self.state.epoch, 4)}
            if self._grad_norm is not None:
                logs["grad_norm"] = self._grad_norm
            self.state.log_history.append({**logs, "step": step})
            self._emit("log", logs=logs)
            self._loss_sum, self._loss_count, self._log_start = 0.0, 0, time.perf_counter()
        metrics = None
        if (args.eval_strategy == "steps" and step % args.eval_steps == 0) or (args.eval_strategy == "epoch" and epoch_end):
            metrics = self.evaluate()
            self.model.train()
        if (args.save_strategy == "steps" and step % args.save_steps == 0) or (args.save_strategy == "epoch" and epoch_end):
            self._save_checkpoint(metrics)

    def _save_checkpoint(self, metrics: dict | None) -> None:
        args = self.args
        path = Path(args.output_dir) / f"{ckpt.PREFIX}{self.state.global_step}"
        if metrics is not None and args.metric_for_best_model:
            name = args.metric_for_best_model
            value = metrics.get(name if name.startswith("eval_") else f"eval_{name}")
            if value is None:
                raise TrainingError(f"metric_for_best_model={name!r} is not among the metrics {sorted(metrics)}")
            better = self.state.best_metric is None or (
                value > self.state.best_metric if args.greater_is_better else value < self.state.best_metric)
            if better:
                self.state.best_metric, self.state.best_model_checkpoint = value, str(path)
        if self.rank == 0:
            ckpt.save_checkpoint(path, self.model, self.tokenizer, self.optimizer, self.scheduler, self.state, args)
            ckpt.rotate(args.output_dir, args.save_total_limit, self.state.best_model_checkpoint)
        if self.world > 1:
            import torch.distributed as dist

            dist.barrier()
        self._emit("save", checkpoint=str(path))

    # ---- evaluation -------------------------------------------------------------------
    @torch.no_grad()
    def _predict_loop(self, dataset, desc: str) -> tuple[Any, Any, float | None, int]:
        model = self.model.module if hasattr(self.model, "module") else self.model
        model.eval()
        n, size = len(dataset), self.args.per_device_eval_batch_size
        lengths = self._lengths(dataset)
        order = sorted(range(n), key=lambda i: -lengths[i]) if lengths else list(range(n))  # less padding
        preds, labels, loss_sum = [None] * n, [None] * n, 0.0
        has_loss = True
        from tqdm.auto import tqdm

        for s in tqdm(range(0, n, size), desc=desc, leave=False, disable=self.args.disable_tqdm or self.rank != 0):
            idx = order[s:s + size]
            batch = self._batch(dataset, idx)
            with torch.autocast(self.device.type, dtype=torch.bfloat16, enabled=self.args.bf16):
                out = model(**batch)
            loss = out.get("loss") if isinstance(out, dict) else None
            has_loss = has_loss and loss is not None
            if loss is not None:
                loss_sum += float(loss) * len(idx)
            logits = out.get("logits") if isinstance(out, dict) else out[0]
            if logits is None and "start_logits" in out:
                logits = torch.stack([out["start_logits"], out["end_logits"]], dim=1)
            if self.preprocess_logits_for_metrics is not None:
                logits = self.preprocess_logits_for_metrics(logits, batch.get("labels"))
            label = batch.get("labels")
            for k, i in enumerate(idx):
                preds[i] = logits[k].float().cpu().numpy()
                labels[i] = None if label is None else label[k].cpu().numpy()
        return _stack(preds), (None if labels[0] is None else _stack(labels)), (loss_sum / n if has_loss else None), n

    def evaluate(self, eval_dataset=None, metric_key_prefix: str = "eval") -> dict:
        """Loss and ``compute_metrics`` over ``eval_dataset``; keys prefixed with ``eval_``."""
        dataset = eval_dataset if eval_dataset is not None else self.eval_dataset
        if dataset is None:
            raise TrainingError("evaluate() needs an eval_dataset (here or in Trainer(...))")
        start = time.perf_counter()
        preds, labels, loss, n = self._predict_loop(dataset, "eval")
        metrics = {} if loss is None else {"loss": loss}
        if self.compute_metrics is not None and labels is not None:
            metrics.update(self.compute_metrics(EvalPrediction(preds, labels)))
        runtime = time.perf_counter() - start
        metrics.update(runtime=round(runtime, 3), samples_per_second=round(n / max(runtime, 1e-9), 2))
        metrics = {f"{metric_key_prefix}_{k}": (float(v) if isinstance(v, (np.floating, np.integer)) else v)
                   for k, v in metrics.items()}
        if self.state.global_step:
            metrics["epoch"] = round(self.state.epoch, 4)
        self.state.log_history.append({**metrics, "step": self.state.global_step})
        self._emit("log", logs=metrics)
        self._emit("evaluate", metrics=metrics)
        return metrics

    def predict(self, test_dataset, metric_key_prefix: str = "test") -> PredictionOutput:
        """Predictions (logits, in dataset order), labels if present, and metrics."""
        preds, labels, loss, n = self._predict_loop(test_dataset, "predict")
        metrics = {} if loss is None else {f"{metric_key_prefix}_loss": loss}
        if self.compute_metrics is not None and labels is not None:
            metrics.update({f"{metric_key_prefix}_{k}": v for k, v in self.compute_metrics(EvalPrediction(preds, labels)).items()})
        return PredictionOutput(preds, labels, metrics)

    def save_model(self, output_dir: str | None = None) -> None:
        """Save the model (Hugging Face format) and the tokenizer to ``output_dir``."""
        output_dir = output_dir or self.args.output_dir
        if self.rank != 0:
            return
        model = self.model.module if hasattr(self.model, "module") else self.model
        model.save_pretrained(output_dir)
        if self.tokenizer is not None and hasattr(self.tokenizer, "save_pretrained"):
            self.tokenizer.save_pretrained(output_dir)


    def push_to_hub(self, commit_message: str = "End of training", **hub_options):
        """Save the model and tokenizer to ``output_dir`` and upload it (not its checkpoints) to the hub.

        The repo is ``args.hub_model_id`` (default: ``output_dir``'s name, in the token owner's
        namespace), created if needed (private with ``args.hub_private_repo``), with ``args.hub_token``
        (default: the environment's). Returns the ``CommitInfo`` (None on other ranks).
        """
        from peluk.hub_api import push_to_hub

        args = self.args
        self.save_model(args.output_dir)
        if self.rank != 0:
            return None
        return push_to_hub(args.output_dir, args.hub_model_id or Path(args.output_dir).name, token=args.hub_token,
                           private=args.hub_private_repo, commit_message=commit_message,
                           ignore_patterns=["checkpoint-*", "_*"], **hub_options)


class _null:
    def __enter__(self):
        return self

    def __exit__(self, *exc):
        return False


def _stack(rows: list) -> np.ndarray:
    """Stack per-row arrays, padding ragged ones (token classification) with -100 as transformers does."""
    shapes = {r.shape for r in rows}
    if len(shapes) == 1:
        return np.stack(rows)
    longest = max(r.shape[0] for r in rows)
    out = np.full((len(rows), longest, *rows[0].shape[1:]), -100, dtype=rows[0].dtype)
    for i, r in enumerate(rows):
        out[i, : r.shape[0]] = r
    return out
