"""What keeps the server healthy and observable: Prometheus metrics, per-token rate limits,
the result cache.

Metrics are a few counters, gauges and histograms written in the Prometheus text format
(version 0.0.4) without a client library; label values are escaped as the format requires.
"""

from __future__ import annotations

import collections
import hashlib
import json
import math
import threading
import time
from typing import Any, Callable

LATENCY_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0)
SIZE_BUCKETS = (1, 2, 4, 8, 16, 32, 64, 128)


def _labels(labels: tuple) -> str:
    if not labels:
        return ""
    escaped = (f'{k}="{str(v).replace(chr(92), chr(92) * 2).replace(chr(10), "").replace(chr(34), chr(92) + chr(34))}"'
               for k, v in labels)
    return "{" + ",".join(escaped) + "}"


class Metrics:
    """A tiny Prometheus registry: ``inc`` counters, ``set`` gauges, ``observe`` histograms,
    ``gauge_fn`` for gauges read at scrape time, ``render()`` the text exposition."""

    def __init__(self):
        self.lock = threading.Lock()
        self.help: dict[str, tuple[str, str]] = {}
        self.values: dict[str, dict[tuple, float]] = collections.defaultdict(dict)
        self.histograms: dict[str, dict[tuple, list]] = collections.defaultdict(dict)
        self.buckets: dict[str, tuple] = {}
        self.callbacks: dict[str, Callable[[], dict[tuple, float]]] = {}

    def describe(self, name: str, kind: str, text: str, buckets: tuple = ()) -> None:
        self.help[name] = (kind, text)
        if buckets:
            self.buckets[name] = buckets

    def inc(self, name: str, value: float = 1.0, **labels) -> None:
        key = tuple(sorted(labels.items()))
        with self.lock:
            self.values[name][key] = self.values[name].get(key, 0.0) + value

    def set(self, name: str, value: float, **labels) -> None:
        with self.lock:
            self.values[name][tuple(sorted(labels.items()))] = value

    def observe(self, name: str, value: float, **labels) -> None:
        key = tuple(sorted(labels.items()))
        bounds = self.buckets[name]
        with self.lock:
            h = self.histograms[name].setdefault(key, [[0] * len(bounds), 0.0, 0])
            for i, bound in enumerate(bounds):
                if value <= bound:
                    h[0][i] += 1
            h[1] += value
            h[2] += 1

    def gauge_fn(self, name: str, fn: Callable[[], dict[tuple, float]]) -> None:
        self.callbacks[name] = fn

    def get(self, name: str, **labels) -> float:
        return self.values[name].get(tuple(sorted(labels.items())), 0.0)

    def render(self) -> str:
        lines = []
        with self.lock:
            values = {k: dict(v) for k, v in self.values.items()}
            hists = {k: {lk: (list(h[0]), h[1], h[2]) for lk, h in v.items()} for k, v in self.histograms.items()}
        for name, fn in self.callbacks.items():
            try:
                values[name] = fn()
            except Exception:  # a scrape never fails because of one gauge
                continue
        for name, (kind, text) in self.help.items():
            lines += [f"# HELP {name} {text}", f"# TYPE {name} {kind}"]
            if kind == "histogram":
                for key, (counts, total, n) in hists.get(name, {}).items():
                    for bound, count in zip(self.buckets[name], counts):
                        lines.append(f"{name}_bucket{_labels(key + (('le', _num(bound)),))} {count}")
                    lines.append(f"{name}_bucket{_labels(key + (('le', '+Inf'),))} {n}")
                    lines.append(f"{name}_sum{_labels(key)} {_num(total)}")
                    lines.append(f"{name}_count{_labels(key)} {n}")
            else:
                for key, value in values.get(name, {}).items():
                    lines.append(f"{name}{_labels(key)} {_num(value)}")
        return "\n".join(lines) + "\n"


def _num(x: float) -> str:
    if isinstance(x, float) and (math.isinf(x) or math.isnan(x)):
        return "+Inf" if x > 0 else ("-Inf" if x < 0 else "NaN")
    return repr(float(x)) if not float(x).is_integer() else str(int(x))


