"""The inference widgets of model pages and the playground, in Chromium against ``peluk serve``."""

from __future__ import annotations

from tests.serve.api.conftest import MINILM


def compute(page, button: str = "Compute"):
    page.locator("[data-widget] button[type=submit]", has_text=button).click()
    page.wait_for_selector("[data-widget][data-state=done], [data-widget][data-state=error]")
    assert page.locator("[data-widget]").get_attribute("data-state") == "done", \
        page.locator("[data-widget] [data-role=output]").inner_text()


def test_sentiment_widget_on_a_hub_repository(open_page):
    p = open_page()
    page = p.goto("/alice/tiny-sentiment")  # a hub repository: the registry serves its files at main
    assert page.locator("[data-widget]").get_attribute("data-widget") == "classify"
    page.fill("[data-widget] textarea[name=text]", "What a wonderful film!")
    compute(page)
    labels = page.locator("[data-role=output] .bars .label").all_inner_texts()
    assert sorted(labels) == ["NEGATIVE", "POSITIVE"]
    scores = [float(s) for s in page.locator("[data-role=output] .bars .score").all_inner_texts()]
    assert abs(sum(scores) - 1) < 0.01 and scores == sorted(scores, reverse=True)
    p.shot("widget-sentiment")


def test_chat_widget_streams(open_page):
    p = open_page()
    page = p.goto("/tiny/llama")  # served from local files (--models tiny/llama=DIR): card-less page, widget
    assert page.locator("[data-widget]").get_attribute("data-widget") == "chat"
    # count the updates of the answer as they arrive: a streamed answer changes many times
    page.evaluate("""() => {
        window.__updates = 0;
        new MutationObserver(() => window.__updates++).observe(document.querySelector('[data-role=chat-log]'),
                                                              {subtree: true, childList: true, characterData: true});
    }""")
    page.fill("[data-widget] textarea[name=text]", "Hello there")
    compute(page, "Send")
    assert page.locator(".msg.user").inner_text() == "Hello there"
    answer = page.locator(".msg.assistant").inner_text()
    assert answer.strip() and page.evaluate("window.__updates") >= 4
    page.fill("[data-widget] textarea[name=text]", "And again")  # the history goes with the next turn
    compute(page, "Send")
    assert page.locator(".msg.user").count() == 2 and page.locator(".msg.assistant").count() == 2
    p.shot("widget-chat")


def test_similarity_widget(open_page):
    p = open_page()
    page = p.goto(f"/{MINILM}")
    assert page.locator("[data-widget]").get_attribute("data-widget") == "similarity"
    assert page.locator("[data-role=card] h1").count() >= 1  # the packaged model's own README
    compute(page)
    rows = page.locator("[data-role=output] .bars li")
    assert rows.count() == 3
    scores = dict(zip(rows.locator(".label").all_inner_texts(),
                      map(float, rows.locator(".score").all_inner_texts())))
    assert max(scores, key=scores.get) == "That is a very happy person"
    assert scores["That is a very happy person"] > 0.8 > scores["Today is a sunny day"]
    p.shot("widget-similarity")


def test_playground_lists_served_models(open_page):
    p = open_page()
    page = p.goto("/playground")
    rows = page.locator("[data-role=served] tr[data-model]")
    served = {r.get_attribute("data-model"): r.locator(".chip").all_inner_texts() for r in rows.all()}
    assert served["tiny/sentiment"] == ["text-classification"] and served["tiny/llama"] == ["text-generation"]
    assert served[MINILM][0] in ("feature-extraction", "sentence-similarity")
    assert served["alice/tiny-sentiment"] == ["text-classification"]  # a hub repository: its card's task
    assert "alice/secret-model" not in served
    p.shot("playground")
    page.locator("[data-role=served] a", has_text="tiny/ner").click()
    page.wait_for_selector("[data-widget=ner]")
    compute(page)
    assert "Sarah" in page.locator("[data-role=output] .entities").inner_text()
