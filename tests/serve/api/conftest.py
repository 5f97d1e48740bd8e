"""``peluk serve`` on loopback for the end-to-end tests of the inference API: the real
huggingface_hub InferenceClient and openai clients against tiny random models (built with
transformers, the test oracle), the packaged all-MiniLM-L6-v2 and the packaged SmolLM2 GGUF."""

from __future__ import annotations

import json
import shutil
import threading
import time
from pathlib import Path

import pytest
import uvicorn

from tests.serve.conftest import Recorder, free_port

LLM = "HuggingFaceTB/SmolLM2-135M-Instruct-GGUF"
MINILM = "sentence-transformers/all-MiniLM-L6-v2"
TOKENIZER_FILES = ("tokenizer.json", "tokenizer_config.json", "special_tokens_map.json", "vocab.txt")


class ApiServer:
    """``peluk.serve.app.create_app`` in a background thread: ``url``, ``api`` (the service),
    ``hub``, ``admin`` token; ``stop()`` checks that nothing answered 5xx."""

    def __init__(self, home: Path, **settings):
        from peluk.serve.api.settings import Settings
        from peluk.serve.app import create_app

        self.home, self.port = home, free_port()
        self.app = create_app(home, Settings(**settings))
        self.api, self.hub = self.app.state.api, self.app.state.hub
        self.recorder = Recorder(self.app)
        self.url = f"http://127.0.0.1:{self.port}"
        self.admin = (home / "admin_token").read_text().strip()
        config = uvicorn.Config(self.recorder, host="127.0.0.1", port=self.port, log_level="warning",
                                lifespan="on", timeout_keep_alive=30, timeout_graceful_shutdown=10)
        self.server = uvicorn.Server(config)
        self.thread = threading.Thread(target=self.server.run, daemon=True)
        self.thread.start()
        deadline = time.time() + 30
        while not self.server.started:
            if time.time() > deadline or not self.thread.is_alive():
                raise RuntimeError("peluk serve did not start")
            time.sleep(0.02)

    def model(self, model_id: str) -> str:
        return f"{self.url}/models/{model_id}"

    def token(self, name: str, role: str = "read") -> str:
        from peluk.serve.hub import auth

        if auth.get_user(self.hub.db, name) is None:
            auth.create_user(self.hub.db, name)
        return auth.create_token(self.hub.db, name, role)

    def stop(self, check: bool = True):
        self.server.should_exit = True
        self.thread.join(timeout=20)
        if check:
            assert self.recorder.failures == [], "peluk serve answered 5xx (bad input must get a 4xx)"


def _copy_tokenizer(src: Path, dest: Path) -> None:
    for name in TOKENIZER_FILES:
        if (src / name).exists():
            shutil.copy(src / name, dest / name)


@pytest.fixture(scope="session")
def smol_tokenizer_dir(tmp_path_factory, smol_path) -> Path:
    """SmolLM2's tokenizer (with its chat template) as tokenizer.json files."""
    from peluk.tokenizer import AutoTokenizer

    path = tmp_path_factory.mktemp("smol-tokenizer")
    AutoTokenizer.from_pretrained(smol_path).save_pretrained(path)
    return path


@pytest.fixture(scope="session")
def zoo(tmp_path_factory, tiny_dir, minilm_dir, smol_tokenizer_dir) -> dict[str, Path]:
    """Tiny random models for every task: {model id: directory}."""
    import torch
    import transformers

    models = {
        "tiny/fill-mask": tiny_dir("bert", "masked-lm"),
        "tiny/ner": tiny_dir("bert", "token-classification",
                             id2label={0: "O", 1: "B-PER", 2: "I-PER", 3: "B-LOC", 4: "I-LOC"}),
        "tiny/qa": tiny_dir("bert", "question-answering"),
        "tiny/sentiment": tiny_dir("bert", "sequence-classification", id2label={0: "NEGATIVE", 1: "POSITIVE"}),
        "tiny/nli": tiny_dir("bert", "sequence-classification",
                             id2label={0: "entailment", 1: "neutral", 2: "contradiction"}),
        "tiny/encoder": tiny_dir("bert", "base"),
    }
    # an encoder-decoder (BART) over MiniLM's WordPiece vocabulary: [CLS] starts, [SEP] ends
    bart = tmp_path_factory.mktemp("tiny-bart")
    torch.manual_seed(0)
    config = transformers.BartConfig(vocab_size=30522, d_model=16, encoder_layers=1, decoder_layers=1,
                                     encoder_attention_heads=2, decoder_attention_heads=2, encoder_ffn_dim=32,
                                     decoder_ffn_dim=32, max_position_embeddings=64, pad_token_id=0,
                                     bos_token_id=101, eos_token_id=102, decoder_start_token_id=102,
                                     forced_eos_token_id=102, init_std=0.2)
    transformers.BartForConditionalGeneration(config).save_pretrained(bart)
    _copy_tokenizer(minilm_dir, bart)
    models["tiny/bart"] = bart
    # a decoder (Llama) over SmolLM2's tokenizer and chat template
    llama = tmp_path_factory.mktemp("tiny-llama")
    torch.manual_seed(0)
    config = transformers.LlamaConfig(vocab_size=49152, hidden_size=16, intermediate_size=32, num_hidden_layers=2,
                                      num_attention_heads=2, num_key_value_heads=1, max_position_embeddings=256,
                                      bos_token_id=1, eos_token_id=2, pad_token_id=2, tie_word_embeddings=True)
    transformers.LlamaForCausalLM(config).save_pretrained(llama)
    for f in smol_tokenizer_dir.iterdir():
        shutil.copy(f, llama / f.name)
    models["tiny/llama"] = llama
    return models


def _settings(zoo: dict, **overrides) -> dict:
    settings = dict(public=True, preload=False, models=[LLM, MINILM, *(f"{k}={v}" for k, v in zoo.items())],
                    max_new_tokens=64, request_timeout_s=60)
    settings.update(overrides)
    return settings


@pytest.fixture(scope="session")
def api_server(tmp_path_factory, zoo, smol_path):
    s = ApiServer(tmp_path_factory.mktemp("serve"), **_settings(zoo))
    yield s
    s.stop()


@pytest.fixture
def make_server(tmp_path, zoo):
    """A server of one's own: make_server(**settings overrides)."""
    made = []

    def make(**overrides):
        s = ApiServer(tmp_path / f"home{len(made)}", **_settings(zoo, **overrides))
        made.append(s)
        return s
    yield make
    for s in made:
        s.stop(check=False)


def sse_events(response) -> list:
    """The ``data:`` events of a server-sent-events answer (``[DONE]`` kept as a string)."""
    out = []
    for line in response.text.splitlines():
        if line.startswith("data:"):
            data = line[5:].strip()
            out.append(data if data == "[DONE]" else json.loads(data))
    return out
