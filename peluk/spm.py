"""SentencePiece tokenizers of the encoder-decoder families: T5, mBART, mBART-50 and Marian.

transformers 5 turns T5's ``spiece.model`` and mBART's ``sentencepiece.bpe.model`` into a
``tokenizers`` Unigram pipeline (its ``T5Tokenizer``, ``MBartTokenizer`` and ``MBart50Tokenizer``
classes with the converters of ``convert_slow_tokenizer.py``). peluk builds the same pipeline,
reading the model file with the small protobuf reader below, so these families need neither
``sentencepiece`` nor ``protobuf`` at run time. With a ``tokenizer.json`` the vocabulary comes
from that file instead and the pipeline is rebuilt around it, as transformers does.

Marian (``Helsinki-NLP/opus-mt-*``) keeps two SentencePiece models, ``source.spm`` for inputs
and ``target.spm`` for labels, whose pieces are looked up in ``vocab.json`` (ids unrelated to
the models' own). transformers runs ``sentencepiece`` there (``MarianTokenizer``, a Python
tokenizer), and so does peluk: a custom pre-tokenizer of the Rust pipeline splits text with
``sentencepiece`` and a WordLevel model maps the pieces through ``vocab.json``, so padding,
truncation, tensors and offsets work as for every other :class:`~peluk.tokenizer.Tokenizer`.

References: transformers/models/{t5,mbart,mbart50,marian}/tokenization_*.py; T5Converter,
MBartConverter, MBart50Converter and SentencePieceExtractor in convert_slow_tokenizer.py;
sentencepiece/src/sentencepiece_model.proto for the fields read here.
"""

from __future__ import annotations

import base64
import dataclasses
import json
import os
import struct
from pathlib import Path
from typing import Any

from tokenizers import AddedToken, NormalizedString, Regex, decoders, normalizers, pre_tokenizers, processors
from tokenizers import Tokenizer as RustTokenizer
from tokenizers.models import Unigram, WordLevel

from peluk.config import read_json
from peluk.errors import TokenizerError
from peluk.tokenizer import SPECIAL_TOKEN_NAMES, Tokenizer, _as_added_token, _clean_up_spaces, _write_atomic

MBART_LANGUAGES = [
    "ar_AR", "cs_CZ", "de_DE", "en_XX", "es_XX", "et_EE", "fi_FI", "fr_XX", "gu_IN", "hi_IN", "it_IT", "ja_XX",
    "kk_KZ", "ko_KR", "lt_LT", "lv_LV", "my_MM", "ne_NP", "nl_XX", "ro_RO", "ru_RU", "si_LK", "tr_TR", "vi_VN",
    "zh_CN",
]
MBART50_LANGUAGES = MBART_LANGUAGES + [
    "af_ZA", "az_AZ", "bn_IN", "fa_IR", "he_IL", "hr_HR", "id_ID", "ka_GE", "km_KH", "mk_MK", "ml_IN", "mn_MN",
    "mr_IN", "pl_PL", "ps_AF", "pt_XX", "sv_SE", "sw_KE", "ta_IN", "te_IN", "th_TH", "tl_XX", "uk_UA", "ur_PK",
    "xh_ZA", "gl_ES", "sl_SI",
]
LANGUAGES = {"mbart": MBART_LANGUAGES, "mbart50": MBART50_LANGUAGES}
# The SentencePiece model file each Unigram family reads when the directory has no tokenizer.json.
MODEL_FILES = {"t5": "spiece.model", "mbart": "sentencepiece.bpe.model", "mbart50": "sentencepiece.bpe.model"}
_UNK_ID = {"t5": 2, "mbart": 3, "mbart50": 3}  # fixed by the transformers classes, whatever the model says
_CONTROL, _USER_DEFINED = 3, 4  # SentencePiece piece types (NORMAL is 1, UNKNOWN 2)
_METASPACE = {"replacement": "▁", "prepend_scheme": "always", "split": True}
_SPM_UNDERLINE = "▁"


