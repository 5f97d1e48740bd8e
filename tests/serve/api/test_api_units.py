"""The serving machinery on its own: continuous batching equals one-at-a-time generation
(joins, leaves, cache growth and compaction), stop strings, seeds and logprobs; the dynamic
batcher's grouping, bucketing and isolation of bad inputs; metrics, rate limits, result cache;
the memory budget, hub revisions, preloading and quantized serving; the CLI parser."""

from __future__ import annotations

import argparse
import asyncio
import threading
import time

import httpx2
import pytest
import torch

from peluk.serve.api.batcher import Batcher, QueueFull
from peluk.serve.api.engine import GenerationEngine, Request, Sampling
from peluk.serve.api.limits import Metrics, RateLimiter, ResultCache
from tests.serve.api.conftest import MINILM


@pytest.fixture(scope="module")
def llama(zoo):
    from peluk.models import AutoModelForCausalLM
    from peluk.tokenizer import AutoTokenizer

    return AutoModelForCausalLM.from_pretrained(zoo["tiny/llama"]), AutoTokenizer.from_pretrained(zoo["tiny/llama"])


def _run(engine: GenerationEngine, requests: list[dict], stagger: float = 0.0) -> list[list]:
    """Submit requests (kwargs of Request) and collect each one's Steps."""
    steps = [[] for _ in requests]
    done = threading.Semaphore(0)

    def emitter(i):
        def emit(step):
            steps[i].append(step)
            if step.finish or step.error:
                done.release()
        return emit
    for i, kwargs in enumerate(requests):
        engine.submit(Request(emit=emitter(i), **kwargs))
        time.sleep(stagger * (i % 3))
    for _ in requests:
        assert done.acquire(timeout=60)
    return steps


@pytest.mark.parametrize("capacity", [256, 12])
def test_continuous_batching_equals_one_at_a_time(llama, capacity):
    from peluk.generation import generate

    model, tokenizer = llama
    g = torch.Generator().manual_seed(0)
    prompts = [torch.randint(10, 49000, (n,), generator=g).tolist() for n in (5, 9, 3, 14, 7, 2, 11, 4)]
    want = [generate(model, torch.tensor([p]), max_new_tokens=10, eos_token_id=[])[0, len(p):].tolist()
            for p in prompts]
    engine = GenerationEngine(model, tokenizer, max_rows=3, capacity=capacity)
    engine.eos = set()  # as generate() above: every request runs its 10 tokens
    steps = _run(engine, [dict(prompt=p, max_new_tokens=10) for p in prompts], stagger=0.002)
    engine.close()
    assert [[s.token for s in st] for st in steps] == want
    assert engine.steps < sum(len(w) for w in want)  # rows shared decode steps
    if capacity == 12:
        assert engine.cache.capacity > 12  # it had to grow (after squeezing out gaps)


