"""Generation against transformers' generate: greedy and beam search token-identical, batched
with left padding; sampling reproducible and restricted as asked; streaming text; bad input."""

from __future__ import annotations

import pytest
import torch

import peluk.models as pm
from peluk.generation import GenerationError, generate, generate_step
from peluk.generation import sampling
from tests.parity.tiny_decoders import prompts, tiny_decoder

VARIANTS = ["gpt2", "llama-gqa-tied", "llama-mha-untied-bias", "mistral-window"]


@pytest.fixture(scope="module", params=VARIANTS)
def pair(request, tmp_path_factory):
    ref = tiny_decoder(request.param)
    path = tmp_path_factory.mktemp(request.param)
    ref.save_pretrained(path)
    return ref, pm.AutoModelForCausalLM.from_pretrained(path)


def _hf_generate(ref, ids, mask, **kw):
    with torch.no_grad():
        return ref.generate(input_ids=ids, attention_mask=mask, pad_token_id=0, **kw)


def test_greedy_identical_batched_and_alone(pair):
    ref, ours = pair
    ids, mask = prompts()
    want = _hf_generate(ref, ids, mask, max_new_tokens=12, do_sample=False)
    with torch.no_grad():
        got = ours.generate(ids, mask, max_new_tokens=12, pad_token_id=0)
    assert torch.equal(got, want), (got, want)
    for row in range(ids.shape[0]):  # a row alone (no padding) gives the same new tokens
        real = ids[row][mask[row].bool()][None]
        with torch.no_grad():
            alone = ours.generate(real, max_new_tokens=12, pad_token_id=0)
        n = alone.shape[1] - real.shape[1]
        assert torch.equal(alone[0, real.shape[1]:], got[row, ids.shape[1]:ids.shape[1] + n])


def test_generate_hands_back_ordinary_tensors(pair):
    """generate runs under inference mode but its outputs can be changed in place afterwards."""
    _, ours = pair
    ids, mask = prompts()
    out = ours.generate(ids, mask, max_new_tokens=3, pad_token_id=0, output_logprobs=True)
    assert not out.sequences.is_inference() and not out.logprobs.is_inference()
    out.sequences[:, 0] = 0
    with torch.inference_mode():  # inside inference mode, nothing is copied
        assert ours.generate(ids, mask, max_new_tokens=1, pad_token_id=0).is_inference()


@pytest.mark.parametrize("options", [
    dict(num_beams=4),
    dict(num_beams=4, num_return_sequences=2, length_penalty=0.5),
    dict(num_beams=3, early_stopping=True, no_repeat_ngram_size=2),
    dict(num_beams=2, repetition_penalty=1.3, early_stopping="never"),
])
def test_beam_search_identical(pair, options):
    ref, ours = pair
    ids, mask = prompts()
    want = _hf_generate(ref, ids, mask, max_new_tokens=10, do_sample=False, **options)
    with torch.no_grad():
        got = ours.generate(ids, mask, max_new_tokens=10, pad_token_id=0, **options)
    assert torch.equal(got, want), (got, want)


def test_greedy_with_processors_identical(pair):
    ref, ours = pair
    ids, mask = prompts()
    options = dict(max_new_tokens=10, repetition_penalty=1.5, no_repeat_ngram_size=2, min_new_tokens=4)
    want = _hf_generate(ref, ids, mask, do_sample=False, **options)
    with torch.no_grad():
        got = ours.generate(ids, mask, pad_token_id=0, **options)
    assert torch.equal(got, want)


def test_eos_stops_and_pads(pair):
    ref, ours = pair
    ids, mask = prompts()
    with torch.no_grad():
        first = ours.generate(ids, mask, max_new_tokens=3, pad_token_id=0)
    eos = int(first[0, ids.shape[1] + 1])  # make row 0's second new token the EOS
    want = _hf_generate(ref, ids, mask, max_new_tokens=8, do_sample=False, eos_token_id=eos)
    with torch.no_grad():
        got = ours.generate(ids, mask, max_new_tokens=8, pad_token_id=0, eos_token_id=eos)
    assert torch.equal(got, want)
    assert (got[0, ids.shape[1] + 2:] == 0).all()


def test_sampling_reproducible_and_logprobs(pair):
    _, ours = pair
    ids, mask = prompts()
    with torch.no_grad():
        a = ours.generate(ids, mask, max_new_tokens=8, do_sample=True, seed=7, top_k=20, temperature=0.8)
        b = ours.generate(ids, mask, max_new_tokens=8, do_sample=True, seed=7, top_k=20, temperature=0.8)
        c = ours.generate(ids, mask, max_new_tokens=8, do_sample=True, seed=8, top_k=20, temperature=0.8)
        out = ours.generate(ids, mask, max_new_tokens=5, output_logprobs=True)
    assert torch.equal(a, b) and not torch.equal(a, c)
    assert out.logprobs.shape == (3, 5) and (out.logprobs <= 0).all()
    with torch.no_grad():
        n = ours.generate(ids[:1], max_new_tokens=4, do_sample=True, seed=1, num_return_sequences=3)
    assert n.shape[0] == 3


