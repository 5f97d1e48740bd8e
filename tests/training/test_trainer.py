"""The Trainer: it learns, resumes exactly, accumulates correctly, keeps the best, saves for transformers."""

from __future__ import annotations

import json
import random

import numpy as np
import pytest
import torch

import peluk
from peluk.errors import TrainingError
from peluk.training import EarlyStoppingCallback, Trainer, TrainingArguments

GOOD = ["good", "great", "lovely", "fine", "superb"]
BAD = ["bad", "awful", "poor", "boring", "sad"]
FILL = ["the", "film", "was", "very", "a", "plot", "and", "it"]


def toy_rows(tokenizer, n: int = 48, seed: int = 0) -> list[dict]:
    """Sentences whose label is whether a 'good' word appears: easy to learn, varied lengths."""
    rng = random.Random(seed)
    rows = []
    for i in range(n):
        label = i % 2
        words = rng.sample(FILL, rng.randint(1, 6)) + [rng.choice(GOOD if label else BAD)]
        rng.shuffle(words)
        enc = tokenizer(" ".join(words))
        rows.append({"input_ids": enc["input_ids"], "attention_mask": enc["attention_mask"], "label": label,
                     "text": " ".join(words)})
    return rows


def accuracy(pred):
    return {"accuracy": float((pred.predictions.argmax(-1) == pred.label_ids).mean())}


@pytest.fixture()
def setup(tiny_dir):
    path = tiny_dir("bert", "sequence-classification", id2label={0: "NEG", 1: "POS"})
    tok = peluk.AutoTokenizer.from_pretrained(path)

    def make(**overrides):
        torch.manual_seed(0)
        model = peluk.AutoModelForSequenceClassification.from_pretrained(path, **overrides)
        return model

    return path, tok, make


def params(model):
    return {n: p.detach().clone() for n, p in model.named_parameters()}


def test_overfits_a_tiny_dataset(setup, tmp_path):
    _, tok, make = setup
    rows = toy_rows(tok, 32)
    args = TrainingArguments(tmp_path, learning_rate=3e-3, per_device_train_batch_size=8, num_train_epochs=30,
                             save_strategy="no", logging_steps=4, disable_tqdm=True)
    trainer = Trainer(make(), args, train_dataset=rows, eval_dataset=rows, processing_class=tok,
                      compute_metrics=accuracy)
    before = trainer.evaluate()["eval_loss"]
    result = trainer.train()
    after = trainer.evaluate()
    assert after["eval_loss"] < 0.1 < before
    assert after["eval_accuracy"] == 1.0
    assert result["train_samples_per_second"] > 0
    log = [json.loads(line) for line in (tmp_path / "log.jsonl").read_text().splitlines()]
    assert any("learning_rate" in r and "loss" in r for r in log)
    assert any("eval_accuracy" in r for r in log)


def test_resume_is_exact(setup, tmp_path):
    """With dropout on, a run stopped at a checkpoint and resumed ends bit-identical."""
    _, tok, make = setup
    rows = toy_rows(tok, 40)
    common = dict(learning_rate=1e-3, per_device_train_batch_size=8, num_train_epochs=3, save_steps=7,
                  logging_steps=5, disable_tqdm=True, warmup_ratio=0.2, weight_decay=0.01)
    full = Trainer(make(), TrainingArguments(tmp_path / "a", **common), train_dataset=rows, processing_class=tok)
    full_metrics = full.train()

    class Crash(Exception):
        pass

    class KillAtStep9:
        def on_step_end(self, args, state, control, **_):
            if state.global_step == 9:
                raise Crash

    killed = Trainer(make(), TrainingArguments(tmp_path / "b", **common), train_dataset=rows, processing_class=tok,
                     callbacks=[KillAtStep9()])
    with pytest.raises(Crash):
        killed.train()
    assert (tmp_path / "b" / "checkpoint-7" / "trainable.safetensors").exists()
    again = Trainer(make(), TrainingArguments(tmp_path / "b", **common), train_dataset=rows, processing_class=tok)
    again_metrics = again.train(resume_from_checkpoint=True)
    a, b = params(full.model), params(again.model)
    assert all(torch.equal(a[n], b[n]) for n in a)
    assert again_metrics["train_loss"] == full_metrics["train_loss"]
    assert again.state.global_step == full.state.global_step == 15


