"""Beam search, step for step the algorithm of transformers' (vectorised) ``_beam_search``,
so that outputs are token-identical to theirs.

Each prompt keeps ``num_beams`` running hypotheses. At every step the log-probabilities of
all beams × vocabulary are ranked; the best ``2 × num_beams`` (more with several EOS ids)
candidates are kept so that enough unfinished ones remain; those ending in EOS become
finished hypotheses scored ``sum log p / generated_length ** length_penalty``; the search
stops when no running beam can beat the worst finished one (``early_stopping``).
"""

from __future__ import annotations

import torch

from peluk.generation.sampling import apply_all, min_length, processors_for


def _gather(t: torch.Tensor, idx: torch.Tensor) -> torch.Tensor:
    """Pick beams ``idx`` (B, K) along dim 1 of ``t`` (B, N, ...)."""
    while idx.dim() < t.dim():
        idx = idx.unsqueeze(-1)
    return t.gather(1, idx.expand(*idx.shape[:2], *t.shape[2:]))


def beam_search(model, input_ids, attention_mask, config, max_new_tokens: int, cache=None, extra_processors=(),
                positions_from_mask: bool = True):
    """Returns (B * num_return_sequences, T + generated) sequences, best first per prompt.

    Encoder-decoders pass their decoder start ids as ``input_ids``, a ``cache`` that holds the
    encoder output (one copy per beam) and forced-token processors.
    """
    nb = config.num_beams
    B, T = input_ids.shape
    device = input_ids.device
    eos = torch.tensor([config.eos_token_id] if isinstance(config.eos_token_id, int)
                       else list(config.eos_token_id or []), device=device)
    max_length = T + max_new_tokens
    keep = max(2, 1 + len(eos)) * nb
    top_nb = torch.cat([torch.ones(nb, dtype=torch.bool), torch.zeros(keep - nb, dtype=torch.bool)]).to(device)
    # transformers fills with `pad_token_id or eos[0]`, so a pad id of 0 fills with EOS; kept for identical output
    pad = (config.pad_token_id or int(eos[0])) if len(eos) else (config.pad_token_id if config.pad_token_id is not None else -1)
    lp, es = config.length_penalty, config.early_stopping

    running = torch.full((B, nb, max_length), pad, dtype=torch.long, device=device)
    running[:, :, :T] = input_ids[:, None]
    sequences = running.clone()
    running_scores = torch.zeros(B, nb, device=device)
    running_scores[:, 1:] = -1e9
    scores = torch.full((B, nb), -1e9, device=device)
    finished = torch.zeros(B, nb, dtype=torch.bool, device=device)
    improvable = torch.ones(B, 1, dtype=torch.bool, device=device)
    running_idx = torch.full((B, nb, max_new_tokens), -1, dtype=torch.long, device=device)
    beam_idx = running_idx.clone()

    mask = (attention_mask if attention_mask is not None else torch.ones_like(input_ids)).repeat_interleave(nb, 0)
    minimum = max(T + (config.min_new_tokens or 0), config.min_length)
    processors = [min_length(eos.tolist(), minimum)] + list(extra_processors) + processors_for(
        repetition_penalty_=config.repetition_penalty, no_repeat_ngram_size=config.no_repeat_ngram_size,
        attention_mask=mask if positions_from_mask else None)
    positions = (mask.cumsum(-1) - 1).masked_fill(mask == 0, 0)
    cache = cache if cache is not None else model.make_cache(B * nb, max_length)
    call = getattr(model, "decode_step", model)
    ids = input_ids.repeat_interleave(nb, 0)
    cur = T
    while True:
        logits = call(ids, attention_mask=mask, position_ids=positions, cache=cache, logits_to_keep=1).logits[:, -1]
        log_probs = logits.float().log_softmax(-1)
        log_probs = apply_all(processors, running[:, :, :cur].reshape(B * nb, cur), log_probs)
        V = log_probs.shape[-1]
        # in place: these (B * beams, V) tensors are large enough that an extra copy shows
        log_probs = log_probs.view(B, nb, V).add_(running_scores[:, :, None]).view(B, nb * V)

        # the top `keep` continuations
        top_scores, top_index = torch.topk(log_probs, keep)
        from_beam = top_index // V
        top_running_idx = _gather(running_idx, from_beam)
        top_seqs = _gather(running, from_beam)
        top_seqs[:, :, cur] = top_index % V
        top_running_idx[:, :, cur - T] = from_beam + torch.arange(B, device=device)[:, None] * nb

        hits = torch.isin(top_seqs[:, :, cur], eos) if len(eos) else torch.zeros_like(top_scores, dtype=torch.bool)
        if cur + 1 >= max_length:
            hits = torch.ones_like(hits)

        # running beams for the next step: the best ones that did not finish
        keep_scores = top_scores + hits.float() * -1e9
        nxt = torch.topk(keep_scores, nb)[1]
        running, running_scores, running_idx = _gather(top_seqs, nxt), _gather(keep_scores, nxt), _gather(top_running_idx, nxt)

        # finished hypotheses: merge the new ones into the kept set if they score better
        just_finished = hits & top_nb[None, :]
        fin_scores = top_scores / ((cur + 1 - T) ** lp)
        full = finished.all(dim=-1, keepdim=True) & (es is True)
        fin_scores = fin_scores + full.float() * -1e9 + (~improvable).float() * -1e9 + (~just_finished) * -1e9
        merged = torch.topk(torch.cat([scores, fin_scores], 1), nb)[1]
        sequences = _gather(torch.cat([sequences, top_seqs], 1), merged)
        scores = _gather(torch.cat([scores, fin_scores], 1), merged)
        beam_idx = _gather(torch.cat([beam_idx, top_running_idx], 1), merged)
        finished = _gather(torch.cat([finished, just_finished], 1), merged)

        # reorder the cache rows to follow their beams
        cache.reorder_beams(running_idx[:, :, cur - T].reshape(-1))
        cur += 1
        best_len = (max_length - T) if (es == "never" and lp > 0.0) else (cur - T)
        best_running = running_scores[:, :1] / (best_len ** lp)
        worst_finished = torch.where(finished, scores.min(dim=1, keepdim=True)[0], -1.0e9)
        improvable = improvable & (best_running > worst_finished).any(dim=-1, keepdim=True)
        go_on = bool(improvable.any()) and not (bool(finished.all()) and es is True) and not bool(hits.all())
        if not go_on:
            break
        mask = torch.cat([mask, mask.new_ones(B * nb, 1)], dim=1)
        positions = positions[:, -1:] + 1
        ids = running[:, :, cur - 1].reshape(B * nb, 1)

    n = config.num_return_sequences
    sequences = sequences[:, :n].reshape(B * n, max_length)
    generated = (beam_idx[:, :n].reshape(B * n, -1) + 1).bool().sum(dim=1).max()
    return sequences[:, :T + int(generated)]
