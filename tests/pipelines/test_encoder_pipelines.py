"""Each pipeline's output against transformers' pipeline (or sentence-transformers) on the same model."""

from __future__ import annotations

import logging

import numpy as np
import pytest

import peluk
from peluk.errors import PipelineError

TEXTS = [
    "The movie was surprisingly good.",
    "Saya tidak suka makanan ini, terlalu asin.",
    "A",
    "Harga beras naik lagi minggu ini di Jakarta dan Surabaya, kata pedagang.",
    "café naïve 🤗",
]


def _hf(task, path, **kwargs):
    import transformers

    return transformers.pipeline(task, model=str(path), device="cpu", **kwargs)


def _close_dicts(a, b, tol=1e-4):
    """Same structure, same strings/ints, floats within tol."""
    if isinstance(a, dict):
        assert set(a) == set(b), (a, b)
        for k in a:
            _close_dicts(a[k], b[k], tol)
    elif isinstance(a, (list, tuple)):
        assert len(a) == len(b), (a, b)
        for x, y in zip(a, b):
            _close_dicts(x, y, tol)
    elif isinstance(a, float) or isinstance(b, float):
        assert abs(float(a) - float(b)) < tol, (a, b)
    else:
        assert a == b, (a, b)


@pytest.mark.parametrize("arch", ["bert", "distilbert"])
def test_feature_extraction(tiny_dir, arch):
    path = tiny_dir(arch, "base")
    ours, ref = peluk.pipeline("feature-extraction", model=path), _hf("feature-extraction", path)
    for text in TEXTS:
        a, b = np.array(ours(text)), np.array(ref(text))
        assert a.shape == b.shape and a.shape[0] == 1
        assert np.abs(a - b).max() < 1e-4
    batch = ours(TEXTS)
    assert [np.array(x).shape for x in batch] == [np.array(ref(t)).shape for t in TEXTS]


def test_sentence_embeddings_match_sentence_transformers(minilm_dir, shared_data):
    from sentence_transformers import SentenceTransformer

    sentences = [line.split("\t")[0] for line in (shared_data / "sst2" / "dev.tsv").read_text().splitlines()[1:301]]
    sentences += ["", "🤗👍🏽", "Saya seorang siswa. " * 150]
    ref = SentenceTransformer(str(minilm_dir), device="cpu").encode(sentences, batch_size=32)
    got = peluk.pipeline("sentence-embeddings")(sentences, batch_size=32)
    assert got.shape == ref.shape == (len(sentences), 384)
    cos = (got * ref).sum(1) / np.linalg.norm(got, axis=1) / np.linalg.norm(ref, axis=1)
    print(f"\nMiniLM vs sentence-transformers: min cosine {cos.min():.8f}, max abs diff {np.abs(got - ref).max():.2e}")
    assert cos.min() >= 0.99999


def test_sentence_embeddings_shapes_and_streams():
    embed = peluk.pipeline("sentence-embeddings")
    one = embed("Halo")
    assert one.shape == (384,) and abs(np.linalg.norm(one) - 1) < 1e-5
    assert embed([]).shape == (0, 384)
    streamed = list(embed(iter(TEXTS), batch_size=2))
    assert np.allclose(np.stack(streamed), embed(TEXTS), atol=1e-5)
    assert tuple(embed(TEXTS, return_tensors=True).shape) == (len(TEXTS), 384)


def test_sentence_similarity(minilm_dir):
    from sentence_transformers import SentenceTransformer, util

    sim = peluk.pipeline("sentence-similarity")
    query = {"source_sentence": "I like coffee", "sentences": ["I love coffee", "It is raining", "Saya suka kopi"]}
    got = sim(query)
    st = SentenceTransformer(str(minilm_dir), device="cpu")
    want = util.cos_sim(st.encode(query["source_sentence"]), st.encode(query["sentences"]))[0].tolist()
    assert np.allclose(got, want, atol=1e-5)
    assert got[0] > got[1]
    with pytest.raises(PipelineError):
        sim({"source_sentence": "x"})