@dataclasses.dataclass
class SentencePieceModel:
    """The parts of a SentencePiece ``.model`` file (a ``ModelProto`` message) that peluk uses."""

    pieces: list[tuple[str, float, int]]  # (piece, score, type), in id order
    precompiled_charsmap: bytes = b""  # the normalizer's rules (NFKC and whitespace), for tokenizers' Precompiled


def read_sentencepiece(path: Path) -> SentencePieceModel:
    """Read the pieces and the normalization map of a SentencePiece model file.

    Args:
        path: a ``.model`` / ``.spm`` file written by SentencePiece.

    Returns:
        A :class:`SentencePieceModel`.

    Raises:
        TokenizerError: the file cannot be read or is not a SentencePiece model.
    """
    try:
        data = Path(path).read_bytes()
    except OSError as e:
        raise TokenizerError(f"cannot read the SentencePiece model {path}: {e}") from None
    model = SentencePieceModel(pieces=[])
    try:
        for number, value in _fields(data):
            if number == 1:  # ModelProto.pieces: {1: piece, 2: score (float), 3: type (NORMAL when absent)}
                piece = dict(_fields(value))
                score = struct.unpack("<f", piece[2])[0] if 2 in piece else 0.0
                model.pieces.append((piece.get(1, b"").decode("utf-8"), score, piece.get(3, 1)))
            elif number == 3:  # ModelProto.normalizer_spec: {2: precompiled_charsmap}
                model.precompiled_charsmap = dict(_fields(value)).get(2, b"")
    except (ValueError, IndexError, KeyError, TypeError, AttributeError, struct.error) as e:
        raise TokenizerError(f"{path} is not a SentencePiece model ({e}); copy the model's original file") from None
    if not model.pieces:
        raise TokenizerError(f"{path} is not a SentencePiece model: it holds no pieces")
    return model


def _fields(data: bytes):
    """Yield ``(field number, value)`` of a protobuf message: ints for varints, bytes otherwise."""
    i = 0
    while i < len(data):
        key, i = _varint(data, i)
        number, wire = key >> 3, key & 7
        if wire == 0:
            value, i = _varint(data, i)
        elif wire == 2:
            length, i = _varint(data, i)
            value, i = data[i:i + length], i + length
        elif wire in (1, 5):  # fixed 64 / 32 bits
            size = 8 if wire == 1 else 4
            value, i = data[i:i + size], i + size
        else:
            raise ValueError(f"unsupported protobuf wire type {wire}")
        if i > len(data):
            raise ValueError("truncated message")
        yield number, value


def _varint(data: bytes, i: int) -> tuple[int, int]:
    """Decode the varint at ``data[i]``; returns (value, index after it)."""
    value = shift = 0
    while True:
        byte = data[i]
        value |= (byte & 0x7F) << shift
        i += 1
        if byte < 0x80:
            return value, i
        shift += 7


def _content(value: Any, default: str) -> str:
    """The text of a special token given as a string, an AddedToken or a serialized dict."""
    if value is None:
        return default
    return value["content"] if isinstance(value, dict) else str(value)


