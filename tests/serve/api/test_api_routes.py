"""Wire shapes of the TGI, TEI and OpenAI routes (at the root and per model), /metrics, /docs
and /openapi.json, checked with raw HTTP against ../shared/specs/inference-protocol.md."""

from __future__ import annotations

import base64
import struct

import httpx2
import numpy as np
import pytest

from tests.serve.api.conftest import LLM, MINILM, sse_events


@pytest.fixture(scope="module")
def http(api_server):
    with httpx2.Client(base_url=api_server.url, timeout=120) as client:
        yield client


def test_tgi_generate_and_stream(http):
    parameters = {"max_new_tokens": 5, "details": True, "top_n_tokens": 2, "decoder_input_details": True}
    r = http.post("/generate", json={"inputs": "Hello", "parameters": parameters})
    out = r.json()
    assert set(out) == {"generated_text", "details"} and r.headers["x-cache"] == "MISS"
    details = out["details"]
    assert details["finish_reason"] in ("length", "eos_token", "stop_sequence") and details["generated_tokens"] <= 5
    assert len(details["tokens"]) == details["generated_tokens"] and len(details["top_tokens"][0]) == 2
    assert {"id", "text", "logprob", "special"} <= set(details["tokens"][0]) and details["prefill"]
    events = sse_events(http.post("/generate_stream", json={"inputs": "Hello", "parameters": {"max_new_tokens": 5}}))
    assert [e["index"] for e in events] == list(range(1, len(events) + 1))
    assert all(e["generated_text"] is None and e["details"] is None for e in events[:-1])
    last = events[-1]
    assert last["generated_text"] == "".join(e["token"]["text"] for e in events)
    assert last["generated_text"] == out["generated_text"]
    assert set(last["details"]) == {"finish_reason", "generated_tokens", "input_length", "seed"}
    # the compat route: POST the model URL, a list back; "stream": true gives the same events
    listed = http.post(f"/models/{LLM}", json={"inputs": "Hello", "parameters": {"max_new_tokens": 5}}).json()
    assert listed == [{"generated_text": out["generated_text"]}]
    sampled = http.post("/generate", json={"inputs": "Hello", "parameters": {"max_new_tokens": 5, "do_sample": True,
                                                                              "seed": 5, "details": True}}).json()
    assert sampled["details"]["seed"] == 5


def test_tgi_info_health_metrics(http):
    info = http.get("/info").json()
    for key in ("model_id", "model_sha", "model_pipeline_tag", "max_concurrent_requests", "max_best_of",
                "max_stop_sequences", "max_input_tokens", "max_total_tokens", "validation_workers",
                "max_client_batch_size", "router", "version"):
        assert key in info
    assert http.get("/health").status_code == 200
    assert http.get("/models/tiny/sentiment/health").status_code == 200
    metrics = http.get("/metrics")
    assert metrics.headers["content-type"].startswith("text/plain")
    for name in ("peluk_requests_total", "peluk_request_duration_seconds_bucket", "peluk_generated_tokens_total",
                 "peluk_decode_batch_size_bucket", "peluk_tokens_per_second", "peluk_queue_depth",
                 "peluk_models_loaded", "peluk_model_memory_bytes", "peluk_in_flight_requests"):
        assert name in metrics.text, name


def test_tei_routes(http, minilm_dir):
    import peluk

    texts = ["A cat sleeps.", "Rice is dear."]
    want = peluk.pipeline("sentence-embeddings", model=minilm_dir)(texts)
    one = http.post("/embed", json={"inputs": texts[0]}).json()
    two = http.post(f"/models/{MINILM}/embed", json={"inputs": texts, "normalize": True, "truncate": True}).json()
    assert np.array(one).shape == (1, 384) and np.allclose(two, want, atol=1e-4)
    ranked = http.post("/rerank", json={"query": "A kitten naps.", "texts": texts, "return_text": True}).json()
    assert [r["index"] for r in ranked] == [0, 1] and ranked[0]["text"] == texts[0]
    assert ranked[0]["score"] >= ranked[1]["score"]
    similar = http.post("/similarity", json={"inputs": {"source_sentence": "A kitten naps.", "sentences": texts}})
    assert len(similar.json()) == 2
    single = http.post("/predict?model=tiny/sentiment", json={"inputs": "I love it"}).json()
    assert isinstance(single, list) and {x["label"] for x in single} == {"POSITIVE", "NEGATIVE"}
    pair = http.post("/models/tiny/sentiment/predict", json={"inputs": ["I love it", "me too"]}).json()
    assert isinstance(pair[0], dict)
    batch = http.post("/models/tiny/sentiment/predict", json={"inputs": [["I love it"], ["I hate it"]],
                                                              "raw_scores": True}).json()
    assert len(batch) == 2 and isinstance(batch[0], list)


