"""Parity of the encoder-decoder tokenizers (Marian, T5, mBART, mBART-50, BART) with transformers.

No pretrained seq2seq tokenizer can be downloaded, so the tests train tiny SentencePiece models on
the shared English-Indonesian corpus (a few seconds) and lay them out as the Hub does: Marian's
source.spm / target.spm / vocab.json, T5's spiece.model (pad=0, eos=1, unk=2, 100 sentinels),
mBART's sentencepiece.bpe.model (a BPE-type model, and a unigram one for mBART-50), and BART's
byte-level vocab.json + merges.txt. Each directory is loaded by transformers and by peluk, and
inputs, labels (``text_target=``), padding, truncation, decoding and save/reload are compared on
about a thousand sentence pairs (source English, target Indonesian) and hand-written edge cases.
"""

from __future__ import annotations

import io
import json
import pickle
import shutil
import warnings
from pathlib import Path

import pytest

from peluk.errors import TokenizerError
from peluk.tokenizer import AutoTokenizer, Tokenizer
from tests.tokenizer_fixtures import HAND_WRITTEN, bpe_dir, require_data, train_bpe, write_json

transformers = pytest.importorskip("transformers")
spm = pytest.importorskip("sentencepiece")
pytest.importorskip("google.protobuf")  # transformers reads SentencePiece model files with it

KINDS = ["marian", "marian_separate", "t5", "t5_json", "mbart", "mbart50", "bart"]
EDGE = [
    *HAND_WRITTEN,
    ">>ind<< Selamat pagi, dunia.",  # a Marian language code starting the text: one token
    " >>ind<< not at the start",
    ">>zsm<<",
    "sentinels <extra_id_0> and <extra_id_99> and <extra_id_100>",
    "a <mask> b and en_XX in the text",
    "an eos </s> inside, <pad> and <unk> too",
    "many    spaces\tand\nnewlines\r\n",
    "ｆｕｌｌｗｉｄｔｈ ① ﬁ and ⅷ",  # NFKC changes these (and their length)
]


def _lines(language: str, per_file: int) -> list[str]:
    data = require_data() / "en_id_panl_bppt"
    if not data.is_dir():
        pytest.skip(f"{data} is not present")
    lines = []
    for path in sorted(data.glob(f"PANL-BPPT-*-{language}-*.txt")):
        # CRLF files, one sentence per line, the two languages line-aligned.
        lines += path.read_text(encoding="utf-8", errors="replace").splitlines()[:per_file]
    return lines


@pytest.fixture(scope="module")
def pairs() -> tuple[list[str], list[str]]:
    """About a thousand aligned (English, Indonesian) sentences, then the edge cases on both sides."""
    english, indonesian = _lines("EN", 250), _lines("ID", 250)
    assert len(english) == len(indonesian) >= 900
    return english + EDGE, indonesian + EDGE[::-1]


def _train(sentences: list[str], path: Path, **options) -> None:
    model = io.BytesIO()
    spm.SentencePieceTrainer.train(sentence_iterator=iter(sentences), model_writer=model, vocab_size=800,
                                   character_coverage=1.0, num_threads=1, minloglevel=2, **options)
    path.write_bytes(model.getvalue())


def _pieces(path: Path) -> list[str]:
    """The ordinary pieces of a SentencePiece model (no <unk>, <s>, </s>)."""
    processor = spm.SentencePieceProcessor(model_file=str(path))
    return [processor.id_to_piece(i) for i in range(processor.get_piece_size())
            if not (processor.is_control(i) or processor.is_unknown(i))]


def _marian_vocab(*models: Path) -> dict[str, int]:
    """Marian's vocabulary layout: </s> 0, <unk> 1, the pieces, then <pad> last (as the Hub conversion adds it)."""
    vocab = {"</s>": 0, "<unk>": 1}
    for model in models:
        for piece in _pieces(model):
            vocab.setdefault(piece, len(vocab))
    vocab["<pad>"] = len(vocab)
    return vocab


