"""Dynamic batching: requests to one model that arrive within a few milliseconds run as one batch.

A ``Batcher`` has one worker thread. ``submit(key, inputs)`` (from the event loop) queues a
request of one or more inputs and waits for its results. The worker takes the first waiting
request, waits at most ``max_wait_ms`` from its arrival for more (or until ``max_batch_size``
inputs are there) when requests have lately been arriving less than ``max_wait_ms`` apart (a
lone caller is not kept waiting for company that will not come; requests that arrive while a
batch runs join the next one anyway), then:

1. measures each input (``measure(key, input)`` → its length in tokens; an error there fails
   only that request, e.g. an input too long with ``truncate=false``);
2. groups inputs by ``key`` (requests with different task parameters cannot share a batch);
3. sorts each group by length and cuts it into batches of at most ``max_batch_size`` inputs and
   ``max_batch_tokens`` padded tokens (length bucketing: short inputs are not padded to long ones);
4. calls ``run(key, inputs, lengths)`` once per batch (one forward pass) and hands each request its
   results in order.

Requests whose caller went away (cancelled futures) are skipped. ``max_queue`` bounds the inputs
waiting; beyond it ``submit`` raises :class:`QueueFull` at once (the API answers 429).
With ``enabled=False`` every request runs alone (for comparison).
"""

from __future__ import annotations

import asyncio
import collections
import itertools
import logging
import threading
import time
from dataclasses import dataclass, field
from typing import Any, Callable, Hashable

log = logging.getLogger("peluk.serve")


class QueueFull(Exception):
    """Too many inputs are waiting for this model."""


@dataclass
class _Item:
    key: Hashable
    inputs: list
    future: asyncio.Future
    loop: asyncio.AbstractEventLoop
    arrived: float = field(default_factory=time.monotonic)
    results: list = field(default_factory=list)
    error: BaseException | None = None

    def settle(self) -> None:
        def apply(future=self.future, error=self.error, results=self.results):
            if not future.done():
                future.set_exception(error) if error is not None else future.set_result(results)
        try:
            self.loop.call_soon_threadsafe(apply)
        except RuntimeError:  # the loop is gone (shutdown): nobody is waiting any more
            pass