def test_openai_shapes(http):
    chat = http.post("/v1/chat/completions", json={"messages": [{"role": "user", "content": [
        {"type": "text", "text": "Say hi"}]}], "max_tokens": 4, "temperature": 0, "logprobs": True}).json()
    assert chat["object"] == "chat.completion" and chat["id"].startswith("chatcmpl-")
    assert chat["choices"][0]["message"]["role"] == "assistant" and chat["usage"]["total_tokens"] > 4
    assert len(chat["choices"][0]["logprobs"]["content"]) == chat["usage"]["completion_tokens"]
    events = sse_events(http.post(f"/models/{LLM}/v1/chat/completions", json={
        "model": "dummy", "messages": [{"role": "user", "content": "Say hi"}], "max_tokens": 4, "stream": True,
        "temperature": 0, "stream_options": {"include_usage": True}}))
    assert events[-1] == "[DONE]" and events[-2]["choices"] == [] and events[-2]["usage"]["completion_tokens"] <= 4
    assert events[0]["choices"][0]["delta"]["role"] == "assistant"
    assert any(e["choices"][0]["finish_reason"] for e in events[1:-2])
    done = http.post("/v1/completions", json={"prompt": ["Once upon", "In a galaxy"], "max_tokens": 3, "n": 2,
                                              "temperature": 0.7, "seed": 1, "echo": True, "logprobs": 2}).json()
    assert [c["index"] for c in done["choices"]] == [0, 1, 2, 3] and done["choices"][2]["text"].startswith("In a")
    assert len(done["choices"][0]["logprobs"]["tokens"]) == len(done["choices"][0]["logprobs"]["token_logprobs"])
    stream = sse_events(http.post("/v1/completions", json={"prompt": "Once upon", "max_tokens": 3, "stream": True}))
    assert stream[-1] == "[DONE]" and stream[0]["object"] == "text_completion"
    emb = http.post("/v1/embeddings", json={"input": "hi", "encoding_format": "base64", "dimensions": 8}).json()
    vector = struct.unpack("<8f", base64.b64decode(emb["data"][0]["embedding"]))
    assert abs(sum(x * x for x in vector) - 1) < 1e-4 and emb["usage"]["prompt_tokens"] == 3
    assert http.get(f"/v1/models/{MINILM}").json()["id"] == MINILM
    assert http.get(f"/models/{MINILM}/v1/models").json()["data"][0]["id"] == MINILM
    error = http.post("/v1/chat/completions", json={"messages": []}).json()["error"]
    assert set(error) == {"message", "type", "code", "param"} and error["type"] == "invalid_request_error"


def test_docs_and_openapi_work_offline(http):
    page = http.get("/docs")
    assert page.status_code == 200 and "openapi.json" in page.text
    assert "http://" not in page.text and "https://" not in page.text  # nothing from a CDN
    schema = http.get("/openapi.json").json()
    for path in ("/models/{owner}/{name}", "/v1/chat/completions", "/v1/completions", "/v1/embeddings", "/v1/models",
                 "/generate", "/generate_stream", "/info", "/health", "/metrics", "/embed", "/rerank", "/predict",
                 "/models/{owner}/{name}/v1/chat/completions", "/models/{owner}/{name}/info"):
        assert path in schema["paths"], path


def test_hub_still_answers_under_the_api(api_server):
    from huggingface_hub import HfApi

    hf = HfApi(endpoint=api_server.url, token=api_server.admin)
    assert hf.whoami()["name"] == "admin"
    assert httpx2.get(f"{api_server.url}/api/models").status_code == 200
