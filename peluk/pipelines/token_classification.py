"""Token classification (named-entity recognition, part-of-speech tagging).

Follows transformers' ``TokenClassificationPipeline``: every non-special token gets the
softmax over the model's labels; ``aggregation_strategy`` then optionally fuses sub-word
tokens into words and adjacent tokens with the same tag into entities:

* ``"none"``: one dict per token: ``{"entity", "score", "index", "word", "start", "end"}``.
* ``"simple"``: adjacent tokens with the same tag (``B-X`` starts a new one, ``I-X`` or a bare
  ``X`` continues it) become one ``{"entity_group", "score", "word", "start", "end"}``; the
  score is the mean of the tokens' scores.
* ``"first"``, ``"average"``, ``"max"``: as ``"simple"``, but the tokens of one word first agree
  on a label: the first token's, the label of the averaged distribution, or the label of the
  most confident token.

Labels in ``ignore_labels`` (default ``["O"]``) are dropped at the end. ``start``/``end`` are
character offsets into the input, so ``text[start:end]`` is the entity as written.
"""

from __future__ import annotations

import torch

from peluk.errors import PipelineError
from peluk.pipelines.base import Pipeline

STRATEGIES = ("none", "simple", "first", "average", "max")
VERY_LONG = 10**9  # a model without a length limit