def test_stop_strings_seeds_and_logprobs(llama):
    model, tokenizer = llama
    engine = GenerationEngine(model, tokenizer, max_rows=4)
    prompt = tokenizer("Once upon a time")["input_ids"]
    plain = _run(engine, [dict(prompt=prompt, max_new_tokens=12)])[0]
    text = plain[-1].generated_text
    assert text == "".join(s.text for s in plain) and plain[-1].finish in ("length", "eos")
    stop = text[len(text) // 2:len(text) // 2 + 3]
    if stop.strip():
        cut = _run(engine, [dict(prompt=prompt, max_new_tokens=12, stop=[stop])])[0]
        assert cut[-1].finish == "stop" and stop not in cut[-1].generated_text
        assert text.startswith(cut[-1].generated_text) and "".join(s.text for s in cut) == cut[-1].generated_text
    sampled = dict(prompt=prompt, max_new_tokens=8, sampling=Sampling(do_sample=True, temperature=1.5, seed=3))
    a, b, c = _run(engine, [sampled, sampled, {**sampled, "sampling": Sampling(do_sample=True, temperature=1.5,
                                                                                seed=4)}])
    assert [s.token for s in a] == [s.token for s in b] != [s.token for s in c]
    scored = _run(engine, [dict(prompt=prompt, max_new_tokens=3, logprobs=True, top_logprobs=2)])[0]
    with torch.no_grad():
        logits = model(torch.tensor([prompt])).logits[0, -1].float().log_softmax(-1)
    assert abs(scored[0].logprob - float(logits[scored[0].token])) < 1e-4
    assert scored[0].top[0][0] == int(logits.argmax()) and len(scored[0].top) == 2
    engine.close()


def test_cancelled_request_leaves_the_loop(llama):
    model, tokenizer = llama
    engine = GenerationEngine(model, tokenizer, max_rows=2)
    engine.eos = set()
    got, first = [], threading.Event()
    request = Request(prompt=[5, 6, 7], max_new_tokens=5000, emit=lambda s: (got.append(s), first.set()))
    engine.submit(request)
    assert first.wait(30)
    request.cancel()
    time.sleep(0.3)
    assert engine.running == 0 and len(got) < 5000
    engine.close()


def test_engine_queue_is_bounded(llama):
    model, tokenizer = llama
    engine = GenerationEngine(model, tokenizer, max_rows=1, max_queue=1)
    engine.closed = True  # nothing is taken off the line
    with pytest.raises(Exception):
        engine.submit(Request(prompt=[1], max_new_tokens=1, emit=lambda s: None))


def test_batcher_groups_buckets_and_isolates_failures():
    calls = []

    def run(key, inputs, lengths):
        calls.append((key, list(inputs)))
        if "bad" in inputs:
            raise ValueError("bad input")
        return [f"{key}:{x}" for x in inputs]

    async def main():
        batcher = Batcher(run, max_batch_size=4, max_wait_ms=30, max_batch_tokens=1000,
                          measure=lambda key, x: 500 if x.startswith("long") else 1)
        jobs = [batcher.submit("a", [f"x{i}"]) for i in range(6)]
        jobs += [batcher.submit("b", ["y"]), batcher.submit("a", ["bad"]),
                 batcher.submit("a", ["long1", "long2", "long3"])]
        results = await asyncio.gather(*jobs, return_exceptions=True)
        batcher.close()
        return results
    results = asyncio.run(main())
    assert results[:6] == [[f"a:x{i}"] for i in range(6)] and results[6] == ["b:y"]
    assert isinstance(results[7], ValueError) and results[8] == ["a:long1", "a:long2", "a:long3"]
    assert all(len(inputs) <= 4 and len({k}) == 1 for k, inputs in calls)
    assert not any("long1" in inputs and any(x.startswith("x") for x in inputs) for _, inputs in calls)


def test_batcher_waits_only_when_requests_come_close_together():
    async def main():
        batcher = Batcher(lambda key, inputs, lengths: inputs, max_wait_ms=200)
        await batcher.submit("k", ["first"])
        await asyncio.sleep(0.25)
        started = time.perf_counter()
        await batcher.submit("k", ["lone"])  # requests far apart: no waiting for company
        lone = time.perf_counter() - started
        started = time.perf_counter()
        burst = await asyncio.gather(*(batcher.submit("k", [i]) for i in range(5)))
        batcher.close()
        return lone, burst, batcher.batches
    lone, burst, batches = asyncio.run(main())
    assert lone < 0.1 and burst == [[i] for i in range(5)] and batches <= 4


def test_batcher_queue_full_and_cancelled_items():
    release = threading.Event()

    def run(key, inputs, lengths):
        release.wait(10)
        return inputs

    async def main():
        batcher = Batcher(run, max_batch_size=2, max_wait_ms=0, max_queue=2)
        first = asyncio.ensure_future(batcher.submit("k", ["a"]))
        await asyncio.sleep(0.05)  # taken by the worker, which now waits in run()
        second = asyncio.ensure_future(batcher.submit("k", ["b", "c"]))
        await asyncio.sleep(0.01)
        with pytest.raises(QueueFull):
            await batcher.submit("k", ["d"])
        second.cancel()
        release.set()
        assert await first == ["a"]
        await asyncio.sleep(0.05)
        batcher.close()
        return batcher.batches
    assert asyncio.run(main()) == 1  # the cancelled request never ran


def test_metrics_rate_limits_and_cache():
    m = Metrics()
    m.describe("x_total", "counter", "things")
    m.describe("lat", "histogram", "latency", (0.1, 1.0))
    m.inc("x_total", route='/a"b')
    m.observe("lat", 0.5, route="r")
    m.gauge_fn("g", lambda: {(): 2.0})
    m.describe("g", "gauge", "a gauge")
    text = m.render()
    assert 'x_total{route="/a\\"b"} 1' in text and 'lat_bucket{route="r",le="0.1"} 0' in text
    assert 'lat_bucket{route="r",le="+Inf"} 1' in text and "lat_count{route=\"r\"} 1" in text and "g 2" in text
    limiter = RateLimiter(per_minute=60, burst=2)
    assert [limiter.check("k") for _ in range(2)] == [0.0, 0.0] and limiter.check("k") > 0
    assert limiter.check("other") == 0.0 and RateLimiter(0).check("k") == 0.0
    cache = ResultCache(max_entries=2)
    keys = [ResultCache.key("m", i) for i in range(3)]
    for i, k in enumerate(keys):
        cache.put(k, i)
    assert cache.get(keys[0]) is None and cache.get(keys[2]) == 2


def test_memory_budget_evicts_least_recently_used(make_server):
    server = make_server(memory_budget_mb=8)  # the tiny encoders are ~4 MB each (MiniLM's vocabulary)
    for model_id in ("tiny/sentiment", "tiny/ner", "tiny/qa"):
        assert httpx2.post(server.model(model_id), json={"inputs": {"question": "a?", "context": "b c"}}
                           if model_id == "tiny/qa" else {"inputs": "hi"}).status_code == 200
    loaded = [e.source.id for e in server.api.registry.loaded.values()]
    assert "tiny/qa" in loaded and "tiny/sentiment" not in loaded
    assert sum(e.nbytes for e in server.api.registry.loaded.values()) <= 8 * 2 ** 20
    assert "peluk_model_evictions_total" in httpx2.get(f"{server.url}/metrics").text
    assert httpx2.post(server.model("tiny/sentiment"), json={"inputs": "again"}).status_code == 200  # reloads


def test_hub_revisions_are_served_and_reloaded(make_server, zoo, tmp_path):
    server = make_server()
    token = server.token("dora", "write")
    hf = __import__("huggingface_hub").HfApi(endpoint=server.url, token=token)
    hf.create_repo("dora/sentiment")
    hf.upload_folder(folder_path=zoo["tiny/sentiment"], repo_id="dora/sentiment")
    url = server.model("dora/sentiment")
    first = httpx2.post(url, json={"inputs": "hi"}).json()
    config = (zoo["tiny/sentiment"] / "config.json").read_text().replace('"NEGATIVE"', '"SAD"')
    hf.upload_file(path_or_fileobj=config.encode(), path_in_repo="config.json", repo_id="dora/sentiment")
    time.sleep(2.1)  # the API re-reads a repository's head at most every 2 seconds
    second = httpx2.post(url, json={"inputs": "hi"}).json()
    assert {x["label"] for x in first[0]} == {"NEGATIVE", "POSITIVE"}
    assert {x["label"] for x in second[0]} == {"SAD", "POSITIVE"}
    info = httpx2.get(f"{url}/info").json()
    assert info["model_sha"] == hf.model_info("dora/sentiment").sha


def test_preload_and_quantized_serving(make_server, zoo):
    server = make_server(preload=True, models=[MINILM, f"tiny/llama={zoo['tiny/llama']}",
                                               f"tiny/llama-bf16={zoo['tiny/llama']}"],
                         quantize={"tiny/llama": "int8", "tiny/llama-bf16": "bf16"})
    deadline = time.time() + 60
    while len(server.api.registry.loaded) < 3 and time.time() < deadline:
        time.sleep(0.05)
    loaded = {e.source.id: e for e in server.api.registry.loaded.values()}
    assert set(loaded) == {MINILM, "tiny/llama", "tiny/llama-bf16"}
    assert any(type(m).__name__ == "QuantLinear" for m in loaded["tiny/llama"].model.modules())
    assert loaded["tiny/llama-bf16"].model.dtype == torch.bfloat16
    for model_id in ("tiny/llama", "tiny/llama-bf16"):
        r = httpx2.post(f"{server.model(model_id)}/generate",
                        json={"inputs": "Hello", "parameters": {"max_new_tokens": 4}})
        assert r.status_code == 200 and r.json()["generated_text"]


def test_cli_parser():
    from peluk.serve.cli_serve import add_parser, cmd_serve

    parser = argparse.ArgumentParser(prog="peluk")
    add_parser(parser.add_subparsers(dest="command"))
    args = parser.parse_args(["serve", "--port", "9000", "--models", MINILM, "./my-model", "--public",
                              "--memory-budget", "512", "--quantize", "a/b=int4", "--rate-limit", "100"])
    assert (args.port, args.models, args.public, args.memory_budget) == (9000, [MINILM, "./my-model"], True, 512)
    assert args.quantize == ["a/b=int4"] and args.rate_limit_per_minute == 100 and args.preload
    bad = parser.parse_args(["serve", "--quantize", "a/b=int3"])
    assert cmd_serve(bad) == 2
