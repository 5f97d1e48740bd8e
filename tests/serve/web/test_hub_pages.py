"""The hub's pages in Chromium: lists with search and filters, a repository's card, files, viewer
and history, login with a token, the language switch; and (over HTTP) that the API, git and
/resolve/ routes still answer as before."""

from __future__ import annotations

import httpx2 as httpx
import pytest

from tests.serve.web.conftest import commit


def test_model_list_search_and_filters(open_page):
    p = open_page()
    page = p.goto("/models")
    results = page.locator("[data-role=results] .repo-id")
    assert {"alice/tiny-sentiment", "alice/gated-model"} <= set(results.all_inner_texts())
    assert "alice/secret-model" not in results.all_inner_texts()  # private: not for anonymous visitors
    page.fill(".filter-search input[name=search]", "tiny-sent")
    page.press(".filter-search input[name=search]", "Enter")
    page.wait_for_url("**/models?*search=tiny-sent*")
    assert results.all_inner_texts() == ["alice/tiny-sentiment"]
    page.goto(p.server.url + "/models")
    page.locator("[data-facet=pipeline_tag] .chip", has_text="text-classification").click()
    page.wait_for_url("**pipeline_tag=text-classification*")
    assert results.all_inner_texts() == ["alice/tiny-sentiment"]
    assert page.locator("[data-facet=pipeline_tag] .chip.on").count() == 1
    page.locator("[data-facet=language] .chip", has_text="id").first.click()  # a second filter (card language)
    page.wait_for_url("**language=id*")
    assert results.all_inner_texts() == ["alice/tiny-sentiment"]
    p.shot("models-filtered")
    page.click("a.clear")
    assert len(results.all_inner_texts()) >= 2
    p.goto("/datasets").wait_for_selector("text=alice/reviews")
    p.goto("/").wait_for_selector("[data-role=recent-models] >> text=alice/tiny-sentiment")
    p.shot("home")


def test_repository_card_files_viewer_history(open_page):
    p = open_page()
    page = p.goto("/alice/tiny-sentiment")
    card = page.locator("[data-role=card]")
    assert card.locator("h1").inner_text() == "Tiny sentiment"
    assert card.locator("table td").first.inner_text() == "test"  # Markdown tables
    link = card.locator("a", has_text="the config").get_attribute("href")
    assert link == "/alice/tiny-sentiment/blob/main/config.json"  # relative links point into the repository
    assert "license: apache-2.0" not in card.inner_text()  # the YAML front matter is not part of the card
    assert page.locator(".tags .chip.task").inner_text() == "text-classification"
    p.shot("repo-card")

    page.click("[data-tab=files]")
    page.wait_for_url("**/alice/tiny-sentiment/tree/main")
    row = page.locator("tr.file[data-path='model.safetensors']")
    assert row.locator(".badge.lfs").inner_text() == "LFS"  # *.safetensors is stored through LFS
    assert int(row.locator("[data-size]").get_attribute("data-size")) > 1000
    download = row.locator("a.download").get_attribute("href")
    assert download == "/alice/tiny-sentiment/resolve/main/model.safetensors?download=true"
    config = page.locator("tr.file[data-path='config.json']")
    assert config.locator(".badge.lfs").count() == 0 and "Bytes" in config.locator("[data-size]").inner_text()
    page.locator("tr.dir a", has_text="notes").click()
    page.wait_for_url("**/tree/main/notes")
    p.shot("repo-files")
    page.locator("tr.file a", has_text="todo.txt").click()
    page.wait_for_url("**/blob/main/notes/todo.txt")
    viewer = page.locator("[data-role=viewer] pre.code")
    assert viewer.inner_text().strip() == "1 < 2 & <b>not bold</b>"  # shown as text, escaped
    assert viewer.locator("b").count() == 0
    p.shot("repo-blob")
    page.goto(p.server.url + "/alice/tiny-sentiment/blob/main/model.safetensors")
    assert page.locator(".file-info").get_attribute("data-reason") == "lfs_file"
    assert page.locator(".file-info .sha").inner_text().__len__() == 64

    page.click("[data-tab=commits]")
    commits = page.locator("[data-role=commits] li .title")
    assert commits.all_inner_texts() == ["notes", "add the model", "initial commit"]
    p.shot("repo-commits")
    page.goto(p.server.url + "/alice/tiny-sentiment/tree/main")
    page.click("[data-role=refs] summary")
    page.locator("[data-role=refs] a", has_text="v1").click()
    page.wait_for_url("**/tree/v1")
    page.goto(p.server.url + "/alice/tiny-sentiment/refs")
    assert "main" in page.locator("ul.refs").first.inner_text()
    p.goto("/alice/no-such-model", status=404).wait_for_selector("[data-role=error]")
    p.goto("/alice/tiny-sentiment/tree/no-such-branch", status=404)


def test_card_script_injection_is_neutralised(open_page):
    p = open_page()
    page = p.goto("/alice/tiny-sentiment")
    card = page.locator("[data-role=card]")
    assert "<script>window.__pwned = 1</script>" in card.inner_text()  # shown as text
    assert card.locator("script, img[onerror]").count() == 0
    assert card.locator("a", has_text="click me").count() == 0  # javascript: links are not made links
    page.wait_for_timeout(100)
    assert page.evaluate("window.__pwned") is None


