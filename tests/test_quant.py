"""peluk.nn.quant: int8/int4 layers against their dequantized weights, exact GGUF block conversion
against ``gguf.quants``, and a tiny Llama whose logits stay close to float32 when quantized."""

from __future__ import annotations

from types import SimpleNamespace

import numpy as np
import pytest
import torch
from torch import nn

from peluk.errors import WeightsError
from peluk.nn.quant import QuantEmbedding, QuantLinear, fuse, fused_forward, quantize_linears

gguf = pytest.importorskip("gguf")


def _weight(n, k, seed=0):
    g = torch.Generator().manual_seed(seed)
    return torch.randn(n, k, generator=g) * 0.05 + torch.randn(n, 1, generator=g) * 0.01


def _gguf_blocks(w: torch.Tensor, qtype: str) -> np.ndarray:
    return gguf.quants.quantize(w.numpy(), gguf.GGMLQuantizationType[qtype])


def _gguf_values(blocks: np.ndarray, qtype: str, shape) -> torch.Tensor:
    return torch.from_numpy(gguf.quants.dequantize(blocks, gguf.GGMLQuantizationType[qtype]).reshape(shape))


@pytest.mark.parametrize("bits,group_size", [(8, 0), (4, 32), (4, 64), (4, 128)])
@pytest.mark.parametrize("shape", [(64, 128), (192, 768), (48, 256)])
def test_from_float_matches_its_dequantized_weight(bits, group_size, shape):
    w = _weight(*shape)
    x = torch.randn(3, 5, shape[1])
    exact = QuantLinear.from_float(w, bits=bits, group_size=group_size or 32, dtype=torch.float32)
    deq = exact.dequantize()
    # the rounding error of the format: half a step (a row's absolute maximum / 127, a group's range / 15)
    if bits == 8:
        step = w.abs().amax(1, keepdim=True) / 127
    else:
        lo, hi = w.view(shape[0], -1, group_size).aminmax(dim=-1)
        step = ((hi - lo) / 15).repeat_interleave(group_size, 1)
    assert ((deq - w).abs() <= step * 0.501 + 1e-7).all()
    fast = QuantLinear.from_float(w, bits=bits, group_size=group_size or 32)  # bfloat16 scales and activations
    assert (fast.dequantize() - deq).abs().max() <= 2 ** -7 * w.abs().max()
    for layer, tol in [(exact, 1e-5), (fast, 2e-2)]:
        y, want = layer(x), x @ layer.dequantize().T
        assert y.shape == (3, 5, shape[0]) and y.dtype == x.dtype
        assert (y - want).abs().max() <= tol * want.abs().max()


@pytest.mark.parametrize("qtype", ["Q4_0", "Q4_1", "Q8_0"])
@pytest.mark.parametrize("shape", [(64, 96), (4160, 64)])  # the second spans several conversion slices
def test_gguf_blocks_convert_exactly(qtype, shape):
    w = _weight(*shape, seed=1)
    blocks = _gguf_blocks(w, qtype)
    want = _gguf_values(blocks, qtype, shape)
    layer = QuantLinear.from_gguf(blocks, qtype, shape, dtype=torch.float32)
    assert torch.equal(layer.dequantize(), want)
    x = torch.randn(4, shape[1])
    assert (layer(x) - x @ want.T).abs().max() <= 1e-5 * (x @ want.T).abs().max()
    fast = QuantLinear.from_gguf(blocks, qtype, shape)  # bfloat16 scales: rounded, not requantized
    assert (fast.dequantize() - want).abs().max() <= 2 ** -7 * want.abs().max()


def test_gguf_other_types_are_requantized():
    w = _weight(64, 256, seed=2)
    blocks = _gguf_blocks(w, "F16")
    layer = QuantLinear.from_gguf(blocks, "F16", (64, 256), bits=8, dtype=torch.float32)
    assert layer.bits == 8
    assert (layer.dequantize() - w).abs().max() <= w.abs().max() / 127


