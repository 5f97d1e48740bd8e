"""Protection: hub tokens and private models, rate limits, bounded queues (429/503 with
Retry-After), request and input limits (413/422 with a message), bad input (4xx, never 5xx),
timeouts, cancelled work when clients go away, graceful shutdown."""

from __future__ import annotations

import asyncio
import threading
import time

import httpx2
import pytest
from huggingface_hub import HfApi, InferenceClient
from huggingface_hub.errors import RepositoryNotFoundError

from tests.serve.api.conftest import LLM, MINILM


def test_tokens_and_private_models(make_server, zoo, tmp_path):
    server = make_server(public=False)
    url = server.model("tiny/sentiment")
    anonymous = httpx2.post(url, json={"inputs": "hi"})
    assert anonymous.status_code == 401 and "token" in anonymous.json()["error"]
    assert httpx2.post(url, json={"inputs": "hi"}, headers={"authorization": "Bearer hf_bogus"}).status_code == 401
    alice, bob = server.token("alice", "write"), server.token("bob")
    assert httpx2.post(url, json={"inputs": "hi"}, headers={"authorization": f"Bearer {alice}"}).status_code == 200
    # a private repository of this hub: only its owner (and admins) may use it
    folder = tmp_path / "upload"
    folder.mkdir()
    for f in zoo["tiny/sentiment"].iterdir():
        (folder / f.name).write_bytes(f.read_bytes())
    (folder / "README.md").write_text("---\npipeline_tag: text-classification\n---\n# private sentiment\n")
    hf = HfApi(endpoint=server.url, token=alice)
    hf.create_repo("alice/secret-sentiment", private=True)
    hf.upload_folder(folder_path=folder, repo_id="alice/secret-sentiment")
    private = server.model("alice/secret-sentiment")
    read_token = server.token("alice")
    out = InferenceClient(model=private, token=read_token).text_classification("I love this!")
    assert {x.label for x in out} == {"POSITIVE", "NEGATIVE"}
    with pytest.raises(RepositoryNotFoundError):
        InferenceClient(model=private, token=bob).text_classification("I love this!")
    public = make_server(public=True)
    assert httpx2.post(public.model("tiny/sentiment"), json={"inputs": "hi"}).status_code == 200
    # OpenAI clients must send a key: on a public server one that is not a hub token is anonymous
    assert httpx2.post(f"{public.url}/v1/embeddings", json={"input": "hi"},
                       headers={"authorization": "Bearer EMPTY"}).status_code == 200
    assert httpx2.post(f"{public.url}/v1/embeddings", json={"input": "hi"},
                       headers={"authorization": "Bearer hf_unknown"}).status_code == 401
    assert httpx2.post(f"{server.url}/v1/embeddings", json={"input": "hi"},
                       headers={"authorization": "Bearer EMPTY"}).status_code == 401


def test_rate_limit(make_server):
    server = make_server(rate_limit_per_minute=60, rate_limit_burst=3)
    token = server.token("carol")
    headers = {"authorization": f"Bearer {token}"}
    statuses = [httpx2.post(server.model("tiny/sentiment"), json={"inputs": "x"}, headers=headers) for _ in range(5)]
    assert [r.status_code for r in statuses[:3]] == [200, 200, 200]
    limited = statuses[-1]
    assert limited.status_code == 429 and int(limited.headers["retry-after"]) >= 1
    assert "Rate limit" in limited.json()["error"]
    # another caller has its own bucket
    assert httpx2.post(server.model("tiny/sentiment"), json={"inputs": "x"}).status_code == 200


def test_flood_gets_429_or_503_with_retry_after(make_server):
    server = make_server(max_queue=2, max_concurrent=12, max_wait_ms=1)
    httpx2.post(server.model(MINILM), json={"inputs": "warm up"}, timeout=60)

    async def flood():
        limits = httpx2.Limits(max_connections=100)
        async with httpx2.AsyncClient(timeout=120, limits=limits) as client:
            return await asyncio.gather(*(client.post(server.model(MINILM), json={
                "inputs": f"flood {i} " * 20, "options": {"use_cache": False}}) for i in range(60)))
    responses = asyncio.run(flood())
    statuses = [r.status_code for r in responses]
    assert set(statuses) <= {200, 429, 503}, statuses
    refused = [r for r in responses if r.status_code in (429, 503)]
    assert refused and 200 in statuses, statuses
    assert all(int(r.headers["retry-after"]) >= 1 and r.json()["error_type"] == "overloaded" for r in refused)
    assert server.recorder.failures == [] or all(s == 503 for _, _, s in server.recorder.failures)


