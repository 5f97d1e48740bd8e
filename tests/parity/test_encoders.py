"""Parity with transformers for every encoder architecture × head, on padded batches.

Each case saves a tiny random transformers model (safetensors, legacy .bin or sharded),
loads it with peluk, and compares logits, the hidden states of every layer and the
attention probabilities. The max abs difference is printed (pytest -s shows it).
"""

from __future__ import annotations

import pytest
import torch

import peluk.models as pm
from tests.parity.tiny import ARCHS, HEADS, batch, tiny_model

TOL = 1e-4
SAVE_MODES = {"bert": "safetensors", "roberta": "bin", "distilbert": "sharded", "xlm-roberta": "safetensors"}


def _save(model, path, mode):
    if mode == "bin":
        model.save_pretrained(path, safe_serialization=False)
    elif mode == "sharded":
        model.save_pretrained(path, max_shard_size="20KB")
    else:
        model.save_pretrained(path)


def _maxdiff(a, b) -> float:
    return (a.float() - b.float()).abs().max().item()


@pytest.mark.parametrize("head", list(HEADS))
@pytest.mark.parametrize("arch", ARCHS)
def test_parity(arch, head, tmp_path):
    ref = tiny_model(arch, head)
    mode = SAVE_MODES[arch]
    _save(ref, tmp_path, mode)
    if mode == "sharded":
        assert (tmp_path / "model.safetensors.index.json").exists()
    ours = getattr(pm, HEADS[head]).from_pretrained(tmp_path)
    ids, mask = batch(ref.config.pad_token_id)
    with torch.no_grad():
        want = ref(input_ids=ids, attention_mask=mask, output_hidden_states=True, output_attentions=True)
        got = ours(ids, attention_mask=mask, output_hidden_states=True, output_attentions=True)
    valid = mask.bool()
    diffs = {}
    for key in ("logits", "start_logits", "end_logits", "last_hidden_state", "pooler_output"):
        if key in want and want[key] is not None:
            a, b = got[key], want[key]
            if a.dim() >= 2 and a.shape[:2] == valid.shape:  # ignore padded positions
                a, b = a[valid], b[valid]
            diffs[key] = _maxdiff(a, b)
    assert len(got.hidden_states) == len(want.hidden_states)
    diffs["hidden_states"] = max(_maxdiff(a[valid], b[valid]) for a, b in zip(got.hidden_states, want.hidden_states))
    assert len(got.attentions) == len(want.attentions)
    diffs["attentions"] = max(_maxdiff(a, b) for a, b in zip(got.attentions, want.attentions))
    # the default path (SDPA, oneDNN linear layers) against transformers' default (SDPA) model
    fast_ref = type(ref).from_pretrained(tmp_path).eval()
    with torch.no_grad():
        fast, fast_want = ours(ids, attention_mask=mask), fast_ref(input_ids=ids, attention_mask=mask)
    key = next(k for k in ("logits", "start_logits", "last_hidden_state") if k in fast_want)
    a, b = fast[key], fast_want[key]
    if a.dim() >= 2 and a.shape[:2] == valid.shape:
        a, b = a[valid], b[valid]
    diffs[f"fast {key}"] = _maxdiff(a, b)
    print(f"\n{arch}/{head} ({mode}): max abs diff {diffs}")
    assert diffs and max(diffs.values()) < TOL, diffs


@pytest.mark.parametrize("arch", ARCHS)
def test_losses_match(arch, tmp_path):
    """Loss with labels equals transformers' for the classification heads."""
    for head, labels in (("sequence-classification", torch.tensor([0, 2, 1])),
                         ("token-classification", torch.randint(0, 3, (3, 11))),
                         ("masked-lm", torch.randint(0, 120, (3, 11)))):
        ref = tiny_model(arch, head)
        ref.save_pretrained(tmp_path / head)
        ours = getattr(pm, HEADS[head]).from_pretrained(tmp_path / head)
        ids, mask = batch(ref.config.pad_token_id)
        with torch.no_grad():
            a = ours(ids, attention_mask=mask, labels=labels).loss
            b = ref(input_ids=ids, attention_mask=mask, labels=labels).loss
        assert abs(a.item() - b.item()) < TOL, (head, a, b)


def test_sdpa_default_equals_eager(tmp_path):
    """The fast path (SDPA) and the capture path (eager) agree."""
    ref = tiny_model("bert", "base")
    ref.save_pretrained(tmp_path)
    ours = pm.AutoModel.from_pretrained(tmp_path)
    ids, mask = batch(0)
    with torch.no_grad():
        fast = ours(ids, attention_mask=mask).last_hidden_state
        eager = ours(ids, attention_mask=mask, output_attentions=True).last_hidden_state
    assert _maxdiff(fast[mask.bool()], eager[mask.bool()]) < 1e-5