@pytest.fixture(scope="module")
def dirs(tmp_path_factory) -> dict[str, Path]:
    english, indonesian = _lines("EN", 1000), _lines("ID", 1000)
    root = tmp_path_factory.mktemp("seq2seq")
    out = {kind: root / kind for kind in KINDS}
    for path in out.values():
        path.mkdir()

    marian = out["marian"]
    # Multilingual opus-mt models carry their target-language codes as user-defined pieces.
    _train(english, marian / "source.spm", user_defined_symbols=[">>ind<<", ">>zsm<<"])
    _train(indonesian, marian / "target.spm")
    write_json(marian / "vocab.json", _marian_vocab(marian / "source.spm", marian / "target.spm"))
    marian_config = {"tokenizer_class": "MarianTokenizer", "source_lang": "en", "target_lang": "id",
                     "separate_vocabs": False, "model_max_length": 512}
    write_json(marian / "tokenizer_config.json", marian_config)
    separate = out["marian_separate"]
    for name in ("source.spm", "target.spm"):
        shutil.copy(marian / name, separate / name)
    write_json(separate / "vocab.json", _marian_vocab(marian / "source.spm"))
    write_json(separate / "target_vocab.json", _marian_vocab(marian / "target.spm"))
    write_json(separate / "tokenizer_config.json", {**marian_config, "separate_vocabs": True})

    _train(english[::2] + indonesian[1::2], out["t5"] / "spiece.model", pad_id=0, eos_id=1, unk_id=2, bos_id=-1)
    write_json(out["t5"] / "tokenizer_config.json", {"tokenizer_class": "T5Tokenizer", "extra_ids": 100,
                                                     "model_max_length": 512})
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        transformers.AutoTokenizer.from_pretrained(out["t5"]).save_pretrained(out["t5_json"])  # T5's tokenizer.json

    _train(english[::2] + indonesian[1::2], out["mbart"] / "sentencepiece.bpe.model", model_type="bpe")
    write_json(out["mbart"] / "tokenizer_config.json", {"tokenizer_class": "MBartTokenizer", "src_lang": "en_XX",
                                                        "tgt_lang": "ro_RO", "model_max_length": 1024})
    # mBART-50 on a unigram model with SentencePiece's default <unk> <s> </s> ids (and user-defined pieces).
    shutil.copy(marian / "source.spm", out["mbart50"] / "sentencepiece.bpe.model")
    write_json(out["mbart50"] / "tokenizer_config.json", {"tokenizer_class": "MBart50Tokenizer", "src_lang": "en_XX",
                                                          "tgt_lang": "id_ID", "model_max_length": 1024})

    files = train_bpe(root / "bpe")
    out["bart"].rmdir()
    bpe_dir(root, "bart", files, {"tokenizer_class": "BartTokenizer", "model_max_length": 1024}, "bart")
    return out


@pytest.fixture(scope="module")
def both(dirs):
    """both(kind) -> (transformers tokenizer, peluk tokenizer), loaded once per kind."""
    loaded = {}

    def load(kind: str):
        if kind not in loaded:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")  # MarianTokenizer recommends sacremoses, which it does not use
                loaded[kind] = transformers.AutoTokenizer.from_pretrained(dirs[kind]), AutoTokenizer.from_pretrained(dirs[kind])
        return loaded[kind]

    return load


def plain(encoding) -> dict:
    return {key: value.tolist() if hasattr(value, "tolist") else value for key, value in encoding.items()}


@pytest.mark.parametrize("kind", KINDS)
def test_inputs_and_labels_match(kind, both, pairs):
    hf, pk = both(kind)
    source, target = pairs
    assert isinstance(pk, Tokenizer)
    ours, theirs = pk(source, text_target=target), hf(source, text_target=target)
    assert list(ours) == list(theirs) == ["input_ids", "attention_mask", "labels"]
    for key in theirs:
        mismatches = [i for i, (a, b) in enumerate(zip(ours[key], theirs[key])) if a != b]
        assert not mismatches, (key, [(source[i], target[i]) for i in mismatches[:3]])
    for text in EDGE:  # unbatched: flat lists
        assert pk(text, text_target=text) == hf(text, text_target=text), text
    # (Marian's tokenize differs only for pieces missing from vocab.json: "<unk>" here, the piece there.)
    assert pk.tokenize(source[0]) == hf.tokenize(source[0])
    assert (len(pk), pk.vocab_size, pk.all_special_ids) == (len(hf), hf.vocab_size, hf.all_special_ids)


@pytest.mark.parametrize("kind", KINDS)
def test_targets_alone_are_the_encoding(kind, both, pairs):
    hf, pk = both(kind)
    target = pairs[1][:200]
    assert pk(text_target=target) == hf(text_target=target)
    assert pk(text_target="") == hf(text_target="") and pk("") == hf("") and pk([""]) == hf([""])
    assert pk(pairs[0][:3]) == hf(pairs[0][:3])  # the tokenizer is back in input mode afterwards


@pytest.mark.parametrize("kind", KINDS)
def test_padding_truncation_and_tensors(kind, both, pairs):
    hf, pk = both(kind)
    source, target = pairs[0][:48], pairs[1][:48]
    for options in [
        dict(padding=True),
        dict(padding=True, truncation=True, max_length=12, return_tensors="pt"),
        dict(padding="max_length", truncation=True, max_length=24, return_tensors="np"),
        dict(padding=True, pad_to_multiple_of=8, padding_side="left"),
        dict(max_length=7),  # max_length alone truncates
    ]:
        for start in range(0, len(source), 16):
            batch = dict(text=source[start:start + 16], text_target=target[start:start + 16])
            assert plain(pk(**batch, **options)) == plain(hf(**batch, **options)), options


