"""Parity with transformers for GPT-2 and Llama-style decoders: logits, hidden states,
attentions, the KV cache, and save/load."""

from __future__ import annotations

import pytest
import torch

import peluk.models as pm
from tests.parity.tiny_decoders import VARIANTS, prompts, tiny_decoder

TOL = 1e-4


def _maxdiff(a, b) -> float:
    return (a.float() - b.float()).abs().max().item()


@pytest.fixture(scope="module", params=list(VARIANTS))
def pair(request, tmp_path_factory):
    ref = tiny_decoder(request.param)
    path = tmp_path_factory.mktemp(request.param)
    ref.save_pretrained(path)
    return request.param, ref, pm.AutoModelForCausalLM.from_pretrained(path), path


def test_forward_parity(pair):
    name, ref, ours, _ = pair
    g = torch.Generator().manual_seed(3)
    ids = torch.randint(3, 128, (2, 12), generator=g)
    mask = torch.ones_like(ids)
    mask[1, 8:] = 0  # right padding
    with torch.no_grad():
        want = ref(input_ids=ids, attention_mask=mask, output_hidden_states=True, output_attentions=True)
        got = ours(ids, attention_mask=mask, output_hidden_states=True, output_attentions=True)
        fast = ours(ids, attention_mask=mask).logits
    valid = mask.bool()
    diffs = {
        "logits": _maxdiff(got.logits[valid], want.logits[valid]),
        "fast logits": _maxdiff(fast[valid], want.logits[valid]),
        "hidden_states": max(_maxdiff(a[valid], b[valid]) for a, b in zip(got.hidden_states, want.hidden_states)),
        "attentions": max(_maxdiff(a[0], b[0]) for a, b in zip(got.attentions, want.attentions)),
    }
    assert len(got.hidden_states) == len(want.hidden_states)
    assert len(got.attentions) == len(want.attentions)
    print(f"\n{name}: max abs diff {diffs}")
    assert max(diffs.values()) < TOL, diffs


def test_loss_parity(pair):
    _, ref, ours, _ = pair
    ids, _ = prompts()
    labels = ids.clone()
    labels[:, :3] = -100
    with torch.no_grad():
        assert abs(ours(ids, labels=labels).loss.item() - ref(input_ids=ids, labels=labels).loss.item()) < TOL


def test_cached_decode_equals_full_forward(pair):
    """Prefill + one-token steps through the KV cache give the logits of one full forward."""
    _, _, ours, _ = pair
    ids, mask = prompts()
    with torch.no_grad():
        full = ours(ids, attention_mask=mask).logits
        cache = ours.make_cache(batch=3, max_len=16)
        steps = [ours(ids[:, :5], attention_mask=mask[:, :5], cache=cache).logits]
        for t in range(5, ids.shape[1]):
            steps.append(ours(ids[:, t:t + 1], attention_mask=mask[:, :t + 1], cache=cache).logits)
    stepped = torch.cat(steps, dim=1)
    valid = mask.bool()
    assert _maxdiff(stepped[valid], full[valid]) < 1e-5
    assert cache.length == ids.shape[1]


def test_save_roundtrip_loads_in_transformers(pair, tmp_path):
    import transformers

    _, _, ours, _ = pair
    ours.save_pretrained(tmp_path)
    theirs = transformers.AutoModelForCausalLM.from_pretrained(tmp_path).eval()
    ids, _ = prompts()
    with torch.no_grad():
        assert _maxdiff(ours(ids).logits, theirs(input_ids=ids).logits) < TOL
