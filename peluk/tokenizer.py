"""Tokenizers over Hugging Face's Rust ``tokenizers`` library, behaving as transformers' do.

``Tokenizer.from_pretrained(directory)`` returns the same ids, masks, offsets, overflow windows
and decoded text as ``transformers.AutoTokenizer.from_pretrained(directory)`` for the same files.
It reads ``tokenizer.json`` when present, else ``vocab.txt`` (BERT WordPiece) or ``vocab.json`` +
``merges.txt`` (byte-level BPE as in GPT-2 and RoBERTa), together with ``tokenizer_config.json``
and ``special_tokens_map.json``.

transformers 5 rebuilds the pipeline of the BERT, RoBERTa, GPT-2, T5 and mBART tokenizer classes (and
their aliases) from ``tokenizer_config.json`` options, taking only the vocabulary from
``tokenizer.json``; peluk does the same for those classes, so a ``tokenizer.json`` that disagrees
with its config tokenizes as it does in transformers. Other classes use ``tokenizer.json`` as is.

SentencePiece-based seq2seq tokenizers (T5, mBART, mBART-50, Marian) are built in :mod:`peluk.spm`;
``tokenizer(text, text_target=...)`` adds the target side's ids as ``labels``, as in transformers.

Truncation and padding run in Rust, and overflowing windows are flattened into the batch with an
``overflow_to_sample_mapping``, as in transformers' fast tokenizers (question answering with a
document stride depends on this).
"""

from __future__ import annotations

import dataclasses
import datetime
import functools
import json
import logging
import os
import uuid
from collections.abc import Mapping
from pathlib import Path
from typing import Any, NamedTuple

from tokenizers import AddedToken, Encoding, decoders, normalizers, pre_tokenizers, processors
from tokenizers import Tokenizer as RustTokenizer
from tokenizers.models import BPE, WordPiece

from peluk.config import read_json
from peluk.errors import TokenizerError
from peluk.hub import resolve

logger = logging.getLogger(__name__)

VERY_LARGE_INTEGER = int(1e30)  # transformers' model_max_length when a model sets none
LARGE_INTEGER = int(1e20)  # a model_max_length above this means "no limit"

SPECIAL_TOKEN_NAMES = ("bos_token", "eos_token", "unk_token", "sep_token", "pad_token", "cls_token", "mask_token")

# Tokenizer classes whose transformers implementation rebuilds the pipeline from the config.
_FAMILY = {
    **dict.fromkeys(
        ["BertTokenizer", "DistilBertTokenizer", "ElectraTokenizer", "ConvBertTokenizer",
         "SqueezeBertTokenizer", "MobileBertTokenizer", "LayoutLMTokenizer"],
        "wordpiece",
    ),
    **dict.fromkeys(["RobertaTokenizer", "BartTokenizer", "LongformerTokenizer"], "roberta"),
    "GPT2Tokenizer": "gpt2",
    # SentencePiece Unigram families (built in peluk.spm); Marian is handled there separately.
    "T5Tokenizer": "t5", "MBartTokenizer": "mbart", "MBart50Tokenizer": "mbart50",
}
_MODEL_TYPE = {"wordpiece": "WordPiece", "t5": "Unigram", "mbart": "Unigram", "mbart50": "Unigram"}  # else BPE
# Classes whose model_input_names include token_type_ids; all others return ids and mask only.
_WITH_TOKEN_TYPES = {
    "BertTokenizer", "ElectraTokenizer", "ConvBertTokenizer", "SqueezeBertTokenizer", "MobileBertTokenizer",
    "LayoutLMTokenizer", "DPRContextEncoderTokenizer", "DPRQuestionEncoderTokenizer", "LxmertTokenizer",
    "DebertaTokenizer", "DebertaV2Tokenizer", "FNetTokenizer", "CanineTokenizer", "MarkupLMTokenizer",
    "TapasTokenizer", "LayoutLMv2Tokenizer",
}
_LEFT_PADDING = {"LlamaTokenizer", "CodeLlamaTokenizer", "GemmaTokenizer", "CohereTokenizer", "XLNetTokenizer"}
# The class AutoTokenizer picks from config.json's model_type when tokenizer_config names none
# (transformers maps distilbert to BertTokenizer here, so such tokenizers return token_type_ids).
_CLASS_FOR_MODEL_TYPE = {
    "bert": "BertTokenizer", "distilbert": "BertTokenizer", "electra": "BertTokenizer",
    "mobilebert": "BertTokenizer", "roberta": "RobertaTokenizer", "bart": "RobertaTokenizer",
    "longformer": "RobertaTokenizer", "gpt2": "GPT2Tokenizer", "deberta": "DebertaTokenizer",
    "deberta-v2": "DebertaV2Tokenizer", "t5": "T5Tokenizer", "mt5": "T5Tokenizer", "mbart": "MBartTokenizer",
    "mbart50": "MBart50Tokenizer", "marian": "MarianTokenizer",
}
# The special tokens each family's transformers class defaults to when the config names none.
_DEFAULT_SPECIALS = {
    "wordpiece": {"unk_token": "[UNK]", "sep_token": "[SEP]", "pad_token": "[PAD]", "cls_token": "[CLS]",
                  "mask_token": "[MASK]"},
    "roberta": {"bos_token": "<s>", "eos_token": "</s>", "sep_token": "</s>", "cls_token": "<s>",
                "unk_token": "<unk>", "pad_token": "<pad>", "mask_token": "<mask>"},
    "gpt2": {"unk_token": "<|endoftext|>", "bos_token": "<|endoftext|>", "eos_token": "<|endoftext|>"},
}
_PADDING = {"longest", "max_length", "do_not_pad"}
_TRUNCATION = {"longest_first", "only_first", "only_second", "do_not_truncate"}
# Keys of tokenizer_config.json that describe files or load-time state, never written back.
_NOT_SAVED = {
    "added_tokens_decoder", "additional_special_tokens", "extra_special_tokens", "name_or_path",
    "tokenizer_file", "vocab_file", "merges_file", "special_tokens_map_file", "tokenizer_class",
    "chat_template",  # saved as chat_template.jinja, as transformers 5 does
}
CHAT_TEMPLATE_FILE = "chat_template.jinja"
CHAT_TEMPLATE_DIR = "additional_chat_templates"  # more named templates, one <name>.jinja each


class CharSpan(NamedTuple):
    """A character span ``[start, end)`` in the original text."""

    start: int
    end: int


class BatchEncoding(dict):
    """The output of a tokenizer call: a dict of lists (or tensors) with attribute access.

    ``encodings`` keeps the Rust ``tokenizers.Encoding`` of every row (after overflow
    flattening), which answers word and character alignment questions cheaply.
    """

    def __init__(self, data: dict[str, Any], encodings: list[Encoding] | None = None):
        super().__init__(data)
        self.encodings = encodings

    def __getattr__(self, name: str) -> Any:
        try:
            return self[name]
        except KeyError:
            raise AttributeError(name) from None

    def __getitem__(self, key: str | int) -> Any:
        # transformers' BatchEncoding returns the Rust Encoding for an integer key.
        if isinstance(key, int) and self.encodings is not None:
            return self.encodings[key]
        return super().__getitem__(key)

    def tokens(self, batch_index: int = 0) -> list[str]:
        """The token strings of row ``batch_index``."""
        return self.encodings[batch_index].tokens

    def word_ids(self, batch_index: int = 0) -> list[int | None]:
        """For each token of row ``batch_index``, the index of the word it came from (None for specials)."""
        return self.encodings[batch_index].word_ids

    def sequence_ids(self, batch_index: int = 0) -> list[int | None]:
        """For each token of row ``batch_index``: 0 (first text), 1 (pair) or None (special, padding)."""
        return self.encodings[batch_index].sequence_ids

    def char_to_token(self, batch_or_char_index: int, char_index: int | None = None, sequence_index: int = 0):
        """The token covering a character: ``char_to_token(char)`` or ``char_to_token(row, char)``."""
        row, char = (0, batch_or_char_index) if char_index is None else (batch_or_char_index, char_index)
        return self.encodings[row].char_to_token(char, sequence_index)

    def token_to_chars(self, batch_or_token_index: int, token_index: int | None = None) -> CharSpan | None:
        """The character span of a token: ``token_to_chars(token)`` or ``token_to_chars(row, token)``."""
        row, token = (0, batch_or_token_index) if token_index is None else (batch_or_token_index, token_index)
        span = self.encodings[row].token_to_chars(token)
        return CharSpan(*span) if span is not None else None

    def to(self, device) -> "BatchEncoding":
        """Move every tensor to ``device`` (values without ``.to`` are left alone); returns self."""
        for key, value in self.items():
            if hasattr(value, "to"):
                self[key] = value.to(device)
        return self


