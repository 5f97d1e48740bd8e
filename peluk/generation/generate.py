"""Text generation for decoders: ``generate_step`` (a generator), and ``generate`` / ``stream`` over it.

``generate_step`` runs the prompt through the model once (prefill, filling the KV cache), then
yields one token per row per step; rows that finished (EOS or a stop criterion) yield the pad
token from then on. ``generate`` collects the tokens into sequences shaped like transformers'
output; ``stream`` turns them into text chunks that are safe to print as they come: never half
of a multi-byte character, never the start of a stop string that may still complete.
"""

from __future__ import annotations

from typing import Callable, Iterator

import torch

from peluk.config import GenerationConfig
from peluk.errors import PelukError
from peluk.generation.sampling import apply_all, greedy, processors_for, sample
from peluk.models.base import ModelOutput


class GenerationError(PelukError, ValueError):
    """Invalid generation request: empty prompt, prompt longer than the context, bad options."""


StopCriterion = Callable[[torch.Tensor], torch.Tensor]  # sequences (B, L) -> finished rows (B,) bool


def _eos_list(eos) -> list[int]:
    return [] if eos is None else [eos] if isinstance(eos, int) else list(eos)


@torch.no_grad()  # as transformers' generate; also lets decoders take their lean decode step
def generate_step(model, input_ids: torch.Tensor, attention_mask: torch.Tensor | None = None, *, max_new_tokens: int,
                  processors=(), do_sample: bool = False, generator: torch.Generator | None = None,
                  eos_token_id=None, pad_token_id: int | None = None, min_new_tokens: int = 0,
                  stop: StopCriterion | None = None, logprobs: bool = False, cache=None
                  ) -> Iterator[tuple[torch.Tensor, torch.Tensor | None]]:
    """Yield ``(tokens (B,), logprobs (B,) or None)`` once per generated position.

    Args:
        input_ids, attention_mask: the (left-padded) prompts, (B, T).
        processors: logits processors (``peluk.generation.sampling``), applied in order.
        do_sample / generator: sample with that RNG instead of taking the argmax.
        eos_token_id: an id or a list of ids that end a row; pad_token_id fills finished rows.
        min_new_tokens: EOS is forbidden before this many tokens.
        stop: an extra criterion on the sequences so far (e.g. stop strings).
        logprobs: also yield the model's log-probability (before processors) of each chosen token.
        cache: a KV cache from ``model.make_cache``; by default one sized for prompt + new tokens.
    """
    B, T = input_ids.shape
    device = input_ids.device
    eos = torch.tensor(_eos_list(eos_token_id), device=device)
    pad = pad_token_id if pad_token_id is not None else (int(eos[0]) if len(eos) else 0)
    if attention_mask is None:
        attention_mask = torch.ones_like(input_ids)
    cache = cache if cache is not None else model.make_cache(B, T + max_new_tokens)
    call = getattr(model, "decode_step", model)  # encoder-decoders: the decoder, reading the encoder from cache
    # positions count real tokens only, so a left-padded row is numbered as if unpadded
    positions = (attention_mask.long().cumsum(-1) - 1).masked_fill(attention_mask == 0, 0)
    sequences, ids, unfinished = input_ids, input_ids, torch.ones(B, dtype=torch.bool, device=device)
    for step in range(max_new_tokens):
        logits = call(ids, attention_mask=attention_mask, position_ids=positions, cache=cache,
                      logits_to_keep=1).logits[:, -1].float()  # (B, V)
        scores = logits
        if step < min_new_tokens and len(eos):
            scores = scores.index_fill(1, eos, -float("inf"))
        scores = apply_all(processors, sequences, scores)
        tokens = sample(scores, generator) if do_sample else greedy(scores)
        tokens = torch.where(unfinished, tokens, pad)
        chosen = logits.log_softmax(-1).gather(1, tokens[:, None]).squeeze(1) if logprobs else None
        yield tokens, chosen
        sequences = torch.cat([sequences, tokens[:, None]], dim=1)
        if len(eos):
            unfinished &= ~torch.isin(tokens, eos)
        if stop is not None:
            unfinished &= ~stop(sequences)
        if not bool(unfinished.any()):
            return
        attention_mask = torch.cat([attention_mask, attention_mask.new_ones(B, 1)], dim=1)
        positions = positions[:, -1:] + 1
        ids = tokens[:, None]


