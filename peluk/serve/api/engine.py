"""Continuous batching for decoder LMs: one decode loop per model, requests join and leave it.

A ``GenerationEngine`` owns a thread that repeats:

1. **admit**: waiting requests (as many as there are free rows, within a prefill token budget)
   are prefilled together, left-padded, into a fresh ``KVCache``; each gets its first token,
   then its keys/values are copied into the running batch's :class:`SlotCache`;
2. **decode**: one step for every running row at once (``model.decode_step`` with a (n, 1)
   batch, each row at its own position, attention masked per row);
3. **retire**: rows that finished (EOS, a stop string, max tokens) or whose caller went away
   are removed; their slot is filled by the last row, so running rows stay ``0..n-1``.

The batch cache has one write column for all rows (the models' cache interface), so a row
joins with its prompt right-aligned to that column and the columns before it masked out; when
a longer prompt joins, the column jumps ahead and the other rows get a masked gap. Gaps are
squeezed out (``compact``) when the cache would otherwise grow. Positions (rotary / learned)
are passed per row, so neither padding nor gaps change what a row computes.

Sampling is per row (each request has its own temperature, top-p, penalties, seed and stop
strings): greedy rows share one ``argmax``. Tokens go back to each caller as :class:`Step`
events through ``Request.emit`` (thread-safe; the API puts them on an asyncio queue).

Not done: prefix sharing between requests, chunked prefill of long prompts (a long prompt
stalls the running rows for its prefill), speculative decoding, encoder-decoder models (those
are batched per request group by ``batcher.py``).
"""

from __future__ import annotations

import collections
import logging
import threading
import time
from dataclasses import dataclass, field
from typing import Callable

import torch

from peluk.config import GenerationConfig
from peluk.generation.generate import held_back  # stop strings across tokens, as stream() holds them
from peluk.generation.sampling import apply_all, processors_for, sample

log = logging.getLogger("peluk.serve")


class QueueFull(Exception):
    """The engine's waiting line is full."""


@dataclass
class Sampling:
    """Per-request decoding options (None: off)."""

    do_sample: bool = False
    temperature: float | None = None
    top_k: int | None = None
    top_p: float | None = None
    repetition_penalty: float | None = None
    frequency_penalty: float | None = None
    presence_penalty: float | None = None
    logit_bias: dict[int, float] | None = None
    seed: int | None = None

    def processors(self, prompt_length: int = 0) -> list:
        out = processors_for(do_sample=self.do_sample, temperature_=self.temperature, top_k_=self.top_k,
                             top_p_=self.top_p, repetition_penalty_=self.repetition_penalty)
        if self.frequency_penalty or self.presence_penalty:
            out.insert(0, _penalties(self.frequency_penalty or 0.0, self.presence_penalty or 0.0, prompt_length))
        if self.logit_bias:
            out.insert(0, _logit_bias(self.logit_bias))
        return out


def _penalties(frequency: float, presence: float, skip: int):
    """OpenAI's frequency/presence penalties over the tokens generated so far (not the prompt's)."""
    def apply(seqs, scores):
        seqs = seqs[:, skip:]
        counts = torch.zeros_like(scores)
        counts.scatter_add_(1, seqs, torch.ones_like(seqs, dtype=scores.dtype))
        return scores - frequency * counts - presence * (counts > 0).to(scores.dtype)
    return apply


def _logit_bias(bias: dict[int, float]):
    ids, values = torch.tensor(list(bias)), torch.tensor(list(bias.values()))

    def apply(seqs, scores):
        return scores.index_add(1, ids, values[None].expand(scores.shape[0], -1).to(scores.dtype))
    return apply


@dataclass
class Step:
    """One generated token for one request: its id, the text it adds (``piece``: its own text;
    ``text``: what is safe to show now, possibly empty while a stop string may be forming),
    log-probability, the ``top`` alternatives [(id, text, logprob)], and on the last one ``finish``
    (``"eos"``, ``"stop"``, ``"length"``) with the full ``generated_text``."""

    token: int
    piece: str
    text: str
    logprob: float | None = None
    top: list = field(default_factory=list)
    special: bool = False
    finish: str | None = None
    generated_text: str | None = None
    tokens: int = 0
    error: str | None = None


@dataclass
class Request:
    prompt: list[int]
    max_new_tokens: int
    emit: Callable[[Step], None]
    sampling: Sampling = field(default_factory=Sampling)
    stop: list[str] = field(default_factory=list)
    logprobs: bool = False
    top_logprobs: int = 0
    cancelled: bool = False
    submitted: float = field(default_factory=time.perf_counter)

    def cancel(self) -> None:
        self.cancelled = True