def _as_added_token(value: Any, special: bool | None = None) -> AddedToken | str:
    """Turn a serialized token (a string, or a dict with "content") into what transformers uses."""
    if isinstance(value, dict):
        fields = {k: v for k, v in value.items() if k not in ("__type", "id", "special")}
        special = value.get("special", special)
        return AddedToken(**fields, special=bool(special)) if special is not None else AddedToken(**fields)
    return value


def _special_token(name: str, as_id: bool = False) -> property:
    """A property reading and setting a named special token, as a string or (``as_id``) an id."""

    def get(self):
        value = self._special.get(name)
        if value is None:
            return None
        return self.convert_tokens_to_ids(str(value)) if as_id else str(value)

    def set(self, value) -> None:
        self._special[name] = self.convert_ids_to_tokens(value) if as_id and value is not None else value

    return property(get, set, doc=f"The {name.replace('_', ' ')}{' id' if as_id else ''}, or None if unset.")


class Tokenizer:
    """A Rust ``tokenizers.Tokenizer`` plus the settings transformers keeps beside it.

    Build one with :meth:`from_pretrained`; calling it tokenizes text.

    >>> tok = Tokenizer.from_pretrained("path/to/bert")  # doctest: +SKIP
    >>> tok("Hello world!")["input_ids"]  # doctest: +SKIP
    [101, 7592, 2088, 999, 102]
    """

    def __init__(self, backend: RustTokenizer, config: dict[str, Any], tokenizer_class: str = ""):
        """Wrap ``backend``; ``config`` holds tokenizer_config.json keys (special tokens already resolved)."""
        self.backend = backend
        self.tokenizer_class = tokenizer_class
        self._config = config
        self._special: dict[str, Any] = {name: config.get(name) for name in SPECIAL_TOKEN_NAMES}
        # transformers treats any other "*_token" string key as a named, model-specific special token.
        for key, value in config.items():
            if key.endswith("_token") and key not in self._special and isinstance(value, (str, AddedToken)):
                self._special[key] = value
        extra = config.get("extra_special_tokens") or config.get("additional_special_tokens") or []
        if isinstance(extra, dict):  # named, model-specific tokens ({"image_token": "<image>"})
            self._special.update(extra)
            extra = []
        self._extra = [_as_added_token(t, True) for t in extra]
        max_length = config.get("model_max_length")
        self.model_max_length = VERY_LARGE_INTEGER if max_length is None else max_length
        self.padding_side = config.get("padding_side", "left" if tokenizer_class in _LEFT_PADDING else "right")
        self.truncation_side = config.get("truncation_side", "right")
        for side in (self.padding_side, self.truncation_side):
            if side not in ("left", "right"):
                raise TokenizerError(f"padding_side and truncation_side must be 'left' or 'right', got {side!r}")
        self.clean_up_tokenization_spaces = bool(config.get("clean_up_tokenization_spaces", False))
        default_names = ["input_ids", "attention_mask"]
        if tokenizer_class in _WITH_TOKEN_TYPES:
            default_names.insert(1, "token_type_ids")
        self.model_input_names = list(config.get("model_input_names", default_names))
        template = config.get("chat_template")
        if isinstance(template, (list, tuple)):  # older tokenizer_config.json: [{"name": ..., "template": ...}]
            template = {t["name"]: t["template"] for t in template}
        # A Jinja string, or {name: template} (rendering picks "default", or "tool_use" when given tools).
        self.chat_template: str | dict[str, str] | None = template
        self._rust_settings: tuple | None = None  # truncation/padding last set on the backend
        self._warned_too_long = False

    @classmethod
    def from_pretrained(cls, name_or_path: str | os.PathLike, revision: str | None = None,
                        gguf_file: str | os.PathLike | None = None, **kwargs) -> "Tokenizer":
        """Load the tokenizer stored in a model directory, or in a GGUF file's metadata.

        Args:
            name_or_path: a directory (or a name ``peluk.hub.resolve`` knows), or a ``.gguf`` file.
            revision: passed to ``peluk.hub.resolve``.
            gguf_file: a GGUF file inside ``name_or_path`` to build the tokenizer from (see
                :meth:`peluk.gguf.GGUFFile.tokenizer`), as transformers' ``gguf_file=``.
            **kwargs: override tokenizer_config.json keys, e.g. ``model_max_length=128``,
                ``padding_side="left"``, ``do_lower_case=False``, ``pad_token="<pad>"``.

        Returns:
            A :class:`Tokenizer`.

        Raises:
            ModelNotFoundError: ``name_or_path`` (or the GGUF file) does not exist.
            ConfigError: tokenizer_config.json, special_tokens_map.json or config.json is not valid JSON.
            TokenizerError: the directory holds no tokenizer files, or tokenizer.json cannot be read.
            WeightsError: the GGUF file is not GGUF, or is truncated.
        """
        directory = resolve(name_or_path, revision)
        if gguf_file is not None or (directory.is_file() and directory.suffix == ".gguf"):
            from peluk.gguf import read_gguf

            return read_gguf(directory / gguf_file if gguf_file is not None else directory).tokenizer(**kwargs)
        if not directory.is_dir():
            raise TokenizerError(f"{directory} is not a directory; pass the directory that holds tokenizer.json "
                                 "(or a .gguf file)")
        files = {name: directory / name for name in (
            "tokenizer.json", "vocab.txt", "vocab.json", "merges.txt", "tokenizer_config.json",
            "special_tokens_map.json", "config.json")}
        config = read_json(files["tokenizer_config.json"]) if files["tokenizer_config.json"].exists() else {}
        model_type = read_json(files["config.json"]).get("model_type", "") if files["config.json"].exists() else ""
        class_name = config.get("tokenizer_class") or _CLASS_FOR_MODEL_TYPE.get(model_type) or ""
        if class_name != "PreTrainedTokenizerFast":  # the generic class keeps its name
            class_name = class_name.removesuffix("Fast")
        family = _FAMILY.get(class_name)

        from peluk import spm  # imported here: peluk.spm builds on this module

        if class_name == "MarianTokenizer" or (not class_name and not files["tokenizer.json"].exists()
                                               and (directory / "source.spm").exists()):
            # Marian reads its SentencePiece models even next to a tokenizer.json, as transformers does.
            return spm.MarianTokenizer.load(directory, {**config, **kwargs})
        data = backend = sentencepiece = None
        if files["tokenizer.json"].exists():
            # transformers ignores these two next to a tokenizer.json (its post-processor decides).
            config.pop("add_bos_token", None)
            config.pop("add_eos_token", None)
            if family is not None:
                try:
                    data = json.loads(files["tokenizer.json"].read_text(encoding="utf-8"))
                except (OSError, ValueError) as e:
                    raise TokenizerError(f"{files['tokenizer.json']} cannot be read as JSON: {e}") from None
                expected = _MODEL_TYPE.get(family, "BPE")
                if data.get("model", {}).get("type", expected) != expected:
                    family = data = None  # a class name that does not fit the file: trust the file
            if family is None:
                try:
                    backend = RustTokenizer.from_file(str(files["tokenizer.json"]))
                except Exception as e:
                    raise TokenizerError(f"{files['tokenizer.json']} is not a valid tokenizer.json: {e}") from None
        elif family in spm.MODEL_FILES and (directory / spm.MODEL_FILES[family]).exists():
            sentencepiece = spm.read_sentencepiece(directory / spm.MODEL_FILES[family])
        elif files["vocab.txt"].exists():
            if family != "wordpiece":
                family, class_name = "wordpiece", "BertTokenizer"
        elif files["vocab.json"].exists() and files["merges.txt"].exists():
            if family not in ("roberta", "gpt2"):
                family = "roberta" if class_name.startswith("Roberta") or model_type == "roberta" else "gpt2"
                class_name = {"roberta": "RobertaTokenizer", "gpt2": "GPT2Tokenizer"}[family]
        elif family is None and (guess := next((f for f, n in spm.MODEL_FILES.items() if (directory / n).exists()),
                                               None)):
            family, class_name = guess, {"t5": "T5Tokenizer", "mbart": "MBartTokenizer"}[guess]
            sentencepiece = spm.read_sentencepiece(directory / spm.MODEL_FILES[guess])
        else:
            raise TokenizerError(
                f"no tokenizer files in {directory}: looked for tokenizer.json, vocab.txt, vocab.json with "
                "merges.txt, and SentencePiece models (spiece.model, sentencepiece.bpe.model, Marian's source.spm "
                "and target.spm). Copy the tokenizer files of the model into this directory."
            )

        # chat_template.jinja (and additional_chat_templates/*.jinja) win over tokenizer_config.json
        if templates := _read_chat_templates(directory):
            config["chat_template"] = templates["default"] if list(templates) == ["default"] else templates
        config.update(kwargs)
        for name, value in _DEFAULT_SPECIALS.get(family, {}).items():
            config.setdefault(name, value)
        if "added_tokens_decoder" in config:
            added = {int(i): _as_added_token(t) for i, t in config["added_tokens_decoder"].items()}
        else:
            # Without added_tokens_decoder, transformers falls back to the legacy files.
            if files["special_tokens_map.json"].exists():
                for key, value in read_json(files["special_tokens_map.json"]).items():
                    if key not in kwargs:
                        config[key] = ([_as_added_token(v, True) for v in value] if isinstance(value, list)
                                       else _as_added_token(value, True))
            if data is not None:
                added = {t["id"]: _as_added_token(t) for t in data.get("added_tokens", [])}
            else:
                added = backend.get_added_tokens_decoder() if backend is not None else {}
        if family in spm.MODEL_FILES:
            spm.prepare_config(family, config, sentencepiece)
            vocab = (spm.unigram_vocab(family, sentencepiece, config) if sentencepiece is not None
                     else [tuple(v) for v in data["model"]["vocab"]])
        by_content = {str(t): t for t in added.values()}
        for name in SPECIAL_TOKEN_NAMES:
            value = _as_added_token(config.get(name), True)
            config[name] = by_content.get(str(value), value) if value is not None else None

        if family == "wordpiece":
            vocab = data["model"]["vocab"] if data else str(files["vocab.txt"])
            backend = _build(family, config, vocab)
        elif family in spm.MODEL_FILES:
            charsmap = sentencepiece.precompiled_charsmap if sentencepiece else spm.charsmap_of(data)
            backend = spm.build_unigram(family, vocab, charsmap)
        elif family is not None:
            if data:
                merges = [tuple(m.split(" ")) if isinstance(m, str) else tuple(m) for m in data["model"]["merges"]]
                backend = _build(family, config, data["model"]["vocab"], merges)
                if family == "gpt2":  # GPT2Tokenizer keeps the post-processor of tokenizer.json
                    backend.post_processor = _post_processor_of(data)
            else:
                backend = _build(family, config, str(files["vocab.json"]), str(files["merges.txt"]))
        tokenizer = (spm.MBartTokenizer if family in spm.LANGUAGES else cls)(backend, config, class_name)
        tokenizer._add_known_tokens(added)
        tokenizer._set_post_processor(family)
        backend.encode_special_tokens = bool(config.get("split_special_tokens", False))
        return tokenizer

    @classmethod
    def from_backend(cls, backend: RustTokenizer, config: dict[str, Any], tokenizer_class: str = "") -> "Tokenizer":
        """Wrap a Rust tokenizer built elsewhere (e.g. from GGUF metadata) as transformers' generic class does.

        Named special tokens in ``config`` that the backend lacks are added, and the post-processor
        adds BOS/EOS as ``config``'s ``add_bos_token``/``add_eos_token`` say.

        Args:
            backend: the Rust tokenizer (model, pre-tokenizer, decoder and added tokens set).
            config: tokenizer_config.json keys: special tokens as strings, ``add_bos_token``,
                ``chat_template``, ``padding_side``, ...
            tokenizer_class: the transformers class name this tokenizer stands for.

        Returns:
            A :class:`Tokenizer`.
        """
        tokenizer = cls(backend, config, tokenizer_class)
        tokenizer._add_known_tokens({})
        tokenizer._set_post_processor(None)
        backend.encode_special_tokens = bool(config.get("split_special_tokens", False))
        return tokenizer

    def _add_known_tokens(self, added: dict[int, Any]) -> None:
        """Register added and special tokens with the backend, in transformers' order."""
        present = self.backend.get_added_tokens_decoder()
        seen = {repr(t) for t in present.values()}
        to_add = [t for _, t in sorted(added.items()) if repr(t) not in seen]
        known = {t.content for t in present.values()} | {str(t) for t in to_add}
        for token in [*self._special.values(), *self._extra]:
            if token is not None and str(token) not in known:
                to_add.append(token)
                known.add(str(token))
        named = {str(t) for t in self._special.values() if t}
        tokens = []
        for token in to_add:
            if isinstance(token, str):
                token = AddedToken(token, special=True)
            elif not token.special and token.content in named:
                token.special = True
            tokens.append(token)
        if tokens:
            self.backend.add_tokens(tokens)

    def _set_post_processor(self, family: str | None) -> None:
        """Set the post-processor the transformers class of this family would set."""
        if family == "wordpiece":
            cls, sep = self.cls_token, self.sep_token
            self.backend.post_processor = processors.TemplateProcessing(
                single=f"{cls}:0 $A:0 {sep}:0",
                pair=f"{cls}:0 $A:0 {sep}:0 $B:1 {sep}:1",
                special_tokens=[(cls, self.cls_token_id if self.cls_token_id is not None else 2),
                                (sep, self.sep_token_id if self.sep_token_id is not None else 3)],
            )
        elif family == "roberta":
            self.backend.post_processor = processors.RobertaProcessing(
                (self.sep_token, self.sep_token_id), (self.cls_token, self.cls_token_id),
                trim_offsets=self._config.get("trim_offsets", True),
                add_prefix_space=self._config.get("add_prefix_space", False),
            )
        elif family == "t5":  # "</s>" after each sequence
            self.backend.post_processor = processors.TemplateProcessing(
                single=["$A", "</s>"], pair=["$A", "</s>", "$B", "</s>"], special_tokens=[("</s>", self.eos_token_id)])
        elif self.backend.post_processor is None or "add_bos_token" in self._config or "add_eos_token" in self._config:
            # transformers' update_post_processor: optional BOS/EOS around each sequence.
            bos = self.bos_token if self._config.get("add_bos_token") and self.bos_token else None
            eos = self.eos_token if self._config.get("add_eos_token") and self.eos_token else None
            single = " ".join(filter(None, [bos and f"{bos}:0", "$A:0", eos and f"{eos}:0"]))
            pair = " ".join(filter(None, [single, bos and f"{bos}:1", "$B:1", eos and f"{eos}:1"]))
            specials = [(t, self.convert_tokens_to_ids(t)) for t in dict.fromkeys(filter(None, [bos, eos]))]
            self.backend.post_processor = processors.TemplateProcessing(single=single, pair=pair,
                                                                        special_tokens=specials)

    bos_token, bos_token_id = _special_token("bos_token"), _special_token("bos_token", as_id=True)
    eos_token, eos_token_id = _special_token("eos_token"), _special_token("eos_token", as_id=True)
    unk_token, unk_token_id = _special_token("unk_token"), _special_token("unk_token", as_id=True)
    sep_token, sep_token_id = _special_token("sep_token"), _special_token("sep_token", as_id=True)
    pad_token, pad_token_id = _special_token("pad_token"), _special_token("pad_token", as_id=True)
    cls_token, cls_token_id = _special_token("cls_token"), _special_token("cls_token", as_id=True)
    mask_token, mask_token_id = _special_token("mask_token"), _special_token("mask_token", as_id=True)

    @property
    def special_tokens_map(self) -> dict[str, str]:
        """The named special tokens that are set, as ``{"cls_token": "[CLS]", ...}``."""
        return {name: str(value) for name, value in self._special.items() if value is not None}

    @property
    def extra_special_tokens(self) -> list[str]:
        """Special tokens without a name (transformers' ``additional_special_tokens``)."""
        return [str(t) for t in self._extra]

    @property
    def all_special_tokens(self) -> list[str]:
        """Every special token once: the named ones in transformers' order, then the extra ones."""
        return list(dict.fromkeys([*self.special_tokens_map.values(), *self.extra_special_tokens]))

    @property
    def all_special_ids(self) -> list[int]:
        """The ids of :attr:`all_special_tokens`."""
        return self.convert_tokens_to_ids(self.all_special_tokens)

    @property
    def vocab_size(self) -> int:
        """Size of the base vocabulary, without added tokens."""
        return self.backend.get_vocab_size(with_added_tokens=False)

    def __len__(self) -> int:
        return self.backend.get_vocab_size(with_added_tokens=True)

    def get_vocab(self) -> dict[str, int]:
        """The full vocabulary, added tokens included, as ``{token: id}``."""
        return self.backend.get_vocab(with_added_tokens=True)

    def __repr__(self) -> str:
        return (f"Tokenizer(class={self.tokenizer_class or 'tokenizer.json'}, vocab_size={self.vocab_size}, "
                f"model_max_length={self.model_max_length}, special_tokens={self.special_tokens_map})")

    def __call__(
        self,
        text: str | list[str] | list[tuple[str, str]] | list[list[str]] | None = None,
        text_pair: str | list[str] | None = None,
        *,
        text_target: str | list[str] | None = None,
        text_pair_target: str | list[str] | None = None,
        add_special_tokens: bool = True,
        padding: bool | str = False,
        truncation: bool | str | None = None,
        max_length: int | None = None,
        stride: int = 0,
        is_split_into_words: bool = False,
        pad_to_multiple_of: int | None = None,
        padding_side: str | None = None,
        return_tensors: str | None = None,
        return_token_type_ids: bool | None = None,
        return_attention_mask: bool | None = None,
        return_overflowing_tokens: bool = False,
        return_special_tokens_mask: bool = False,
        return_offsets_mapping: bool = False,
        return_length: bool = False,
        verbose: bool = True,
    ) -> BatchEncoding:
        """Tokenize one text, a pair, or a batch of them, with transformers' semantics.

        Args:
            text: a string; a list (or tuple) of strings, which is a batch; a list of
                ``(text, pair)`` tuples; with ``is_split_into_words``, a list of words or a batch of them.
            text_pair: the second sequence(s), matching ``text``.
            text_target: target text(s) of a sequence-to-sequence model, encoded with the target-side
                rules (Marian's target.spm, mBART's ``tgt_lang``). With ``text``, their ids are added as
                ``labels`` (padded and truncated like the inputs); alone, they are the result.
            text_pair_target: the second target sequence(s), matching ``text_target``.
            padding: ``True``/``"longest"`` (to the longest row), ``"max_length"`` or
                ``False``/``"do_not_pad"``.
            truncation: ``True``/``"longest_first"``, ``"only_first"``, ``"only_second"`` or
                ``False``/``"do_not_truncate"``; ``max_length`` defaults to ``model_max_length``.
                Giving only ``max_length`` truncates, as in transformers.
            stride: tokens shared by consecutive overflowing windows.
            return_overflowing_tokens: add each overflowing window as a row, with
                ``overflow_to_sample_mapping`` pointing back to the input.
            return_tensors: ``"pt"`` (torch) or ``"np"`` (numpy) arrays of shape (B, T); lists otherwise.
            Other arguments: as in transformers.

        Returns:
            A :class:`BatchEncoding`: flat lists for a single unbatched input, lists of rows otherwise.

        Raises:
            TokenizerError: neither ``text`` nor ``text_target``, an unknown padding or truncation
                strategy, padding without a pad token, unusable input, or a truncation the inputs
                cannot satisfy.
        """
        if text is None and text_target is None:
            raise TokenizerError("nothing to tokenize: pass text, text_target (a seq2seq model's labels) or both")
        pad, trunc, max_length = self._strategies(padding, truncation, max_length, pad_to_multiple_of, padding_side)
        options = dict(add_special_tokens=add_special_tokens, stride=stride, is_split_into_words=is_split_into_words,
                       pad_to_multiple_of=pad_to_multiple_of, padding_side=padding_side, return_tensors=return_tensors,
                       return_token_type_ids=return_token_type_ids, return_attention_mask=return_attention_mask,
                       return_overflowing_tokens=return_overflowing_tokens,
                       return_special_tokens_mask=return_special_tokens_mask,
                       return_offsets_mapping=return_offsets_mapping, return_length=return_length, verbose=verbose)
        encodings = None
        if text is not None:
            self._switch_to_input_mode()
            encodings = self._encode(text, text_pair, pad, trunc, max_length, **options)
        if text_target is None:
            return encodings
        self._switch_to_target_mode()
        try:
            targets = self._encode(text_target, text_pair_target, pad, trunc, max_length, **options)
        finally:
            self._switch_to_input_mode()  # as transformers leaves it
        if encodings is None:
            return targets
        encodings["labels"] = targets["input_ids"]
        return encodings

    def _switch_to_input_mode(self) -> None:
        """Prepare to encode inputs (seq2seq tokenizers whose targets are encoded differently override this)."""

    def _switch_to_target_mode(self) -> None:
        """Prepare to encode targets (``text_target=``); see :meth:`_switch_to_input_mode`."""

    def _encode(self, text, text_pair, pad: str, trunc: str, max_length: int | None, *, add_special_tokens: bool,
                stride: int, is_split_into_words: bool, pad_to_multiple_of: int | None, padding_side: str | None,
                return_tensors: str | None, return_token_type_ids: bool | None, return_attention_mask: bool | None,
                return_overflowing_tokens: bool, return_special_tokens_mask: bool, return_offsets_mapping: bool,
                return_length: bool, verbose: bool) -> BatchEncoding:
        """Encode ``text`` (and ``text_pair``) with resolved padding and truncation; see :meth:`__call__`."""
        if is_split_into_words:
            batched = isinstance(text, (list, tuple)) and bool(text) and isinstance(text[0], (list, tuple))
        else:
            batched = isinstance(text, (list, tuple))
        if not _valid_text(text) or (text_pair is not None and not _valid_text(text_pair)):
            raise TokenizerError("text must be a str, a list of str (a batch), or a list of (text, pair) tuples")
        if batched:
            if isinstance(text_pair, str):
                raise TokenizerError("when text is a batch, text_pair must be a list of the same length")
            if text_pair is not None and len(text) != len(text_pair):
                raise TokenizerError(f"text has {len(text)} items but text_pair has {len(text_pair)}")
            inputs = list(zip(text, text_pair)) if text_pair is not None else list(text)
        else:
            inputs = [(text, text_pair)] if text_pair else [text]

        self._configure(pad, trunc, max_length, stride, pad_to_multiple_of, padding_side)
        try:
            encodings = self.backend.encode_batch(
                inputs, is_pretokenized=is_split_into_words, add_special_tokens=add_special_tokens
            )
        except (KeyboardInterrupt, SystemExit):
            raise
        except BaseException as e:  # Rust errors are Exceptions, but a too-large stride panics (BaseException)
            raise TokenizerError(f"tokenization failed: {e}") from None

        if return_token_type_ids is None:
            return_token_type_ids = "token_type_ids" in self.model_input_names
        if return_attention_mask is None:
            return_attention_mask = "attention_mask" in self.model_input_names
        rows: list[Encoding] = []
        sample: list[int] = []
        for i, encoding in enumerate(encodings):
            group = [encoding, *encoding.overflowing] if return_overflowing_tokens else [encoding]
            rows += group
            sample += [i] * len(group)
        data: dict[str, Any] = {"input_ids": [e.ids for e in rows]}
        if return_token_type_ids:
            data["token_type_ids"] = [e.type_ids for e in rows]
        if return_attention_mask:
            data["attention_mask"] = [e.attention_mask for e in rows]
        if return_special_tokens_mask:
            data["special_tokens_mask"] = [e.special_tokens_mask for e in rows]
        if return_offsets_mapping:
            data["offset_mapping"] = [e.offsets for e in rows]
        if return_length:
            data["length"] = [len(e.ids) for e in rows]
        if return_overflowing_tokens:
            data["overflow_to_sample_mapping"] = sample

        if max_length is None and verbose and not self._warned_too_long and self.model_max_length:
            too_long = next((len(ids) for ids in data["input_ids"] if len(ids) > self.model_max_length), 0)
            if too_long:
                self._warned_too_long = True
                logger.warning(
                    "Token indices sequence length is longer than the specified maximum sequence length for this "
                    f"model ({too_long} > {self.model_max_length}). Running this sequence through the model will "
                    "result in indexing errors"
                )
        if return_tensors is not None:
            data = _to_tensors(data, return_tensors)
        elif not batched and not return_overflowing_tokens:
            data = {k: v[0] if v and isinstance(v[0], list) else v for k, v in data.items()}
        return BatchEncoding(data, rows)

    def _strategies(self, padding, truncation, max_length, pad_to_multiple_of, padding_side):
        """Resolve padding/truncation arguments as transformers' _get_padding_truncation_strategies does."""
        if max_length is not None and padding is False and truncation is None:
            truncation = "longest_first"  # transformers: max_length alone means "truncate"
        pad = "longest" if padding is True else ("do_not_pad" if padding is False else padding)
        trunc = "longest_first" if truncation is True else (
            "do_not_truncate" if truncation in (False, None) else truncation)
        if padding_side not in (None, "left", "right"):
            raise TokenizerError(f"padding_side={padding_side!r} must be 'left' or 'right'")
        if pad not in _PADDING:
            raise TokenizerError(f"padding={padding!r} is not one of True, False, {sorted(_PADDING)}")
        if trunc not in _TRUNCATION:
            raise TokenizerError(f"truncation={truncation!r} is not one of True, False, {sorted(_TRUNCATION)}")
        if max_length is None:
            unlimited = self.model_max_length > LARGE_INTEGER
            if pad == "max_length":
                pad = "do_not_pad" if unlimited else pad
            if trunc != "do_not_truncate":
                trunc = "do_not_truncate" if unlimited else trunc
            if not unlimited and (pad == "max_length" or trunc != "do_not_truncate"):
                max_length = self.model_max_length
        if pad != "do_not_pad" and (self.pad_token is None or self.pad_token_id < 0):
            raise TokenizerError(
                "asked to pad but the tokenizer has no pad token: set one, e.g. tokenizer.pad_token = "
                "tokenizer.eos_token, or add one with tokenizer.add_special_tokens({'pad_token': '[PAD]'})"
            )
        if (trunc != "do_not_truncate" and pad != "do_not_pad" and pad_to_multiple_of and max_length is not None
                and max_length % pad_to_multiple_of):
            raise TokenizerError(f"truncation length {max_length} is not a multiple of pad_to_multiple_of "
                                 f"{pad_to_multiple_of}")
        return pad, trunc, max_length

    def _configure(self, pad, trunc, max_length, stride, pad_to_multiple_of, padding_side) -> None:
        """Set truncation and padding on the Rust tokenizer, only when they differ from the last call."""
        truncation = None if trunc == "do_not_truncate" else (max_length, stride, trunc, self.truncation_side)
        padding = None if pad == "do_not_pad" else (
            max_length if pad == "max_length" else None, padding_side or self.padding_side,
            self.pad_token_id, self.pad_token, pad_to_multiple_of)
        settings = (truncation, padding)
        if settings == self._rust_settings:
            return
        if truncation is None:
            self.backend.no_truncation()
        else:
            self.backend.enable_truncation(max_length, stride=stride, strategy=trunc, direction=self.truncation_side)
        if padding is None:
            self.backend.no_padding()
        else:
            length, direction, pad_id, pad_token, multiple = padding
            self.backend.enable_padding(direction=direction, pad_id=pad_id, pad_type_id=0, pad_token=pad_token,
                                        length=length, pad_to_multiple_of=multiple)
        self._rust_settings = settings

    def encode(self, text: str | list[str], text_pair: str | list[str] | None = None, **kwargs) -> list[int]:
        """Token ids of one text (or pair), special tokens included; ``kwargs`` as in ``__call__``."""
        return self(text, text_pair, **kwargs)["input_ids"]

    def tokenize(self, text: str, pair: str | None = None, add_special_tokens: bool = False) -> list[str]:
        """The token strings of ``text`` (without special tokens unless asked), as transformers' ``tokenize``."""
        return self(text, pair, add_special_tokens=add_special_tokens).tokens()

    def convert_tokens_to_ids(self, tokens: str | list[str]) -> int | list[int]:
        """Id of a token (the unk id if unknown), or ids of a list of tokens."""
        if isinstance(tokens, str):
            index = self.backend.token_to_id(tokens)
            return self.unk_token_id if index is None else index
        return [self.convert_tokens_to_ids(t) for t in tokens]

    def convert_ids_to_tokens(self, ids: int | list[int], skip_special_tokens: bool = False) -> str | list[str]:
        """Token of an id, or tokens of a list of ids (optionally without special tokens)."""
        ids = ids.tolist() if hasattr(ids, "tolist") else ids
        if isinstance(ids, int):
            return self.backend.id_to_token(ids)
        skip = set(self.all_special_ids) if skip_special_tokens else set()
        return [self.backend.id_to_token(int(i)) for i in ids if int(i) not in skip]

    def decode(self, ids, skip_special_tokens: bool = False, clean_up_tokenization_spaces: bool | None = None):
        """Text of a sequence of ids (a list, tensor or array); a batch of sequences gives a list of texts.

        Args:
            ids: an id, a sequence of ids, or a batch (2-D) of them.
            skip_special_tokens: leave out special tokens.
            clean_up_tokenization_spaces: remove spaces before punctuation (default: the config's
                value). As in transformers, ignored for BPE models, where it would corrupt text.

        Returns:
            A string, or a list of strings for a batch.
        """
        ids = ids.tolist() if hasattr(ids, "tolist") else ids
        if isinstance(ids, int):
            ids = [ids]
        if ids and isinstance(ids[0], (list, tuple)):
            return [self.decode(row, skip_special_tokens, clean_up_tokenization_spaces) for row in ids]
        text = self.backend.decode([int(i) for i in ids], skip_special_tokens=skip_special_tokens)
        clean = clean_up_tokenization_spaces
        if clean is None:
            clean = self.clean_up_tokenization_spaces
        if clean and (not isinstance(self.backend.model, BPE)
                      or self._config.get("clean_up_tokenization_spaces_for_bpe_even_though_it_will_corrupt_output")):
            text = _clean_up_spaces(text)
        return text

    def batch_decode(self, sequences, skip_special_tokens: bool = False,
                     clean_up_tokenization_spaces: bool | None = None) -> list[str]:
        """Texts of a batch of id sequences (see :meth:`decode`)."""
        result = self.decode(sequences, skip_special_tokens, clean_up_tokenization_spaces)
        return [result] if isinstance(result, str) else result

    def pad(self, encoded_inputs, padding: bool | str = True, max_length: int | None = None,
            pad_to_multiple_of: int | None = None, padding_side: str | None = None,
            return_attention_mask: bool | None = None, return_tensors: str | None = None) -> BatchEncoding:
        """Pad already-tokenized rows (a list of dicts, or a dict of lists) to a common length.

        ``input_ids`` are padded with the pad token, ``attention_mask`` with 0,
        ``token_type_ids`` with 0 and ``special_tokens_mask`` with 1; other keys (``labels``)
        are left as they are, as transformers does (collators pad those).

        >>> tok.pad([{"input_ids": [101, 102]}, {"input_ids": [101, 7, 102]}])["attention_mask"]  # doctest: +SKIP
        [[1, 1, 0], [1, 1, 1]]

        Raises:
            TokenizerError: no ``input_ids``, no pad token, or an unknown padding strategy.
        """
        if isinstance(encoded_inputs, (list, tuple)):
            rows = list(encoded_inputs)
            batch = {key: [row[key] for row in rows] for key in (rows[0] if rows else {})}
        else:
            batch = dict(encoded_inputs)
        if "input_ids" not in batch:
            raise TokenizerError(f"pad() needs 'input_ids'; got keys {sorted(batch)}")
        ids = batch["input_ids"]
        single = bool(ids) and not isinstance(ids[0], (list, tuple)) and not hasattr(ids[0], "__len__")
        if single:
            batch = {key: [value] for key, value in batch.items()}
        lengths = [len(row) for row in batch["input_ids"]]
        pad, _, max_length = self._strategies(padding, False, max_length, pad_to_multiple_of, padding_side)
        if pad == "longest" or max_length is None:
            target = max(lengths, default=0) if pad != "do_not_pad" else None
        else:
            target = max_length
        if target is not None and pad_to_multiple_of:
            target = -(-target // pad_to_multiple_of) * pad_to_multiple_of
        want_mask = "attention_mask" in self.model_input_names if return_attention_mask is None else return_attention_mask
        if want_mask and "attention_mask" not in batch:
            batch["attention_mask"] = [[1] * n for n in lengths]
        fill = {"input_ids": self.pad_token_id, "attention_mask": 0, "token_type_ids": 0, "special_tokens_mask": 1}
        left = (padding_side or self.padding_side) == "left"
        if target is not None:
            for key, value in fill.items():
                if key not in batch:
                    continue
                rows = [list(row) for row in batch[key]]
                for i, row in enumerate(rows):
                    extra = [value] * max(0, target - len(row))
                    rows[i] = extra + row if left else row + extra
                batch[key] = rows
        if single:
            batch = {key: value[0] for key, value in batch.items()}
        if return_tensors is not None:
            padded = {k: v for k, v in batch.items() if k in fill}
            batch.update(_to_tensors(padded, return_tensors))
            rest = {k: v for k, v in batch.items() if k not in fill and not hasattr(v, "shape")}
            try:
                batch.update(_to_tensors(rest, return_tensors))
            except TokenizerError:
                pass  # ragged extra keys stay lists, as transformers leaves them
        return BatchEncoding(batch)

    def num_special_tokens_to_add(self, pair: bool = False) -> int:
        """How many special tokens encoding adds to one sequence (or to a pair)."""
        return self.backend.num_special_tokens_to_add(pair)

    def add_tokens(self, new_tokens: str | AddedToken | list[str | AddedToken], special_tokens: bool = False) -> int:
        """Add tokens that are never split; returns how many were new to the vocabulary."""
        if not new_tokens:
            return 0
        new_tokens = new_tokens if isinstance(new_tokens, (list, tuple)) else [new_tokens]
        if special_tokens:
            return self.backend.add_special_tokens(list(new_tokens))
        return self.backend.add_tokens(list(new_tokens))

    def add_special_tokens(self, special_tokens: dict[str, str | AddedToken | list[str | AddedToken]]) -> int:
        """Set named special tokens (``{"pad_token": "[PAD]"}``) or extra ones
        (``{"additional_special_tokens": [...]}``), adding them to the vocabulary if needed.

        Returns:
            The number of tokens new to the vocabulary.

        Raises:
            TokenizerError: an unknown key.
        """
        tokens = []
        for key, value in special_tokens.items():
            if key in ("additional_special_tokens", "extra_special_tokens"):
                self._extra = [AddedToken(t, normalized=False, special=True) if isinstance(t, str) else t
                               for t in value]
                tokens += self._extra
            elif key in SPECIAL_TOKEN_NAMES:
                value = AddedToken(value, normalized=False, special=True) if isinstance(value, str) else value
                self._special[key] = value
                tokens.append(value)
            else:
                raise TokenizerError(f"{key!r} is not a special token name; use one of {SPECIAL_TOKEN_NAMES} "
                                     "or 'additional_special_tokens'")
        return self.add_tokens(tokens, special_tokens=True)

    def save_pretrained(self, save_directory: str | os.PathLike, *, push_to_hub: bool = False,
                        repo_id: str | None = None, **hub_options) -> tuple[str, ...]:
        """Write tokenizer.json, tokenizer_config.json, special_tokens_map.json and the chat template(s).

        With ``push_to_hub=True`` the directory is then uploaded to the hub repo ``repo_id`` (default:
        the directory's name), as ``PreTrainedModel.save_pretrained`` does.

        A chat template goes to chat_template.jinja; more named ones to
        additional_chat_templates/<name>.jinja (transformers 5's layout).

        Both peluk and transformers reload the directory to the same ids. Each file is written to
        a temporary file first and renamed, so a crash never leaves a half-written file.

        Returns:
            The paths written.
        """
        directory = Path(save_directory)
        directory.mkdir(parents=True, exist_ok=True)
        config = {k: v for k, v in self._config.items() if k not in _NOT_SAVED and k not in self._special}
        config = {k: str(v) if isinstance(v, AddedToken) else v for k, v in config.items()}
        config.update(
            self.special_tokens_map,
            model_max_length=self.model_max_length,
            padding_side=self.padding_side,
            truncation_side=self.truncation_side,
            clean_up_tokenization_spaces=self.clean_up_tokenization_spaces,
            tokenizer_class=self.tokenizer_class or "PreTrainedTokenizerFast",
        )
        special_map = dict(self.special_tokens_map)
        if self._extra:
            config["extra_special_tokens"] = special_map["additional_special_tokens"] = self.extra_special_tokens
        # Rust padding and truncation are per-call state; a saved file should carry neither.
        backend = RustTokenizer.from_str(self.backend.to_str())
        backend.no_padding()
        backend.no_truncation()
        files = {
            "tokenizer.json": backend.to_str(pretty=True),
            "tokenizer_config.json": json.dumps(config, indent=2, sort_keys=True, ensure_ascii=False) + "\n",
            "special_tokens_map.json": json.dumps(special_map, indent=2, ensure_ascii=False) + "\n",
        }
        templates = {"default": self.chat_template} if isinstance(self.chat_template, str) else self.chat_template
        for name, template in (templates or {}).items():
            if name == "default":
                files[CHAT_TEMPLATE_FILE] = template
            elif "/" in name or "\\" in name or name.startswith("."):  # the name becomes a file name
                raise TokenizerError(f"chat template name {name!r} cannot be used as a file name")
            else:
                (directory / CHAT_TEMPLATE_DIR).mkdir(exist_ok=True)
                files[f"{CHAT_TEMPLATE_DIR}/{name}.jinja"] = template
        for name, text in files.items():
            _write_atomic(directory / name, text)
        if push_to_hub:
            from peluk.hub_api import push_to_hub as push

            push(directory, repo_id or directory.name, **{"commit_message": "Upload tokenizer", **hub_options})
        return tuple(str(directory / name) for name in files)

    def get_chat_template(self, chat_template: str | None = None, tools: list | None = None) -> str:
        """The Jinja template :meth:`apply_chat_template` renders, as transformers chooses it.

        Args:
            chat_template: a template string, or the name of one of the tokenizer's named templates.
            tools: when given and the tokenizer has a ``"tool_use"`` template, that one is chosen.

        Returns:
            The template source.

        Raises:
            TokenizerError: the tokenizer has no chat template and none was passed, or it has several
                named ones and none is ``"default"``.
        """
        if isinstance(self.chat_template, dict):
            templates = self.chat_template
            if chat_template is not None and chat_template in templates:
                return templates[chat_template]
            if chat_template is not None:
                return chat_template
            if tools is not None and "tool_use" in templates:
                return templates["tool_use"]
            if "default" in templates:
                return templates["default"]
            raise TokenizerError(f"this tokenizer has several chat templates and none is named 'default'; pass "
                                 f"chat_template= one of {sorted(templates)} (or a template string)")
        if chat_template is not None:
            return chat_template
        if self.chat_template is None:
            raise TokenizerError(
                "this tokenizer has no chat template (no chat_template in tokenizer_config.json, no "
                "chat_template.jinja, no tokenizer.chat_template in the GGUF file); pass chat_template= a "
                "Jinja template string, or set tokenizer.chat_template"
            )
        return self.chat_template

    def apply_chat_template(
        self,
        conversation: list[dict[str, Any]] | list[list[dict[str, Any]]],
        tools: list[dict] | None = None,
        documents: list[dict[str, str]] | None = None,
        chat_template: str | None = None,
        add_generation_prompt: bool = False,
        continue_final_message: bool | str = False,
        tokenize: bool = True,
        padding: bool | str = False,
        truncation: bool = False,
        max_length: int | None = None,
        return_tensors: str | None = None,
        return_dict: bool = True,
        return_assistant_tokens_mask: bool = False,
        tokenizer_kwargs: dict[str, Any] | None = None,
        **template_kwargs,
    ):
        """Render a conversation with the model's chat template (Jinja), and tokenize it.

        Rendering is transformers' ``apply_chat_template``: a sandboxed Jinja environment with
        ``trim_blocks``/``lstrip_blocks``, loop controls, ``{% generation %}`` blocks, the
        ``raise_exception`` and ``strftime_now`` functions and a ``tojson`` filter that does not
        escape HTML. The template sees ``messages``, ``tools``, ``documents``,
        ``add_generation_prompt``, the special tokens (``bos_token``, ...) and ``template_kwargs``.

        Args:
            conversation: a list of ``{"role": ..., "content": ...}`` messages, or a batch of such lists.
                Keys whose value is None are dropped first (many templates would print "None").
            tools: JSON schemas of the tools the model may call.
            documents: ``{"title": ..., "text": ...}`` dicts for retrieval-augmented templates.
            chat_template: a template string or the name of one of the tokenizer's templates.
            add_generation_prompt: end with the header that starts an assistant reply.
            continue_final_message: leave the last message open so the model continues it (True, or
                the name of the field to continue, e.g. ``"reasoning_content"``).
            tokenize: return token ids rather than the rendered text.
            padding, truncation, max_length, return_tensors: as in :meth:`__call__` (special tokens
                are never added: the template writes them).
            return_dict: return the whole :class:`BatchEncoding` (ids and attention mask) rather than
                only the ids. As in transformers 5, the default is True.
            return_assistant_tokens_mask: add ``assistant_masks``: 1 for tokens inside the template's
                ``{% generation %}`` blocks.
            tokenizer_kwargs: more arguments for :meth:`__call__`.
            **template_kwargs: more variables for the template (e.g. ``enable_thinking=False``).

        Returns:
            The rendered string (a list of them for a batch) when ``tokenize=False``; otherwise a
            :class:`BatchEncoding` (``return_dict=True``) or the ids.

        Raises:
            TokenizerError: no chat template, an empty conversation, conflicting options, or an
                error raised by the template (``raise_exception``) or its Jinja syntax.

        >>> tok.apply_chat_template([{"role": "user", "content": "Halo!"}], tokenize=False,
        ...                         add_generation_prompt=True)           # doctest: +SKIP
        '<|im_start|>user\\nHalo!<|im_end|>\\n<|im_start|>assistant\\n'
        """
        if not tokenize:
            return_dict = False
        if return_assistant_tokens_mask and not return_dict:
            raise TokenizerError("return_assistant_tokens_mask=True needs return_dict=True and tokenize=True")
        if continue_final_message and add_generation_prompt:
            raise TokenizerError("continue_final_message and add_generation_prompt cannot be used together: the "
                                 "first continues the last message, the second starts a new assistant message")
        if continue_final_message and return_assistant_tokens_mask:
            raise TokenizerError("continue_final_message cannot be used with return_assistant_tokens_mask")
        template = self.get_chat_template(chat_template, tools)
        if not conversation:
            raise TokenizerError("cannot apply a chat template to an empty conversation; pass at least one message")
        batched = isinstance(conversation[0], (list, tuple)) or hasattr(conversation[0], "messages")
        conversations = conversation if batched else [conversation]
        conversations = [[{k: v for k, v in message.items() if v is not None} for message in getattr(c, "messages", c)]
                         for c in conversations]
        variables = {**self.special_tokens_map, **template_kwargs}
        rendered, spans = _render_chat(conversations, template, tools, documents, add_generation_prompt,
                                       continue_final_message, return_assistant_tokens_mask, variables)
        if not tokenize:
            return rendered if batched else rendered[0]
        out = self(rendered if batched else rendered[0], padding=padding, truncation=truncation,
                   max_length=max_length, add_special_tokens=False, return_tensors=return_tensors,
                   **(tokenizer_kwargs or {}))
        if not return_dict:
            return out["input_ids"]
        if return_assistant_tokens_mask:
            masks = []
            for row, ids in enumerate(out["input_ids"] if batched or return_tensors else [out["input_ids"]]):
                mask = [0] * len(ids)
                for start, end in spans[row]:
                    first, last = out.char_to_token(row, start), out.char_to_token(row, end - 1)
                    if first is None:  # truncated away
                        break
                    for i in range(first, last + 1 if last else len(ids)):
                        mask[i] = 1
                masks.append(mask)
            if return_tensors:
                out["assistant_masks"] = _to_tensors({"m": masks}, return_tensors)["m"]
            else:
                out["assistant_masks"] = masks if batched else masks[0]
        return out


AutoTokenizer = Tokenizer  # AutoTokenizer.from_pretrained reads the tokenizer class from the files


def _clean_up_spaces(text: str) -> str:
    """transformers' clean_up_tokenization: no space before punctuation and English contractions."""
    for before, after in [(" .", "."), (" ?", "?"), (" !", "!"), (" ,", ","), (" ' ", "'"), (" n't", "n't"),
                          (" 'm", "'m"), (" 's", "'s"), (" 've", "'ve"), (" 're", "'re")]:
        text = text.replace(before, after)
    return text


def _valid_text(text: Any) -> bool:
    """A str, or a (possibly empty) list or tuple of str or of lists/tuples (pairs, words)."""
    if isinstance(text, str):
        return True
    return isinstance(text, (list, tuple)) and (not text or isinstance(text[0], (str, list, tuple)))


def _to_tensors(data: dict[str, list], kind: str) -> dict[str, Any]:
    """Lists to (B, T) torch tensors or numpy arrays; rows must have equal lengths."""
    if kind not in ("pt", "np"):
        raise TokenizerError(f"return_tensors={kind!r} is not supported; use 'pt', 'np' or None")
    if kind == "pt":
        import torch

        def convert(value):
            return torch.tensor(value, dtype=torch.long)
    else:
        import numpy as np

        def convert(value):
            return np.asarray(value, dtype=np.int64)
    try:
        return {key: convert(value) for key, value in data.items()}
    except ValueError:
        raise TokenizerError(
            "cannot make a tensor from rows of different lengths: pass padding=True (and truncation=True)"
        ) from None


def _post_processor_of(data: dict):
    """The post-processor of a parsed tokenizer.json, built without parsing its vocabulary again."""
    model = {**data["model"], "vocab": {}, "merges": []}
    return RustTokenizer.from_str(json.dumps({**data, "model": model, "added_tokens": []})).post_processor


def _build(family: str, config: dict, vocab: str | dict, merges: str | list | None = None) -> RustTokenizer:
    """The Rust tokenizer transformers' BertTokenizer / RobertaTokenizer / GPT2Tokenizer builds."""
    if family == "wordpiece":
        backend = RustTokenizer(WordPiece(vocab, unk_token=str(config.get("unk_token") or "[UNK]")))
        backend.normalizer = normalizers.BertNormalizer(
            clean_text=True,
            handle_chinese_chars=config.get("tokenize_chinese_chars", True),
            strip_accents=config.get("strip_accents"),
            lowercase=config.get("do_lower_case", True),
        )
        backend.pre_tokenizer = pre_tokenizers.BertPreTokenizer()
        backend.decoder = decoders.WordPiece(prefix="##")
        return backend
    bpe = BPE(vocab=vocab, merges=merges, dropout=None, continuing_subword_prefix="", end_of_word_suffix="",
              fuse_unk=False)
    backend = RustTokenizer(bpe)
    backend.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=config.get("add_prefix_space", False))
    backend.decoder = decoders.ByteLevel()
    return backend