def prepare_config(family: str, config: dict[str, Any], model: SentencePieceModel | None = None) -> None:
    """Set the special tokens a transformers class of this family defaults to, in place.

    The model's control pieces (special) and user-defined pieces (not special) come first among
    the extra special tokens, as transformers' SentencePiece extractor lists them. T5 adds
    ``extra_ids`` sentinels ``<extra_id_N>`` (unless the config lists some), mBART its language
    codes; mBART's mask token strips the space before it.
    """
    extra = config.get("extra_special_tokens") or config.get("additional_special_tokens") or []
    if isinstance(extra, dict):  # named model-specific tokens, not a list this family extends
        return
    pieces = [AddedToken(piece, normalized=False, special=kind == _CONTROL)
              for piece, _, kind in (model.pieces if model else []) if kind in (_CONTROL, _USER_DEFINED)]
    extra = list({_content(t, ""): t for t in [*pieces, *extra]}.values())
    if family == "t5":
        for name, token in (("eos_token", "</s>"), ("unk_token", "<unk>"), ("pad_token", "<pad>")):
            config.setdefault(name, token)
        if not any("<extra_id_" in _content(t, "") for t in extra):
            extra += [f"<extra_id_{i}>" for i in range(int(config.get("extra_ids", 100)))]
    else:
        for name, token in (("bos_token", "<s>"), ("eos_token", "</s>"), ("sep_token", "</s>"), ("cls_token", "<s>"),
                            ("unk_token", "<unk>"), ("pad_token", "<pad>"), ("mask_token", "<mask>")):
            if name != "bos_token" or family == "mbart":  # MBart50Tokenizer has no bos_token of its own
                config.setdefault(name, token)
        if isinstance(config["mask_token"], str):
            config["mask_token"] = AddedToken(config["mask_token"], lstrip=True, rstrip=False)
        have = {_content(t, "") for t in extra}
        codes = [code for code in LANGUAGES[family] if code not in have]
        # mBART lists its codes first, mBART-50 after the configured tokens.
        extra = codes + extra if family == "mbart" else extra + codes
    config.pop("extra_special_tokens", None)
    config["additional_special_tokens"] = extra


def unigram_vocab(family: str, model: SentencePieceModel, config: dict[str, Any]) -> list[tuple[str, float]]:
    """The Unigram vocabulary transformers' converter builds from a SentencePiece model.

    T5 appends ``extra_ids`` sentinels in reverse order (``<extra_id_0>`` gets the last id).
    mBART follows fairseq's dictionary: ``<s> <pad> </s> <unk>``, the pieces after
    SentencePiece's own first three (``<unk> <s> </s>``), the language codes, then ``<mask>``.
    """
    pieces = [(piece, score) for piece, score, _ in model.pieces]
    if family == "t5":
        count = int(config.get("extra_ids", 100))
        return pieces + [(f"<extra_id_{i}>", 0.0) for i in reversed(range(count))]
    first = "bos_token" if family == "mbart" else "cls_token"
    head = [(_content(config.get(name), default), 0.0) for name, default in
            ((first, "<s>"), ("pad_token", "<pad>"), ("eos_token", "</s>"), ("unk_token", "<unk>"))]
    tail = [(code, 0.0) for code in LANGUAGES[family]] + [(_content(config.get("mask_token"), "<mask>"), 0.0)]
    return head + pieces[3:] + tail


def charsmap_of(tokenizer_json: dict) -> bytes | None:
    """The precompiled normalization map inside a tokenizer.json's normalizer, if it has one."""
    normalizer = tokenizer_json.get("normalizer") or {}
    steps = normalizer.get("normalizers", []) if normalizer.get("type") == "Sequence" else [normalizer]
    for step in steps:
        if step.get("type") == "Precompiled" and step.get("precompiled_charsmap"):
            return base64.b64decode(step["precompiled_charsmap"])
    return None


def build_unigram(family: str, vocab: list[tuple[str, float]], charsmap: bytes | None) -> RustTokenizer:
    """The Rust pipeline of transformers' T5Tokenizer, MBartTokenizer or MBart50Tokenizer (no post-processor)."""
    backend = RustTokenizer(Unigram(vocab, unk_id=_UNK_ID[family], byte_fallback=False))
    if family == "mbart50":
        steps = [normalizers.Replace(Regex(" {2,}"), " ")]
        backend.normalizer = normalizers.Sequence(([normalizers.Precompiled(charsmap)] if charsmap else []) + steps)
        backend.pre_tokenizer = pre_tokenizers.Metaspace(**_METASPACE)
    else:
        # T5 normalizes with the model's map; mBART's class sets no normalizer at all.
        if family == "t5" and charsmap:
            backend.normalizer = normalizers.Precompiled(charsmap)
        backend.pre_tokenizer = pre_tokenizers.Sequence([pre_tokenizers.WhitespaceSplit(),
                                                         pre_tokenizers.Metaspace(**_METASPACE)])
    backend.decoder = decoders.Metaspace(**_METASPACE)
    return backend


