"""text2text-generation, summarization and translation on a tiny BART with a real byte-level
BPE tokenizer: outputs equal transformers' generate + decode (transformers 5 has no such
pipelines), transformers-4-shaped results, truncation and bad input."""

from __future__ import annotations

import json
import logging

import pytest
import torch

import peluk
from peluk.errors import PipelineError, UnsupportedModelError

TEXTS = ["Saya seorang siswa.", "The price of rice rose again this week in Jakarta.", "Halo 🤗"]


@pytest.fixture(scope="module")
def bart_dir(tmp_path_factory):
    import transformers

    from tests.tokenizer_fixtures import bpe_dir, train_bpe

    root = tmp_path_factory.mktemp("bart")
    special = {"bos_token": "<s>", "eos_token": "</s>", "pad_token": "<pad>", "unk_token": "<unk>",
               "mask_token": "<mask>", "tokenizer_class": "BartTokenizer", "model_max_length": 40}
    path = bpe_dir(root, "tiny-bart", train_bpe(root / "files"), special, "bart")
    hf_tok = transformers.AutoTokenizer.from_pretrained(path)
    torch.manual_seed(0)
    config = transformers.BartConfig(vocab_size=len(hf_tok), d_model=32, encoder_layers=2, decoder_layers=2,
                                     encoder_attention_heads=4, decoder_attention_heads=4, encoder_ffn_dim=48,
                                     decoder_ffn_dim=48, max_position_embeddings=40, pad_token_id=hf_tok.pad_token_id,
                                     bos_token_id=hf_tok.bos_token_id, eos_token_id=hf_tok.eos_token_id,
                                     decoder_start_token_id=hf_tok.eos_token_id, forced_eos_token_id=hf_tok.eos_token_id,
                                     init_std=0.2)
    model = transformers.BartForConditionalGeneration(config).eval()
    model.save_pretrained(path)
    config_json = json.loads((path / "config.json").read_text())
    config_json["task_specific_params"] = {"summarization": {"prefix": "ringkas: "}}
    (path / "config.json").write_text(json.dumps(config_json))
    return path, model, hf_tok


def _reference(bart_dir, text, prefix="", **options):
    _, model, tok = bart_dir
    enc = tok([prefix + t for t in text], padding=True, truncation=True, return_tensors="pt")
    with torch.no_grad():
        out = model.generate(**enc, do_sample=False, **options)
    return [tok.decode(row, skip_special_tokens=True) for row in out]


def test_text2text_and_summarization_match_generate(bart_dir):
    path = bart_dir[0]
    t2t = peluk.pipeline("text2text-generation", model=path)
    want = _reference(bart_dir, TEXTS, max_new_tokens=8)
    assert t2t(TEXTS, max_new_tokens=8) == [{"generated_text": w} for w in want]
    assert t2t(TEXTS[0], max_new_tokens=8) == [{"generated_text": want[0]}]
    summarize = peluk.pipeline("summarization", model=path)
    want = _reference(bart_dir, TEXTS, prefix="ringkas: ", max_length=10, min_length=6, num_beams=3)
    assert summarize(TEXTS, max_length=10, min_length=6, num_beams=3) == [{"summary_text": w} for w in want]


def test_translation_task_names_and_beams(bart_dir):
    path = bart_dir[0]
    translate = peluk.pipeline("translation_en_to_id", model=path)
    assert translate.params["src_lang"] == "en" and translate.params["tgt_lang"] == "id"
    want = _reference(bart_dir, TEXTS, max_new_tokens=6, num_beams=4)
    assert translate(TEXTS, max_new_tokens=6, num_beams=4) == [{"translation_text": w} for w in want]
    two = translate(TEXTS[0], max_new_tokens=6, num_beams=4, num_return_sequences=2)
    assert len(two) == 2 and all("translation_text" in r for r in two)


def test_long_input_truncated_and_bad_input(bart_dir, caplog):
    path = bart_dir[0]
    t2t = peluk.pipeline("text2text-generation", model=path)
    with caplog.at_level(logging.WARNING, logger="peluk"):
        out = t2t("kata " * 500, max_new_tokens=4)  # encoder positions: 40
    assert "truncated" in caplog.text and len(out) == 1
    assert t2t([]) == []
    with pytest.raises(PipelineError, match="empty"):
        t2t("   ")
    with pytest.raises(PipelineError, match="translation model"):
        peluk.pipeline("translation")
    with pytest.raises(UnsupportedModelError, match="'bert' has no seq2seq-lm head"):
        peluk.pipeline("summarization", model=peluk.pipelines.packaged_model(peluk.pipelines.MINILM))