@pytest.mark.parametrize("qtype", ["Q8_0", "Q4_1"])
def test_gguf_exact_types_requantized_to_int8_when_asked(qtype):
    """``exact=False`` (the GGUF head): per-row int8 of the stored values, built a slice of rows at
    a time and equal to quantizing the whole dequantized weight at once."""
    shape = (2100, 64)  # spans three conversion slices
    blocks = _gguf_blocks(_weight(*shape, seed=3), qtype)
    want = _gguf_values(blocks, qtype, shape)
    layer = QuantLinear.from_gguf(blocks, qtype, shape, bits=8, exact=False, dtype=torch.float32)
    whole = QuantLinear.from_float(want, bits=8, dtype=torch.float32)
    assert layer.bits == 8 and torch.equal(layer.weight, whole.weight) and torch.equal(layer.scales, whole.scales)
    assert ((layer.dequantize() - want).abs().amax(1) <= want.abs().amax(1) / 254 + 1e-7).all()  # half a step


def test_gguf_bad_input():
    blocks = _gguf_blocks(_weight(64, 96), "Q4_1")
    with pytest.raises(WeightsError, match="bytes per row"):
        QuantLinear.from_gguf(blocks, "Q4_1", (64, 128))
    with pytest.raises(WeightsError, match="Q9_9"):
        QuantLinear.from_gguf(blocks, "Q9_9", (64, 96))
    with pytest.raises(ValueError, match="bits"):
        QuantLinear.from_float(_weight(64, 64), bits=3)
    with pytest.raises(ValueError, match="group_size"):
        QuantLinear.from_float(_weight(64, 48), bits=4, group_size=32)
    with pytest.raises(ValueError, match="divisible by 16"):
        QuantLinear.from_float(_weight(40, 64), bits=4)


def test_embedding_rows_are_exact():
    w = _weight(100, 64, seed=3)
    blocks = _gguf_blocks(w, "Q8_0")
    want = _gguf_values(blocks, "Q8_0", w.shape)
    table = QuantEmbedding.from_gguf(blocks, "Q8_0", w.shape)
    ids = torch.tensor([[0, 5, 99], [7, 7, 1]])
    assert torch.equal(table(ids), want[ids])
    requantized = QuantEmbedding.from_float(w)  # Q8_0 made here: half a step from the floats
    assert (requantized(ids) - w[ids]).abs().max() <= w.abs().max() / 254 * 1.01
    other = QuantEmbedding.from_gguf(_gguf_blocks(w, "F16"), "F16", w.shape)
    assert (other(ids) - w[ids]).abs().max() <= w.abs().max() / 254 * 1.01


def test_fused_layers_give_the_same_outputs_without_a_second_copy():
    layers = [QuantLinear.from_float(_weight(n, 128, seed=n), bits=4) for n in (128, 64, 64)]
    x = torch.randn(2, 128)
    want = [m(x) for m in layers]
    got = fused_forward(x, *layers)
    assert all(torch.equal(a, b) for a, b in zip(got, want))
    joined = layers[0].__dict__["_fused"][1]
    assert all(m.weight.untyped_storage().data_ptr() == joined.weight.untyped_storage().data_ptr() for m in layers)
    assert all(torch.equal(m(x), w) for m, w in zip(layers, want))  # each layer alone still works
    odd = [QuantLinear.from_float(_weight(n, 128), bits=4) for n in (128, 48)]  # 48 rows: not whole tiles
    assert fuse(*odd) is None
    assert all(torch.equal(a, m(x)) for a, m in zip(fused_forward(x, *odd), odd))


def _tiny_llama(tmp_path):
    transformers = pytest.importorskip("transformers")
    import peluk.models as pm

    torch.manual_seed(0)
    config = transformers.LlamaConfig(vocab_size=256, hidden_size=128, intermediate_size=256, num_hidden_layers=2,
                                      num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=64,
                                      tie_word_embeddings=True, bos_token_id=1, eos_token_id=2, pad_token_id=0)
    transformers.AutoModelForCausalLM.from_config(config).save_pretrained(tmp_path)
    return lambda: pm.AutoModelForCausalLM.from_pretrained(tmp_path)


