"""LoRA adapters: PEFT's file format both ways (peluk → peft, peft → peluk, same logits),
merge_and_unload, what trains, and the errors a misfit adapter raises."""

from __future__ import annotations

import json

import pytest
import torch

import peluk.models as pm
from peluk.errors import ConfigError, ModelNotFoundError, UnsupportedModelError, WeightsError
from peluk.nn.linear import Linear
from peluk.training.lora import LoraConfig, LoraLinear, PeftModel, TaskType, get_peft_model
from tests.parity.tiny import batch, tiny_model
from tests.parity.tiny_decoders import tiny_decoder
from tests.parity.tiny_seq2seq import sources, tiny_seq2seq

peft = pytest.importorskip("peft")
transformers = pytest.importorskip("transformers")
pytestmark = [pytest.mark.filterwarnings("ignore::FutureWarning"),  # transformers' deprecation notices
              pytest.mark.filterwarnings("ignore:.*(tie_word_embeddings|save_embedding_layers):UserWarning")]  # PEFT's

TOL = 1e-5


def _close(got, want) -> bool:
    """Equal to 1e-5, relative to the logits' scale (T5's reach ~10)."""
    return (got - want).abs().max().item() < TOL * max(1.0, want.abs().max().item())


# name: (how to build the transformers checkpoint, Auto class name, LoraConfig arguments, valid for both libraries)
CASES = {
    "bert": (lambda: tiny_model("bert", "sequence-classification"), "AutoModelForSequenceClassification",
             dict(r=4, lora_alpha=8, task_type="SEQ_CLS", init_lora_weights=False)),
    "bert-bias-all": (lambda: tiny_model("bert", "sequence-classification"), "AutoModelForSequenceClassification",
                      dict(r=4, lora_alpha=16, task_type="SEQ_CLS", bias="all", use_rslora=True)),
    "roberta": (lambda: tiny_model("roberta", "sequence-classification"), "AutoModelForSequenceClassification",
                dict(r=2, lora_alpha=4, lora_dropout=0.1, task_type="SEQ_CLS", bias="lora_only",
                     target_modules=["query", "key", "value", "dense"])),
    "distilbert": (lambda: tiny_model("distilbert", "sequence-classification"), "AutoModelForSequenceClassification",
                   dict(r=4, task_type="SEQ_CLS", target_modules=["q_lin", "v_lin"])),
    "gpt2": (lambda: tiny_decoder("gpt2"), "AutoModelForCausalLM",
             dict(r=4, lora_alpha=8, task_type="CAUSAL_LM", target_modules=["c_attn", "c_fc"], fan_in_fan_out=True,
                  modules_to_save=["mlp.c_proj"])),  # a Conv1D saved whole: transposed to transformers' layout
    "llama": (lambda: tiny_decoder("llama-mha-untied-bias"), "AutoModelForCausalLM",
              dict(r=4, lora_alpha=8, task_type="CAUSAL_LM", target_modules="all-linear", rank_pattern={"o_proj": 2},
                   alpha_pattern={"down_proj": 3})),
    "llama-tied": (lambda: tiny_decoder("llama-gqa-tied"), "AutoModelForCausalLM",  # PEFT also saves lm_head's base
                   dict(r=4, task_type="CAUSAL_LM", target_modules=["q_proj", "lm_head"])),
    "t5": (lambda: tiny_seq2seq("t5-v1.1"), "AutoModelForSeq2SeqLM", dict(r=4, task_type="SEQ_2_SEQ_LM")),
    "bart": (lambda: tiny_seq2seq("bart"), "AutoModelForSeq2SeqLM",  # lm_head: tied, and called with a bias
             dict(r=4, task_type="SEQ_2_SEQ_LM", target_modules=["q_proj", "v_proj", "fc1", "lm_head"])),
}


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory):
    """checkpoint(name) -> directory of that case's tiny transformers model (built once)."""
    made = {}

    def make(name):
        if name not in made:
            made[name] = tmp_path_factory.mktemp(name)
            CASES[name][0]().save_pretrained(made[name])
        return made[name]

    return make