class _Row:
    """A running request: its tokens, text shown so far, sampler state, position."""

    def __init__(self, request: Request):
        self.request, self.tokens, self.sent = request, [], 0
        self.processors = request.sampling.processors(len(request.prompt))
        seed = request.sampling.seed
        self.generator = torch.Generator().manual_seed(seed) if seed is not None else None
        self.position = len(request.prompt)
        self.plain = not self.processors and not request.sampling.do_sample

    def history(self) -> torch.Tensor:
        return torch.tensor([self.request.prompt + self.tokens])


class SlotCache:
    """The running batch's KV cache: rows ``0..n-1`` are live, all rows write column ``length``.

    Implements the interface the models call (``update``, ``advance``, ``length``), plus joining
    prefilled rows, removing a row and squeezing out masked columns.
    """

    def __init__(self, like, rows: int, capacity: int = 256):
        _, Hkv, _, D = like.k[0].shape
        self.k = [like.k[0].new_zeros(rows, Hkv, capacity, D) for _ in like.k]
        self.v = [like.k[0].new_zeros(rows, Hkv, capacity, D) for _ in like.k]
        self.mask = torch.zeros(rows, capacity, dtype=torch.long, device=like.k[0].device)
        self.n = self.length = 0

    @property
    def capacity(self) -> int:
        return self.mask.shape[1]

    @property
    def max_len(self) -> int:
        return self.capacity

    def update(self, layer: int, k: torch.Tensor, v: torch.Tensor):
        n, end = k.shape[0], self.length + k.shape[2]
        self.k[layer][:n, :, self.length:end] = k
        self.v[layer][:n, :, self.length:end] = v
        return self.k[layer][:n, :, :end], self.v[layer][:n, :, :end]  # (n, Hkv, S, D)

    def advance(self, n: int) -> None:
        self.length += n

    def step_mask(self) -> torch.Tensor:
        """The (n, length + 1) attention mask of the next decode step (its own column set)."""
        self.reserve(1)
        self.mask[:self.n, self.length] = 1
        return self.mask[:self.n, :self.length + 1]

    def join(self, prefill, mask: torch.Tensor, keep: list[int]) -> None:
        """Append rows ``keep`` of a prefilled ``KVCache`` (with their (m, P) mask), right-aligned
        to the write column (which moves ahead to P if the prompts are longer than it)."""
        P, m = prefill.length, len(keep)
        self.reserve(max(P - self.length, 0) + 1)
        end = max(self.length, P)
        idx = torch.tensor(keep, device=self.mask.device)
        for big, small in ((self.k, prefill.k), (self.v, prefill.v)):
            for layer in range(len(big)):
                big[layer][self.n:self.n + m, :, end - P:end] = small[layer].index_select(0, idx)[:, :, :P]
        self.mask[self.n:self.n + m, :end - P] = 0
        self.mask[self.n:self.n + m, end - P:end] = mask.index_select(0, idx)
        self.n, self.length = self.n + m, end

    def remove(self, i: int) -> None:
        """Drop row i; the last row moves into its slot."""
        last = self.n - 1
        if i != last:
            for t in (*self.k, *self.v):
                t[i, :, :self.length] = t[last, :, :self.length]
            self.mask[i] = self.mask[last]
        self.mask[last] = 0
        self.n = last
        if self.n == 0:
            self.length = 0

    def reserve(self, extra: int) -> None:
        """Room for ``extra`` more columns after ``length``: squeeze out gaps first, else grow."""
        if self.length + extra <= self.capacity:
            return
        self.compact()
        if self.length + extra > self.capacity:  # still full: grow (doubling)
            size = max(2 * self.capacity, self.length + extra)
            for t in (self.k, self.v):
                for layer in range(len(t)):
                    old = t[layer]
                    t[layer] = old.new_zeros(old.shape[0], old.shape[1], size, old.shape[3])
                    t[layer][:, :, :self.length] = old[:, :, :self.length]
            old = self.mask
            self.mask = old.new_zeros(old.shape[0], size)
            self.mask[:, :self.length] = old[:, :self.length]

    def compact(self) -> None:
        """Move each row's live columns to the right end of ``[0, longest row)`` (masked gaps out)."""
        n, L = self.n, self.length
        if n == 0:
            self.length = 0
            return
        new = int(self.mask[:n, :L].sum(1).max())
        if new == L:
            return
        # a stable sort puts masked columns first, live ones after, each in their order
        order = torch.argsort(self.mask[:n, :L], dim=1, stable=True)[:, L - new:]  # (n, new)
        for t in (self.k, self.v):
            for layer in range(len(t)):
                Hkv, D = t[layer].shape[1], t[layer].shape[3]
                index = order[:, None, :, None].expand(n, Hkv, new, D)
                t[layer][:n, :, :new] = t[layer][:n, :, :L].gather(2, index)
        self.mask[:n, :new] = self.mask[:n, :L].gather(1, order)
        self.mask[:n, new:] = 0
        self.length = new


