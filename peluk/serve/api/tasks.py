"""The HF Inference API's tasks: which inputs and parameters each takes, and the shape of its answer.

``inputs_of(task, inputs)`` checks the request's ``inputs`` and returns (items, single);
``params_of(task, parameters)`` checks names and types (everything a client may send is either
used, ignored on purpose, or refused with a 422 naming it); ``shape(task, outputs, single)``
turns the pipelines' per-item results into what ``huggingface_hub.InferenceClient`` parses
(text-classification nested ``[[...]]``, zero-shot a list of ``{label, score}``, ...).
"""

from __future__ import annotations

from typing import Any, Callable

from peluk.serve.api.protocol import ApiError

GENERATION = ("text2text-generation", "summarization", "translation")


def _fail(name: str, what: str, value: Any) -> ApiError:
    return ApiError(422, f"parameters.{name} must be {what}, got {value!r:.60}", "validation", param=name)


def _raise(name: str, what: str, value: Any):
    raise _fail(name, what, value)


def integer(low: int = 0, high: int | None = None) -> Callable:
    def check(name, v):
        if isinstance(v, bool) or not isinstance(v, int) or v < low or (high is not None and v > high):
            raise _fail(name, f"an integer from {low}" + (f" to {high}" if high is not None else ""), v)
        return v
    return check


def number(low: float | None = None, high: float | None = None, strict_low: bool = False) -> Callable:
    def check(name, v):
        ok = isinstance(v, (int, float)) and not isinstance(v, bool) and v == v and abs(v) != float("inf")
        if ok and low is not None:
            ok = v > low if strict_low else v >= low
        if ok and high is not None:
            ok = v <= high
        if not ok:
            raise _fail(name, "a number" + (f" {'>' if strict_low else '>='} {low}" if low is not None else "")
                        + (f" and <= {high}" if high is not None else ""), v)
        return float(v)
    return check


def boolean(name, v):
    if not isinstance(v, bool):
        raise _fail(name, "true or false", v)
    return v


def text(name, v):
    if not isinstance(v, str):
        raise _fail(name, "a string", v)
    return v


def one_of(*choices) -> Callable:
    def check(name, v):
        if not isinstance(v, str) or v.lower() not in choices:
            raise _fail(name, f"one of {list(choices)}", v)
        return v.lower()
    return check


def strings(name, v):
    if isinstance(v, str):
        return v
    if not isinstance(v, list) or not v or not all(isinstance(x, str) and x for x in v):
        raise _fail(name, "a string or a non-empty list of non-empty strings", v)
    return v


def string_list(name, v):
    if not isinstance(v, list) or not all(isinstance(x, str) for x in v):
        raise _fail(name, "a list of strings", v)
    return v


def optional(check: Callable) -> Callable:
    return lambda name, v: None if v is None else check(name, v)


IGNORED = object()  # accepted from clients, no effect in peluk


def ignored(name, v):
    return IGNORED


def absent(name, v):
    if v is not None:
        raise ApiError(422, f"parameters.{name} is not supported by this server", "validation", param=name)
    return IGNORED


# generation options of the encoder-decoder pipelines (the caller adds max_new_tokens' cap)
GENERATE = {"max_new_tokens": optional(integer(1)), "max_length": optional(integer(1)),
            "min_length": optional(integer(0)), "min_new_tokens": optional(integer(0)),
            "do_sample": optional(boolean), "temperature": optional(number(0, strict_low=True)),
            "top_k": optional(integer(0)), "top_p": optional(number(0, 1, strict_low=True)),
            "repetition_penalty": optional(number(0, strict_low=True)), "no_repeat_ngram_size": optional(integer(0)),
            "num_beams": optional(integer(1, 8)), "length_penalty": optional(number()),
            "early_stopping": optional(lambda n, v: v if isinstance(v, bool) or v == "never"
                                       else _raise(n, "a bool or 'never'", v)),
            "num_return_sequences": optional(integer(1, 8)), "seed": optional(integer(0, 2 ** 63 - 1)),
            "use_cache": ignored, "typical_p": absent, "epsilon_cutoff": absent, "eta_cutoff": absent,
            "penalty_alpha": absent, "num_beam_groups": absent}

PARAMS: dict[str, dict[str, Callable]] = {
    "text-classification": {"top_k": optional(integer(1)),
                            "function_to_apply": optional(one_of("softmax", "sigmoid", "none"))},
    "token-classification": {"aggregation_strategy": optional(one_of("none", "simple", "first", "average", "max")),
                             "ignore_labels": optional(string_list), "stride": optional(integer(0))},
    "fill-mask": {"top_k": optional(integer(1, 1000)), "targets": optional(strings)},
    "question-answering": {"top_k": optional(integer(1, 100)), "doc_stride": optional(integer(1)),
                           "max_answer_len": optional(integer(1)), "max_seq_len": optional(integer(8)),
                           "max_question_len": optional(integer(1)), "handle_impossible_answer": optional(boolean),
                           "align_to_words": optional(boolean)},
    "zero-shot-classification": {"candidate_labels": strings, "multi_label": optional(boolean),
                                 "hypothesis_template": optional(text)},
    "feature-extraction": {"normalize": optional(boolean), "truncate": optional(boolean),
                           "truncation_direction": ignored, "prompt_name": absent, "dimensions": optional(integer(1)),
                           "encoding_format": ignored},
    "sentence-similarity": {"truncation_direction": ignored, "truncate": optional(boolean), "prompt_name": absent},
    **{t: {"src_lang": optional(text), "tgt_lang": optional(text), "clean_up_tokenization_spaces": ignored,
           "truncation": ignored, "generate_parameters": optional(lambda n, v: v if isinstance(v, dict)
                                                                 else _raise(n, "an object", v)), **GENERATE}
       for t in GENERATION},
}
# what the pipelines default to when the HF Inference API answers differently
API_DEFAULTS = {"text-classification": {"top_k": None}, "token-classification": {"aggregation_strategy": "simple"}}


