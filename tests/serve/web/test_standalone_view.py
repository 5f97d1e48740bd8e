"""The standalone HTML that ``view.save("x.html")`` and ``peluk attention --out x.html`` write,
opened from disk in headless Chromium with every network request refused: it renders, clicking
a model-view thumbnail opens that head, a head swatch toggles, the neuron view follows a query."""

from __future__ import annotations

import numpy as np

import peluk.viz as viz
from tests.serve.web.conftest import ARTIFACTS


def _view() -> viz.AttentionView:
    rng = np.random.default_rng(0)
    a = rng.random((2, 3, 6, 6)).astype(np.float32)
    a /= a.sum(-1, keepdims=True)
    neurons = {"encoder": {"queries": rng.standard_normal((2, 3, 6, 8)).astype(np.float32),
                           "keys": rng.standard_normal((2, 3, 6, 8)).astype(np.float32), "scale": 8 ** -0.5}}
    return viz.AttentionView(tokens={"source": ["[CLS]", "saya", "seorang", "siswa", ".", "[SEP]"]},
                             attentions={"encoder": a}, model_type="bert", neurons=neurons)


def test_standalone_file_in_chromium(browser, tmp_path):
    path = _view().save(tmp_path / "view.html")
    context = browser.new_context(locale="en-US")
    outside = []

    def refuse(route):
        outside.append(route.request.url)
        route.abort()
    context.route("http*://**/*", refuse)
    page = context.new_page()
    try:
        page.goto(path.as_uri())
        page.wait_for_selector("canvas[data-role=head-view]")
        root = page.locator(".peluk-attention")
        assert root.get_attribute("data-view") == "head"
        page.locator(".pa-tabs button[data-view=model]").click()
        assert page.locator("[data-role=model-view] .pa-thumb").count() == 2 * 3
        page.locator(".pa-thumb[data-layer='1'][data-head='2']").click()
        assert root.get_attribute("data-view") == "head" and root.get_attribute("data-layer") == "1"
        assert [s.get_attribute("data-head") for s in page.locator(".pa-swatch.on").all()] == ["2"]
        page.locator(".pa-swatch[data-head='0']").click()
        assert [s.get_attribute("data-head") for s in page.locator(".pa-swatch.on").all()] == ["0", "2"]
        page.locator(".pa-tabs button[data-view=neuron]").click()
        page.locator("[data-role=neuron-query][data-index='3']").click()
        assert page.locator("[data-role=neuron-view]").get_attribute("data-query") == "3"
        ARTIFACTS.mkdir(parents=True, exist_ok=True)
        page.screenshot(path=str(ARTIFACTS / "standalone-neuron-view.png"), full_page=True)
    finally:
        context.close()
    assert outside == []