@pytest.mark.parametrize("path, body, status, fragment", [
    ("/models/tiny/sentiment", b'{"inputs": "unclosed', 400, "not valid JSON"),
    ("/v1/chat/completions", b"{nope", 400, "not valid JSON"),
    ("/models/tiny/sentiment", {"inputs": 5}, 422, "inputs must be a string"),
    ("/models/tiny/sentiment", {"inputs": ""}, 422, "empty"),
    ("/models/tiny/sentiment", {"inputs": []}, 422, "empty"),
    ("/models/tiny/sentiment", {"parameters": {}}, 422, "inputs"),
    ("/models/tiny/sentiment", {"inputs": "x", "parameters": {"top_k": "three"}}, 422, "top_k"),
    ("/models/tiny/sentiment", {"inputs": "x", "parameters": {"colour": "red"}}, 422, "unknown parameter"),
    ("/models/tiny/sentiment", {"inputs": "x", "parameters": []}, 422, "parameters"),
    ("/models/tiny/sentiment", {"inputs": "x" * 200_001}, 413, "characters"),
    ("/models/tiny/qa", {"inputs": {"question": "Who?"}}, 422, "context"),
    ("/models/tiny/nli", {"inputs": "x", "parameters": {"candidate_labels": []}}, 422, "candidate_labels"),
    ("/models/tiny/fill-mask", {"inputs": "no mask here"}, 422, "mask"),
    ("/models/tiny/ner", {"inputs": "x", "parameters": {"aggregation_strategy": "best"}}, 422, "aggregation"),
    ("/models/tiny/bart", {"inputs": "x", "parameters": {"max_new_tokens": 10_000}}, 422, "max_new_tokens"),
    ("/models/tiny/llama", {"inputs": "x", "parameters": {"max_new_tokens": -1}}, 422, "max_new_tokens"),
    ("/models/tiny/llama", {"inputs": "word " * 300, "parameters": {"max_new_tokens": 8}}, 422, "must be <="),
    ("/models/tiny/llama", {"inputs": "x", "parameters": {"grammar": {"type": "json", "value": {}}}}, 422, "grammar"),
    ("/models/tiny/llama", {"inputs": ["a"]}, 422, "prompt"),
    ("/models/tiny/sentiment?task=translation", {"inputs": "x"}, 422, "cannot run"),
    ("/models/tiny/sentiment?task=dancing", {"inputs": "x"}, 422, "unknown task"),
    ("/models/nobody/nothing", {"inputs": "x"}, 404, "not found"),
    ("/v1/chat/completions", {"messages": []}, 422, "messages"),
    ("/v1/chat/completions", {"messages": "hi"}, 422, "messages"),
    ("/v1/chat/completions", {"messages": [{"role": "user", "content": "x"}], "max_tokens": 0}, 422, "max_tokens"),
    ("/v1/chat/completions", {"messages": [{"role": "user", "content": "x"}], "temperature": "hot"}, 422,
     "temperature"),
    ("/v1/chat/completions", {"model": MINILM, "messages": [{"role": "user", "content": "x"}]}, 422,
     "not a text-generation"),
    ("/v1/chat/completions", {"messages": [{"role": "user", "content": "x"}], "tools": [{"type": "function"}]},
     422, "tools"),
    ("/v1/embeddings", {"input": []}, 422, "input"),
    ("/v1/embeddings", {"input": [1, 2, 3]}, 422, "token ids"),
    ("/v1/embeddings", {"input": "x", "encoding_format": "hex"}, 422, "encoding_format"),
    ("/embed", {"inputs": "word " * 600, "truncate": False}, 422, "tokens"),
    ("/generate", {"inputs": "x", "parameters": {"max_new_tokens": 100_000}}, 422, "limit"),
    ("/rerank", {"query": "x", "texts": []}, 422, "texts"),
    ("/predict?model=tiny/sentiment", {"inputs": [["a", "b", "c"]]}, 422, "text_pair"),
])
def test_bad_input_is_a_4xx_with_a_message(api_server, path, body, status, fragment):
    kwargs = {"content": body, "headers": {"content-type": "application/json"}} if isinstance(body, bytes) \
        else {"json": body}
    r = httpx2.post(api_server.url + path, timeout=60, **kwargs)
    assert r.status_code == status, r.text
    error = r.json()["error"]
    message = error["message"] if path.startswith("/v1/") else error
    assert fragment.lower() in message.lower(), message
    if status == 404:
        assert r.headers["x-error-code"] == "RepoNotFound"