def test_gradient_accumulation_equals_big_batch(setup, tmp_path):
    _, tok, make = setup
    rows = toy_rows(tok, 32)
    common = dict(learning_rate=1e-3, num_train_epochs=2, save_strategy="no", disable_tqdm=True, report_to="none")
    big = Trainer(make(hidden_dropout_prob=0.0, attention_probs_dropout_prob=0.0),
                  TrainingArguments(tmp_path / "a", per_device_train_batch_size=8, **common),
                  train_dataset=rows, processing_class=tok)
    big.train()
    small = Trainer(make(hidden_dropout_prob=0.0, attention_probs_dropout_prob=0.0),
                    TrainingArguments(tmp_path / "b", per_device_train_batch_size=4, gradient_accumulation_steps=2,
                                      **common), train_dataset=rows, processing_class=tok)
    small.train()
    a, b = params(big.model), params(small.model)
    worst = max((a[n] - b[n]).abs().max().item() for n in a)
    assert worst < 1e-5, worst
    assert big.state.global_step == small.state.global_step == 8


def test_best_model_and_save_total_limit(setup, tmp_path):
    _, tok, make = setup
    rows = toy_rows(tok, 32)
    args = TrainingArguments(tmp_path, learning_rate=2e-3, per_device_train_batch_size=8, num_train_epochs=6,
                             eval_strategy="steps", eval_steps=4, save_strategy="steps", save_steps=4,
                             save_total_limit=2, load_best_model_at_end=True, metric_for_best_model="accuracy",
                             disable_tqdm=True)
    trainer = Trainer(make(), args, train_dataset=rows, eval_dataset=rows[:16], processing_class=tok,
                      compute_metrics=accuracy)
    trainer.train()
    kept = sorted(p.name for p in tmp_path.glob("checkpoint-*"))
    assert len(kept) <= 2
    best = trainer.state.best_model_checkpoint
    assert best is not None and (tmp_path / best.split("/")[-1]).exists()
    evals = [r["eval_accuracy"] for r in trainer.state.log_history if "eval_accuracy" in r]
    assert trainer.state.best_metric == max(evals)
    assert trainer.evaluate()["eval_accuracy"] == max(evals)
    assert not list(tmp_path.glob(".tmp-*"))


def test_freeze_base_trains_only_the_classifier(setup, tmp_path):
    _, tok, make = setup
    model = make()
    for p in model.bert.parameters():
        p.requires_grad = False
    before = params(model)
    args = TrainingArguments(tmp_path, learning_rate=1e-2, per_device_train_batch_size=8, max_steps=3,
                             save_strategy="no", disable_tqdm=True, report_to="none")
    Trainer(model, args, train_dataset=toy_rows(tok, 16), processing_class=tok).train()
    after = params(model)
    changed = {n for n in before if not torch.equal(before[n], after[n])}
    assert changed and all(n.startswith("classifier") for n in changed)


def test_saved_model_loads_in_transformers(setup, tmp_path):
    import transformers

    _, tok, make = setup
    rows = toy_rows(tok, 16)
    args = TrainingArguments(tmp_path, learning_rate=1e-3, per_device_train_batch_size=8, max_steps=2,
                             save_strategy="no", disable_tqdm=True, report_to="none")
    trainer = Trainer(make(), args, train_dataset=rows, processing_class=tok)
    trainer.train()
    trainer.save_model(tmp_path / "final")
    theirs = transformers.AutoModelForSequenceClassification.from_pretrained(tmp_path / "final").eval()
    their_tok = transformers.AutoTokenizer.from_pretrained(tmp_path / "final")
    enc = their_tok(["the film was good", "bad"], padding=True, return_tensors="pt")
    ours = trainer.model.eval()
    with torch.no_grad():
        diff = (theirs(**enc).logits - ours(**enc).logits).abs().max().item()
    assert diff < 1e-5