class GenerationEngine:
    """Continuous batching over one decoder model (see the module docstring).

    Args:
        model, tokenizer: a causal LM with ``make_cache`` and its tokenizer.
        max_rows: most requests decoding at once.
        max_queue: most requests waiting to join; ``submit`` raises QueueFull beyond.
        prefill_tokens: most prompt tokens prefilled in one admission round (at least one request).
        capacity: positions the batch cache starts with (it grows, and squeezes out gaps, as needed).
        on_step: ``f(rows, seconds)`` after each decode step (metrics).
    """

    def __init__(self, model, tokenizer, *, max_rows: int = 16, max_queue: int = 64, prefill_tokens: int = 4096,
                 capacity: int = 256, on_step: Callable[[int, float], None] | None = None, name: str = "model"):
        self.model, self.tokenizer, self.name = model, tokenizer, name
        self.max_rows, self.max_queue, self.prefill_tokens = max_rows, max_queue, prefill_tokens
        self.capacity = capacity
        self.on_step = on_step
        config = GenerationConfig.for_model(model)
        eos = config.eos_token_id
        self.eos = set([eos] if isinstance(eos, int) else (eos or []))
        if tokenizer.eos_token_id is not None:
            self.eos.add(tokenizer.eos_token_id)
        self.pad = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else next(iter(self.eos), 0)
        self.special = set(tokenizer.all_special_ids)
        self.call = getattr(model, "decode_step", model)
        self.waiting: collections.deque[Request] = collections.deque()
        self.rows: list[_Row] = []
        self.cache: SlotCache | None = None
        self.cv = threading.Condition()
        self.closed = False
        self.thread: threading.Thread | None = None
        self.steps = self.generated = 0

    @property
    def queue_depth(self) -> int:
        return len(self.waiting)

    @property
    def running(self) -> int:
        return len(self.rows)

    def submit(self, request: Request) -> None:
        with self.cv:
            if self.closed:
                raise QueueFull(f"{self.name} is shutting down")
            if len(self.waiting) >= self.max_queue:
                raise QueueFull(f"{self.name}: {len(self.waiting)} requests are already waiting")
            self.waiting.append(request)
            if self.thread is None:
                self.thread = threading.Thread(target=self._run, name=f"peluk-generate-{self.name}", daemon=True)
                self.thread.start()
            self.cv.notify()

    def close(self, timeout: float = 10.0) -> None:
        with self.cv:
            self.closed = True
            self.cv.notify()
        if self.thread is not None:
            self.thread.join(timeout)

    # --- the loop (engine thread only) ------------------------------------------------------------
    def _run(self) -> None:
        with torch.inference_mode():
            while True:
                with self.cv:
                    while not self.closed and not self.waiting and not self.rows:
                        self.cv.wait()
                    if self.closed:
                        break
                    joining = self._take()
                try:
                    if joining:
                        self._prefill(joining)
                    if self.rows:
                        self._decode()
                except Exception as e:  # a failed step fails its requests, never the loop
                    log.exception("peluk serve: generation with %s failed", self.name)
                    for r in [*joining, *(row.request for row in self.rows)]:
                        r.emit(Step(-1, "", "", error=f"generation failed: {type(e).__name__}: {e}"))
                    self.rows, self.cache = [], None
        for r in [*self.waiting, *(row.request for row in self.rows)]:
            r.emit(Step(-1, "", "", error="the server is shutting down"))

    def _take(self) -> list[Request]:
        taken, budget = [], self.prefill_tokens
        while self.waiting and len(self.rows) + len(taken) < self.max_rows:
            r = self.waiting[0]
            if r.cancelled:
                self.waiting.popleft()
                continue
            if taken and len(r.prompt) > budget:
                break
            taken.append(self.waiting.popleft())
            budget -= len(r.prompt)
        return taken

    def _prefill(self, requests: list[Request]) -> None:
        P = max(len(r.prompt) for r in requests)
        ids = torch.full((len(requests), P), self.pad, dtype=torch.long)
        mask = torch.zeros((len(requests), P), dtype=torch.long)
        for i, r in enumerate(requests):  # left padding: every prompt ends at column P
            ids[i, P - len(r.prompt):] = torch.tensor(r.prompt)
            mask[i, P - len(r.prompt):] = 1
        positions = (mask.cumsum(-1) - 1).clamp(min=0)
        cache = self.model.make_cache(len(requests), P)
        logits = self.model(ids, attention_mask=mask, position_ids=positions, cache=cache,
                            logits_to_keep=1).logits[:, -1].float()
        rows = [_Row(r) for r in requests]
        done = self._advance(rows, logits)
        keep = [i for i in range(len(rows)) if i not in done]
        if keep:
            if self.cache is None:
                self.cache = SlotCache(cache, self.max_rows, self.capacity)
            self.cache.join(cache, mask, keep)
            self.rows += [rows[i] for i in keep]

    def _decode(self) -> None:
        started = time.perf_counter()
        for i in sorted((i for i, row in enumerate(self.rows) if row.request.cancelled), reverse=True):
            self._remove(i)
        if not self.rows:
            return
        ids = torch.tensor([[row.tokens[-1]] for row in self.rows])
        positions = torch.tensor([[row.position] for row in self.rows])
        mask = self.cache.step_mask()
        logits = self.call(ids, attention_mask=mask, position_ids=positions, cache=self.cache,
                           logits_to_keep=1).logits[:, -1].float()
        for row in self.rows:
            row.position += 1
        n = len(self.rows)
        for i in sorted(self._advance(self.rows, logits), reverse=True):
            self._remove(i)
        self.steps += 1
        if self.on_step is not None:
            self.on_step(n, time.perf_counter() - started)

    def _remove(self, i: int) -> None:
        self.cache.remove(i)
        self.rows[i] = self.rows[-1]
        self.rows.pop()

    def _advance(self, rows: list[_Row], logits: torch.Tensor) -> set[int]:
        """Choose each row's next token, tell its caller; return the rows that finished."""
        plain = logits.argmax(-1).tolist() if any(r.plain for r in rows) else None
        want_logprobs = any(r.request.logprobs for r in rows)
        logprobs = logits.log_softmax(-1) if want_logprobs else None
        finished = set()
        for i, row in enumerate(rows):
            if row.plain:
                token = plain[i]
            else:
                scores = apply_all(row.processors, row.history(), logits[i:i + 1])
                token = int(sample(scores, row.generator)[0]) if row.request.sampling.do_sample \
                    else int(scores.argmax(-1)[0])
            lp, top = None, []
            if row.request.logprobs:
                lp = float(logprobs[i, token])
                if row.request.top_logprobs:
                    values, ids = logprobs[i].topk(row.request.top_logprobs)
                    top = [(t, self.tokenizer.decode([t]), float(v)) for t, v in zip(ids.tolist(), values.tolist())]
            self.generated += 1
            if self._emit(row, token, lp, top):
                finished.add(i)
        return finished

    def _emit(self, row: _Row, token: int, logprob, top) -> bool:
        """Record ``token``, send its Step; True when the request is finished."""
        request = row.request
        row.tokens.append(token)
        piece = self.tokenizer.decode([token])
        finish, generated = None, None
        if token in self.eos:
            finish = "eos"
            text = self.tokenizer.decode(row.tokens[:-1], skip_special_tokens=True)
        else:
            text = self.tokenizer.decode(row.tokens, skip_special_tokens=True)
        hit = min((i for i in (text.find(s, max(row.sent - len(s), 0)) for s in request.stop) if i >= 0), default=-1)
        if hit >= 0:
            finish, text = "stop", text[:hit]
        elif finish is None and len(row.tokens) >= request.max_new_tokens:
            finish = "length"
        if finish is not None:
            shown, generated = text[row.sent:], text
        elif text.endswith("\ufffd"):  # half of a multi-byte character: wait for the rest
            shown = ""
        else:
            safe = max(len(text) - held_back(text, request.stop), row.sent)
            shown = text[row.sent:safe]
        row.sent += len(shown)
        request.emit(Step(token, piece, shown, logprob, top, token in self.special, finish, generated,
                          len(row.tokens)))
        return finish is not None or request.cancelled
