"""peluk.viz.attention: captured probabilities equal transformers' output_attentions on tiny
random encoders, decoders and encoder-decoders; rows sum to 1; causal masks hold; JSON round-trips."""

from __future__ import annotations

import numpy as np
import pytest
import torch

import peluk.models as pm
import peluk.viz as viz
from peluk.tokenizer import Tokenizer

TOL = 1e-5


class IdTokenizer:
    """A stand-in tokenizer for tiny models with small vocabularies: one id per character."""

    def __init__(self, vocab: int, offset: int = 3):
        self.vocab, self.offset = vocab, offset

    def __call__(self, text=None, text_pair=None, *, text_target=None, return_tensors=None, **_):
        text = text if text is not None else text_target
        ids = [self.offset + (ord(c) % (self.vocab - self.offset)) for c in text]
        t = torch.tensor([ids])
        return {"input_ids": t, "attention_mask": torch.ones_like(t)}

    def convert_ids_to_tokens(self, ids):
        return [f"t{i}" for i in ids]


def _check_rows(a: np.ndarray):
    assert a.dtype == np.float32
    np.testing.assert_allclose(a.sum(-1), 1.0, atol=1e-5)


def _ref_stack(maps) -> np.ndarray:
    return torch.stack([m[0].float() for m in maps]).numpy()


@pytest.mark.parametrize("arch", ["roberta", "distilbert"])
def test_other_encoders_match_transformers(arch, tiny_dir):
    import transformers as tf

    path = tiny_dir(arch, "base")
    tok = Tokenizer.from_pretrained(path)
    view = viz.attention(pm.AutoModel.from_pretrained(path), tok, "a short sentence here")
    ref = tf.AutoModel.from_pretrained(path, attn_implementation="eager").eval()
    enc = tok("a short sentence here", return_tensors="pt")
    enc.pop("token_type_ids", None)
    with torch.no_grad():
        want = _ref_stack(ref(**dict(enc), output_attentions=True).attentions)
    assert np.abs(view.attentions["encoder"] - want).max() < TOL
    _check_rows(view.attentions["encoder"])


def test_encoder_bert_matches_transformers(tiny_dir):
    import transformers as tf

    path = tiny_dir("bert", "sequence-classification")
    tok = Tokenizer.from_pretrained(path)
    ours = pm.AutoModelForSequenceClassification.from_pretrained(path)
    view = viz.attention(ours, tok, "the cat sat on the mat", text_pair="it was happy")
    ref = tf.AutoModelForSequenceClassification.from_pretrained(path, attn_implementation="eager").eval()
    enc = tok("the cat sat on the mat", "it was happy", return_tensors="pt")
    with torch.no_grad():
        want = _ref_stack(ref(**dict(enc), output_attentions=True).attentions)
    got = view.attentions["encoder"]
    assert got.shape == want.shape == (3, 4, len(view.tokens["source"]), len(view.tokens["source"]))
    assert np.abs(got - want).max() < TOL
    assert view.tokens["source"][0] == "[CLS]" and view.tokens["source"].count("[SEP]") == 2
    assert set(view.meta["segments"]) == {0, 1}
    _check_rows(got)


@pytest.mark.parametrize("variant", ["gpt2", "llama-gqa-tied", "mistral-window"])
def test_decoder_matches_transformers_and_is_causal(variant, tmp_path):
    from tests.parity.tiny_decoders import tiny_decoder

    ref = tiny_decoder(variant)
    ref.save_pretrained(tmp_path)
    ours = pm.AutoModelForCausalLM.from_pretrained(tmp_path)
    tok = IdTokenizer(128)
    view = viz.attention(ours, tok, "hello there", generate=4)
    T = len(view.tokens["target"])
    assert view.prompt_length == 11 and T == 15
    ids = torch.tensor([[int(t[1:]) for t in view.tokens["target"]]])
    with torch.no_grad():
        want = _ref_stack(ref(input_ids=ids, output_attentions=True).attentions)
        greedy = ref.generate(ids[:, :11], max_new_tokens=4, do_sample=False)
    assert torch.equal(greedy[0, :T], ids[0])  # the generated tokens are transformers' greedy tokens
    got = view.attentions["decoder"]
    assert got.shape == want.shape == (3, 4, T, T)
    assert np.abs(got - want).max() < TOL
    _check_rows(got)
    assert np.all(np.triu(got, k=1) == 0)  # no attention to the future
    if variant == "gpt2":
        pytest.importorskip("matplotlib")
        fig = view.heatmap(layer=0, head=1, path=tmp_path / "d.svg")
        assert (tmp_path / "d.svg").stat().st_size > 0 and len(fig.axes[0].lines) == 2  # the prompt boundary
    if variant == "mistral-window":  # nor beyond the sliding window (5)
        assert np.all(np.tril(got, k=-5) == 0) and np.tril(got, k=-4).sum() > 0


def test_base_decoder_without_head(tmp_path):
    from tests.parity.tiny_decoders import tiny_decoder

    tiny_decoder("gpt2").save_pretrained(tmp_path)
    base = pm.AutoModel.from_pretrained(tmp_path)
    view = viz.attention(base, IdTokenizer(128), "abcd")
    assert view.attentions["decoder"].shape == (3, 4, 4, 4)
    with pytest.raises(ValueError, match="language-modelling head"):
        viz.attention(base, IdTokenizer(128), "abcd", generate=2)