def test_samplers_restrict_support():
    """top-k / top-p / min-p keep exactly the tokens they should on a crafted distribution."""
    probs = torch.tensor([[0.5, 0.2, 0.15, 0.1, 0.05]])
    scores = probs.log()
    seqs = torch.zeros(1, 1, dtype=torch.long)
    kept = lambda s: set(torch.isfinite(s[0]).nonzero().flatten().tolist())  # noqa: E731
    assert kept(sampling.top_k(2)(seqs, scores)) == {0, 1}
    assert kept(sampling.top_p(0.8)(seqs, scores)) == {0, 1, 2}
    assert kept(sampling.min_p(0.3)(seqs, scores)) == {0, 1, 2}
    g = torch.Generator().manual_seed(0)
    draws = {int(sampling.sample(sampling.top_k(2)(seqs, scores), g)) for _ in range(200)}
    assert draws == {0, 1}


def test_cached_generation_equals_uncached(pair):
    """Each greedy token equals the argmax of a full forward over the sequence so far."""
    _, ours = pair
    ids = prompts()[0][:1]
    with torch.no_grad():
        seq = ours.generate(ids, max_new_tokens=6)
        for t in range(ids.shape[1], seq.shape[1]):
            assert int(ours(seq[:, :t]).logits[0, -1].argmax()) == int(seq[0, t])


def test_bad_input(pair):
    _, ours = pair
    ids, mask = prompts()
    with torch.no_grad():
        assert torch.equal(ours.generate(ids, mask, max_new_tokens=0), ids)
        with pytest.raises(GenerationError, match="empty"):
            ours.generate(torch.zeros(1, 0, dtype=torch.long), max_new_tokens=3)
        long = torch.randint(3, 100, (1, 60))
        with pytest.raises(GenerationError, match="context of 64"):
            ours.generate(long, max_new_tokens=10)
        out = ours.generate(long, max_new_tokens=10, truncate_prompt=True)
        assert out.shape == (1, 64)
        with pytest.raises(GenerationError, match="stop strings need tokenizer"):
            generate(ours, ids, stop=["x"], max_new_tokens=2)
        with pytest.raises(ValueError, match="unknown generation option"):
            ours.generate(ids, max_new_tokens=2, temprature=0.5)
    steps = list(generate_step(ours, ids, mask, max_new_tokens=3))
    assert len(steps) == 3 and steps[0][0].shape == (3,)


class _Scripted(torch.nn.Module):
    """A stand-in model that always predicts the next token of a fixed script."""

    def __init__(self, script: list[int], vocab: int, eos: int):
        from peluk.config import PretrainedConfig

        super().__init__()
        self.script, self.vocab, self.calls = script, vocab, 0
        self.config = PretrainedConfig(model_type="scripted", eos_token_id=eos)
        self.weight = torch.nn.Parameter(torch.zeros(1))

    @property
    def device(self):
        return torch.device("cpu")

    def make_cache(self, batch, max_len):
        return None

    def forward(self, ids, attention_mask=None, position_ids=None, cache=None, logits_to_keep=0):
        from peluk.models.base import ModelOutput

        token = self.script[self.calls] if self.calls < len(self.script) else self.config.eos_token_id
        self.calls += 1
        logits = torch.full((ids.shape[0], 1, self.vocab), -10.0)
        logits[:, :, token] = 10.0
        return ModelOutput(logits=logits)


@pytest.fixture(scope="module")
def bpe_tokenizer(tmp_path_factory):
    from peluk.tokenizer import AutoTokenizer
    from tests.tokenizer_fixtures import bpe_dir, train_bpe

    root = tmp_path_factory.mktemp("bpe")
    files = train_bpe(root / "files")
    return AutoTokenizer.from_pretrained(bpe_dir(root, "gpt2", files, {"tokenizer_class": "GPT2Tokenizer"}, "gpt2"))


def test_stream_multibyte_and_stop_strings(bpe_tokenizer):
    from peluk.generation import stream

    tok = bpe_tokenizer
    text = "Halo 🤗 dunia, apa kabar? STOP tidak terlihat"
    script = tok(text, add_special_tokens=False)["input_ids"]
    eos = tok.convert_tokens_to_ids("<|endoftext|>")
    chunks = list(stream(_Scripted(script[1:], len(tok), eos), tok, [script[0]], stop=["STOP", "kab ar"],
                         max_new_tokens=len(script) + 3))
    joined = "".join(chunks)
    assert joined == tok.decode(script[1:]).split("STOP")[0]
    assert all("\ufffd" not in c for c in chunks) and len(chunks) > 3
    # without stop strings the whole script streams, then EOS ends it
    stats: dict = {}
    full = "".join(stream(_Scripted(script[1:], len(tok), eos), tok, [script[0]], max_new_tokens=100, stats=stats))
    assert full == tok.decode(script[1:]) and stats["tokens"] == len(script)  # the script, then EOS
