"""peluk.viz.attributions: attention rollout and gradient × input for a tiny classifier."""

from __future__ import annotations

import re

import numpy as np
import torch

import peluk.models as pm
import peluk.viz as viz
from peluk.tokenizer import Tokenizer
from peluk.viz.attribution import rollout


def test_rollout_identity_and_rows():
    a = np.random.default_rng(0).random((3, 2, 4, 4))
    a /= a.sum(-1, keepdims=True)
    r = rollout(a)
    np.testing.assert_allclose(r.sum(-1), 1.0)
    eye = np.broadcast_to(np.eye(4), (2, 2, 4, 4))
    np.testing.assert_allclose(rollout(eye), np.eye(4))


def test_classifier_attributions(tiny_dir, tmp_path):
    path = tiny_dir("bert", "sequence-classification")
    tok = Tokenizer.from_pretrained(path)
    model = pm.AutoModelForSequenceClassification.from_pretrained(path)
    a = viz.attributions(model, tok, "the film was very good")
    assert all(p.grad is None for p in model.parameters())  # the caller's gradients are untouched
    n = len(a.tokens)
    assert a.tokens[0] == "[CLS]" and a.special[0] and a.special[-1]
    assert a.label in {"NEG", "NEU", "POS"} and abs(sum(a.probabilities.values()) - 1) < 1e-5
    assert len(a.scores["rollout"]) == len(a.scores["grad_x_input"]) == n
    assert abs(sum(a.scores["rollout"]) - 1) < 1e-6
    # gradient × input equals a finite-difference-free reference computed by hand
    enc = tok("the film was very good", return_tensors="pt")
    x = model.bert.embeddings.word_embeddings(enc["input_ids"]).detach().requires_grad_(True)
    handle = model.bert.embeddings.word_embeddings.register_forward_hook(lambda m, i, o: x)
    try:
        logits = model(**dict(enc)).logits[0]
        logits[logits.argmax()].backward()
    finally:
        handle.remove()
    np.testing.assert_allclose(a.scores["grad_x_input"], (x.grad[0] * x[0]).sum(-1).detach().numpy(), atol=1e-5)
    page = a.save(tmp_path / "w.html").read_text()
    assert page.count('<span title=') == 2 * n and not re.search(r"https?://", page)