@pytest.mark.parametrize("variant", ["bart", "t5-v1.1"])
def test_seq2seq_matches_transformers(variant, tmp_path):
    from tests.parity.tiny_seq2seq import tiny_seq2seq

    ref = tiny_seq2seq(variant)
    ref.save_pretrained(tmp_path)
    ours = pm.AutoModelForSeq2SeqLM.from_pretrained(tmp_path)
    tok = IdTokenizer(100)
    view = viz.attention(ours, tok, "a source text", target="target")
    src = torch.tensor([[int(t[1:]) for t in view.tokens["source"]]])
    dec = torch.tensor([[int(t[1:]) for t in view.tokens["target"]]])
    assert src.shape[1] == 13 and dec.shape[1] == 6
    assert int(dec[0, 0]) == ref.config.decoder_start_token_id
    with torch.no_grad():
        want = ref(input_ids=src, decoder_input_ids=dec, output_attentions=True)
    for kind, key in (("encoder", "encoder_attentions"), ("decoder", "decoder_attentions"),
                      ("cross", "cross_attentions")):
        got = view.attentions[kind]
        w = _ref_stack(want[key])
        assert got.shape == w.shape, kind
        assert np.abs(got - w).max() < TOL, kind
        _check_rows(got)
        q, k = view.tokens_of(kind)
        assert got.shape[2:] == (len(q), len(k))
    assert np.all(np.triu(view.attentions["decoder"], k=1) == 0)
    assert view.attentions["cross"].shape[2:] == (6, 13)


def test_seq2seq_greedy_target(tmp_path):
    from tests.parity.tiny_seq2seq import tiny_seq2seq

    ref = tiny_seq2seq("bart")
    ref.save_pretrained(tmp_path)
    ours = pm.AutoModelForSeq2SeqLM.from_pretrained(tmp_path)
    view = viz.attention(ours, IdTokenizer(100), "abc", generate=3)
    assert 2 <= len(view.tokens["target"]) <= 4
    assert view.attentions["cross"].shape[2:] == (len(view.tokens["target"]), 3)


def test_json_round_trip(tmp_path):
    rng = np.random.default_rng(0)
    a = rng.random((2, 3, 4, 5)).astype(np.float32)
    a /= a.sum(-1, keepdims=True)
    view = viz.AttentionView(tokens={"source": list("abcde"), "target": list("wxyz")}, attentions={"cross": a},
                             model_type="bart", meta={"note": "ü"})
    back = viz.AttentionView.from_json(view.to_json())
    assert back.tokens == view.tokens and back.model_type == "bart" and back.meta == {"note": "ü"}
    assert np.abs(back.attentions["cross"] - a).max() < 1e-3  # float16
    exact = viz.AttentionView.from_json(view.to_json(precision="float32"))
    assert np.array_equal(exact.attentions["cross"], a)
    p = view.save(tmp_path / "v.json")
    assert viz.AttentionView.load(p).tokens == view.tokens


def test_max_length_truncates_with_special_tokens(tiny_dir):
    path = tiny_dir("bert", "base")
    view = viz.attention(pm.AutoModel.from_pretrained(path), Tokenizer.from_pretrained(path),
                         " ".join(["word"] * 50), max_length=8)
    assert len(view.tokens["source"]) == 8 and view.tokens["source"][-1] == "[SEP]"
    assert view.attentions["encoder"].shape[2:] == (8, 8)


def _scores_from_neurons(view, kind: str) -> np.ndarray:
    n = view.neurons[kind]
    return np.einsum("lhtd,lhsd->lhts", n["queries"], n["keys"]) * n["scale"]


def _softmax(x: np.ndarray) -> np.ndarray:
    e = np.exp(x - x.max(-1, keepdims=True))
    return e / e.sum(-1, keepdims=True)


@pytest.mark.parametrize("variant", ["gpt2", "llama-gqa-tied"])
def test_neurons_reproduce_the_decoder_probabilities(variant, tmp_path):
    """The captured queries and keys are the ones the scores came from (after rotary, keys per
    query head): softmax(q·k·scale + causal mask) gives the captured probabilities back."""
    from tests.parity.tiny_decoders import tiny_decoder

    tiny_decoder(variant).save_pretrained(tmp_path)
    ours = pm.AutoModelForCausalLM.from_pretrained(tmp_path)
    view = viz.attention(ours, IdTokenizer(128), "hello there", neurons=True)
    n, a = view.neurons["decoder"], view.attentions["decoder"]
    L, H, T, _ = a.shape
    assert n["queries"].shape[:3] == (L, H, T) and n["keys"].shape[:3] == (L, H, T)
    causal = np.triu(np.full((T, T), -np.inf, dtype=np.float32), k=1)
    assert np.abs(_softmax(_scores_from_neurons(view, "decoder") + causal) - a).max() < 1e-5
    assert not viz.attention(ours, IdTokenizer(128), "hello").neurons  # only when asked for


def test_neurons_of_every_seq2seq_kind_and_json(tmp_path):
    from tests.parity.tiny_seq2seq import tiny_seq2seq

    tiny_seq2seq("bart").save_pretrained(tmp_path)
    ours = pm.AutoModelForSeq2SeqLM.from_pretrained(tmp_path)
    view = viz.attention(ours, IdTokenizer(100), "a source text", target="target", neurons=True)
    assert set(view.neurons) == {"encoder", "decoder", "cross"}
    T = len(view.tokens["target"])
    causal = np.triu(np.full((T, T), -np.inf, dtype=np.float32), k=1)
    for kind, mask in (("encoder", 0.0), ("decoder", causal), ("cross", 0.0)):
        assert np.abs(_softmax(_scores_from_neurons(view, kind) + mask) - view.attentions[kind]).max() < 1e-5, kind
    back = viz.AttentionView.from_json(view.to_json())
    for kind in view.neurons:
        for part in ("queries", "keys"):
            want = view.neurons[kind][part]
            assert np.abs(back.neurons[kind][part] - want).max() <= 1e-3 * np.abs(want).max() + 1e-4
        assert back.neurons[kind]["scale"] == pytest.approx(view.neurons[kind]["scale"])
