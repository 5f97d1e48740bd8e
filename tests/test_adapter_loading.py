"""from_pretrained on a PEFT LoRA adapter directory loads its base and merges the adapter."""

from __future__ import annotations

import json

import pytest
import torch

import peluk
from peluk.errors import WeightsError
from peluk.training import LoraConfig, get_peft_model


@pytest.fixture()
def trained_adapter(tiny_dir, tmp_path):
    base = tiny_dir("bert", "sequence-classification", id2label={0: "neg", 1: "pos"})
    model = peluk.AutoModelForSequenceClassification.from_pretrained(base)
    peft = get_peft_model(model, LoraConfig(r=4, lora_alpha=8, target_modules=["query", "value", "output.dense"],
                                            task_type="SEQ_CLS", base_model_name_or_path=str(base)))
    torch.manual_seed(3)
    with torch.no_grad():
        for name, p in peft.named_parameters():
            if p.requires_grad:
                p.add_(torch.randn_like(p) * 0.2)  # as if trained: B non-zero, head changed
    out = tmp_path / "adapter"
    peft.save_pretrained(out)
    return base, peft.eval(), out


def test_adapter_dir_loads_merged(trained_adapter):
    base, peft, out = trained_adapter
    ids = torch.tensor([[101, 2023, 3185, 2001, 2204, 102]])
    with torch.no_grad():
        expected = peft(input_ids=ids).logits
        merged = peluk.AutoModelForSequenceClassification.from_pretrained(out).eval()  # config from the base
        assert (merged(input_ids=ids).logits - expected).abs().max().item() < 1e-5
        # with its own config.json (labels) next to the adapter, as peluk's built-in sentiment models ship
        peft.get_base_model().config.save_pretrained(out)
        again = peluk.AutoModelForSequenceClassification.from_pretrained(out).eval()
        assert (again(input_ids=ids).logits - expected).abs().max().item() < 1e-5
    assert again.config.id2label == {0: "neg", 1: "pos"}


def test_adapter_errors(trained_adapter):
    _, _, out = trained_adapter
    config = json.loads((out / "adapter_config.json").read_text())
    config["base_model_name_or_path"] = None
    (out / "adapter_config.json").write_text(json.dumps(config))
    (out / "config.json").write_text(json.dumps({"model_type": "bert", "hidden_size": 32, "num_hidden_layers": 3,
                                                 "num_attention_heads": 4, "intermediate_size": 48}))
    with pytest.raises(WeightsError, match="base_model_name_or_path"):
        peluk.AutoModelForSequenceClassification.from_pretrained(out)