def _prepare(model, input_ids, attention_mask, options: dict, truncate_prompt: bool):
    """Resolve options against the model's generation config; validate and fit the prompt."""
    config = GenerationConfig.for_model(model).updated(**options)
    if input_ids.dim() == 1:
        input_ids = input_ids[None]
    if input_ids.shape[1] == 0:
        raise GenerationError("the prompt is empty: give at least one token (e.g. the BOS token)")
    new = config.max_new_tokens if config.max_new_tokens is not None else max(config.max_length - input_ids.shape[1], 0)
    limit = model.config.max_input_length
    if limit and input_ids.shape[1] + new > limit:
        if not truncate_prompt or new >= limit:
            raise GenerationError(f"prompt ({input_ids.shape[1]} tokens) + max_new_tokens ({new}) exceeds the model's "
                                  f"context of {limit} positions; shorten the prompt or pass truncate_prompt=True "
                                  "to keep its last tokens")
        keep = limit - new
        input_ids = input_ids[:, -keep:]
        attention_mask = attention_mask[:, -keep:] if attention_mask is not None else None
    return config, input_ids, attention_mask, new


def generate(model, input_ids: torch.Tensor, attention_mask: torch.Tensor | None = None, **options):
    """Generate continuations of (left-padded) prompts, like transformers' ``model.generate``; see
    :func:`_generate` for the arguments.

    It runs under ``torch.inference_mode`` (a few percent faster per decode step than
    ``no_grad``) and hands back ordinary tensors, so callers may change them in place.
    """
    out = _generate(model, input_ids, attention_mask, **options)
    if torch.is_inference_mode_enabled():
        return out
    if isinstance(out, torch.Tensor):
        return out.clone()
    return ModelOutput(**{k: v.clone() if isinstance(v, torch.Tensor) else v for k, v in out.items()})


@torch.inference_mode()
def _generate(model, input_ids: torch.Tensor, attention_mask: torch.Tensor | None = None, *, tokenizer=None,
             stop: list[str] | None = None, seed: int | None = None, generator: torch.Generator | None = None,
             output_logprobs: bool = False, truncate_prompt: bool = False, **options):
    """Generate continuations of (left-padded) prompts, like transformers' ``model.generate``.

    Args:
        input_ids, attention_mask: (B, T) prompt ids and mask (left padding for batches).
        tokenizer: needed for ``stop`` strings.
        stop: strings that end a row once its generated text contains one.
        seed / generator: make sampling reproducible.
        output_logprobs: return ``ModelOutput(sequences=..., logprobs=(B, new))`` instead of a tensor.
        truncate_prompt: drop the prompt's first tokens if prompt + new tokens exceed the context.
        **options: GenerationConfig fields (max_new_tokens, do_sample, temperature, top_k, top_p,
            min_p, repetition_penalty, no_repeat_ngram_size, num_beams, length_penalty,
            early_stopping, num_return_sequences, eos_token_id, pad_token_id, ...), defaulting to
            the model's generation_config.json.

    Returns:
        (B * num_return_sequences, T + generated) token ids: prompt, then new tokens, then padding.

    Raises:
        GenerationError: empty prompt, prompt longer than the context, bad options.

    >>> ids = tok("Ibu kota Indonesia adalah", return_tensors="pt").input_ids   # doctest: +SKIP
    >>> tok.decode(generate(model, ids, max_new_tokens=10)[0])                  # doctest: +SKIP
    """
    if getattr(model, "is_encoder_decoder", False):
        return _generate_seq2seq(model, input_ids, attention_mask, tokenizer=tokenizer, stop=stop, seed=seed,
                                 generator=generator, output_logprobs=output_logprobs, **options)
    config, input_ids, attention_mask, new = _prepare(model, input_ids, attention_mask, options, truncate_prompt)
    if new == 0:
        return ModelOutput(sequences=input_ids, logprobs=input_ids.new_zeros(input_ids.shape[0], 0).float()) \
            if output_logprobs else input_ids
    if generator is None and seed is not None:
        generator = torch.Generator(device=input_ids.device).manual_seed(seed)
    if stop and tokenizer is None:
        raise GenerationError("stop strings need tokenizer=")
    if config.num_beams > 1:
        from peluk.generation.beam import beam_search

        if config.do_sample:
            raise GenerationError("beam sampling (num_beams > 1 with do_sample=True) is not supported")
        if config.num_return_sequences > config.num_beams:
            raise GenerationError("num_return_sequences must be <= num_beams")
        return beam_search(model, input_ids, attention_mask, config, new)
    if config.num_return_sequences > 1:
        if not config.do_sample:
            raise GenerationError("num_return_sequences > 1 needs do_sample=True or num_beams >= num_return_sequences")
        input_ids = input_ids.repeat_interleave(config.num_return_sequences, dim=0)
        attention_mask = attention_mask.repeat_interleave(config.num_return_sequences, dim=0) \
            if attention_mask is not None else None
    processors = processors_for(do_sample=config.do_sample, temperature_=config.temperature, top_k_=config.top_k,
                                top_p_=config.top_p, min_p_=config.min_p, repetition_penalty_=config.repetition_penalty,
                                no_repeat_ngram_size=config.no_repeat_ngram_size, attention_mask=attention_mask)
    T = input_ids.shape[1]
    criterion = stop_strings(tokenizer, stop, T) if stop else None
    steps = list(generate_step(model, input_ids, attention_mask, max_new_tokens=new, processors=processors,
                               do_sample=config.do_sample, generator=generator, eos_token_id=config.eos_token_id,
                               pad_token_id=config.pad_token_id,
                               min_new_tokens=max(config.min_new_tokens or 0, config.min_length - T),
                               stop=criterion, logprobs=output_logprobs))
    sequences = torch.cat([input_ids, torch.stack([t for t, _ in steps], dim=1)], dim=1)
    if output_logprobs:
        return ModelOutput(sequences=sequences, logprobs=torch.stack([lp for _, lp in steps], dim=1))
    return sequences