def _read_chat_templates(directory: Path) -> dict[str, str]:
    """``{name: template}`` from chat_template.jinja ("default") and additional_chat_templates/*.jinja."""
    templates = {}
    if (directory / CHAT_TEMPLATE_FILE).is_file():
        templates["default"] = (directory / CHAT_TEMPLATE_FILE).read_text(encoding="utf-8")
    if (directory / CHAT_TEMPLATE_DIR).is_dir():
        for path in sorted((directory / CHAT_TEMPLATE_DIR).glob("*.jinja")):
            templates[path.name.removesuffix(".jinja")] = path.read_text(encoding="utf-8")
    return templates


_CONTINUE_TAG = "CONTINUE_FINAL_MESSAGE_TAG "  # marks where a continued message ends in the rendered text
_REASONING_FIELDS = ("reasoning_content", "thinking", "reasoning")  # names templates read a message's reasoning by


def _render_chat(conversations, template, tools, documents, add_generation_prompt, continue_final_message,
                 track_generation, variables):
    """Render each conversation; returns (texts, per text the character spans of {% generation %} blocks)."""
    if tools is not None and not all(isinstance(tool, dict) for tool in tools):
        raise TokenizerError("tools must be JSON schemas (dicts with 'type' and 'function'); peluk does not "
                             "convert Python functions to schemas")
    if documents is not None and not all(isinstance(d, dict) for d in documents):
        raise TokenizerError("documents must be a list of dicts with 'title' and 'text' keys")
    compiled = _compile_chat_template(template)
    tools, documents, variables = _plain(tools), _plain(documents), _plain(variables)
    texts, spans = [], []
    for chat in conversations:
        chat = _plain(chat)  # a fresh copy of plain data: the edits below never touch the caller's messages
        if not all(isinstance(message, dict) for message in chat):
            raise TokenizerError("each chat message must be a dict such as {'role': 'user', 'content': '...'}")
        chat = [_alias_reasoning(message) for message in chat]
        final = None
        if continue_final_message:
            final, chat[-1] = _tag_final_message(chat[-1], continue_final_message, template)
        blocks: list[str] = []
        generation: list[tuple[int, int]] = []
        tracker = (blocks, generation) if track_generation else None
        try:
            compiled.environment.chat_tracker = tracker
            for block in compiled.generate(messages=chat, tools=tools, documents=documents,
                                           add_generation_prompt=add_generation_prompt, **variables):
                blocks.append(block)
        except Exception as e:
            import jinja2

            if isinstance(e, jinja2.TemplateError):  # raise_exception() in the template, or a syntax error
                raise TokenizerError(f"chat template error: {e}") from None
            raise
        finally:
            compiled.environment.chat_tracker = None
        text = "".join(blocks)
        if final is not None:
            if final.strip() not in text or _CONTINUE_TAG.strip() not in text:
                raise TokenizerError("continue_final_message is set but the chat template removed part of the "
                                     f"final message; message: {final.strip()!r}, rendered: {text!r}")
            at = text.rindex(_CONTINUE_TAG.strip())
            # The template may have stripped the tag's trailing space, and with it the message's.
            text = text[:at] if text[at:at + len(_CONTINUE_TAG)] == _CONTINUE_TAG else text[:at].rstrip()
        texts.append(text)
        spans.append(generation)
    return texts, spans


