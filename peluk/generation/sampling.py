"""Logits processors and samplers: plain callables, applied in transformers' order.

A processor is ``f(sequences (B, L), scores (B, V)) -> scores``; ``processors_for`` builds the
list transformers would build for the same options (penalties first, then, when sampling,
temperature → top-k → top-p → min-p). ``sample`` and ``greedy`` turn scores into tokens.
"""

from __future__ import annotations

from typing import Callable

import torch

Processor = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]


def repetition_penalty(penalty: float, skip: torch.Tensor | None = None) -> Processor:
    """Make already-seen tokens less likely (CTRL, https://arxiv.org/abs/1909.05858).

    ``skip`` (B,) counts each row's leading positions to ignore: its left padding, which
    transformers does not penalise either.
    """
    def apply(seqs, scores):
        V = scores.shape[-1]
        if skip is not None:  # ignored positions point at an extra, discarded column
            ignored = torch.arange(seqs.shape[1], device=seqs.device)[None] < skip.to(seqs.device)[:, None]
            seqs = seqs.masked_fill(ignored, V)
        seen = torch.zeros(scores.shape[0], V + 1, dtype=torch.bool, device=scores.device)
        seen = seen.scatter_(1, seqs, True)[:, :V]
        return torch.where(seen, torch.where(scores < 0, scores * penalty, scores / penalty), scores)
    return apply


def no_repeat_ngram(n: int) -> Processor:
    """Forbid any token that would complete an n-gram already present in the sequence."""
    def apply(seqs, scores):
        L = seqs.shape[1]
        if L + 1 < n:
            return scores
        scores = scores.clone()
        for row, tokens in enumerate(seqs.tolist()):
            prefix = tuple(tokens[L + 1 - n:]) if n > 1 else ()
            banned = [tokens[i + n - 1] for i in range(L - n + 1) if tuple(tokens[i:i + n - 1]) == prefix]
            if banned:
                scores[row, banned] = -float("inf")
        return scores
    return apply


def forced_token(token: int, at_length: int) -> Processor:
    """Force ``token`` when the sequence so far has ``at_length - 1`` tokens (forced BOS/EOS)."""
    def apply(seqs, scores):
        if seqs.shape[1] != at_length - 1:
            return scores
        forced = torch.full_like(scores, -float("inf"))
        forced[:, token] = 0
        return forced
    return apply


def min_length(eos: list[int], length: int) -> Processor:
    """Forbid EOS while sequences are shorter than ``length`` tokens."""
    def apply(seqs, scores):
        if seqs.shape[1] >= length or not eos:
            return scores
        return scores.index_fill(1, torch.tensor(eos, device=scores.device), -float("inf"))
    return apply


def temperature(t: float) -> Processor:
    return lambda seqs, scores: scores / t


def top_k(k: int, keep: int = 1) -> Processor:
    """Keep the k most likely tokens."""
    def apply(seqs, scores):
        kth = torch.topk(scores, min(max(k, keep), scores.shape[-1]))[0][..., -1, None]
        return scores.masked_fill(scores < kth, -float("inf"))
    return apply


def top_p(p: float, keep: int = 1) -> Processor:
    """Keep the smallest set of most likely tokens whose probability reaches p (nucleus sampling)."""
    def apply(seqs, scores):
        sorted_scores, order = torch.sort(scores, descending=False)
        cumulative = sorted_scores.softmax(dim=-1).cumsum(dim=-1)
        remove = cumulative <= (1 - p)
        remove[..., -keep:] = False
        return scores.masked_fill(remove.scatter(1, order, remove), -float("inf"))
    return apply


def min_p(p: float, keep: int = 1) -> Processor:
    """Keep tokens at least p times as likely as the most likely one."""
    def apply(seqs, scores):
        probs = scores.softmax(dim=-1)
        threshold = p * probs.amax(dim=-1, keepdim=True)
        remove = probs < threshold
        top = torch.argsort(scores, descending=True)[..., :keep]
        remove.scatter_(1, top, False)
        return scores.masked_fill(remove, -float("inf"))
    return apply


def processors_for(*, do_sample: bool = False, temperature_: float | None = None, top_k_: int | None = None,
                   top_p_: float | None = None, min_p_: float | None = None, repetition_penalty_: float | None = None,
                   no_repeat_ngram_size: int | None = None, keep: int = 1,
                   attention_mask: torch.Tensor | None = None) -> list[Processor]:
    """The processors transformers' generate applies for these options, in its order.
    ``attention_mask`` (of the prompts, one row per generated row) locates left padding."""
    out: list[Processor] = []
    if repetition_penalty_ is not None and repetition_penalty_ != 1.0:
        skip = (attention_mask != 0).int().argmax(dim=1) if attention_mask is not None else None
        out.append(repetition_penalty(repetition_penalty_, skip))
    if no_repeat_ngram_size:
        out.append(no_repeat_ngram(no_repeat_ngram_size))
    if do_sample:
        if temperature_ is not None and temperature_ != 1.0:
            out.append(temperature(temperature_))
        if top_k_:
            out.append(top_k(top_k_, keep))
        if top_p_ is not None and top_p_ < 1.0:
            out.append(top_p(top_p_, keep))
        if min_p_ is not None:
            out.append(min_p(min_p_, keep))
    return out


def apply_all(processors: list[Processor], seqs: torch.Tensor, scores: torch.Tensor) -> torch.Tensor:
    for p in processors:
        scores = p(seqs, scores)
    return scores


def greedy(scores: torch.Tensor, generator: torch.Generator | None = None) -> torch.Tensor:
    return scores.argmax(dim=-1)


def sample(scores: torch.Tensor, generator: torch.Generator | None = None) -> torch.Tensor:
    probs = scores.float().softmax(dim=-1)
    return torch.multinomial(probs, num_samples=1, generator=generator).squeeze(1)
