"""Parity of peluk.tokenizer with transformers' AutoTokenizer on the same files.

Every case loads one directory with both libraries and compares what they return: ids, masks,
token type ids (presence and values), offsets, overflow windows and decoded text, over a few
thousand real sentences (English and Indonesian) and hand-written edge cases.
"""

from __future__ import annotations

import json
import logging
import shutil

import numpy as np
import pytest
import torch
from tokenizers import AddedToken
from tokenizers import Tokenizer as RustTokenizer

from peluk.errors import TokenizerError
from peluk.tokenizer import AutoTokenizer, BatchEncoding, Tokenizer
from tests.tokenizer_fixtures import (
    HAND_WRITTEN,
    ROBERTA_SPECIALS,
    bpe_dir,
    corpus,
    minilm_dir,
    train_bpe,
    wordpiece_dir,
    write_json,
)

transformers = pytest.importorskip("transformers")
HF = transformers.AutoTokenizer

CASES = [
    "minilm",  # the packaged all-MiniLM-L6-v2 tokenizer.json (BertTokenizer)
    "minilm_cased_config",  # same tokenizer.json, config says do_lower_case=False: the config wins
    "minilm_added_tokens",  # tokenizer.json with added tokens listed in added_tokens_decoder
    "wordpiece_cased",  # vocab.txt only, do_lower_case=False
    "wordpiece_uncased",  # vocab.txt only, do_lower_case=True, strip_accents=False
    "distilbert",  # vocab.txt, DistilBertTokenizer: no token_type_ids
    "distilbert_model_type",  # vocab.txt, no tokenizer_class, model_type distilbert: BertTokenizer
    "roberta",  # vocab.json + merges.txt, RobertaTokenizer
    "gpt2",  # vocab.json + merges.txt, GPT2Tokenizer (pad = eos, as users usually set it)
    "roberta_json",  # tokenizer.json saved by transformers from "roberta"
    "roberta_added_decoder",  # specials from added_tokens_decoder, <mask> with lstrip as on the Hub
    "roberta_special_map",  # specials from special_tokens_map.json only (the legacy layout)
    "generic_json",  # the same tokenizer.json declared as PreTrainedTokenizerFast: used as is
]


@pytest.fixture(scope="session")
def texts() -> list[str]:
    return corpus() + HAND_WRITTEN