def _generate_seq2seq(model, input_ids, attention_mask, *, tokenizer, stop, seed, generator, output_logprobs, **options):
    """Encoder-decoders: run the encoder once, then decode from ``decoder_start_token_id``.

    Returns the decoder sequences (start token first), as transformers does.
    """
    from peluk.generation.sampling import forced_token

    config = GenerationConfig.for_model(model).updated(**options)
    if input_ids.dim() == 1:
        input_ids = input_ids[None]
    if input_ids.shape[1] == 0:
        raise GenerationError("the input is empty: give at least one token")
    start = config.decoder_start_token_id if config.decoder_start_token_id is not None else config.bos_token_id
    if start is None:
        raise GenerationError("the model config has no decoder_start_token_id")
    new = config.max_new_tokens if config.max_new_tokens is not None else max(config.max_length - 1, 0)
    B = input_ids.shape[0]
    if attention_mask is None:
        attention_mask = torch.ones_like(input_ids)
    encoded = model.get_encoder()(input_ids, attention_mask).last_hidden_state
    rows = config.num_beams if config.num_beams > 1 else config.num_return_sequences
    if rows > 1:  # one copy of the encoder output per beam / returned sequence
        encoded, attention_mask = encoded.repeat_interleave(rows, 0), attention_mask.repeat_interleave(rows, 0)
    decoder_ids = torch.full((B, 1), start, dtype=torch.long, device=input_ids.device)
    if new == 0:
        return decoder_ids
    forced = []
    if config.forced_bos_token_id is not None:  # e.g. mBART's target language code
        forced.append(forced_token(config.forced_bos_token_id, at_length=2))
    if config.forced_eos_token_id is not None:
        forced.append(forced_token(config.forced_eos_token_id, at_length=1 + new))
    if generator is None and seed is not None:
        generator = torch.Generator(device=input_ids.device).manual_seed(seed)
    if config.num_beams > 1:
        from peluk.generation.beam import beam_search

        if config.do_sample:
            raise GenerationError("beam sampling (num_beams > 1 with do_sample=True) is not supported")
        cache = model.make_cache(B * config.num_beams, 1 + new, encoded, attention_mask)
        return beam_search(model, decoder_ids, None, config, new, cache=cache, extra_processors=forced,
                           positions_from_mask=False)
    decoder_ids = decoder_ids.repeat_interleave(rows, 0)
    cache = model.make_cache(B * rows, 1 + new, encoded, attention_mask)
    processors = forced + processors_for(do_sample=config.do_sample, temperature_=config.temperature,
                                         top_k_=config.top_k, top_p_=config.top_p, min_p_=config.min_p,
                                         repetition_penalty_=config.repetition_penalty,
                                         no_repeat_ngram_size=config.no_repeat_ngram_size)
    criterion = stop_strings(tokenizer, stop, 1) if stop else None
    min_new = max(config.min_new_tokens or 0, config.min_length - 1)  # min_length counts the start token
    steps = list(generate_step(model, decoder_ids, max_new_tokens=new, processors=processors,
                               do_sample=config.do_sample, generator=generator, eos_token_id=config.eos_token_id,
                               pad_token_id=config.pad_token_id, min_new_tokens=min_new,
                               stop=criterion, logprobs=output_logprobs, cache=cache))
    sequences = torch.cat([decoder_ids, torch.stack([t for t, _ in steps], dim=1)], dim=1)
    if output_logprobs:
        return ModelOutput(sequences=sequences, logprobs=torch.stack([lp for _, lp in steps], dim=1))
    return sequences