def test_request_too_large(make_server):
    server = make_server(max_request_bytes=10_000)
    r = httpx2.post(server.model("tiny/sentiment"), json={"inputs": "x" * 20_000})
    assert r.status_code == 413 and "limit" in r.json()["error"]

    def chunks():  # no Content-Length: the body is counted as it arrives
        for _ in range(20):
            yield b"x" * 1000
    r = httpx2.post(server.model("tiny/sentiment"), content=chunks(), headers={"content-type": "application/json"})
    assert r.status_code == 413


def _engine(server, model_id=LLM):
    return next(e.engine for e in server.api.registry.loaded.values() if e.source.id == model_id)


def test_wait_for_model_false_answers_503_while_loading(make_server):
    server = make_server()
    body = {"inputs": "hi", "options": {"wait_for_model": False}}
    first = httpx2.post(server.model("tiny/sentiment"), json=body)
    assert first.status_code == 503 and "loading" in first.json()["error"] and first.headers["retry-after"]
    deadline = time.time() + 30
    while not server.api.registry.loaded and time.time() < deadline:  # it loads in the background
        time.sleep(0.05)
    assert httpx2.post(server.model("tiny/sentiment"), json=body).status_code == 200


def test_timeout(make_server):
    server = make_server(request_timeout_s=0.5)
    r = httpx2.post(f"{server.url}/generate", json={"inputs": "Tell me a long story",
                                                    "parameters": {"max_new_tokens": 64}}, timeout=60)
    if r.status_code == 200:  # the first call also loads the model: time the second
        r = httpx2.post(f"{server.url}/generate", json={"inputs": "Tell me a long story, please",
                                                        "parameters": {"max_new_tokens": 64}}, timeout=60)
    assert r.status_code == 504 and ("longer than" in r.json()["error"] or "timed out" in r.json()["error"])
    time.sleep(0.5)
    assert _engine(server).running == 0  # its work was cancelled


def test_client_disconnect_cancels_work(make_server):
    server = make_server(max_new_tokens=400)
    url = f"{server.model(LLM)}/v1/chat/completions"
    story = {"messages": [{"role": "user", "content": "Write a very long story about a cat."}], "max_tokens": 400,
             "temperature": 0, "frequency_penalty": 0.5}
    httpx2.post(url, json={**story, "max_tokens": 1}, timeout=60)
    engine = _engine(server)
    before = engine.generated
    with httpx2.stream("POST", url, timeout=60, json={**story, "stream": True}) as r:
        for i, line in enumerate(r.iter_lines()):
            if i >= 6:
                break  # hang up after a few tokens
    deadline = time.time() + 10
    while engine.running and time.time() < deadline:
        time.sleep(0.05)
    assert engine.running == 0 and engine.generated - before < 200
    before = engine.generated
    with pytest.raises(httpx2.TimeoutException):  # a non-streaming caller that gives up
        httpx2.post(url, json=story, timeout=0.5)
    deadline = time.time() + 10
    while engine.running and time.time() < deadline:
        time.sleep(0.05)
    assert engine.running == 0 and engine.generated - before < 200


def test_graceful_shutdown_finishes_in_flight(make_server):
    server = make_server()
    url = server.model(LLM)
    httpx2.post(f"{url}/generate", json={"inputs": "warm", "parameters": {"max_new_tokens": 1}}, timeout=60)
    result = {}

    def call():
        result["r"] = httpx2.post(f"{url}/generate", timeout=60,
                                  json={"inputs": "Tell me a story", "parameters": {"max_new_tokens": 24}})
    t = threading.Thread(target=call)
    t.start()
    engine = _engine(server)
    deadline = time.time() + 30
    while engine.running == 0 and time.time() < deadline:
        time.sleep(0.01)
    server.server.should_exit = True
    t.join(60)
    assert result["r"].status_code == 200 and result["r"].json()["generated_text"]
    server.thread.join(30)
    assert not server.thread.is_alive()
    with pytest.raises(httpx2.TransportError):
        httpx2.post(f"{url}/generate", json={"inputs": "late"}, timeout=5)