@pytest.fixture(scope="session")
def build(tmp_path_factory):
    """build(name) -> the directory of a case, made once per session."""
    root = tmp_path_factory.mktemp("tokenizers")
    made = {}

    def make(name: str):
        if name in made:
            return made[name]
        if name == "minilm":
            out = minilm_dir()
        elif name == "minilm_cased_config":
            out = root / name
            out.mkdir()
            shutil.copy(minilm_dir() / "tokenizer.json", out / "tokenizer.json")
            config = json.loads((minilm_dir() / "tokenizer_config.json").read_text())
            write_json(out / "tokenizer_config.json", {**config, "do_lower_case": False})
        elif name == "minilm_added_tokens":
            out = root / name
            out.mkdir()
            backend = RustTokenizer.from_file(str(minilm_dir() / "tokenizer.json"))
            backend.add_tokens(["<new1>", AddedToken("Wörd", normalized=True)])
            backend.add_special_tokens([AddedToken("<sp>", special=True, lstrip=True)])
            backend.save(str(out / "tokenizer.json"))
            config = json.loads((minilm_dir() / "tokenizer_config.json").read_text())
            config["added_tokens_decoder"] = {
                str(i): t.__getstate__() for i, t in backend.get_added_tokens_decoder().items()}
            write_json(out / "tokenizer_config.json", {**config, "additional_special_tokens": ["<sp>"]})
        elif name == "wordpiece_cased":
            out = wordpiece_dir(root, name, {"tokenizer_class": "BertTokenizer", "do_lower_case": False,
                                             "model_max_length": 64})
        elif name == "wordpiece_uncased":
            out = wordpiece_dir(root, name, {"tokenizer_class": "BertTokenizer", "do_lower_case": True,
                                             "strip_accents": False, "model_max_length": 64})
        elif name == "distilbert":
            out = wordpiece_dir(root, name, {"tokenizer_class": "DistilBertTokenizer", "model_max_length": 64},
                                model_type="distilbert")
        elif name == "distilbert_model_type":
            out = wordpiece_dir(root, name, {"model_max_length": 64}, model_type="distilbert")
        elif name == "bpe_files":
            out = train_bpe(root / name)
        elif name == "roberta":
            config = {"tokenizer_class": "RobertaTokenizer", "model_max_length": 64, **ROBERTA_SPECIALS}
            out = bpe_dir(root, name, make("bpe_files"), config, "roberta")
        elif name == "gpt2":
            eos = "<|endoftext|>"
            config = {"tokenizer_class": "GPT2Tokenizer", "bos_token": eos, "eos_token": eos, "unk_token": eos,
                      "pad_token": eos}
            out = bpe_dir(root, name, make("bpe_files"), config, "gpt2")
        elif name == "roberta_added_decoder":
            decoder = {str(i): {"content": t, "lstrip": t == "<mask>", "normalized": False, "rstrip": False,
                                "single_word": False, "special": True}
                       for i, t in enumerate(["<s>", "<pad>", "</s>", "<unk>", "<mask>"])}
            config = {"tokenizer_class": "RobertaTokenizer", "model_max_length": 64, "added_tokens_decoder": decoder,
                      **ROBERTA_SPECIALS}
            out = bpe_dir(root, name, make("bpe_files"), config, "roberta")
        elif name == "roberta_special_map":
            out = bpe_dir(root, name, make("bpe_files"), {"model_max_length": 64}, "roberta")
            mask = {"content": "<mask>", "lstrip": True, "normalized": False, "rstrip": False, "single_word": False}
            write_json(out / "special_tokens_map.json", {**ROBERTA_SPECIALS, "mask_token": mask})
        elif name == "roberta_json":
            out = root / name
            HF.from_pretrained(make("roberta")).save_pretrained(out)
        elif name == "generic_json":
            out = root / name
            shutil.copytree(make("roberta_json"), out)
            config = json.loads((out / "tokenizer_config.json").read_text())
            write_json(out / "tokenizer_config.json", {**config, "tokenizer_class": "PreTrainedTokenizerFast"})
        made[name] = out
        return out

    return make


@pytest.fixture(scope="session")
def loaded(build):
    """loaded(name) -> (peluk tokenizer, transformers tokenizer), shared: tests must not mutate them."""
    cache = {}

    def load(name: str):
        if name not in cache:
            directory = build(name)
            cache[name] = (Tokenizer.from_pretrained(directory), HF.from_pretrained(directory))
        return cache[name]

    return load


# The cases that differ in how they tokenize; the heavier tests run on these only.
CORE_CASES = ["minilm", "wordpiece_cased", "roberta", "gpt2", "roberta_json"]


@pytest.fixture(params=CASES)
def pair(request, loaded):
    return loaded(request.param)


@pytest.fixture(params=CORE_CASES)
def core_pair(request, loaded):
    return loaded(request.param)


def assert_same(ours, theirs):
    """Same keys in the same order, same values (lists, tensors or arrays)."""
    assert list(ours.keys()) == list(theirs.keys())
    for key in theirs:
        a, b = ours[key], theirs[key]
        if isinstance(b, torch.Tensor):
            assert isinstance(a, torch.Tensor) and a.dtype == b.dtype and torch.equal(a, b), key
        elif isinstance(b, np.ndarray):
            assert isinstance(a, np.ndarray) and a.dtype == b.dtype and np.array_equal(a, b), key
        else:
            assert a == b, key


def both(pair, *args, may_fail=False, **kwargs):
    """Call both tokenizers and compare; with ``may_fail``, a transformers error must be a TokenizerError here."""
    ours, theirs = pair
    try:
        expected = theirs(*args, **kwargs)
    except BaseException as e:  # a Rust panic (too large a stride) is a BaseException
        if not may_fail or isinstance(e, KeyboardInterrupt):
            raise
        with pytest.raises(TokenizerError):
            ours(*args, **kwargs)
        return None
    got = ours(*args, **kwargs)
    assert_same(got, expected)
    return got