class MBartTokenizer(Tokenizer):
    """mBART's tokenizer: a language code marks every sequence, chosen by ``src_lang`` / ``tgt_lang``.

    mBART (``MBartTokenizer``) encodes ``X </s> lang``; mBART-50 (``MBart50Tokenizer``) encodes
    ``lang X </s>``. Inputs get ``src_lang`` (default ``en_XX``), targets (``text_target=``) get
    ``tgt_lang`` (default: ``src_lang``).

    >>> tok = AutoTokenizer.from_pretrained("path/to/mbart-50", src_lang="en_XX", tgt_lang="id_ID")  # doctest: +SKIP
    >>> batch = tok("Good morning", text_target="Selamat pagi")  # doctest: +SKIP
    """

    def __init__(self, backend: RustTokenizer, config: dict[str, Any], tokenizer_class: str = ""):
        super().__init__(backend, config, tokenizer_class)
        self._family = "mbart50" if tokenizer_class == "MBart50Tokenizer" else "mbart"
        self._src_lang = config.get("src_lang") or "en_XX"
        self._tgt_lang = config.get("tgt_lang")

    @property
    def language_codes(self) -> list[str]:
        """The language codes this tokenizer knows: its family's codes that are in the vocabulary."""
        return [code for code in LANGUAGES[self._family] if self.backend.token_to_id(code) is not None]

    @property
    def src_lang(self) -> str:
        """The language code of the inputs, e.g. ``"en_XX"``; setting it changes how inputs are encoded."""
        return self._src_lang

    @src_lang.setter
    def src_lang(self, code: str) -> None:
        self._set_language(code)
        self._src_lang = self._config["src_lang"] = code

    @property
    def tgt_lang(self) -> str | None:
        """The language code of the targets (``text_target=``); None means ``src_lang``."""
        return self._tgt_lang

    @tgt_lang.setter
    def tgt_lang(self, code: str | None) -> None:
        if code is not None:
            self._check_language(code)
        self._tgt_lang = self._config["tgt_lang"] = code

    def _check_language(self, code: str) -> None:
        known = self.language_codes
        if code not in known:
            raise TokenizerError(f"unknown language code {code!r} for this {self.tokenizer_class}; known codes: "
                                 f"{', '.join(known)}")

    def _set_language(self, code: str) -> None:
        """Make the post-processor add ``code`` (and ``</s>``) around each sequence."""
        if code == getattr(self, "_active_lang", None):
            return
        self._check_language(code)
        eos = self.eos_token
        if self._family == "mbart50":
            single, pair = [code, "$A", eos], [code, "$A", "$B", eos]
        else:
            single, pair = ["$A", eos, code], ["$A", "$B", eos, code]
        self.backend.post_processor = processors.TemplateProcessing(
            single=single, pair=pair,
            special_tokens=[(eos, self.eos_token_id), (code, self.convert_tokens_to_ids(code))])
        self._active_lang = code

    def _set_post_processor(self, family: str | None) -> None:
        self._set_language(self._src_lang)
        if self._tgt_lang is not None:
            self._check_language(self._tgt_lang)

    def _switch_to_input_mode(self) -> None:
        self._set_language(self._src_lang)

    def _switch_to_target_mode(self) -> None:
        self._set_language(self._tgt_lang or self._src_lang)