def _inputs(name):
    if CASES[name][1] == "AutoModelForSeq2SeqLM":
        ids, mask = sources()
        target = torch.randint(3, 100, (3, 6), generator=torch.Generator().manual_seed(2))
        inputs = dict(input_ids=ids, attention_mask=mask, decoder_input_ids=target)
        return inputs, torch.ones_like(target, dtype=torch.bool)
    if CASES[name][1] == "AutoModelForCausalLM":
        ids = torch.randint(3, 128, (2, 10), generator=torch.Generator().manual_seed(1))
        return dict(input_ids=ids, attention_mask=torch.ones_like(ids)), torch.ones_like(ids, dtype=torch.bool)
    ids, mask = batch(pad_id=1 if name == "roberta" else 0)
    return dict(input_ids=ids, attention_mask=mask), torch.ones(ids.shape[0], dtype=torch.bool)


def _logits(model, name):
    inputs, valid = _inputs(name)
    with torch.no_grad():  # (no_grad: peluk's oneDNN fast path)
        return model(**inputs).logits[valid]


def _peluk(checkpoint, name):
    return getattr(pm, CASES[name][1]).from_pretrained(checkpoint(name))


def _transformers(checkpoint, name):
    return getattr(transformers, CASES[name][1]).from_pretrained(checkpoint(name), attn_implementation="eager").eval()


def _randomize_trainable(model, seed=0):
    """Non-zero B matrices and changed heads/biases, as if trained, so every saved tensor matters."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for _, p in sorted(model.named_parameters()):
            if p.requires_grad:
                p.add_(torch.randn(p.shape, generator=g) * 0.2)


def _peluk_adapter(checkpoint, name, directory):
    """A peluk PeftModel of the case, 'trained' (randomized) and saved to directory."""
    model = get_peft_model(_peluk(checkpoint, name), LoraConfig(**CASES[name][2]))
    _randomize_trainable(model)
    model.save_pretrained(directory)
    return model.eval()


@pytest.mark.parametrize("name", list(CASES))
def test_peluk_adapter_loads_in_peft(name, checkpoint, tmp_path):
    ours = _peluk_adapter(checkpoint, name, tmp_path)
    theirs = peft.PeftModel.from_pretrained(_transformers(checkpoint, name), tmp_path).eval()
    base = _logits(_transformers(checkpoint, name), name)
    got, want = _logits(ours, name), _logits(theirs, name)
    assert (want - base).abs().max() > 1e-2  # the adapter really changes the output
    assert _close(got, want)


@pytest.mark.parametrize("name", list(CASES))
def test_peft_adapter_loads_in_peluk(name, checkpoint, tmp_path):
    kwargs = dict(CASES[name][2])
    theirs = peft.get_peft_model(_transformers(checkpoint, name), peft.LoraConfig(**kwargs))
    _randomize_trainable(theirs, seed=1)
    theirs.save_pretrained(tmp_path)
    ours = PeftModel.from_pretrained(_peluk(checkpoint, name), tmp_path)
    assert not any(p.requires_grad for p in ours.parameters())  # loaded for inference by default
    assert _close(_logits(ours, name), _logits(theirs.eval(), name))


@pytest.mark.parametrize("name", ["bert", "gpt2", "llama", "t5"])
def test_merge_and_unload_matches_adapter(name, checkpoint):
    model = _peluk(checkpoint, name)
    base = _logits(model, name)  # fills the fast path's packed-weight caches with the unmerged weights
    if torch.backends.mkldnn.is_available():
        assert any(k.startswith("_packed") for m in model.modules() for k in vars(m))
    peft_model = get_peft_model(model, LoraConfig(**CASES[name][2]))
    _randomize_trainable(peft_model)
    adapted = _logits(peft_model.eval(), name)
    merged = peft_model.merge_and_unload()
    assert merged is model and not any(isinstance(m, LoraLinear) for m in merged.modules())
    assert all(type(m) is Linear for n, m in merged.named_modules() if n.endswith(("c_attn", "query", "q_proj")))
    got = _logits(merged, name)  # the caches key on the weights' versions, so merging re-packs them
    assert _close(got, adapted)
    assert (got - base).abs().max() > 1e-2


@pytest.mark.parametrize("name", ["llama-tied", "bart"])
def test_merge_into_tied_lm_head(name, checkpoint, tmp_path):
    """lm_head shares the input embeddings' weight: merging gives lm_head a weight of its own."""
    peft_model = get_peft_model(_peluk(checkpoint, name), LoraConfig(**CASES[name][2]))
    _randomize_trainable(peft_model)
    adapted = _logits(peft_model.eval(), name)
    merged = peft_model.merge_and_unload()
    assert not any(p is merged.lm_head.weight for n, p in merged.named_parameters(remove_duplicate=False)
                   if not n.startswith("lm_head."))
    assert _close(_logits(merged, name), adapted)
    if name == "llama-tied":  # saved untied (BART can't be: transformers 5 then unties its encoder embeddings too)
        merged.save_pretrained(tmp_path)
        reloaded = transformers.AutoModelForCausalLM.from_pretrained(tmp_path, attn_implementation="eager").eval()
        assert _close(_logits(reloaded, name), adapted)