def test_full_corpus(core_pair, texts):
    both(core_pair, texts)
    both(core_pair, texts[::4], return_offsets_mapping=True, return_special_tokens_mask=True, return_length=True)


def test_corpus_sample(pair, texts):
    sample = texts[::8] + HAND_WRITTEN
    both(pair, sample, return_offsets_mapping=True, return_special_tokens_mask=True)
    both(pair, sample[:200], text_pair=sample[200:400], return_offsets_mapping=True)


def test_single_texts(pair, texts):
    for text in HAND_WRITTEN + texts[:20]:
        both(pair, text)
        both(pair, text, "a second sentence", return_offsets_mapping=True)
        both(pair, text, add_special_tokens=False)
        assert pair[0].tokenize(text) == pair[1].tokenize(text)
        assert pair[0].encode(text) == pair[1].encode(text)


@pytest.mark.parametrize("padding", [True, "longest", "max_length", False, "do_not_pad"])
def test_padding(core_pair, texts, padding):
    pair = core_pair
    batch = texts[:40] + HAND_WRITTEN
    both(pair, batch, padding=padding)
    both(pair, batch, padding=padding, max_length=80, truncation=True, return_offsets_mapping=True)
    both(pair, batch, padding=padding, pad_to_multiple_of=8, return_special_tokens_mask=True, return_length=True)
    both(pair, batch[:10], batch[10:20], padding=padding, padding_side="left")
    both(pair, [(a, b) for a, b in zip(batch[:10], batch[10:20])], padding=padding)


@pytest.mark.parametrize("truncation", [True, "only_first", "only_second", False])
@pytest.mark.parametrize("stride", [0, 5])
def test_truncation_with_overflow(core_pair, texts, truncation, stride):
    pair = core_pair
    questions, contexts = texts[:20], texts[20:40]
    for kwargs in [
        dict(max_length=24, return_overflowing_tokens=True, return_offsets_mapping=True),
        dict(max_length=24, return_overflowing_tokens=True, padding="max_length", return_offsets_mapping=True),
        dict(max_length=30, return_overflowing_tokens=True, padding=True, return_special_tokens_mask=True),
    ]:
        # only_first/only_second fail (in both) when the other sequence leaves no room
        both(pair, questions, contexts, truncation=truncation, stride=stride, may_fail=True, **kwargs)
        both(pair, contexts, truncation=truncation, stride=stride, may_fail=True, **kwargs)
        both(pair, contexts[0], truncation=truncation, stride=stride, may_fail=True, **kwargs)
        both(pair, questions[0], contexts[0], truncation=truncation, stride=stride, may_fail=True, **kwargs)
    both(pair, contexts, truncation=truncation, max_length=16, may_fail=True)


def test_truncation_spellings(pair, texts):
    for truncation in ("longest_first", "do_not_truncate", None):
        both(pair, texts[:20], texts[20:40], truncation=truncation, max_length=20, return_overflowing_tokens=True)
    both(pair, texts[:20], max_length=16)  # max_length alone truncates, as in transformers


def test_question_answering_windows(loaded, texts):
    """The QA pipeline's call: question + long context, only_second, stride, offsets."""
    context = " ".join(texts[:12])
    args = (["What did the minister say?"] * 2, [context, context[:300]])
    kwargs = dict(truncation="only_second", max_length=64, stride=16, return_overflowing_tokens=True,
                  return_offsets_mapping=True, padding="max_length")
    for name in ("minilm", "roberta"):
        ours, theirs = loaded(name)
        got, expected = ours(*args, **kwargs), theirs(*args, **kwargs)
        assert_same(got, expected)
        assert len(set(got["overflow_to_sample_mapping"])) == 2 and len(got["input_ids"]) > 2
        for i in range(len(got["input_ids"])):
            assert got.sequence_ids(i) == expected.sequence_ids(i)
            assert got.word_ids(i) == expected.word_ids(i)


