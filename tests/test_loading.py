"""Loading checkpoints: options, strict keys, and bad input that must fail clearly."""

from __future__ import annotations

import json
import logging
import shutil

import pytest
import torch

import peluk.models as pm
from peluk.config import AutoConfig
from peluk.errors import ConfigError, ModelNotFoundError, UnsupportedModelError, WeightsError
from tests.parity.tiny import batch, tiny_model


@pytest.fixture(scope="module")
def bert_mlm(tmp_path_factory):
    path = tmp_path_factory.mktemp("bert-mlm")
    tiny_model("bert", "masked-lm").save_pretrained(path)
    return path


def _copy(src, tmp_path):
    dst = tmp_path / "m"
    shutil.copytree(src, dst)
    return dst


def test_dtype_device_and_config(bert_mlm):
    model = pm.AutoModelForMaskedLM.from_pretrained(bert_mlm, dtype=torch.bfloat16, device="cpu")
    assert model.dtype == torch.bfloat16
    assert model.cls.predictions.decoder.weight is model.bert.embeddings.word_embeddings.weight  # tied
    config = AutoConfig.from_pretrained(bert_mlm)
    assert config.model_type == "bert" and config.hidden_size == 32 and config.num_labels == 3


def test_head_from_backbone_checkpoint_warns(bert_mlm, caplog):
    with caplog.at_level(logging.WARNING, logger="peluk"):
        model = pm.AutoModelForSequenceClassification.from_pretrained(bert_mlm, num_labels=4)
    assert "newly initialised" in caplog.text and "classifier" in caplog.text
    assert model.classifier.out_features == 4
    assert torch.isfinite(model(batch(0)[0]).logits).all()


def test_backbone_from_head_checkpoint(bert_mlm):
    model = pm.AutoModel.from_pretrained(bert_mlm)
    ref = tiny_model("bert", "masked-lm")
    ids, mask = batch(0)
    with torch.no_grad():
        a = model(ids, attention_mask=mask).last_hidden_state
        b = ref.bert(input_ids=ids, attention_mask=mask).last_hidden_state
    assert (a - b)[mask.bool()].abs().max() < 1e-5


def test_save_and_reload_roundtrip(bert_mlm, tmp_path):
    import transformers

    model = pm.AutoModelForMaskedLM.from_pretrained(bert_mlm)
    model.save_pretrained(tmp_path / "out", max_shard_size="30KB")
    again = pm.AutoModelForMaskedLM.from_pretrained(tmp_path / "out")
    theirs = transformers.AutoModelForMaskedLM.from_pretrained(tmp_path / "out")
    ids, mask = batch(0)
    with torch.no_grad():
        a = again(ids, attention_mask=mask).logits
        b = theirs(input_ids=ids, attention_mask=mask).logits
    assert (a - b).abs().max() < 1e-5


def test_missing_weight_file(bert_mlm, tmp_path):
    path = _copy(bert_mlm, tmp_path)
    (path / "model.safetensors").unlink()
    with pytest.raises(ModelNotFoundError, match="no weights in .*config.json"):
        pm.AutoModel.from_pretrained(path)


def test_truncated_safetensors(bert_mlm, tmp_path):
    path = _copy(bert_mlm, tmp_path)
    data = (path / "model.safetensors").read_bytes()
    (path / "model.safetensors").write_bytes(data[: len(data) // 2])
    with pytest.raises(WeightsError, match="model.safetensors"):
        pm.AutoModel.from_pretrained(path)


def test_unknown_model_type_lists_supported(bert_mlm, tmp_path):
    path = _copy(bert_mlm, tmp_path)
    config = json.loads((path / "config.json").read_text())
    config["model_type"] = "reformer"
    (path / "config.json").write_text(json.dumps(config))
    with pytest.raises(UnsupportedModelError, match="'reformer'.*bert.*distilbert"):
        pm.AutoModel.from_pretrained(path)


def test_bad_config_json(bert_mlm, tmp_path):
    path = _copy(bert_mlm, tmp_path)
    (path / "config.json").write_text('{"model_type": "bert",\n "hidden_size": }')
    with pytest.raises(ConfigError, match="config.json is not valid JSON.*line 2"):
        pm.AutoModel.from_pretrained(path)


def test_shape_mismatch_names_the_key(bert_mlm, tmp_path):
    path = _copy(bert_mlm, tmp_path)
    config = json.loads((path / "config.json").read_text())
    config["intermediate_size"] = 64
    (path / "config.json").write_text(json.dumps(config))
    with pytest.raises(WeightsError, match="intermediate.dense.weight"):
        pm.AutoModelForMaskedLM.from_pretrained(path)


def test_missing_backbone_key_raises(bert_mlm, tmp_path):
    from safetensors.torch import load_file, save_file

    path = _copy(bert_mlm, tmp_path)
    state = load_file(path / "model.safetensors")
    del state["bert.encoder.layer.1.output.dense.weight"]
    save_file(state, path / "model.safetensors")
    with pytest.raises(WeightsError, match="missing keys.*layer.1.output.dense.weight"):
        pm.AutoModelForMaskedLM.from_pretrained(path)


def test_unexpected_backbone_key_raises(bert_mlm, tmp_path):
    from safetensors.torch import load_file, save_file

    path = _copy(bert_mlm, tmp_path)
    state = load_file(path / "model.safetensors")
    state["bert.encoder.layer.9.output.dense.weight"] = torch.zeros(2)
    save_file(state, path / "model.safetensors")
    with pytest.raises(WeightsError, match="unexpected keys.*layer.9"):
        pm.AutoModelForMaskedLM.from_pretrained(path)


def test_not_a_directory(monkeypatch, tmp_path):
    monkeypatch.setenv("PELUK_OFFLINE", "1")
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path))
    with pytest.raises(ModelNotFoundError, match="model 'someone/some-model' at revision 'main' is not in the local"):
        pm.AutoModel.from_pretrained("someone/some-model")
    with pytest.raises(ModelNotFoundError, match="not a local directory or file, nor a repo id"):
        pm.AutoModel.from_pretrained("./no/such/dir")


def test_pickle_bin_refuses_code(bert_mlm, tmp_path):
    path = _copy(bert_mlm, tmp_path)
    (path / "model.safetensors").unlink()

    class Evil:
        def __reduce__(self):
            return (print, ("pwned",))

    torch.save({"x": Evil()}, path / "pytorch_model.bin")
    with pytest.raises(WeightsError, match="tensor-only"):
        pm.AutoModel.from_pretrained(path)