def test_only_adapter_trains(checkpoint, capsys):
    model = _peluk(checkpoint, "bert")
    peft_model = get_peft_model(model, LoraConfig(r=4, lora_alpha=8, lora_dropout=0.1, task_type=TaskType.SEQ_CLS))
    trainable = {n for n, p in peft_model.named_parameters() if p.requires_grad}
    assert trainable and all(".lora_A." in n or ".lora_B." in n or n.startswith("base_model.model.classifier.")
                             for n in trainable)
    assert {n.split(".")[-2] for n in trainable} == {"lora_A", "lora_B", "classifier"}

    # a PeftModel passes calls and attributes through to the model
    assert peft_model.config is model.config and peft_model.get_base_model() is model
    assert peft_model.base_model.model is model and peft_model.num_parameters() == model.num_parameters()
    peft_model.print_trainable_parameters()
    t, total = peft_model.get_nb_trainable_parameters()
    want = f"trainable params: {t:,d} || all params: {total:,d} || trainable%: {100 * t / total:.4f}\n"
    assert capsys.readouterr().out == want

    before = {n: p.detach().clone() for n, p in peft_model.named_parameters()}
    peft_model.train()
    inputs, _ = _inputs("bert")
    out = peft_model(**inputs, labels=torch.tensor([0, 1, 2]))
    out.loss.backward()
    torch.optim.SGD([p for p in peft_model.parameters() if p.requires_grad], lr=0.5).step()
    changed = {n for n, p in peft_model.named_parameters() if not torch.equal(p, before[n])}
    assert changed <= trainable
    assert any(".lora_B." in n for n in changed) and "base_model.model.classifier.weight" in changed


def test_generate_and_unload(checkpoint, tmp_path):
    peft_model = _peluk_adapter(checkpoint, "llama", tmp_path)
    ids = torch.randint(3, 128, (1, 5), generator=torch.Generator().manual_seed(2))
    with peft_model.disable_adapter():
        plain = _logits(peft_model, "llama")
    adapted = peft_model.generate(ids, max_new_tokens=4)
    merged = peft_model.merge_and_unload()
    assert torch.equal(merged.generate(ids, max_new_tokens=4), adapted)
    assert (plain - _logits(_peluk(checkpoint, "llama"), "llama")).abs().max() < TOL


def test_config_defaults_and_roundtrip(checkpoint, tmp_path):
    config = LoraConfig(task_type="SEQ_CLS")
    model = get_peft_model(_peluk(checkpoint, "bert"), config)
    assert config.target_modules is None and config.modules_to_save is None  # the caller's config is untouched
    lora = [m for m in model.modules() if isinstance(m, LoraLinear)]
    assert len(lora) == 6 and all(not m.lora_B.weight.any() and m.lora_A.weight.std() > 0 for m in lora)  # B = 0
    saved = model.active_peft_config
    assert saved.target_modules == ["query", "value"] and saved.modules_to_save == ["classifier", "score"]
    assert saved.base_model_name_or_path == str(checkpoint("bert"))
    gpt2 = get_peft_model(_peluk(checkpoint, "gpt2"), LoraConfig())
    assert gpt2.active_peft_config.target_modules == ["c_attn"] and gpt2.active_peft_config.fan_in_fan_out

    _randomize_trainable(model)
    model.save_pretrained(tmp_path, safe_serialization=False)  # adapter_model.bin
    data = json.loads((tmp_path / "adapter_config.json").read_text())
    assert data["peft_type"] == "LORA" and data["inference_mode"] is True and data["r"] == 8
    loaded = PeftModel.from_pretrained(_peluk(checkpoint, "bert"), tmp_path, is_trainable=True)
    assert any(p.requires_grad for p in loaded.parameters())
    assert (_logits(loaded, "bert") - _logits(model, "bert")).abs().max() < TOL