def standard_metrics() -> Metrics:
    m = Metrics()
    m.describe("peluk_requests_total", "counter", "Inference API requests by route and status")
    m.describe("peluk_request_duration_seconds", "histogram", "Time to the end of the response", LATENCY_BUCKETS)
    m.describe("peluk_batch_size", "histogram", "Inputs per forward pass (dynamic batching)", SIZE_BUCKETS)
    m.describe("peluk_batch_duration_seconds", "histogram", "Time per batched forward pass", LATENCY_BUCKETS)
    m.describe("peluk_decode_batch_size", "histogram", "Running requests per decode step (continuous batching)",
               SIZE_BUCKETS)
    m.describe("peluk_generated_tokens_total", "counter", "Tokens generated")
    m.describe("peluk_tokens_per_second", "gauge", "Generated tokens per second over the last 10 seconds")
    m.describe("peluk_queue_depth", "gauge", "Inputs or requests waiting per model")
    m.describe("peluk_running_requests", "gauge", "Requests decoding now per model")
    m.describe("peluk_cache_hits_total", "counter", "Answers served from the result cache")
    m.describe("peluk_cache_misses_total", "counter", "Cacheable requests that were computed")
    m.describe("peluk_rejected_total", "counter", "Requests refused (rate limit, full queue, too large, timeout)")
    m.describe("peluk_models_loaded", "gauge", "Models in memory")
    m.describe("peluk_model_memory_bytes", "gauge", "Bytes of weights per loaded model")
    m.describe("peluk_model_loads_total", "counter", "Model loads")
    m.describe("peluk_model_evictions_total", "counter", "Models evicted to stay within the memory budget")
    m.describe("peluk_in_flight_requests", "gauge", "Requests being answered")
    return m


class TokenRate:
    """Generated tokens per second over a sliding window."""

    def __init__(self, window: float = 10.0):
        self.window, self.events = window, collections.deque()
        self.lock = threading.Lock()

    def add(self, n: int) -> None:
        now = time.monotonic()
        with self.lock:
            self.events.append((now, n))
            while self.events and self.events[0][0] < now - self.window:
                self.events.popleft()

    def rate(self) -> float:
        now = time.monotonic()
        with self.lock:
            while self.events and self.events[0][0] < now - self.window:
                self.events.popleft()
            return sum(n for _, n in self.events) / self.window


class RateLimiter:
    """Token buckets per caller (a token, or the client address for anonymous callers).

    ``per_minute`` requests a minute with bursts of ``burst``; 0 turns limiting off.
    ``check(key)`` returns 0 when allowed, else the seconds until the next request is.
    """

    def __init__(self, per_minute: float, burst: int | None = None, max_keys: int = 100_000):
        self.rate = per_minute / 60.0
        self.burst = float(burst if burst is not None else max(1, int(per_minute / 6)))
        self.buckets: collections.OrderedDict[str, tuple[float, float]] = collections.OrderedDict()
        self.max_keys = max_keys
        self.lock = threading.Lock()

    def check(self, key: str) -> float:
        if self.rate <= 0:
            return 0.0
        now = time.monotonic()
        with self.lock:
            tokens, last = self.buckets.pop(key, (self.burst, now))
            tokens = min(self.burst, tokens + (now - last) * self.rate)
            if tokens >= 1:
                self.buckets[key] = (tokens - 1, now)
                wait = 0.0
            else:
                self.buckets[key] = (tokens, now)
                wait = (1 - tokens) / self.rate
            while len(self.buckets) > self.max_keys:
                self.buckets.popitem(last=False)
        return wait


class ResultCache:
    """LRU of answers to identical deterministic requests, keyed by the model's revision, the
    task, the normalized inputs and parameters."""

    def __init__(self, max_entries: int = 1024):
        self.max_entries = max_entries
        self.entries: collections.OrderedDict[str, Any] = collections.OrderedDict()
        self.lock = threading.Lock()

    @staticmethod
    def key(*parts) -> str:
        blob = json.dumps(parts, sort_keys=True, separators=(",", ":"), default=str)
        return hashlib.sha256(blob.encode("utf-8", "surrogatepass")).hexdigest()

    def get(self, key: str):
        with self.lock:
            if key not in self.entries:
                return None
            self.entries.move_to_end(key)
            return self.entries[key]

    def put(self, key: str, value) -> None:
        if self.max_entries <= 0:
            return
        with self.lock:
            self.entries[key] = value
            self.entries.move_to_end(key)
            while len(self.entries) > self.max_entries:
                self.entries.popitem(last=False)