@pytest.mark.parametrize("bits,lm_head,tol", [(8, 8, 0.03), (4, 8, 0.15), (4, 4, 0.2)])
def test_tiny_llama_logits_stay_close(tmp_path, bits, lm_head, tol):
    load = _tiny_llama(tmp_path)
    ref, model = load(), load()
    quantize_linears(model, bits=bits, lm_head=lm_head)
    assert not any(isinstance(m, nn.Linear) for m in model.modules())
    ids = torch.randint(3, 256, (2, 16), generator=torch.Generator().manual_seed(4))
    with torch.no_grad():
        want, got = ref(ids).logits, model(ids).logits
        cache = model.make_cache(2, 20)
        step = model(ids, cache=cache).logits[:, -1]  # prefill, then one cached decode step
        step = model(ids[:, -1:], cache=cache).logits[:, -1]
        full = model(torch.cat([ids, ids[:, -1:]], 1)).logits[:, -1]
    assert (got - want).abs().max() <= tol * want.abs().max()
    assert (step - full).abs().max() <= 1e-3 * full.abs().max()


def test_quantize_linears_from_gguf_blocks(tmp_path):
    load = _tiny_llama(tmp_path)
    model = load()
    raw = {}
    for name, module in model.named_modules():
        if isinstance(module, nn.Linear):
            w = module.weight.detach()
            raw[f"{name}.weight"] = SimpleNamespace(data=_gguf_blocks(w, "Q4_1"), qtype="Q4_1",
                                                    shape=tuple(w.shape), transposed=False)
    ref = {name: _gguf_values(r.data, "Q4_1", r.shape) for name, r in raw.items()}
    quantize_linears(model, lm_head=None, gguf_tensors=raw, dtype=torch.float32)
    q_proj = model.model.layers[0].self_attn.q_proj
    assert isinstance(q_proj, QuantLinear)
    assert torch.equal(q_proj.dequantize(), ref["model.layers.0.self_attn.q_proj.weight"])
    assert isinstance(model.lm_head, nn.Linear)  # lm_head=None keeps the output projection as it was


@pytest.mark.parametrize("dtype,tol", [(torch.float32, 1e-5), (torch.bfloat16, 2e-3)])
def test_tiny_llama_lean_decode_step_equals_forward(tmp_path, dtype, tol):
    """Llama's lean decode step on quantized layers (q/k/v and gate/up joined into one int4 call,
    an int8 head) gives the logits of forward on the same model, with left padding."""
    import pickle

    model = _tiny_llama(tmp_path)()
    quantize_linears(model, bits=4, lm_head=8, dtype=dtype)
    ids = torch.randint(3, 256, (2, 10), generator=torch.Generator().manual_seed(5))
    mask = torch.ones_like(ids)
    mask[1, :3] = 0
    positions = (mask.cumsum(-1) - 1).clamp(min=0)
    with torch.no_grad():
        lean, ref = model.make_cache(2, 12), model.make_cache(2, 12)
        for cache in (lean, ref):
            model(ids[:, :6], attention_mask=mask[:, :6], position_ids=positions[:, :6], cache=cache)
        for t in range(6, 10):
            args = dict(attention_mask=mask[:, :t + 1], position_ids=positions[:, t:t + 1])
            got = model.decode_step(ids[:, t:t + 1], cache=lean, **args).logits
            want = model(ids[:, t:t + 1], cache=ref, **args).logits
            assert (got - want).abs().max() <= tol * want.abs().max()
    assert model._lean
    greedy = model.generate(ids, mask, max_new_tokens=8, pad_token_id=0)
    if dtype == torch.float32:  # bfloat16 rounding may flip a near tie; float32 does not here
        model.decode_step = model.forward  # the module path
        assert torch.equal(greedy, model.generate(ids, mask, max_new_tokens=8, pad_token_id=0))
        del model.decode_step
    copied = pickle.loads(pickle.dumps(model))  # the plan (functions) is left behind and made again
    assert copied._lean is None
    assert torch.equal(copied.generate(ids, mask, max_new_tokens=8, pad_token_id=0), greedy)
