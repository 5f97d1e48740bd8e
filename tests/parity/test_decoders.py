"""Parity with transformers for GPT-2 and Llama-style decoders: logits, hidden states,
attentions, the KV cache, and save/load; Llama's lean decode step against its forward."""

from __future__ import annotations

import contextlib

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


# --- Llama's lean decode step (decode_step) against its readable forward --------------------------

@pytest.fixture
def lean_calls(monkeypatch):
    """Counts the lean decode steps taken (decode_step falls back to forward silently)."""
    from peluk.models import llama

    calls = []
    real = llama.lean_decode
    monkeypatch.setattr(llama, "lean_decode", lambda *a: calls.append(1) or real(*a))
    return calls


@contextlib.contextmanager
def _module_path(model):
    """Generation through forward alone, as before decode_step existed."""
    model.decode_step = model.forward  # an instance attribute shadows the method
    try:
        yield
    finally:
        del model.decode_step


def _llama(pair):
    name, _, ours, path = pair
    if not hasattr(ours, "decode_step"):
        pytest.skip(f"{name} has no lean decode step")
    return ours, path


def test_decode_step_gives_forward_logits(pair, lean_calls):
    """Left-padded rows, positions given or not: the lean step's logits and cache equal forward's."""
    ours, _ = _llama(pair)
    ids, mask = prompts()
    positions = (mask.cumsum(-1) - 1).clamp(min=0)
    with torch.no_grad():
        lean, ref = ours.make_cache(3, 16), ours.make_cache(3, 16)
        for cache in (lean, ref):
            ours(ids[:, :5], attention_mask=mask[:, :5], position_ids=positions[:, :5], cache=cache)
        for t in range(5, ids.shape[1]):
            args = dict(attention_mask=mask[:, :t + 1], position_ids=positions[:, t:t + 1])
            got = ours.decode_step(ids[:, t:t + 1], cache=lean, logits_to_keep=1, **args).logits
            want = ours(ids[:, t:t + 1], cache=ref, **args).logits
            assert got.shape == want.shape == (3, 1, 128)
            assert _maxdiff(got, want) < 1e-5
        row = ids[:1]  # no padding, no positions: counted from the cache
        lean, ref = ours.make_cache(1, 12), ours.make_cache(1, 12)
        for cache in (lean, ref):
            ours(row, cache=cache)
        got = ours.decode_step(row[:, -1:], cache=lean).logits
        assert _maxdiff(got, ours(row[:, -1:], cache=ref).logits) < 1e-5
    assert len(lean_calls) == ids.shape[1] - 5 + 1
    assert lean.length == ref.length == 10
    assert max(_maxdiff(a[:, :, :10], b[:, :, :10]) for a, b in zip(lean.k + lean.v, ref.k + ref.v)) < 1e-5


@pytest.mark.parametrize("options", [dict(), dict(num_beams=3, num_return_sequences=2), dict(do_sample=True, seed=5)])
def test_lean_generation_gives_the_module_paths_tokens(pair, options, lean_calls):
    ours, _ = _llama(pair)
    ids, mask = prompts()
    lean = ours.generate(ids, mask, max_new_tokens=10, pad_token_id=0, **options)
    assert lean_calls
    with _module_path(ours):
        assert torch.equal(lean, ours.generate(ids, mask, max_new_tokens=10, pad_token_id=0, **options))


def test_lean_step_falls_back_and_follows_weight_changes(pair, lean_calls):
    from peluk.nn.attention import capture_attention

    ours, path = _llama(pair)
    model = pm.AutoModelForCausalLM.from_pretrained(path)  # a copy of its own, changed below
    ids = prompts()[0][:1]
    cache = model.make_cache(1, 12)
    model(ids, cache=cache)
    model.decode_step(ids[:, -1:], cache=cache)  # gradients on: forward
    with torch.no_grad(), capture_attention() as maps:
        model.decode_step(ids[:, -1:], cache=cache)  # attention captured: forward
    assert not lean_calls and len(maps) == model.config.num_hidden_layers

    def step(call):  # a generation's calls: the prompt, then one new token
        cache = model.make_cache(1, 12)
        call(ids, cache=cache)
        return call(ids[:, -1:], cache=cache).logits

    with torch.no_grad():
        before = step(model.decode_step)
        model.model.layers[0].mlp.down_proj.weight.mul_(-3)  # in place, between generations
        model.model.layers[1].input_layernorm.weight.add_(0.5)
        after = step(model.decode_step)
        assert _maxdiff(after, step(model)) < 1e-5 and _maxdiff(after, before) > 1e-3
    assert len(lean_calls) == 2