@pytest.mark.parametrize("kind", KINDS)
def test_decode(kind, both, pairs):
    hf, pk = both(kind)
    encoded = hf(pairs[0][:300] + EDGE, text_target=pairs[1][:300] + EDGE[::-1], padding=True)
    for ids in (encoded["input_ids"], encoded["labels"]):
        for skip in (False, True):
            assert pk.batch_decode(ids, skip_special_tokens=skip) == hf.batch_decode(ids, skip_special_tokens=skip)
        assert pk.decode(ids[5]) == hf.decode(ids[5])


@pytest.mark.parametrize("kind", KINDS)
def test_save_and_reload_round_trip(kind, both, pairs, tmp_path):
    hf, pk = both(kind)
    source, target = pairs[0][:100] + EDGE, pairs[1][:100] + EDGE
    expected = hf(source, text_target=target)
    pk.save_pretrained(tmp_path / "peluk")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        hf.save_pretrained(tmp_path / "transformers")
        reloaded = [transformers.AutoTokenizer.from_pretrained(tmp_path / "peluk"),
                    AutoTokenizer.from_pretrained(tmp_path / "peluk"),
                    AutoTokenizer.from_pretrained(tmp_path / "transformers")]
    for tokenizer in reloaded:
        assert tokenizer(source, text_target=target) == expected, type(tokenizer)
        assert tokenizer.batch_decode(expected["labels"][:20]) == hf.batch_decode(expected["labels"][:20])


@pytest.mark.parametrize("kind, src, tgt", [("mbart", "ro_RO", "en_XX"), ("mbart50", "id_ID", "en_XX")])
def test_mbart_language_codes(kind, src, tgt, dirs, both, pairs):
    source, target = pairs[0][:50], pairs[1][:50]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        hf = transformers.AutoTokenizer.from_pretrained(dirs[kind], src_lang=src, tgt_lang=tgt)
    pk = AutoTokenizer.from_pretrained(dirs[kind], src_lang=src, tgt_lang=tgt)
    assert (pk.src_lang, pk.tgt_lang) == (src, tgt)
    assert pk(source, text_target=target) == hf(source, text_target=target)
    hf.src_lang = pk.src_lang = "fr_XX"
    assert pk(source) == hf(source)
    ids = pk("Good morning")["input_ids"]
    fr = pk.convert_tokens_to_ids("fr_XX")
    assert ids[-2:] == [pk.eos_token_id, fr] if kind == "mbart" else (ids[0], ids[-1]) == (fr, pk.eos_token_id)

    with pytest.raises(TokenizerError, match=r"unknown language code 'xx_YY'.*known codes: ar_AR, cs_CZ"):
        pk.src_lang = "xx_YY"
    with pytest.raises(TokenizerError, match="xx_YY"):
        pk.tgt_lang = "xx_YY"
    with pytest.raises(TokenizerError, match="known codes"):
        AutoTokenizer.from_pretrained(dirs[kind], src_lang="xx_YY")
    assert pk.src_lang == "fr_XX" and pk(source) == hf(source)  # a refused code changes nothing


def test_marian_language_codes_and_sides(both):
    hf, pk = both("marian")
    assert pk.supported_language_codes == hf.supported_language_codes == [">>ind<<", ">>zsm<<"]
    assert (pk.source_lang, pk.target_lang) == ("en", "id")
    assert pk.tokenize(">>ind<< Hello")[0] == ">>ind<<"
    # The two sides use different SentencePiece models.
    text = "Pemerintah Indonesia mengumumkan kebijakan baru"
    assert pk(text)["input_ids"] != pk(text_target=text)["input_ids"]
    hf_sep, pk_sep = both("marian_separate")
    labels = pk_sep(text_target=text)["input_ids"]
    for use_source in (True, False):
        assert pk_sep.decode(labels, use_source_tokenizer=use_source) == hf_sep.decode(
            labels, use_source_tokenizer=use_source)


def test_marian_offsets_point_at_the_text(both):
    _, pk = both("marian")
    text = "The  minister said (again) that exports grew."
    encoding = pk(text, return_offsets_mapping=True)
    for token, (start, end) in zip(encoding.tokens(), encoding["offset_mapping"]):
        if token != pk.eos_token:
            assert text[start:end].strip() == token.lstrip("▁"), token


def test_marian_pickles(both, pairs):
    _, pk = both("marian")
    copy = pickle.loads(pickle.dumps(pk))
    assert copy(pairs[0][:20], text_target=pairs[1][:20]) == pk(pairs[0][:20], text_target=pairs[1][:20])


