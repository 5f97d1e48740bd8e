"""CoNLL-format token classification files (CoNLL-2003 and the many files shaped like it).

One token per line, its tag in the last column; a blank line ends a sentence;
``-DOCSTART-`` lines separate documents and are skipped. Columns are separated by spaces or
tabs. Malformed lines raise with the file name and line number.

>>> rows = read_conll("train.txt")                          # doctest: +SKIP
>>> rows[0]
{'tokens': ['EU', 'rejects', 'German', 'call'], 'ner_tags': ['B-ORG', 'O', 'B-MISC', 'O']}
"""

from __future__ import annotations

import os

from peluk.errors import DatasetError


def read_conll(path: str | os.PathLike, tag_column: int = -1) -> list[dict]:
    """Sentences of a CoNLL file as ``{"tokens": [...], "ner_tags": [...]}`` rows (tags as strings).

    Args:
        tag_column: which column holds the tag (the last by default; CoNLL-2003 has 4 columns).

    Raises:
        DatasetError: undecodable bytes or a line with a token but no tag (file and line named).
    """
    rows, tokens, tags = [], [], []
    with open(path, "rb") as f:
        for number, raw in enumerate(f, 1):
            try:
                line = raw.decode("utf-8").strip()
            except UnicodeDecodeError as e:
                raise DatasetError(f"{path} line {number}: not UTF-8 ({e.reason} at byte {e.start})") from None
            if not line or line.startswith("-DOCSTART-"):
                if tokens:
                    rows.append({"tokens": tokens, "ner_tags": tags})
                    tokens, tags = [], []
                continue
            parts = line.split()
            if len(parts) < 2:
                raise DatasetError(f"{path} line {number}: expected a token and a tag, got {line!r}")
            tokens.append(parts[0])
            tags.append(parts[tag_column])
    if tokens:
        rows.append({"tokens": tokens, "ner_tags": tags})
    return rows


def tag_names(rows: list[dict]) -> list[str]:
    """The tag set in a stable order: ``O`` first, then by entity type with B- before I-."""
    found = {t for row in rows for t in row["ner_tags"]}
    return sorted(found, key=lambda t: (t != "O", t[2:] if t[1:2] == "-" else t, t[:1]))


def align_labels(word_ids: list[int | None], word_labels: list[int], label_all_tokens: bool = False) -> list[int]:
    """Word labels → token labels: first sub-token gets the word's label, the rest and specials -100."""
    labels, previous = [], None
    for word in word_ids:
        if word is None:
            labels.append(-100)
        elif word != previous or label_all_tokens:
            labels.append(word_labels[word])
        else:
            labels.append(-100)
        previous = word
    return labels