def params_of(task: str, parameters: dict | None, max_new_tokens: int) -> dict:
    """Checked parameters for the task's pipeline (ignored ones dropped)."""
    spec = PARAMS.get(task, {})
    if not isinstance(parameters, dict):
        raise ApiError(422, f"parameters must be an object, got {type(parameters).__name__}", "validation")
    given = dict(parameters)
    if task in GENERATION and isinstance(given.get("generate_parameters"), dict):
        nested = given.pop("generate_parameters")
        given.update({k: v for k, v in nested.items() if k not in given})
    unknown = sorted(set(given) - set(spec))
    if unknown:
        raise ApiError(422, f"unknown parameter(s) {unknown} for {task}; it takes {sorted(spec) or 'none'}",
                       "validation", param=unknown[0])
    out = dict(API_DEFAULTS.get(task, {}))
    for name, value in given.items():
        checked = spec[name](name, value)
        if checked is not IGNORED and name != "generate_parameters":
            out[name] = checked
    out = {k: v for k, v in out.items() if v is not None or k in API_DEFAULTS.get(task, {})}
    if task in GENERATION:
        asked = out.get("max_new_tokens") or max(out.get("max_length", 0) - 1, 0)
        if asked > max_new_tokens:
            raise ApiError(422, f"max_new_tokens ({asked}) is above this server's limit of {max_new_tokens}",
                           "validation", param="max_new_tokens")
        if "max_new_tokens" not in out and "max_length" not in out:
            out["max_new_tokens"] = min(100, max_new_tokens)
        beams = out.get("num_beams") or 1
        if (out.get("num_return_sequences") or 1) > max(beams, 1) and not out.get("do_sample"):
            raise ApiError(422, "num_return_sequences > 1 needs do_sample=true or as many num_beams", "validation")
    if task == "zero-shot-classification":
        labels = out["candidate_labels"]
        out["candidate_labels"] = [x.strip() for x in labels.split(",") if x.strip()] if isinstance(labels, str) \
            else labels
        if not out["candidate_labels"]:
            raise ApiError(422, "parameters.candidate_labels is empty", "validation", param="candidate_labels")
        template = out.get("hypothesis_template")
        if template is not None and "{}" not in template:
            raise ApiError(422, "parameters.hypothesis_template needs a {} where the label goes", "validation")
    return out


def _text(value, where: str, max_chars: int) -> str:
    if not isinstance(value, str):
        raise ApiError(422, f"{where} must be a string, got {type(value).__name__}", "validation")
    if not value.strip():
        raise ApiError(422, f"{where} is empty", "validation")
    if len(value) > max_chars:
        raise ApiError(413, f"{where} has {len(value)} characters; this server takes at most {max_chars}",
                       "validation")
    return value


def inputs_of(task: str, inputs: Any, max_inputs: int, max_chars: int) -> tuple[list, bool]:
    """(items for the pipeline, whether the request had a single input)."""
    if task == "sentence-similarity":
        if not isinstance(inputs, dict) or "source_sentence" not in inputs or "sentences" not in inputs:
            raise ApiError(422, 'sentence-similarity takes {"source_sentence": str, "sentences": [str, ...]}',
                           "validation")
        sentences = inputs["sentences"]
        if not isinstance(sentences, list) or len(sentences) > max_inputs:
            raise ApiError(413 if isinstance(sentences, list) else 422,
                           f"inputs.sentences must be a list of at most {max_inputs} strings", "validation")
        return [_text(inputs["source_sentence"], "inputs.source_sentence", max_chars),
                *(_text(s, f"inputs.sentences[{i}]", max_chars) for i, s in enumerate(sentences))], True
    single = not isinstance(inputs, list)
    items = [inputs] if single else inputs
    if not items:
        raise ApiError(422, "inputs is an empty list", "validation")
    if len(items) > max_inputs:
        raise ApiError(413, f"{len(items)} inputs in one request; this server takes at most {max_inputs}", "validation")
    checked = []
    for i, item in enumerate(items):
        where = "inputs" if single else f"inputs[{i}]"
        if task == "question-answering":
            if not isinstance(item, dict) or not {"question", "context"} <= set(item):
                raise ApiError(422, f'{where} must be {{"question": str, "context": str}}', "validation")
            checked.append({"question": _text(item["question"], f"{where}.question", max_chars),
                            "context": _text(item["context"], f"{where}.context", max_chars)})
        elif task == "text-classification" and isinstance(item, dict):
            if "text" not in item:
                raise ApiError(422, f'{where}: a text pair is {{"text": str, "text_pair": str}}', "validation")
            pair = {"text": _text(item["text"], f"{where}.text", max_chars)}
            if item.get("text_pair") is not None:
                pair["text_pair"] = _text(item["text_pair"], f"{where}.text_pair", max_chars)
            checked.append(pair)
        else:
            checked.append(_text(item, where, max_chars))
    return checked, single


def shape(task: str, outputs: list, single: bool, params: dict) -> Any:
    """Per-item pipeline results → the HF Inference API's answer."""
    if task == "zero-shot-classification":
        outputs = [[{"label": label, "score": score} for label, score in zip(o["labels"], o["scores"])]
                   for o in outputs]
    if task == "text-classification":
        outputs = [o if isinstance(o, list) else [o] for o in outputs]
        return outputs  # always nested: [[{label, score}, ...]] (the client takes [0] for one input)
    if task in GENERATION:
        if single:
            return outputs[0]
        return [o[0] if len(o) == 1 else o for o in outputs]
    return outputs[0] if single else outputs