class _SentencePieceSplit:
    """A custom pre-tokenizer: each split of the text becomes the pieces ``sentencepiece`` encodes it to.

    As in transformers' MarianTokenizer, a language code such as ``>>ind<<`` that starts a split
    stays one token. Each piece keeps the span of text it came from, so offsets stay meaningful.
    """

    def __init__(self, processor):
        self.processor = processor

    def pre_tokenize(self, pretok) -> None:
        pretok.split(self._split)

    def _split(self, index: int, normalized: NormalizedString) -> list[NormalizedString]:
        text = str(normalized)
        out, start = [], 0
        if text.startswith(">>") and (end := text.find("<<")) != -1:
            out.append(normalized[0:end + 2])
            start = end + 2
        for piece, (begin, end) in self._encode(text[start:]):
            out.append(_as_piece(normalized, piece, start + begin, start + end))
        return out

    def _encode(self, text: str) -> list[tuple[str, tuple[int, int]]]:
        if not text:
            return []
        try:  # recent sentencepiece releases report the span of text behind each piece
            encoded = self.processor.encode(text, return_type="offset_mapping")
            return list(zip(encoded["pieces"], encoded["offsets"]))
        except (TypeError, ValueError):
            return [(piece, (0, 0)) for piece in self.processor.encode(text, out_type=str)]


def _as_piece(normalized: NormalizedString, piece: str, begin: int, end: int) -> NormalizedString:
    """The span ``[begin, end)`` of ``normalized`` rewritten to read ``piece``, keeping its alignment."""
    if begin >= end:  # a lone "▁" with no text under it (SentencePiece's dummy prefix)
        return NormalizedString(piece)
    span = normalized[begin:end]
    surface = str(span)
    if surface == piece:
        return span
    stripped = surface.lstrip()
    if piece.startswith(_SPM_UNDERLINE) and stripped and piece[1:] == stripped:
        # Leading whitespace (or none, at the start) became "▁": keep the text, prepend the marker.
        span = normalized[begin + len(surface) - len(stripped):end]
        span.prepend(_SPM_UNDERLINE)
    elif len(surface) == len(piece):  # e.g. " " -> "▁": one character for one
        chars = iter(piece)
        span.map(lambda _: next(chars))
    else:  # NFKC or whitespace folding changed the length: the span as a whole reads as the piece
        span.replace(Regex(r"[\s\S]+"), piece)
    return span