def test_marian_errors(dirs, tmp_path):
    broken = tmp_path / "no-target"
    shutil.copytree(dirs["marian"], broken)
    (broken / "target.spm").unlink()
    with pytest.raises(TokenizerError, match="target.spm is missing"):
        AutoTokenizer.from_pretrained(broken)
    vocab = json.loads((dirs["marian"] / "vocab.json").read_text())
    del vocab["<unk>"]
    write_json(broken / "vocab.json", vocab)
    shutil.copy(dirs["marian"] / "target.spm", broken / "target.spm")
    with pytest.raises(TokenizerError, match="vocab.json has no '<unk>'"):
        AutoTokenizer.from_pretrained(broken)
    (broken / "target.spm").write_bytes(b"{not a model}")
    write_json(broken / "vocab.json", json.loads((dirs["marian"] / "vocab.json").read_text()))
    with pytest.raises(TokenizerError, match="target.spm is not a SentencePiece model"):
        AutoTokenizer.from_pretrained(broken)


def test_t5_sentinels_and_bad_model_file(both, tmp_path):
    hf, pk = both("t5")
    sentinels = pk.convert_tokens_to_ids(["<extra_id_0>", "<extra_id_99>"])
    assert sentinels == hf.convert_tokens_to_ids(["<extra_id_0>", "<extra_id_99>"]) == [len(pk) - 1, len(pk) - 100]
    assert pk.tokenize("a <extra_id_7> b")[1] == "<extra_id_7>"
    (tmp_path / "spiece.model").write_bytes(b"\x0a\x05not a model at all")
    write_json(tmp_path / "tokenizer_config.json", {"tokenizer_class": "T5Tokenizer"})
    with pytest.raises(TokenizerError, match="spiece.model is not a SentencePiece model"):
        AutoTokenizer.from_pretrained(tmp_path)
    with pytest.raises(TokenizerError, match="nothing to tokenize"):
        pk()


def _tiny_model(kind: str, hf_tok, path: Path) -> Path:
    """A tiny random transformers model of ``kind`` saved next to a copy of its tokenizer."""
    import torch

    out = path / f"{kind}-model"
    shutil.copytree(path / kind, out)
    cls = {"marian": transformers.MarianConfig, "mbart50": transformers.MBartConfig}[kind]
    torch.manual_seed(0)
    config = cls(vocab_size=max(hf_tok.get_vocab().values()) + 1, d_model=32, encoder_layers=2, decoder_layers=2, encoder_attention_heads=4,
                 decoder_attention_heads=4, encoder_ffn_dim=48, decoder_ffn_dim=48, max_position_embeddings=64,
                 pad_token_id=hf_tok.pad_token_id, eos_token_id=hf_tok.eos_token_id,
                 decoder_start_token_id=hf_tok.pad_token_id if kind == "marian" else hf_tok.eos_token_id,
                 forced_eos_token_id=hf_tok.eos_token_id, init_std=0.3)
    transformers.AutoModelForSeq2SeqLM.from_config(config).save_pretrained(out)
    return out


@pytest.mark.parametrize("kind", ["marian", "mbart50"])
def test_translation_pipeline_end_to_end(kind, dirs, both, pairs):
    """Real seq2seq tokenizers + tiny models: the translation pipeline equals transformers'
    generate + decode; language codes are checked."""
    import torch

    import peluk
    from peluk.errors import PipelineError

    hf_tok, _ = both(kind)
    path = _tiny_model(kind, hf_tok, dirs[kind].parent)
    ref = transformers.AutoModelForSeq2SeqLM.from_pretrained(path).eval()
    texts = pairs[0][:6]
    langs = {} if kind == "marian" else {"src_lang": "en_XX", "tgt_lang": "id_ID"}
    if kind == "mbart50":
        hf_tok.src_lang = "en_XX"
    enc = hf_tok(texts, padding=True, truncation=True, max_length=64, return_tensors="pt")  # the model's positions
    forced = {"forced_bos_token_id": hf_tok.convert_tokens_to_ids("id_ID")} if kind == "mbart50" else {}
    with torch.no_grad():
        want = ref.generate(**enc, num_beams=4, max_new_tokens=8, do_sample=False, **forced)
    expected = [{"translation_text": t} for t in hf_tok.batch_decode(want, skip_special_tokens=True)]
    translate = peluk.pipeline("translation", model=path, **langs)
    assert translate(texts, num_beams=4, max_new_tokens=8) == expected
    if kind == "mbart50":
        with pytest.raises(PipelineError, match="unknown language code"):
            translate(texts[0], tgt_lang="xx_YY")
