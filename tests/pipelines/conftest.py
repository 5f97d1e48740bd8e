"""Tiny random encoder checkpoints saved together with a real tokenizer (MiniLM's WordPiece)."""

from __future__ import annotations

import shutil

import pytest

from tests.parity.tiny import tiny_model

TOKENIZER_FILES = ("tokenizer.json", "tokenizer_config.json", "special_tokens_map.json", "vocab.txt")


@pytest.fixture(scope="session")
def tiny_dir(tmp_path_factory, minilm_dir):
    """Factory: tiny_dir(arch, head, **config) -> directory with a tiny model and MiniLM's tokenizer."""
    made = {}

    def make(arch: str, head: str, seed: int = 0, **extra):
        key = (arch, head, seed, repr(sorted(extra.items())))
        if key not in made:
            path = tmp_path_factory.mktemp(f"{arch}-{head}")
            model = tiny_model(arch, head, seed=seed, vocab_size=30522, max_position_embeddings=128, **extra)
            model.save_pretrained(path)
            for name in TOKENIZER_FILES:
                shutil.copy(minilm_dir / name, path / name)
            made[key] = path
        return made[key]

    return make