def test_login_shows_private_repos_and_logout_hides_them(open_page, web):
    p = open_page()
    p.goto("/alice/secret-model", status=404)
    page = p.goto("/login")
    page.fill("input[name=token]", "hf_not_a_real_token_at_all_000000000")
    page.click("form.stack button[type=submit]")
    assert page.locator("[data-role=login-error]").is_visible()
    page.fill("input[name=token]", web.alice)
    page.click("form.stack button[type=submit]")
    page.wait_for_url(web.url + "/")
    assert page.locator("header .who").inner_text() == "alice"
    cookie = next(c for c in p.context.cookies() if c["name"] == "peluk_token")
    assert cookie["httpOnly"] and cookie["sameSite"] == "Lax" and cookie["value"] == web.alice
    assert page.evaluate("document.cookie").find("peluk_token") == -1  # scripts cannot read it
    p.goto("/alice/secret-model").wait_for_selector("text=Secret")
    p.goto("/models?search=secret")
    assert page.locator("[data-role=results] .repo-id").all_inner_texts() == ["alice/secret-model"]
    p.shot("logged-in-private")
    page.click("header form.account button")
    page.wait_for_url("**/models?search=secret")
    assert page.locator("header a.account").is_visible()
    assert page.locator("[data-role=results] .repo-id").count() == 0
    p.goto("/alice/secret-model", status=404)


def test_language_switch(open_page):
    p = open_page(locale="id-ID")  # Accept-Language: id-ID
    page = p.goto("/models")
    assert page.locator("nav.main a").first.inner_text() == "Model"
    assert page.locator("html").get_attribute("lang") == "id"
    page.locator("[data-role=lang-switch] a", has_text="EN").click()
    page.wait_for_url("**lang=en")
    assert page.locator("nav.main a").nth(1).inner_text() == "Datasets"
    p.goto("/alice/tiny-sentiment")  # the choice is kept in a cookie
    assert page.locator("[data-tab=files]").inner_text() == "Files and versions"
    page.locator("[data-role=lang-switch] a", has_text="ID").click()
    page.wait_for_selector("[data-tab=files] >> text=Berkas dan versi")
    assert page.locator(".tabs a").first.inner_text() == "Kartu model"
    p.shot("repo-indonesian")


def test_hub_serve_alone_has_pages_but_no_widgets(open_page, server):
    admin = server.hub.user_for_token(server.admin)
    commit(server.hub, admin, "model", "admin/web-plain", {"README.md": b"---\npipeline_tag: fill-mask\n---\n# Plain\n",
                                                           "config.json": b'{"model_type": "bert"}'}, "add")
    p = open_page(server=server)
    page = p.goto("/admin/web-plain")
    assert page.locator("[data-role=card] h1").inner_text() == "Plain"
    assert page.locator("[data-widget]").count() == 0 and page.locator("[data-tab=explore]").count() == 0
    assert page.locator("nav.main a", has_text="Playground").count() == 0
    p.goto("/playground", status=404)
    p.shot("hub-only-repo")


def test_api_git_and_resolve_routes_are_unchanged(web):
    url, auth = web.url, {"Authorization": f"Bearer {web.alice}"}
    models = httpx.get(f"{url}/api/models", params={"search": "tiny-sentiment"}).json()
    assert [m["id"] for m in models] == ["alice/tiny-sentiment"]
    assert httpx.get(f"{url}/api/unknown").json()["error"]  # JSON 404s for API paths, not pages
    assert httpx.get(f"{url}/alice/tiny-sentiment/resolve/main/notes/todo.txt").content.startswith(b"1 < 2")
    refs = httpx.get(f"{url}/alice/tiny-sentiment/info/refs", params={"service": "git-upload-pack"})
    assert refs.status_code == 200 and refs.headers["content-type"].startswith("application/x-git-upload-pack")
    assert httpx.get(f"{url}/alice/secret-model/resolve/main/README.md").status_code in (401, 404)
    assert httpx.post(f"{url}/alice/tiny-sentiment").status_code == 405  # pages answer GET (and HEAD) only
    page = httpx.get(f"{url}/alice/tiny-sentiment")
    assert page.headers["content-type"].startswith("text/html") and "script-src 'self'" in page.headers[
        "content-security-policy"]
    # gated: the card is shown, the files are for the owner only, as /resolve/ decides
    assert httpx.get(f"{url}/alice/gated-model").status_code == 200
    assert httpx.get(f"{url}/alice/gated-model/blob/main/w.txt").status_code == 403
    assert httpx.get(f"{url}/alice/gated-model/resolve/main/w.txt").status_code == 403
    assert httpx.get(f"{url}/alice/gated-model/blob/main/w.txt", headers=auth).status_code == 200
    assert httpx.post(f"{url}/login", data={"token": web.alice}, headers={"Origin": "http://evil.example"}
                      ).status_code == 403
    assert httpx.get(f"{url}/login", params={"next": "//evil.example"}).text.count('value="/"') == 1


@pytest.mark.parametrize("path", ["", "/tree/main", "/blob/main/train.csv", "/commits/main", "/refs"])
def test_dataset_pages(web, path):
    r = httpx.get(web.url + "/datasets/alice/reviews" + path)
    assert r.status_code == 200 and "alice/reviews" in r.text
