"""HTML views are standalone (no network references), heat maps have the expected size."""

from __future__ import annotations

import json
import re

import numpy as np
import pytest

import peluk.viz as viz
from peluk.viz.render import renderer_js, standalone_html


def _view(L=2, H=3, T=5, S=None, kind="encoder", seed=0):
    S = S or T
    rng = np.random.default_rng(seed)
    a = rng.random((L, H, T, S)).astype(np.float32)
    a /= a.sum(-1, keepdims=True)
    tokens = {"source": [f"w{i}" for i in range(S)]}
    if kind != "encoder":
        tokens["target"] = [f"y{i}" for i in range(T)]
    return viz.AttentionView(tokens=tokens, attentions={kind: a}, model_type="bert")


def test_html_is_standalone(tmp_path):
    view = _view()
    view.tokens["source"][1] = "</script><script>alert(1)</script>"
    page = view.save(tmp_path / "v.html").read_text(encoding="utf-8")
    assert page.startswith("<!DOCTYPE html>")
    assert not re.search(r"https?://", page)  # no CDN, no external resource
    assert not re.search(r"<(link|img|iframe)\b|\bsrc=", page)
    assert page.count("</script>") == 2  # a token cannot close the script early
    assert "PelukAttention.render" in page and renderer_js() in page.replace("<\\/script", "</script")
    data = page.split('id="peluk-attention-data">', 1)[1].split("</script>", 1)[0]
    back = viz.AttentionView.from_dict(json.loads(data))
    assert back.tokens == view.tokens
    assert np.abs(back.attentions["encoder"] - view.attentions["encoder"]).max() < 1e-3


def test_notebook_repr_is_self_contained():
    a, b = _view()._repr_html_(), _view()._repr_html_()
    assert "<script>" in a and "PelukAttention" in a and not re.search(r"https?://", a)
    ids = re.findall(r'<div id="([^"]+)"', a) + re.findall(r'<div id="([^"]+)"', b)
    assert len(set(ids)) == 2  # two outputs in one notebook do not collide


def test_renderer_has_both_languages():
    js = renderer_js()
    for word in ("Head view", "Tampilan head", "Model view", "Tampilan model", "navigator.language"):
        assert word in js
    assert not re.search(r"https?://", js)


@pytest.mark.parametrize("precision", ["float16", "float32", "uint8", "auto"])
@pytest.mark.parametrize("compress", [None, True])
def test_precisions_round_trip(precision, compress):
    view = _view(L=2, H=2, T=9, seed=3)
    a = view.attentions["encoder"]
    back = viz.AttentionView.from_json(view.to_json(precision, compress)).attentions["encoder"]
    tol = {"float16": 1e-3, "float32": 0, "uint8": 4e-3, "auto": 1e-3}[precision]
    assert back.shape == a.shape and np.abs(back - a).max() <= tol


def test_large_view_is_compact():
    """12 x 12 heads on 512 tokens (38M values): "auto" picks deflated uint8 for HTML."""
    L, H, T = 12, 12, 512
    a = np.zeros((L, H, T, T), dtype=np.float32)  # realistic: most of the mass on a few keys
    rng = np.random.default_rng(1)
    idx = rng.integers(0, T, size=(L, H, T, 4))
    np.put_along_axis(a, idx, rng.random((L, H, T, 4)).astype(np.float32), axis=-1)
    a += 1e-4
    a /= a.sum(-1, keepdims=True)
    view = viz.AttentionView(tokens={"source": [f"w{i}" for i in range(T)]}, attentions={"encoder": a})
    entry = view.to_dict("auto")["attentions"]["encoder"]
    assert entry["dtype"] == "uint8" and entry["compression"] == "deflate"
    print(f"\n12x12x512x512: {len(entry['data']) / 1e6:.1f} MB in HTML (float16 would be {a.size * 2 * 4 / 3 / 1e6:.0f} MB)")
    assert len(entry["data"]) < a.size / 4