def stop_strings(tokenizer, stops: list[str], prompt_len: int) -> StopCriterion:
    """A criterion that is true for rows whose generated text contains one of ``stops``."""
    def finished(sequences: torch.Tensor) -> torch.Tensor:
        texts = [tokenizer.decode(row[prompt_len:].tolist(), skip_special_tokens=True) for row in sequences]
        return torch.tensor([any(s in t for s in stops) for t in texts], device=sequences.device)
    return finished


def stream(model, tokenizer, prompt, *, stop: list[str] | None = None, skip_special_tokens: bool = True,
           seed: int | None = None, truncate_prompt: bool = False, stats: dict | None = None,
           **options) -> Iterator[str]:
    """Yield the generated text of one prompt in printable pieces.

    Chunks never end inside a multi-byte character, and text that might be the start of a stop
    string is held back until it is known not to be one; generation ends at a stop string
    (which is not yielded). ``prompt`` is a string or a list of token ids. A ``stats`` dict is
    filled with ``prompt_tokens``, ``tokens``, ``first_token_s`` and ``seconds``.
    """
    import time

    started = time.perf_counter()
    ids = tokenizer(prompt)["input_ids"] if isinstance(prompt, str) else list(prompt)
    input_ids = torch.tensor([ids], device=model.device)
    config, input_ids, _, new = _prepare(model, input_ids, None, options, truncate_prompt)
    generator = torch.Generator(device=input_ids.device).manual_seed(seed) if seed is not None else None
    processors = processors_for(do_sample=config.do_sample, temperature_=config.temperature, top_k_=config.top_k,
                                top_p_=config.top_p, min_p_=config.min_p, repetition_penalty_=config.repetition_penalty,
                                no_repeat_ngram_size=config.no_repeat_ngram_size)
    stops = [s for s in stop or [] if s]
    tokens: list[int] = []
    sent = 0
    eos = set(_eos_list(config.eos_token_id))
    if stats is not None:
        stats.update(prompt_tokens=input_ids.shape[1], tokens=0)
    for token, _ in generate_step(model, input_ids, max_new_tokens=new, processors=processors,
                                  do_sample=config.do_sample, generator=generator, eos_token_id=config.eos_token_id,
                                  pad_token_id=config.pad_token_id, min_new_tokens=config.min_new_tokens or 0):
        t = int(token[0])
        if stats is not None:
            stats["tokens"] += 1
            stats.setdefault("first_token_s", time.perf_counter() - started)
            stats["seconds"] = time.perf_counter() - started
        if t in eos and skip_special_tokens:
            break
        tokens.append(t)
        text = tokenizer.decode(tokens, skip_special_tokens=skip_special_tokens)
        if text.endswith("\ufffd"):  # a multi-byte character split across tokens: wait for the rest
            continue
        hit = min((i for i in (text.find(s, max(sent - len(s), 0)) for s in stops) if i >= 0), default=-1)
        if hit >= 0:
            if hit > sent:
                yield text[sent:hit]
            return
        safe = len(text) - held_back(text, stops)
        if safe > sent:
            yield text[sent:safe]
            sent = safe
    text = tokenizer.decode(tokens, skip_special_tokens=skip_special_tokens)
    if len(text) > sent:
        yield text[sent:]


def held_back(text: str, stops: list[str]) -> int:
    """Length of the longest end of ``text`` that is a proper prefix of a stop string."""
    best = 0
    for s in stops:
        for n in range(min(len(s) - 1, len(text)), best, -1):
            if text.endswith(s[:n]):
                best = n
                break
    return best