class Batcher:
    """See the module docstring.

    Args:
        run: ``run(key, inputs, lengths) -> outputs`` (same length), called in the worker thread.
        measure: ``measure(key, input) -> int`` tokens (default: 1 + characters // 4).
        on_batch: ``f(size, seconds)`` after each run (metrics).
    """

    def __init__(self, run: Callable[[Hashable, list, list[int]], list], *,
                 measure: Callable[[Hashable, Any], int] | None = None,
                 max_batch_size: int = 32, max_wait_ms: float = 5.0, max_queue: int = 256,
                 max_batch_tokens: int = 16384, enabled: bool = True, name: str = "model",
                 on_batch: Callable[[int, float], None] | None = None):
        self.run, self.measure = run, measure or (lambda key, x: 1 + len(str(x)) // 4)
        self.max_batch_size, self.max_wait = max(1, max_batch_size), max_wait_ms / 1000
        self.max_queue, self.max_batch_tokens, self.enabled = max_queue, max_batch_tokens, enabled
        self.name, self.on_batch = name, on_batch
        self.queue: collections.deque[_Item] = collections.deque()
        self.pending = 0  # inputs waiting
        self.cv = threading.Condition()
        self.closed = False
        self.thread: threading.Thread | None = None
        self.batches = 0
        self.gap, self.last_arrival = float("inf"), 0.0  # moving average of the time between requests

    @property
    def queue_depth(self) -> int:
        return self.pending

    async def submit(self, key: Hashable, inputs: list) -> list:
        """Run ``inputs`` (batched with other requests of the same ``key``); their outputs in order."""
        loop = asyncio.get_running_loop()
        item = _Item(key, list(inputs), loop.create_future(), loop)
        gap = item.arrived - self.last_arrival
        self.gap, self.last_arrival = min(gap, 0.8 * self.gap + 0.2 * gap), item.arrived
        with self.cv:
            if self.closed:
                raise QueueFull(f"{self.name} is shutting down")
            if self.pending and self.pending + len(inputs) > self.max_queue:
                raise QueueFull(f"{self.name}: {self.pending} inputs are already waiting")
            self.queue.append(item)
            self.pending += len(inputs)
            if self.thread is None:
                self.thread = threading.Thread(target=self._work, name=f"peluk-batch-{self.name}", daemon=True)
                self.thread.start()
            self.cv.notify()
        return await item.future  # cancelling it (caller gone) makes the worker skip the item

    def close(self, timeout: float = 10.0) -> None:
        with self.cv:
            self.closed = True
            self.cv.notify()
        if self.thread is not None:
            self.thread.join(timeout)

    # --- worker thread ------------------------------------------------------------------------
    def _work(self) -> None:
        while True:
            with self.cv:
                while not self.queue and not self.closed:
                    self.cv.wait()
                if not self.queue:
                    return
                deadline = self.queue[0].arrived + self.max_wait
                busy = self.gap < self.max_wait  # others are likely to arrive within the wait
                while self.enabled and busy and not self.closed and self.pending < self.max_batch_size:
                    left = deadline - time.monotonic()
                    if left <= 0:
                        break
                    self.cv.wait(left)
                items = self._take()
            try:
                self._process(items)
            except BaseException as e:  # never lose a request: fail what is left
                log.exception("peluk serve: batch of %s failed", self.name)
                for item in items:
                    if not item.future.done():
                        item.error = item.error or e
                        item.settle()

    def _take(self) -> list[_Item]:
        """Waiting items, up to a few batches' worth of inputs (at least one item)."""
        items, count = [], 0
        while self.queue and (not items or count + len(self.queue[0].inputs) <= 4 * self.max_batch_size):
            if not self.enabled and items:
                break
            item = self.queue.popleft()
            self.pending -= len(item.inputs)
            count += len(item.inputs)
            items.append(item)
        return items

    def _process(self, items: list[_Item]) -> None:
        live = []
        for item in items:
            if item.future.cancelled():
                continue
            item.results = [None] * len(item.inputs)
            try:
                lengths = [self.measure(item.key, x) for x in item.inputs]
            except Exception as e:
                item.error = e
                item.settle()
                continue
            live.append((item, lengths))
        groups: dict[Hashable, list] = {}
        for item, lengths in live:
            groups.setdefault(item.key, []).extend((n, item, j) for j, n in enumerate(lengths))
        for key, entries in groups.items():
            for batch in self._batches(entries):
                self._run_batch(key, batch)
        for item, _ in live:
            item.settle()

    def _run_batch(self, key, batch: list) -> None:
        batch = [entry for entry in batch if entry[1].error is None]
        if not batch:
            return
        started = time.perf_counter()
        try:
            outputs = self.run(key, [item.inputs[j] for _, item, j in batch], [n for n, _, _ in batch])
        except Exception as e:
            owners = {id(item) for _, item, _ in batch}
            if len(owners) == 1:
                batch[0][1].error = e
            else:  # one request's bad input must not fail the others: run each request alone
                for owner in owners:
                    self._run_batch(key, [entry for entry in batch if id(entry[1]) == owner])
            return
        finally:
            self.batches += 1
            if self.on_batch is not None:
                self.on_batch(len(batch), time.perf_counter() - started)
        for (_, item, j), out in zip(batch, outputs):
            item.results[j] = out

    def _batches(self, entries: list) -> list[list]:
        if not self.enabled:  # one request at a time
            return [list(group) for _, group in itertools.groupby(entries, key=lambda e: id(e[1]))]
        entries = sorted(entries, key=lambda e: e[0])
        batches, current = [], []
        for entry in entries:
            longest = max(entry[0], current[-1][0] if current else 0)
            padded = longest * (len(current) + 1)  # tokens of the batch with this entry, padding included
            if current and (len(current) >= self.max_batch_size or padded > self.max_batch_tokens):
                batches.append(current)
                current = []
            current.append(entry)
        if current:
            batches.append(current)
        return batches