@pytest.mark.parametrize("arch", ["bert", "distilbert"])
def test_text_classification(tiny_dir, arch):
    path = tiny_dir(arch, "sequence-classification")
    ours, ref = peluk.pipeline("sentiment-analysis", model=path), _hf("sentiment-analysis", path)
    _close_dicts(ours(TEXTS[0]), ref(TEXTS[0]))
    _close_dicts(ours(TEXTS), ref(TEXTS))
    for kwargs in ({"top_k": None}, {"top_k": 2}, {"function_to_apply": "sigmoid"}, {"top_k": 1}):
        _close_dicts(ours(TEXTS, **kwargs), ref(TEXTS, **kwargs))
        _close_dicts(ours(TEXTS[1], **kwargs), ref(TEXTS[1], **kwargs))
    pair = {"text": "Saya suka kopi.", "text_pair": "I like coffee."}
    _close_dicts(ours(pair), ref(pair))
    _close_dicts(ours([pair, pair]), ref([pair, pair]))


def test_text_classification_multi_label_and_regression(tiny_dir):
    path = tiny_dir("bert", "sequence-classification", problem_type="multi_label_classification")
    _close_dicts(peluk.pipeline("text-classification", model=path)(TEXTS, top_k=None),
                 _hf("text-classification", path)(TEXTS, top_k=None))
    path = tiny_dir("bert", "sequence-classification", id2label={0: "LABEL_0"})
    _close_dicts(peluk.pipeline("text-classification", model=path)(TEXTS),
                 _hf("text-classification", path)(TEXTS))


@pytest.mark.parametrize("arch", ["bert", "distilbert"])
def test_fill_mask(tiny_dir, arch):
    path = tiny_dir(arch, "masked-lm")
    ours, ref = peluk.pipeline("fill-mask", model=path), _hf("fill-mask", path)
    texts = ["Saya pergi ke [MASK] kemarin.", "The [MASK] sat on the mat.", "[MASK] and [MASK] again."]
    for text in texts:
        _close_dicts(ours(text), ref(text))
    _close_dicts(ours(texts, top_k=3), ref(texts, top_k=3))
    targets = ["pasar", "sekolah", "the"]
    _close_dicts(sorted(ours(texts[0], targets=targets), key=lambda d: d["token"]),
                 sorted(ref(texts[0], targets=targets), key=lambda d: d["token"]))
    with pytest.raises(PipelineError, match="no mask token"):
        ours("no mask here")


def test_zero_shot(tiny_dir):
    nli = {0: "entailment", 1: "neutral", 2: "contradiction"}
    path = tiny_dir("bert", "sequence-classification", id2label=nli, initializer_range=0.5)  # scores far from ties
    ours, ref = peluk.pipeline("zero-shot-classification", model=path), _hf("zero-shot-classification", path)
    labels = ["politik", "olahraga", "ekonomi"]
    for multi in (False, True):
        _close_dicts(ours(TEXTS[3], candidate_labels=labels, multi_label=multi),
                     ref(TEXTS[3], candidate_labels=labels, multi_label=multi))
        _close_dicts(ours(TEXTS, candidate_labels=labels, multi_label=multi),
                     ref(TEXTS, candidate_labels=labels, multi_label=multi))
    _close_dicts(ours(TEXTS[0], "sport, politics", hypothesis_template="Topiknya {}."),
                 ref(TEXTS[0], "sport, politics", hypothesis_template="Topiknya {}."))
    with pytest.raises(PipelineError):
        ours(TEXTS[0], candidate_labels=[])


def test_bad_input(tiny_dir, caplog):
    path = tiny_dir("bert", "sequence-classification")
    clf = peluk.pipeline("text-classification", model=path)
    assert clf([]) == []
    with caplog.at_level(logging.WARNING, logger="peluk"):
        long = clf("kata " * 1000)  # max_position_embeddings is 128: truncated, not a crash
    assert long[0]["label"] in ("NEG", "NEU", "POS")
    assert "truncated" in caplog.text
    with pytest.raises(PipelineError, match="unknown parameter"):
        clf("x", topk=3)
    with pytest.raises(PipelineError, match="unknown task"):
        peluk.pipeline("summarise-everything")
    with pytest.raises(PipelineError, match="token-classification \\(NER\\) model"):
        peluk.pipeline("ner")  # a task without a default model says what to pass
    with pytest.raises(PipelineError):
        clf(42)
