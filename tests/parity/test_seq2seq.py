"""Parity with transformers for T5 (v1.0, v1.1), BART, mBART and Marian: logits, hidden
states, encoder/decoder/cross attentions, the cache, and greedy/beam generation."""

from __future__ import annotations

import pytest
import torch

import peluk.models as pm
from tests.parity.tiny_seq2seq import VARIANTS, sources, tiny_seq2seq

TOL = 1e-4


def _maxdiff(a, b) -> float:
    return (a.float() - b.float()).abs().max().item()


@pytest.fixture(scope="module", params=VARIANTS)
def pair(request, tmp_path_factory):
    ref = tiny_seq2seq(request.param)
    path = tmp_path_factory.mktemp(request.param)
    ref.save_pretrained(path)
    return request.param, ref, pm.AutoModelForSeq2SeqLM.from_pretrained(path)


def test_forward_parity(pair):
    name, ref, ours = pair
    src, mask = sources()
    dec = torch.randint(3, 100, (3, 6), generator=torch.Generator().manual_seed(5))
    with torch.no_grad():
        want = ref(input_ids=src, attention_mask=mask, decoder_input_ids=dec, output_hidden_states=True,
                   output_attentions=True)
        got = ours(src, attention_mask=mask, decoder_input_ids=dec, output_hidden_states=True, output_attentions=True)
        fast = ours(src, attention_mask=mask, decoder_input_ids=dec).logits
    valid = mask.bool()
    diffs = {"logits": _maxdiff(got.logits, want.logits), "fast logits": _maxdiff(fast, want.logits)}
    diffs["encoder_hidden_states"] = max(_maxdiff(a[valid], b[valid])
                                         for a, b in zip(got.encoder_hidden_states, want.encoder_hidden_states))
    diffs["decoder_hidden_states"] = max(_maxdiff(a, b) for a, b in zip(got.decoder_hidden_states,
                                                                       want.decoder_hidden_states))
    for key in ("encoder_attentions", "decoder_attentions", "cross_attentions"):
        assert len(got[key]) == len(want[key]), key
        diffs[key] = max(_maxdiff(a[0], b[0]) for a, b in zip(got[key], want[key]))
    print(f"\n{name}: max abs diff {diffs}")
    assert max(diffs.values()) < TOL, diffs


def test_loss_parity(pair):
    _, ref, ours = pair
    src, mask = sources()
    labels = torch.randint(3, 100, (3, 5), generator=torch.Generator().manual_seed(6))
    labels[1, 3:] = -100
    with torch.no_grad():
        a = ours(src, attention_mask=mask, labels=labels).loss
        b = ref(input_ids=src, attention_mask=mask, labels=labels).loss
    assert abs(a.item() - b.item()) < TOL


def test_cached_decoder_equals_full_forward(pair):
    _, _, ours = pair
    src, mask = sources()
    dec = torch.randint(3, 100, (3, 6), generator=torch.Generator().manual_seed(5))
    with torch.no_grad():
        full = ours(src, attention_mask=mask, decoder_input_ids=dec).logits
        memory = ours.get_encoder()(src, mask).last_hidden_state
        cache = ours.make_cache(3, 8, memory, mask)
        steps = [ours.decode_step(dec[:, :2], cache=cache).logits]
        for t in range(2, 6):
            steps.append(ours.decode_step(dec[:, t:t + 1], cache=cache).logits)
    assert _maxdiff(torch.cat(steps, 1), full) < 1e-5


@pytest.mark.parametrize("options", [
    dict(),
    dict(num_beams=4),
    dict(num_beams=4, num_return_sequences=2, length_penalty=0.6, no_repeat_ngram_size=2),
    dict(num_beams=3, early_stopping=True, repetition_penalty=1.2),
])
def test_generate_identical(pair, options):
    _, ref, ours = pair
    src, mask = sources()
    with torch.no_grad():
        want = ref.generate(input_ids=src, attention_mask=mask, max_new_tokens=10, do_sample=False, **options)
        got = ours.generate(src, mask, max_new_tokens=10, **options)
    assert torch.equal(got, want), (got, want)
