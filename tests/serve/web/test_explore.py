"""The Explore tab (peluk/viz's renderer in a model page), its JSON route, and a render of a
12-layer × 12-head model's attention on 512 tokens timed in Chromium (reported, not asserted)."""

from __future__ import annotations

import httpx2 as httpx
import numpy as np

from peluk.viz import AttentionView


def run(page, text: str | None = None, timeout: float = 30_000):
    if text is not None:
        page.fill("[data-role=explore-form] textarea[name=text]", text)
    page.click("[data-role=explore-form] button[type=submit]")
    page.wait_for_selector("[data-role=explore][data-state=done], [data-role=explore][data-state=error]",
                           timeout=timeout)
    assert page.locator("[data-role=explore]").get_attribute("data-state") == "done", \
        page.locator("[data-role=status]").inner_text()


def test_explore_tab_head_and_model_views(open_page):
    p = open_page()
    page = p.goto("/alice/tiny-sentiment")
    page.click("[data-tab=explore]")
    page.wait_for_url("**/alice/tiny-sentiment/explore")
    page.fill("[data-role=explore-form] input[name=text_pair]", "It was tired.")
    run(page, "The cat sat on the mat.")
    view = page.locator(".peluk-attention")
    assert view.get_attribute("data-view") == "head" and view.get_attribute("data-lang") == "en"
    assert page.locator("canvas[data-role=head-view]").count() == 1
    swatch = page.locator(".pa-swatch[data-head='1']")
    assert "on" in swatch.get_attribute("class").split()
    swatch.click()  # a head toggled off: the swatch, and the drawing, change
    assert "on" not in swatch.get_attribute("class").split()
    p.shot("explore-head-view")
    page.locator(".pa-tabs button[data-view=model]").click()
    assert view.get_attribute("data-view") == "model"
    thumbs = page.locator("[data-role=model-view] .pa-thumb")
    assert thumbs.count() == 3 * 4  # the tiny BERT: 3 layers × 4 heads
    p.shot("explore-model-view")
    page.locator(".pa-thumb[data-layer='2'][data-head='3']").click()  # opens that head in the head view
    assert view.get_attribute("data-view") == "head" and view.get_attribute("data-layer") == "2"
    on = [s.get_attribute("data-head") for s in page.locator(".pa-swatch.on").all()]
    assert on == ["3"]
    page.locator(".pa-tabs button[data-view=heat]").click()
    assert page.locator("canvas[data-role=heat-map]").count() == 1


def test_explore_neuron_view(open_page):
    p = open_page()
    page = p.goto("/tiny/llama/explore")
    page.check("[data-role=explore-form] input[name=neurons]")
    run(page, "Hello there, world")
    page.locator(".pa-tabs button[data-view=neuron]").click()
    assert page.locator(".peluk-attention").get_attribute("data-view") == "neuron"
    queries = page.locator("[data-role=neuron-query]")
    assert queries.count() >= 3
    queries.nth(2).click()  # another query token: the view is drawn for it
    assert page.locator("[data-role=neuron-view]").get_attribute("data-query") == "2"
    assert page.locator("canvas[data-role=neuron-canvas]").count() == 1
    p.shot("explore-neuron-view")


def test_explore_in_indonesian(open_page):
    p = open_page(locale="id-ID")
    page = p.goto("/tiny/bart/explore")  # an encoder-decoder: encoder, decoder and cross-attention
    assert page.locator(".tabs a.on").inner_text() == "Jelajahi"
    assert page.locator("[data-role=explore] h2").inner_text() == "Jelajahi atensi setiap lapisan dan head"
    page.fill("[data-role=explore-form] input[name=target]", "Le chat")
    run(page, "The cat")
    assert page.locator(".pa-tabs button[data-view=head]").inner_text() == "Tampilan head"
    assert page.locator(".peluk-attention").get_attribute("data-lang") == "id"
    assert page.locator(".pa-bar select").first.locator("option").count() == 3  # encoder, decoder, cross
    assert "Digambar dalam" in page.locator("[data-role=status]").inner_text()
    p.shot("explore-indonesian")


def test_attention_route(web):
    url = f"{web.url}/models/tiny/sentiment/attention"
    r = httpx.post(url, json={"text": "The cat sat.", "text_pair": "It slept."})
    assert r.status_code == 200 and r.headers["content-type"] == "application/json"
    data = r.json()
    assert data["format"] == "peluk-attention/1" and data["name"] == "tiny/sentiment"
    view = AttentionView.from_dict(data)
    a = view.attentions["encoder"]
    assert a.shape[:2] == (3, 4) and a.shape[2] == a.shape[3] == len(view.tokens["source"])
    assert np.allclose(a.sum(-1), 1, atol=5e-3)  # every query's attention is a distribution
    assert view.tokens["source"][0] == "[CLS]" and view.meta["segments"][-1] == 1
    with_neurons = AttentionView.from_dict(httpx.post(url, json={"text": "The cat sat.", "neurons": True}).json())
    assert with_neurons.neurons["encoder"]["queries"].shape[:3] == with_neurons.attentions["encoder"].shape[:3]
    assert not view.neurons  # only when asked for
    llama = httpx.post(f"{web.url}/models/tiny/llama/attention", json={"text": "Hello world"}).json()
    causal = AttentionView.from_dict(llama).attentions["decoder"]
    assert np.allclose(causal.sum(-1), 1, atol=5e-3) and np.allclose(np.triu(causal[0, 0], 1), 0)
    for body, status in [({"text": ""}, 422), ({"text": "   "}, 422), ({}, 422), ({"text": "a", "extra": 1}, 422),
                         ({"text": "word " * 600}, 422), ({"text": "x" * 200_000}, 413),
                         ({"text": "hi", "target": "no"}, 422)]:
        r = httpx.post(url, json=body)
        assert r.status_code == status and r.json()["error"], (body, r.status_code, r.text[:200])
    assert httpx.post(f"{web.url}/models/tiny/llama/attention", json={"text": "a", "text_pair": "b"}).status_code == 422
    assert httpx.post(f"{web.url}/models/nobody/nothing/attention", json={"text": "hi"}).status_code == 404
    assert httpx.post(f"{web.url}/models/alice/secret-model/attention", json={"text": "hi"}).status_code == 404


def test_render_12_layers_12_heads_512_tokens(open_page, web):
    p = open_page()
    page = p.goto("/tiny/bert12/explore")
    vocabulary = "the cat sat on a mat and looked at every bird in this old garden".split()  # one token each
    words = " ".join(vocabulary[i % len(vocabulary)] for i in range(510))  # [CLS] + 510 + [SEP] = 512 tokens
    run(page, words, timeout=120_000)
    root = page.locator("[data-role=explore]")
    fetch_ms, render_ms = int(root.get_attribute("data-fetch-ms")), int(root.get_attribute("data-render-ms"))
    assert "512" in page.locator(".pa-hint").inner_text()
    model_ms = page.evaluate("""() => {
        const t = performance.now();
        document.querySelector('.pa-tabs button[data-view=model]').click();   // draws 144 thumbnails
        return performance.now() - t;
    }""")
    assert page.locator("[data-role=model-view] .pa-thumb").count() == 144
    p.shot("explore-12x12-512")
    print(f"\nExplore 12 layers x 12 heads x 512 tokens in Chromium: request + capture + transfer {fetch_ms} ms, "
          f"decode + head view {render_ms} ms, model view {model_ms:.0f} ms")
