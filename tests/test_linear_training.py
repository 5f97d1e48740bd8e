"""peluk's Linear in training: oneDNN backward equals F.linear's; weights changed by a fused
optimizer (no version bump) are seen by the packed inference path after model.eval()."""

from __future__ import annotations

import torch
import torch.nn.functional as F

from peluk.nn.linear import Linear


def test_training_gradients_equal_f_linear():
    torch.manual_seed(0)
    layer = Linear(16, 24)
    x = torch.randn(2, 5, 16, requires_grad=True)
    (layer(x) ** 2).sum().backward()
    got = [t.grad.clone() for t in (x, layer.weight, layer.bias)]
    for t in (x, layer.weight, layer.bias):
        t.grad = None
    (F.linear(x, layer.weight, layer.bias) ** 2).sum().backward()
    for g, t in zip(got, (x, layer.weight, layer.bias)):
        assert (g - t.grad).abs().max() <= 1e-5 * t.grad.abs().max()


def test_fused_optimizer_then_eval_sees_new_weights():
    torch.manual_seed(0)
    layer = Linear(8, 4)
    x = torch.randn(3, 8)
    with torch.no_grad():
        layer(x)  # packs the weight for inference
    opt = torch.optim.AdamW(layer.parameters(), lr=0.1, fused=True)
    layer.train()
    layer(x).sum().backward()
    opt.step()
    layer.eval()
    with torch.no_grad():
        assert torch.allclose(layer(x), F.linear(x, layer.weight, layer.bias), atol=1e-6)


def test_eval_on_an_eval_model_keeps_the_packed_copy():
    layer = Linear(8, 4).eval()
    with torch.no_grad():
        layer(torch.randn(2, 8))
    packed = layer.__dict__["_packed"]
    layer.eval()  # e.g. an attention capture on a served model: no repacking afterwards
    assert layer.__dict__["_packed"] is packed