class TokenClassificationPipeline(Pipeline):
    """``pipe("text")`` → a list of entities; a list of texts → a list of such lists.

    Call-time parameters:
        aggregation_strategy: ``"none"`` (default), ``"simple"``, ``"first"``, ``"average"`` or ``"max"``.
        ignore_labels: labels left out of the result (default ``["O"]``).
        stride: None truncates texts longer than the model takes (with a warning); an int
            instead splits them into windows sharing ``stride`` tokens and merges entities that
            the windows found twice, keeping the longer (or, if equally long, the surer) one.

    >>> ner = pipeline("ner", model="path/to/ner-model", aggregation_strategy="simple")  # doctest: +SKIP
    >>> ner("Joko Widodo mengunjungi Surabaya.")                                           # doctest: +SKIP
    [{'entity_group': 'PER', 'score': 0.99, 'word': 'joko widodo', 'start': 0, 'end': 11}, ...]
    """

    per_token = ("logits",)
    defaults = {"aggregation_strategy": "none", "ignore_labels": ["O"], "stride": None}

    def preprocess(self, text, aggregation_strategy="none", ignore_labels=None, stride=None):
        strategy = self._strategy(aggregation_strategy)
        if not isinstance(text, str):
            raise PipelineError(f"{self.task}: inputs are strings, got {type(text).__name__}")
        wanted = dict(return_special_tokens_mask=True, return_offsets_mapping=True)
        if stride is None:
            enc = self.encode(text, **wanted)
            rows = [{k: enc[k] for k in enc}]
        else:
            if strategy == "none":
                raise PipelineError(f'{self.task}: stride={stride} merges entities across windows, which needs an '
                                    'aggregation_strategy other than "none"')
            # each window holds max_length tokens with the special tokens, and must move forward
            room = (self.max_length or VERY_LONG) - self.tokenizer.num_special_tokens_to_add()
            if not isinstance(stride, int) or not 0 <= stride < room:
                raise PipelineError(f"{self.task}: stride must be an int from 0 to {room - 1} (windows hold {room} "
                                    f"tokens of text), got {stride!r}")
            enc = self.tokenizer(text, truncation=True, max_length=self.max_length, stride=stride,
                                 return_overflowing_tokens=True, **wanted)
            rows = [{k: v[i] for k, v in enc.items() if k != "overflow_to_sample_mapping"}
                    for i in range(len(enc["input_ids"]))]
        features = [self.model_inputs(row) for row in rows]
        windows = [(row["input_ids"], row["offset_mapping"], row["special_tokens_mask"]) for row in rows]
        return features, (text, windows)

    def forward(self, batch, **params):
        return {"logits": self.model(**batch).logits}

    def postprocess(self, context, outputs, aggregation_strategy="none", ignore_labels=None, stride=None):
        text, windows = context
        strategy = self._strategy(aggregation_strategy)
        ignore = set(["O"] if ignore_labels is None else ignore_labels)
        entities = []
        for out, (ids, offsets, special) in zip(outputs, windows):
            scores = torch.softmax(out["logits"].float().cpu(), dim=-1)  # (T, labels)
            tokens = self._gather(text, ids, scores, offsets, special)
            found = self._aggregate(tokens, strategy)
            entities += [e for e in found if e.get("entity", e.get("entity_group")) not in ignore]
        if len(windows) > 1:
            entities = _merge_overlapping(entities)
        return entities

    # --- the steps of postprocess ----------------------------------------------------------
    def _gather(self, text, ids, scores, offsets, special) -> list[dict]:
        """One dict per non-special token: its token string, scores, offsets and whether it
        continues the previous token's word."""
        backend = self.tokenizer.backend
        # WordPiece and word-aware BPEs mark continuations ("##ing"), so a token whose string is
        # longer than its span of text is a continuation; byte-level BPEs have no such marker and
        # a token counts as a continuation when no space precedes it (transformers' heuristic)
        marked = bool(getattr(backend.model, "continuing_subword_prefix", None))
        unk = self.tokenizer.unk_token_id
        tokens = []
        for i, token_id in enumerate(ids):
            if special[i]:
                continue
            word = self.tokenizer.convert_ids_to_tokens(int(token_id))
            start, end = offsets[i]
            written = text[start:end]
            if marked:
                is_subword = len(word) != len(written)
            else:
                is_subword = start > 0 and " " not in text[start - 1:start + 1]
            if token_id == unk:  # "[UNK]" says nothing: show the text it stands for
                word, is_subword = written, False
            tokens.append({"word": word, "scores": scores[i], "start": start, "end": end, "index": i,
                           "is_subword": is_subword})
        return tokens

    def _aggregate(self, tokens: list[dict], strategy: str) -> list[dict]:
        id2label = self.model.config.id2label
        if strategy in ("none", "simple"):
            entities = []
            for t in tokens:
                best = int(t["scores"].argmax())
                entities.append({"entity": id2label[best], "score": t["scores"][best].item(), "index": t["index"],
                                 "word": t["word"], "start": t["start"], "end": t["end"]})
            if strategy == "none":
                return entities
        else:
            entities = [self._aggregate_word(word, strategy) for word in _words(tokens)]
        return self._group(entities)

    def _aggregate_word(self, tokens: list[dict], strategy: str) -> dict:
        """The tokens of one word → one entity with one label."""
        if strategy == "first":
            scores = tokens[0]["scores"]
        elif strategy == "max":
            scores = max(tokens, key=lambda t: t["scores"].max().item())["scores"]
        else:  # average
            scores = torch.stack([t["scores"] for t in tokens]).mean(dim=0)
        best = int(scores.argmax())
        return {"entity": self.model.config.id2label[best], "score": scores[best].item(),
                "word": self._join([t["word"] for t in tokens]), "start": tokens[0]["start"], "end": tokens[-1]["end"]}

    def _group(self, entities: list[dict]) -> list[dict]:
        """Adjacent entities with the same tag → one entity group (``B-`` always starts a new one)."""
        groups: list[list[dict]] = []
        for entity in entities:
            bi, tag = _tag(entity["entity"])
            if groups and bi != "B" and tag == _tag(groups[-1][-1]["entity"])[1]:
                groups[-1].append(entity)
            else:
                groups.append([entity])
        return [{"entity_group": _tag(g[0]["entity"])[1], "score": sum(e["score"] for e in g) / len(g),
                 "word": self._join([e["word"] for e in g]), "start": g[0]["start"], "end": g[-1]["end"]}
                for g in groups]

    def _join(self, tokens: list[str]) -> str:
        """Token strings → text, undoing "##" and byte-level markers (the tokenizer's decoder)."""
        decoder = self.tokenizer.backend.decoder
        return decoder.decode(tokens) if decoder is not None else " ".join(tokens)

    def _strategy(self, name) -> str:
        strategy = str(name).lower()
        if strategy not in STRATEGIES:
            raise PipelineError(f"{self.task}: aggregation_strategy must be one of {list(STRATEGIES)}, not {name!r}")
        return strategy


def _words(tokens: list[dict]) -> list[list[dict]]:
    """Split tokens into words: a token that is not a continuation starts a new word."""
    words: list[list[dict]] = []
    for t in tokens:
        if words and t["is_subword"]:
            words[-1].append(t)
        else:
            words.append([t])
    return words


def _tag(label: str) -> tuple[str, str]:
    """``"B-PER"`` → ("B", "PER"); a label without a B-/I- prefix continues, like ``I-``."""
    if label.startswith(("B-", "I-")):
        return label[0], label[2:]
    return "I", label


def _merge_overlapping(entities: list[dict]) -> list[dict]:
    """Entities from overlapping windows: of those starting inside another, keep the longer one
    (the higher score when equally long)."""
    if not entities:
        return entities
    entities = sorted(entities, key=lambda e: e["start"])
    merged = []
    previous = entities[0]
    for entity in entities:
        if previous["start"] <= entity["start"] < previous["end"]:
            length, previous_length = entity["end"] - entity["start"], previous["end"] - previous["start"]
            if length > previous_length or (length == previous_length and entity["score"] > previous["score"]):
                previous = entity
        else:
            merged.append(previous)
            previous = entity
    merged.append(previous)
    return merged