class MarianTokenizer(Tokenizer):
    """Marian's tokenizer: ``source.spm`` for inputs, ``target.spm`` for ``text_target=``, ids from ``vocab.json``.

    Decoding joins pieces with SentencePiece (the source model when the vocabulary is shared, as
    transformers does), keeping special tokens apart. Language codes like ``>>ind<<`` at the
    start of a text are single tokens.

    >>> tok = AutoTokenizer.from_pretrained("path/to/opus-mt-en-id")  # doctest: +SKIP
    >>> batch = tok(["Good morning"], text_target=["Selamat pagi"], padding=True)  # doctest: +SKIP
    """

    FILES = ("source.spm", "target.spm", "vocab.json")

    @classmethod
    def load(cls, directory: Path, config: dict[str, Any]) -> "MarianTokenizer":
        """Build the tokenizer from a Marian directory.

        Args:
            directory: holds source.spm, target.spm, vocab.json (and target_vocab.json when
                ``separate_vocabs`` is set).
            config: tokenizer_config.json keys, with caller overrides applied.

        Returns:
            A :class:`MarianTokenizer`.

        Raises:
            TokenizerError: a file is missing or unreadable, or the vocabulary lacks the unknown token.
            ConfigError: vocab.json is not valid JSON.
        """
        names = [*cls.FILES, "target_vocab.json"] if config.get("separate_vocabs") else list(cls.FILES)
        files = {}
        for name in names:
            path = directory / name
            if not path.is_file():
                raise TokenizerError(f"{path} is missing: a Marian tokenizer needs {', '.join(names)} in {directory}")
            files[name] = path.read_bytes() if name.endswith(".spm") else read_json(path)
        return cls.from_files(files, config)

    @classmethod
    def from_files(cls, files: dict[str, Any], config: dict[str, Any]) -> "MarianTokenizer":
        """Build the tokenizer from file contents: ``.spm`` bytes and vocabularies as dicts."""
        import sentencepiece

        config = {"unk_token": "<unk>", "eos_token": "</s>", "pad_token": "<pad>", "model_max_length": 512, **config}
        for name in SPECIAL_TOKEN_NAMES:
            config[name] = _as_added_token(config.get(name), True)
        separate = bool(config.get("separate_vocabs", False))
        vocabs = [files["vocab.json"], files["target_vocab.json"] if separate else files["vocab.json"]]
        unk = _content(config["unk_token"], "<unk>")
        for name, vocab in zip(("vocab.json", "target_vocab.json"), vocabs):
            if not isinstance(vocab, dict) or not all(isinstance(i, int) for i in vocab.values()):
                raise TokenizerError(f"{name} must map each piece to an integer id")
            if unk not in vocab:
                raise TokenizerError(f"{name} has no {unk!r} entry; a Marian vocabulary needs the unknown token")
        processors_ = []
        for name in ("source.spm", "target.spm"):
            processor = sentencepiece.SentencePieceProcessor()
            try:
                processor.LoadFromSerializedProto(files[name])
            except (RuntimeError, OSError) as e:
                raise TokenizerError(f"{name} is not a SentencePiece model: {e}") from None
            processors_.append(processor)

        backends = []
        for processor, vocab in zip(processors_, vocabs):
            backend = RustTokenizer(WordLevel(vocab, unk_token=unk))
            backend.pre_tokenizer = pre_tokenizers.PreTokenizer.custom(_SentencePieceSplit(processor))
            backends.append(backend)
        tokenizer = cls(backends[0], config, "MarianTokenizer")
        tokenizer._files, tokenizer._processors, tokenizer._backends = files, processors_, backends
        tokenizer._separate = separate
        added = {int(i): _as_added_token(t) for i, t in config.get("added_tokens_decoder", {}).items()}
        for backend in backends:
            tokenizer.backend = backend
            tokenizer._add_known_tokens(added)
            backend.post_processor = processors.TemplateProcessing(
                single=["$A", tokenizer.eos_token], pair=["$A", "$B", tokenizer.eos_token],
                special_tokens=[(tokenizer.eos_token, tokenizer.eos_token_id)])
        tokenizer.backend = backends[0]
        return tokenizer

    @property
    def source_lang(self) -> str | None:
        """The source language named in tokenizer_config.json (informational)."""
        return self._config.get("source_lang")

    @property
    def target_lang(self) -> str | None:
        """The target language named in tokenizer_config.json (informational)."""
        return self._config.get("target_lang")

    @property
    def supported_language_codes(self) -> list[str]:
        """The ``>>xx<<`` codes in a shared vocabulary: a multilingual model's target languages."""
        if self._separate:
            return []
        return [token for token in self._files["vocab.json"] if token.startswith(">>") and token.endswith("<<")]

    def _switch_to_input_mode(self) -> None:
        self.backend, self._rust_settings = self._backends[0], None

    def _switch_to_target_mode(self) -> None:
        self.backend, self._rust_settings = self._backends[1], None

    def add_tokens(self, new_tokens, special_tokens: bool = False) -> int:
        """Add tokens to both the source and the target side; returns how many were new."""
        current, count = self.backend, 0
        for backend in self._backends:
            self.backend = backend
            count = super().add_tokens(new_tokens, special_tokens)
        self.backend = current
        return count

    def decode(self, ids, skip_special_tokens: bool = False, clean_up_tokenization_spaces: bool | None = None,
               use_source_tokenizer: bool | None = None):
        """Text of a sequence of ids (a batch gives a list), as transformers' MarianTokenizer decodes.

        Args:
            ids: an id, a sequence of ids (list, tensor, array) or a batch of them.
            skip_special_tokens: leave out ``</s>``, ``<pad>``, ``<unk>`` and other special tokens.
            clean_up_tokenization_spaces: remove spaces before punctuation (default: the config's value).
            use_source_tokenizer: join pieces with source.spm rather than target.spm; by default
                source.spm when the vocabulary is shared, target.spm when it is separate.

        Returns:
            A string, or a list of strings for a batch.
        """
        ids = ids.tolist() if hasattr(ids, "tolist") else ids
        if isinstance(ids, int):
            ids = [ids]
        if ids and isinstance(ids[0], (list, tuple)):
            return [self.decode(row, skip_special_tokens, clean_up_tokenization_spaces, use_source_tokenizer)
                    for row in ids]
        use_source = not self._separate if use_source_tokenizer is None else use_source_tokenizer
        processor = self._processors[0 if use_source else 1]
        specials = set(self.all_special_tokens)
        skip = set(self.all_special_ids) if skip_special_tokens else set()
        text, run = "", []
        for i in map(int, ids):
            if i in skip:
                continue
            token = self._backends[1].id_to_token(i)  # target side: vocab.json, or target_vocab.json
            if token is None:  # not in the vocabulary: transformers asks SentencePiece itself
                token = processor.id_to_piece(i) if 0 <= i < processor.get_piece_size() else self.unk_token
            if token in specials:  # special tokens never go through SentencePiece
                text += processor.decode_pieces(run) + token + " "
                run = []
            else:
                run.append(token)
        text = (text + processor.decode_pieces(run)).replace(_SPM_UNDERLINE, " ").strip()
        clean = self.clean_up_tokenization_spaces if clean_up_tokenization_spaces is None else clean_up_tokenization_spaces
        return _clean_up_spaces(text) if clean else text

    def batch_decode(self, sequences, skip_special_tokens: bool = False,
                     clean_up_tokenization_spaces: bool | None = None, use_source_tokenizer: bool | None = None):
        """Texts of a batch of id sequences (see :meth:`decode`)."""
        result = self.decode(sequences, skip_special_tokens, clean_up_tokenization_spaces, use_source_tokenizer)
        return [result] if isinstance(result, str) else result

    def _saved_config(self) -> dict[str, Any]:
        """tokenizer_config.json as save_pretrained writes it."""
        config = {k: v for k, v in self._config.items() if k not in ("added_tokens_decoder", "tokenizer_class",
                                                                      "name_or_path", "chat_template")}
        config = {k: str(v) if isinstance(v, AddedToken) else v for k, v in config.items()}
        config.update(self.special_tokens_map, model_max_length=self.model_max_length, padding_side=self.padding_side,
                      truncation_side=self.truncation_side, separate_vocabs=self._separate,
                      clean_up_tokenization_spaces=self.clean_up_tokenization_spaces, tokenizer_class="MarianTokenizer")
        if self._extra:
            config["additional_special_tokens"] = self.extra_special_tokens
        # Tokens added after loading (ids past vocab.json) must come back with the same ids.
        base = len(self._files["vocab.json"])
        added = {i: t for i, t in self._backends[0].get_added_tokens_decoder().items() if i >= base}
        if added:
            config["added_tokens_decoder"] = {
                str(i): {"content": t.content, "lstrip": t.lstrip, "rstrip": t.rstrip, "normalized": t.normalized,
                         "single_word": t.single_word, "special": t.special} for i, t in sorted(added.items())}
        return config

    def save_pretrained(self, save_directory: str | os.PathLike) -> tuple[str, ...]:
        """Write source.spm, target.spm, vocab.json (target_vocab.json), tokenizer_config.json and
        special_tokens_map.json: the files transformers' MarianTokenizer reads.

        Returns:
            The paths written.
        """
        directory = Path(save_directory)
        directory.mkdir(parents=True, exist_ok=True)
        files = {name: value if isinstance(value, bytes) else json.dumps(value, indent=2, ensure_ascii=False) + "\n"
                 for name, value in self._files.items()}
        files["tokenizer_config.json"] = json.dumps(self._saved_config(), indent=2, ensure_ascii=False) + "\n"
        files["special_tokens_map.json"] = json.dumps(self.special_tokens_map, indent=2, ensure_ascii=False) + "\n"
        for name, data in files.items():
            _write_atomic(directory / name, data)
        return tuple(str(directory / name) for name in files)

    def __reduce__(self):
        # The custom pre-tokenizer cannot be serialized by tokenizers: rebuild from the files instead.
        return MarianTokenizer.from_files, (self._files, self._saved_config())