def test_config_options_beat_tokenizer_json(loaded):
    # transformers 5 rebuilds BertTokenizer's normalizer from tokenizer_config.json, so
    # do_lower_case=False there disables the lowercasing that tokenizer.json asks for.
    uncased, _ = loaded("minilm")
    cased, _ = loaded("minilm_cased_config")
    assert uncased.tokenize("Hello") == ["hello"] and cased.tokenize("Hello") == ["[UNK]"]


def test_tensors_and_shapes(pair, texts):
    ours, theirs = pair
    for kind in ("pt", "np"):
        both(pair, texts[0], return_tensors=kind)
        both(pair, texts[:8], padding=True, return_tensors=kind)
        both(pair, texts[:8], texts[8:16], padding=True, return_tensors=kind, return_offsets_mapping=True)
        assert ours(texts[0], return_tensors=kind)["input_ids"].shape == (1, len(ours(texts[0])["input_ids"]))
        with pytest.raises(TokenizerError, match="padding=True"):
            ours(texts[:8], return_tensors=kind)
    batch = ours(texts[:3], padding=True, return_tensors="pt").to("cpu")
    assert isinstance(batch, BatchEncoding) and batch.input_ids.device.type == "cpu"


def test_batch_shapes_match_transformers(pair):
    # A tuple is a batch, as in transformers; an empty batch and a batch of empty strings work.
    both(pair, ("first text", "second text"))
    both(pair, ["", ""])
    both(pair, "")
    both(pair, ["only one"])
    both(pair, "a", "")  # an empty pair is no pair in transformers


def test_split_into_words(pair):
    words = [["Hello", "world", "café"], ["Selamat", "pagi", "🤗"]]
    both(pair, words, is_split_into_words=True, return_offsets_mapping=True)
    both(pair, words[0], is_split_into_words=True)
    ours, theirs = pair
    assert ours(words, is_split_into_words=True).word_ids(1) == theirs(words, is_split_into_words=True).word_ids(1)


def test_alignment_helpers(pair, texts):
    ours, theirs = pair
    a, b = ours(texts[:2], texts[2:4]), theirs(texts[:2], texts[2:4])
    for i in range(2):
        assert a.tokens(i) == b.tokens(i)
        assert a.word_ids(i) == b.word_ids(i)
        assert a.sequence_ids(i) == b.sequence_ids(i)
        assert [a.char_to_token(i, c) for c in range(len(texts[i]))] == [
            b.char_to_token(i, c) for c in range(len(texts[i]))]
        assert [a.token_to_chars(i, t) for t in range(5)] == [tuple(s) if s else s for s in (
            b.token_to_chars(i, t) for t in range(5))]
    assert a[0].ids == b[0].ids


def test_decode(pair, texts):
    ours, theirs = pair
    batch = theirs(texts[:50] + HAND_WRITTEN, texts[50:50 + 50 + len(HAND_WRITTEN)], padding=True)["input_ids"]
    for skip in (False, True):
        assert ours.batch_decode(batch, skip_special_tokens=skip) == theirs.batch_decode(batch,
                                                                                          skip_special_tokens=skip)
        assert ours.decode(batch, skip_special_tokens=skip) == theirs.decode(batch, skip_special_tokens=skip)
        for clean in (True, False):
            assert ours.decode(batch[0], skip, clean) == theirs.decode(
                batch[0], skip_special_tokens=skip, clean_up_tokenization_spaces=clean)
        assert ours.decode(torch.tensor(batch[1]), skip) == theirs.decode(batch[1], skip_special_tokens=skip)
        assert ours.decode(np.array(batch[2]), skip) == theirs.decode(batch[2], skip_special_tokens=skip)
    assert ours.decode(batch[0][1]) == theirs.decode(batch[0][1])
    assert ours.decode([]) == theirs.decode([]) == ""
    assert ours.convert_ids_to_tokens(batch[0]) == theirs.convert_ids_to_tokens(batch[0])
    assert ours.convert_ids_to_tokens(batch[0], skip_special_tokens=True) == theirs.convert_ids_to_tokens(
        batch[0], skip_special_tokens=True)