@pytest.mark.parametrize("suffix", ["png", "svg"])
def test_heatmap_file(tmp_path, suffix):
    pytest.importorskip("matplotlib")
    view = _view(T=6, S=8, kind="cross")
    path = tmp_path / f"map.{suffix}"
    fig = view.heatmap(layer=1, head=None, path=path, dpi=100)
    assert path.stat().st_size > 0
    w, h = fig.get_size_inches()
    assert (round(w, 2), round(h, 2)) == (round(max(4.0, 1.6 + 0.28 * 8), 2), round(max(3.0, 1.4 + 0.28 * 6), 2))
    if suffix == "png":
        from matplotlib.image import imread

        img = imread(path)
        assert img.shape[:2] == (round(h * 100), round(w * 100))
    else:
        svg = path.read_text()
        assert "<svg" in svg and "y5" in svg and "w7" in svg  # token labels drawn as text
    labels = [t.get_text() for t in fig.axes[0].get_xticklabels()]
    assert labels == view.tokens["source"]
    assert [t.get_text() for t in fig.axes[0].get_yticklabels()] == view.tokens["target"]
    # mean over heads is what is drawn
    assert np.allclose(fig.axes[0].images[0].get_array(), view.attentions["cross"][1].mean(0))


def test_save_dispatch(tmp_path):
    view = _view()
    with pytest.raises(ValueError):
        view.save(tmp_path / "x.txt")
    assert standalone_html(view).count("<html>") == 1


def _node_report(tmp_path, view, lang="en", precision="float16"):
    import shutil
    import subprocess
    from pathlib import Path

    node = shutil.which("node")
    if node is None:
        pytest.skip("node is not installed")
    data = tmp_path / "data.json"
    data.write_text(view.to_json(precision), encoding="utf-8")
    js = Path(viz.__file__).with_name("static") / "attention.js"
    stub = Path(__file__).with_name("dom_stub.js")
    out = subprocess.run([node, str(stub), str(js), str(data), lang], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    return json.loads(out.stdout)


def test_renderer_runs_and_reacts_to_clicks(tmp_path):
    """The JS (run by node against a stub DOM; no browser here) renders every view; clicking a
    model-view thumbnail opens that layer and head in the head view; the language switch works."""
    view = _view(L=2, H=3, T=5, S=7, kind="cross")
    r = _node_report(tmp_path, view, lang="en-GB")
    np.testing.assert_allclose(r["first_row"], view.attentions["cross"][0, 0, 0], atol=1e-3)  # float16 decoded
    assert r["lang"] == "en" and r["view0"] == "head" and r["lines"] > 0
    assert r["view1"] == "model" and r["thumbs"] == 2 * 3
    assert (r["view2"], r["layer2"], r["heads2"]) == ("head", 1, [2])
    assert r["heads3"] == [0, 2] and r["swatch0"] == "pa-swatch on"
    assert r["heads4"] == [1] and r["redrawn"]
    assert r["view3"] == "heat" and r["heat_rects"] == 5 * 7 * 1
    assert r["lang2"] == "id" and "arahkan kursor" in r["hint"].lower()


def test_neuron_view_renders_and_picks_a_query(tmp_path):
    """With queries and keys in the data, a neuron tab appears; clicking a query token redraws
    the view for it (one row of cells per key: k and q × k, D cells each, plus the weight bar)."""
    view = _view(L=2, H=3, T=5, S=7, kind="cross")
    rng = np.random.default_rng(1)
    view.neurons = {"cross": {"queries": rng.standard_normal((2, 3, 5, 4)).astype(np.float32),
                              "keys": rng.standard_normal((2, 3, 7, 4)).astype(np.float32), "scale": 0.5}}
    r = _node_report(tmp_path, view)
    assert r["view5"] == "neuron" and r["neuron_queries"] == 5 and r["neuron_query"] == 4
    assert r["neuron_rects"] == 4 + 7 * (2 * 4 + 1)  # q's cells, then per key k, q × k and the weight bar
    assert "neuron_queries" not in _node_report(tmp_path, _view())  # no queries/keys: no neuron tab


def test_renderer_large_input(tmp_path):
    """12 layers x 12 heads x 512 tokens renders (timings printed, not asserted)."""
    view = _view(L=12, H=12, T=512, seed=2)
    r = _node_report(tmp_path, view, lang="id-ID", precision="auto")  # deflated uint8, inflated by the JS
    np.testing.assert_allclose(r["first_row"], view.attentions["encoder"][0, 0, 0], atol=4e-3)
    print(f"\n512 tokens, 12x12: head view {r['head_ms']} ms, model view {r['model_ms']} ms (node, stub canvas)")
    assert r["thumbs"] == 144 and r["lang"] == "id"  # chosen from navigator.language