def _tag_final_message(message: dict, field: bool | str, template: str) -> tuple[str, dict]:
    """Append the continuation tag to the last message's text; returns (the original text, the message)."""
    field = field if isinstance(field, str) else "content"
    final = message.get(field)
    if final is None:
        raise TokenizerError(f"continue_final_message is set but the last message has no {field!r} to continue")
    fields = [f for f in _REASONING_FIELDS if message.get(f) == final] if field in _REASONING_FIELDS else [field]
    if not any(f in template for f in fields):
        raise TokenizerError(f"continue_final_message is set to {field!r} but the chat template never reads it")
    if isinstance(final, (list, tuple)):  # content blocks: continue the last text block
        for block in reversed(final):
            if "text" in block:
                text, block["text"] = block["text"], block["text"] + _CONTINUE_TAG
                return text, message
        raise TokenizerError("continue_final_message is set but the last message has no text block to continue")
    return final, {**message, **{f: message[f] + _CONTINUE_TAG for f in fields}}


def _alias_reasoning(message: dict) -> dict:
    """Copy a message's reasoning, under whichever name it came, to the names templates read."""
    reasoning = next((message[k] for k in _REASONING_FIELDS if message.get(k) is not None), None)
    return message if reasoning is None else {"thinking": reasoning, **message, "reasoning_content": reasoning}