def test_early_stopping_and_predict(setup, tmp_path):
    _, tok, make = setup
    rows = toy_rows(tok, 24)
    args = TrainingArguments(tmp_path, learning_rate=0.0, per_device_train_batch_size=8, num_train_epochs=20,
                             eval_strategy="epoch", save_strategy="no", metric_for_best_model="loss",
                             disable_tqdm=True, report_to="none")
    trainer = Trainer(make(), args, train_dataset=rows, eval_dataset=rows, processing_class=tok,
                      compute_metrics=accuracy, callbacks=[EarlyStoppingCallback(early_stopping_patience=2)])
    trainer.train()
    assert trainer.state.global_step == 3 * 3  # lr 0: no improvement after the first eval; patience 2
    out = trainer.predict(rows)
    assert out.predictions.shape == (24, 2) and list(out.label_ids) == [r["label"] for r in rows]
    trainer.model.eval()
    with torch.no_grad():
        first = trainer.model(input_ids=torch.tensor([rows[5]["input_ids"]])).logits[0].numpy()
    assert np.allclose(out.predictions[5], first, atol=1e-5)  # predictions come back in dataset order


def test_bad_arguments():
    with pytest.raises(TrainingError, match="unknown argument"):
        TrainingArguments("x", learning_rat=1e-3)
    with pytest.raises(TrainingError, match="eval_strategy"):
        TrainingArguments("x", eval_strategy="sometimes")
    with pytest.raises(TrainingError, match="load_best_model_at_end"):
        TrainingArguments("x", load_best_model_at_end=True)
    assert TrainingArguments("x", evaluation_strategy="epoch", save_strategy="epoch").eval_strategy == "epoch"


def test_schedules_match_transformers():
    import transformers

    for kind in ("linear", "cosine", "constant", "constant_with_warmup"):
        from peluk.training.optim import make_schedule

        ours_opt = torch.optim.SGD([torch.nn.Parameter(torch.zeros(1))], lr=1.0)
        theirs_opt = torch.optim.SGD([torch.nn.Parameter(torch.zeros(1))], lr=1.0)
        ours = make_schedule(ours_opt, kind, 3, 20)
        theirs = transformers.get_scheduler(kind, theirs_opt, num_warmup_steps=3, num_training_steps=20)
        for _ in range(22):
            assert ours.get_last_lr()[0] == pytest.approx(theirs.get_last_lr()[0], abs=1e-9), kind
            ours_opt.step(), theirs_opt.step()
            ours.step(), theirs.step()


@pytest.mark.slow
def test_two_processes_equal_one_with_double_batch(setup, tmp_path):
    """torchrun --nproc_per_node=2 (gloo) reaches the weights of one process with the doubled batch."""
    import os
    import subprocess
    import sys
    from pathlib import Path

    from safetensors.torch import load_file

    path, _, _ = setup
    root = Path(__file__).resolve().parents[2]
    script = str(Path(__file__).with_name("ddp_train.py"))
    env = {**os.environ, "PYTHONPATH": str(root), "OMP_NUM_THREADS": "1"}
    one = subprocess.run([sys.executable, script, str(path), str(tmp_path / "one"), "8"], env=env,
                         capture_output=True, text=True, timeout=300)
    assert one.returncode == 0, one.stderr[-2000:]
    two = subprocess.run([sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2",
                          script, str(path), str(tmp_path / "two"), "4"], env=env, capture_output=True, text=True,
                         timeout=300)
    assert two.returncode == 0, two.stderr[-2000:]
    a, b = load_file(tmp_path / "one" / "weights.safetensors"), load_file(tmp_path / "two" / "weights.safetensors")
    worst = max((a[n] - b[n]).abs().max().item() for n in a)
    assert worst < 1e-5, worst
    assert "steps 8" in one.stdout and "steps 8" in two.stdout
