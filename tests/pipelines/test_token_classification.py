"""Token classification against transformers' pipeline on the same tiny random checkpoints.

Each architecture gets a real tokenizer (MiniLM's WordPiece for BERT and DistilBERT, a small
byte-level BPE trained on the shared corpora for RoBERTa) and a classifier scaled up so that
the random model predicts a mix of tags rather than all "O". Both sides read the same
directory, whose tokenizer says ``model_max_length=48``, so truncation and stride windows
happen at the same place on both.
"""

from __future__ import annotations

import json
import shutil

import pytest
import torch

import peluk
from peluk.errors import PipelineError
from tests.parity.tiny import tiny_model
from tests.tokenizer_fixtures import ROBERTA_SPECIALS, bpe_dir, require_data, train_bpe

LABELS = {0: "O", 1: "B-PER", 2: "I-PER", 3: "B-LOC", 4: "I-LOC"}
MAX_TOKENS = 48
STRATEGIES = ["none", "simple", "first", "average", "max"]
# transformers warns that byte-level BPE has no word markers; peluk applies the same heuristic quietly
pytestmark = pytest.mark.filterwarnings("ignore:Tokenizer does not support real words")
MINILM_FILES = ("tokenizer.json", "tokenizer_config.json", "special_tokens_map.json", "vocab.txt")

HAND_WRITTEN = [
    "Presiden Joko Widodo meresmikan Bandara Internasional Yogyakarta di Kulon Progo.",
    "Angela Merkel met Emmanuel Macron in Strasbourg on Tuesday.",
    "Café Müller in São Paulo serves naïve crème brûlée 🤗 daily.",
    "",
    "Sri Mulyani Indrawati said Bank Indonesia would keep rates unchanged.",
]


def checkpoint(arch: str, head: str, root, minilm_dir, seed: int = 0, **extra):
    """Save a tiny ``arch``/``head`` model and a real tokenizer (max 48 tokens) into ``root``."""
    root.mkdir(parents=True, exist_ok=True)
    if arch == "roberta":
        require_data()
        files = train_bpe(root / "bpe")
        path = bpe_dir(root, "model", files, {**ROBERTA_SPECIALS, "tokenizer_class": "RobertaTokenizer",
                                              "model_max_length": MAX_TOKENS}, "roberta")
        vocab = 1300
    else:
        path = root / "model"
        path.mkdir()
        for name in MINILM_FILES:
            shutil.copy(minilm_dir / name, path / name)
        config = json.loads((path / "tokenizer_config.json").read_text())
        (path / "tokenizer_config.json").write_text(json.dumps({**config, "model_max_length": MAX_TOKENS}))
        vocab = 30522
    model = tiny_model(arch, head, seed=seed, vocab_size=vocab, **extra)
    if head == "token-classification":
        with torch.no_grad():  # sharper, varied predictions: B-/I- tags and "O" all show up
            model.classifier.weight.mul_(6.0)
            model.classifier.bias.copy_(torch.tensor([1.0, 0.0, 0.0, 0.0, 0.0]))
    model.save_pretrained(path)
    return path


@pytest.fixture(scope="module")
def sentences(shared_data):
    conll = (shared_data / "conll2003" / "test.txt").read_text().split("\n\n")
    english = [" ".join(line.split()[0] for line in block.splitlines()) for block in conll[1:40]]
    english = [s for s in english if len(s.split()) >= 5][:6]
    lines = (shared_data / "en_id_panl_bppt" / "PANL-BPPT-INT-ID-150Kw.txt").read_text().splitlines()
    indonesian = [line.strip() for line in lines[:4]]
    return english + indonesian + HAND_WRITTEN


@pytest.fixture(scope="module", params=["bert", "roberta", "distilbert"])
def ner_dir(request, tmp_path_factory, minilm_dir):
    arch = request.param
    return checkpoint(arch, "token-classification", tmp_path_factory.mktemp(arch), minilm_dir, id2label=LABELS)


def _same(ours, ref, tol=1e-4):
    """Same entities (keys, words, labels, offsets, indices) with scores within tol."""
    assert len(ours) == len(ref), (ours, ref)
    for a, b in zip(ours, ref):
        assert set(a) == set(b), (a, b)
        for key in a:
            if key == "score":
                assert abs(a[key] - float(b[key])) < tol, (a, b)
            else:
                assert a[key] == b[key], (key, a, b)


def test_matches_transformers(ner_dir, sentences):
    import transformers

    ours = peluk.pipeline("ner", model=ner_dir)
    ref = transformers.pipeline("token-classification", model=str(ner_dir), device="cpu")
    seen = set()
    for strategy in STRATEGIES:
        got = ours(sentences, aggregation_strategy=strategy)
        want = ref(sentences, aggregation_strategy=strategy)
        assert len(got) == len(want) == len(sentences)
        for text, a, b in zip(sentences, got, want):
            _same(a, b)
            for entity in a:
                seen.add(entity.get("entity", entity.get("entity_group")))
                assert 0 <= entity["start"] <= entity["end"] <= len(text)
    assert {"B-PER", "I-PER", "B-LOC", "I-LOC"} <= seen, seen  # the model really predicts tags
    assert ours(sentences[0]) == ours([sentences[0]])[0]  # one string → its list of entities


def test_ignore_labels_and_stride(ner_dir, sentences):
    import transformers

    ours = peluk.pipeline("token-classification", model=ner_dir)
    ref = transformers.pipeline("token-classification", model=str(ner_dir), device="cpu")
    long_text = " ".join(sentences[6:9])  # well over 48 tokens: several windows
    assert len(ours.tokenizer(long_text, verbose=False)["input_ids"]) > 2 * MAX_TOKENS
    for strategy in ("simple", "first", "max"):
        _same(ours(long_text, aggregation_strategy=strategy, stride=12),
              ref(long_text, aggregation_strategy=strategy, stride=12))
    # without stride: truncated to 48 tokens on both sides
    _same(ours(long_text, aggregation_strategy="simple"), ref(long_text, aggregation_strategy="simple"))
    every = ours(sentences[:3], ignore_labels=[])
    for batched, text in zip(every, sentences[:3]):  # batching (with padding) changes nothing
        _same(batched, ours(text, ignore_labels=[]))
    assert any(e["entity"] == "O" for e in every[0])
    _same(every[1], ref(sentences[1], ignore_labels=[]))


def test_bad_input(ner_dir):
    ours = peluk.pipeline("ner", model=ner_dir)
    assert ours([]) == []
    assert ours("") == []
    with pytest.raises(PipelineError, match="aggregation_strategy"):
        ours("Jakarta", aggregation_strategy="longest")
    with pytest.raises(PipelineError, match="stride"):
        ours("Jakarta", stride=8)  # stride needs an aggregation
    with pytest.raises(PipelineError, match="stride"):
        ours("Jakarta", stride=MAX_TOKENS - 2, aggregation_strategy="simple")  # windows could not move on
    with pytest.raises(PipelineError, match="strings"):
        ours([3])