def _plain(value: Any) -> Any:
    """Rebuild template inputs from plain JSON-like types: the sandbox only knows those are harmless.

    Other objects (arrays, images, tensors in multimodal messages) become a placeholder naming their
    type; templates only test whether such keys are present.
    """
    if value is None or type(value) in (str, int, float, bool):
        return value
    for kind in (str, int, float):  # subclasses such as enums and numpy scalars carry extra methods
        if isinstance(value, kind):
            return kind(value) if kind is not str else str.__str__(value)
    if isinstance(value, Mapping):
        return {_plain(k): _plain(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_plain(v) for v in value]
    if isinstance(value, tuple):
        return tuple(_plain(v) for v in value)
    if hasattr(value, "item") and getattr(value, "shape", None) == ():  # a numpy scalar such as np.bool_
        return _plain(value.item())
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return {f.name: _plain(getattr(value, f.name)) for f in dataclasses.fields(value)}
    if callable(getattr(value, "model_dump", None)):  # pydantic
        return _plain(value.model_dump())
    return f"<{type(value).__name__}>"


def _now() -> datetime.datetime:
    """The time ``strftime_now`` formats (a function, so tests can freeze it)."""
    return datetime.datetime.now()


@functools.lru_cache(maxsize=32)
def _compile_chat_template(template: str):
    """Compile a chat template in the sandboxed environment transformers uses (jinja2 imported here, lazily)."""
    import jinja2
    from jinja2.ext import Extension, loopcontrols
    from jinja2.sandbox import ImmutableSandboxedEnvironment

    class GenerationBlocks(Extension):
        """``{% generation %}...{% endgeneration %}``: records where assistant text lies in the output."""

        tags = {"generation"}

        def parse(self, parser):
            lineno = next(parser.stream).lineno
            body = parser.parse_statements(("name:endgeneration",), drop_needle=True)
            return jinja2.nodes.CallBlock(self.call_method("_track"), [], [], body).set_lineno(lineno)

        def _track(self, caller):
            text = caller()
            tracker = self.environment.chat_tracker
            if tracker is not None:
                blocks, spans = tracker
                start = len("".join(blocks))
                spans.append((start, start + len(text)))
            return text

    def raise_exception(message):
        raise jinja2.exceptions.TemplateError(message)

    def tojson(x, ensure_ascii=False, indent=None, separators=None, sort_keys=False):
        # Jinja's own tojson escapes HTML characters (<, >, &), which would change what the model sees.
        return json.dumps(x, ensure_ascii=ensure_ascii, indent=indent, separators=separators, sort_keys=sort_keys)

    def strftime_now(format):
        return _now().strftime(format)

    class TemplateDict:
        """``dict(...)`` for templates, without the class itself (its attributes reach Python internals)."""

        def __call__(self, *args, **kwargs):
            return dict(*args, **kwargs)

        def fromkeys(self, *args, **kwargs):
            return dict.fromkeys(*args, **kwargs)

    class TemplateNamespace(jinja2.utils.Namespace):
        """``namespace(...)`` that refuses underscore attributes (a path to CPython internals)."""

        def __init__(*args, **kwargs):
            self, args = args[0], args[1:]
            attributes = dict(*args, **kwargs)
            for name in attributes:
                TemplateNamespace.check(name)
            jinja2.utils.Namespace.__init__(self, attributes)

        def __setitem__(self, name, value):
            TemplateNamespace.check(name)
            jinja2.utils.Namespace.__setitem__(self, name, value)

        @staticmethod
        def check(name):
            if isinstance(name, str) and name.startswith("_"):
                raise jinja2.exceptions.SecurityError(
                    f"chat templates cannot store underscore-prefixed attributes on a namespace, got {name!r}")

    environment = ImmutableSandboxedEnvironment(trim_blocks=True, lstrip_blocks=True,
                                                extensions=[GenerationBlocks, loopcontrols])
    environment.chat_tracker = None  # (blocks, spans) while rendering with return_assistant_tokens_mask
    environment.filters["tojson"] = tojson
    environment.globals.update(raise_exception=raise_exception, strftime_now=strftime_now, dict=TemplateDict(),
                               namespace=TemplateNamespace)
    try:
        return environment.from_string(template)
    except jinja2.TemplateSyntaxError as e:
        raise TokenizerError(f"the chat template is not valid Jinja: {e.message} (line {e.lineno})") from None


def _write_atomic(path: Path, text: str | bytes) -> None:
    """Write ``text`` (or bytes) to ``path`` through a temporary file in the same directory and a rename."""
    # Not tempfile.mkstemp: its files are private (0600), and saved tokenizers are meant to be shared.
    tmp = path.with_name(f".{path.name}.{uuid.uuid4().hex}.tmp")
    try:
        if isinstance(text, bytes):
            tmp.write_bytes(text)
        else:
            tmp.write_text(text, encoding="utf-8")
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


__all__ = ["Tokenizer", "AutoTokenizer", "BatchEncoding", "CharSpan", "VERY_LARGE_INTEGER", "CHAT_TEMPLATE_FILE"]