# --- errors --------------------------------------------------------------------------------

@pytest.fixture
def saved_adapter(checkpoint, tmp_path):
    _peluk_adapter(checkpoint, "bert", tmp_path)
    return tmp_path


def _edit_config(directory, **changes):
    path = directory / "adapter_config.json"
    path.write_text(json.dumps({**json.loads(path.read_text()), **changes}))


def _edit_weights(directory, edit):
    from safetensors.torch import load_file, save_file

    path = directory / "adapter_model.safetensors"
    tensors = load_file(path)
    edit(tensors)
    save_file(tensors, path)


def test_bad_config_json(checkpoint, saved_adapter):
    (saved_adapter / "adapter_config.json").write_text("{not json")
    with pytest.raises(ConfigError, match="adapter_config.json.*line 1"):
        PeftModel.from_pretrained(_peluk(checkpoint, "bert"), saved_adapter)


def test_target_module_not_in_model(checkpoint, saved_adapter):
    _edit_config(saved_adapter, target_modules=["q_proj"])
    with pytest.raises(ConfigError, match=r"adapter_config.json.*q_proj.*match no module.*'query'"):
        PeftModel.from_pretrained(_peluk(checkpoint, "bert"), saved_adapter)


def test_shape_mismatch(checkpoint, saved_adapter):
    _edit_config(saved_adapter, r=8)
    model = _peluk(checkpoint, "bert")
    with pytest.raises(WeightsError, match=r"adapter_model.safetensors.*shape.*lora_A.weight: file \(4, 32\) vs model"):
        PeftModel.from_pretrained(model, saved_adapter)
    assert not any(isinstance(m, LoraLinear) for m in model.modules())  # the model is given back unchanged


def test_missing_and_unexpected_keys(checkpoint, saved_adapter):
    key = "base_model.model.bert.encoder.layer.1.attention.self.value.lora_B.weight"
    _edit_weights(saved_adapter, lambda t: t.pop(key))
    with pytest.raises(WeightsError, match=f"missing keys.*{key}"):
        PeftModel.from_pretrained(_peluk(checkpoint, "bert"), saved_adapter)
    extra = "base_model.model.extra.weight"
    _edit_weights(saved_adapter, lambda t: t.update({key: torch.zeros(32, 4), extra: torch.zeros(1)}))
    with pytest.raises(WeightsError, match="no place for.*base_model.model.extra.weight"):
        PeftModel.from_pretrained(_peluk(checkpoint, "bert"), saved_adapter)
    _edit_weights(saved_adapter, lambda t: t.update({"bert.pooler.dense.weight": t.pop(extra)}))
    with pytest.raises(WeightsError, match="'bert.pooler.dense.weight' does not start with"):
        PeftModel.from_pretrained(_peluk(checkpoint, "bert"), saved_adapter)


def test_missing_files_and_unsupported_features(checkpoint, saved_adapter, tmp_path_factory):
    with pytest.raises(ModelNotFoundError):
        PeftModel.from_pretrained(_peluk(checkpoint, "bert"), tmp_path_factory.mktemp("empty") / "nothing")
    _edit_config(saved_adapter, use_dora=True)
    with pytest.raises(UnsupportedModelError, match="use_dora"):
        PeftModel.from_pretrained(_peluk(checkpoint, "bert"), saved_adapter)
    _edit_config(saved_adapter, use_dora=False)
    (saved_adapter / "adapter_model.safetensors").unlink()
    with pytest.raises(ModelNotFoundError, match="adapter_model"):
        PeftModel.from_pretrained(_peluk(checkpoint, "bert"), saved_adapter)


def test_bad_arguments(checkpoint):
    with pytest.raises(ConfigError, match="positive integer"):
        LoraConfig(r=0)
    with pytest.raises(ConfigError, match="bias"):
        LoraConfig(bias="some")
    model = _peluk(checkpoint, "bert")
    with pytest.raises(ConfigError, match=r"match no module.*'query'"):
        get_peft_model(model, LoraConfig(target_modules=["nope"]))
    with pytest.raises(UnsupportedModelError, match="LayerNorm"):
        get_peft_model(model, LoraConfig(target_modules=r".*embeddings\.LayerNorm"))
    get_peft_model(model, LoraConfig(target_modules=["query"]))
    with pytest.raises(ConfigError, match="already has LoRA"):
        get_peft_model(model, LoraConfig(target_modules=["key"]))