def test_vocabulary_and_special_tokens(pair):
    ours, theirs = pair
    assert len(ours) == len(theirs) and ours.vocab_size == theirs.vocab_size
    assert ours.get_vocab() == theirs.get_vocab()
    assert ours.model_max_length == theirs.model_max_length
    assert ours.padding_side == theirs.padding_side and ours.truncation_side == theirs.truncation_side
    assert ours.model_input_names == theirs.model_input_names
    assert ours.all_special_tokens == theirs.all_special_tokens
    assert ours.all_special_ids == theirs.all_special_ids
    assert ours.special_tokens_map == theirs.special_tokens_map
    for name in ("pad", "cls", "sep", "mask", "unk", "bos", "eos"):
        assert getattr(ours, f"{name}_token") == getattr(theirs, f"{name}_token"), name
        assert getattr(ours, f"{name}_token_id") == getattr(theirs, f"{name}_token_id"), name
    for is_pair in (False, True):
        assert ours.num_special_tokens_to_add(is_pair) == theirs.num_special_tokens_to_add(is_pair)
    tokens = ["[CLS]", "<s>", "hello", "never-seen-token", "Ġthe"]
    assert ours.convert_tokens_to_ids(tokens) == theirs.convert_tokens_to_ids(tokens)
    assert ours.convert_tokens_to_ids("hello") == theirs.convert_tokens_to_ids("hello")


def test_token_type_ids_presence(loaded):
    expected = {"minilm": True, "wordpiece_cased": True, "distilbert": False, "distilbert_model_type": True,
                "roberta": False, "gpt2": False, "roberta_json": False}
    for name, present in expected.items():
        ours, theirs = loaded(name)
        assert ("token_type_ids" in ours("a", "b")) is present is ("token_type_ids" in theirs("a", "b")), name
        assert "token_type_ids" in ours("a", return_token_type_ids=True)
        assert "attention_mask" not in ours("a", return_attention_mask=False)


@pytest.mark.parametrize("name", ["minilm", "roberta", "gpt2"])
def test_overlong_text(build, caplog, name):
    # Fresh tokenizers: the warning is given once per tokenizer, as in transformers.
    ours, theirs = pair = Tokenizer.from_pretrained(build(name)), HF.from_pretrained(build(name))
    text = "the quick brown fox jumps over the lazy dog " * 80
    with caplog.at_level(logging.WARNING, logger="peluk.tokenizer"):
        got = both(pair, text)
        both(pair, [text, text])
    warnings = [r.getMessage() for r in caplog.records if r.name == "peluk.tokenizer"]
    if ours.model_max_length < len(got["input_ids"]):
        assert len(warnings) == 1 and "longer than the specified maximum" in warnings[0]
        truncated = both(pair, text, truncation=True)
        assert len(truncated["input_ids"]) == ours.model_max_length
    else:  # GPT-2 here has no model_max_length: no warning and no truncation
        assert not warnings and both(pair, text, truncation=True) == got
    both(pair, [text, "short"], truncation=True, padding="max_length")


def test_settings_do_not_leak_between_calls(core_pair, texts):
    pair = core_pair
    # The Rust tokenizer's truncation/padding is reconfigured only when settings change.
    both(pair, texts[:5], truncation=True, max_length=8, padding="max_length")
    both(pair, texts[:5])
    both(pair, texts[:5], padding=True, padding_side="left")
    both(pair, texts[:5], padding=True)


def test_add_tokens(build):
    for name in ("minilm", "roberta", "gpt2"):
        ours, theirs = Tokenizer.from_pretrained(build(name)), HF.from_pretrained(build(name))
        for tok in (ours, theirs):
            assert tok.add_tokens(["newword", "zzzqqq"]) == 2
            assert tok.add_special_tokens({"additional_special_tokens": ["<extra>"]}) == 1
        text = "a newword and zzzqqq with <extra> inside"
        both((ours, theirs), text, return_offsets_mapping=True)
        ids = theirs(text)["input_ids"]
        assert ours.decode(ids, skip_special_tokens=True) == theirs.decode(ids, skip_special_tokens=True)
        assert ours.all_special_tokens == theirs.all_special_tokens and len(ours) == len(theirs)


def test_save_pretrained_round_trip(build, texts, tmp_path):
    for name in ("minilm", "wordpiece_cased", "distilbert", "roberta", "gpt2", "generic_json"):
        original = Tokenizer.from_pretrained(build(name))
        original.add_tokens(["newword"])
        out = tmp_path / name
        written = original.save_pretrained(out)
        assert sorted(p.rsplit("/", 1)[1] for p in written) == [
            "special_tokens_map.json", "tokenizer.json", "tokenizer_config.json"]
        assert not list(out.glob("*.tmp"))
        sample = texts[:50] + HAND_WRITTEN + ["a newword here"]
        expected = original(sample, return_offsets_mapping=True)
        assert_same(Tokenizer.from_pretrained(out)(sample, return_offsets_mapping=True), expected)
        assert_same(HF.from_pretrained(out)(sample, return_offsets_mapping=True), expected)
        assert Tokenizer.from_pretrained(out).model_input_names == original.model_input_names


def test_from_pretrained_kwargs_override_config(build):
    directory = build("minilm")
    ours = AutoTokenizer.from_pretrained(directory, model_max_length=16, padding_side="left")
    theirs = HF.from_pretrained(directory, model_max_length=16, padding_side="left")
    both((ours, theirs), ["a short one", "a rather longer sentence than the first one is"], padding=True,
         truncation=True)


def test_gpt2_without_pad_token_cannot_pad(build, tmp_path):
    directory = bpe_dir(tmp_path, "gpt2_nopad", build("bpe_files"), {"tokenizer_class": "GPT2Tokenizer"}, "gpt2")
    ours, theirs = Tokenizer.from_pretrained(directory), HF.from_pretrained(directory)
    assert ours.pad_token is None and ours.model_max_length == theirs.model_max_length
    with pytest.raises(ValueError, match="padding token"):
        theirs(["one", "two words"], padding=True)
    with pytest.raises(TokenizerError, match="pad token"):
        ours(["one", "two words"], padding=True)
    ours.pad_token = theirs.pad_token = ours.eos_token
    both((ours, theirs), ["one", "two words"], padding=True)


def test_vocab_txt_without_any_config(tmp_path):
    shutil.copy(minilm_dir() / "vocab.txt", tmp_path / "vocab.txt")
    tok = Tokenizer.from_pretrained(tmp_path)
    reference = Tokenizer.from_pretrained(minilm_dir())
    assert tok("Hello World, café!") == reference("Hello World, café!")
    assert tok.cls_token == "[CLS]" and "token_type_ids" in tok("x")


def test_missing_files_error_names_directory(tmp_path):
    (tmp_path / "config.json").write_text("{}")
    with pytest.raises(TokenizerError) as info:
        Tokenizer.from_pretrained(tmp_path)
    message = str(info.value)
    assert str(tmp_path) in message and "tokenizer.json" in message and "vocab.txt" in message


@pytest.mark.parametrize("kwargs", [dict(padding="sideways"), dict(truncation="middle"), dict(padding="LONGEST"),
                                    dict(padding=True, padding_side="middle"), dict(return_tensors="tf")])
def test_invalid_arguments(loaded, kwargs):
    ours, _ = loaded("minilm")
    with pytest.raises(TokenizerError):
        ours("some text", **kwargs)


def test_invalid_input_types(loaded):
    ours, _ = loaded("minilm")
    for bad in (123, [1, 2], None):
        with pytest.raises(TokenizerError):
            ours(bad)
    with pytest.raises(TokenizerError):
        ours(["a", "b"], ["only one pair"])
