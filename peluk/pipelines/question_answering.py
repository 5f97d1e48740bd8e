"""Extractive question answering: find the span of the context that answers the question.

transformers 5 dropped this pipeline; this follows transformers 4.x (``QuestionAnsweringPipeline``
with a fast tokenizer). A context too long for the model is cut into windows of
``max_seq_len`` tokens (question included) that overlap by ``doc_stride`` tokens; each window
is one *feature*, so windows of different inputs share batches. In each window:

1. tokens that cannot be part of an answer (the question, special tokens, but not the CLS
   token, which stands for "no answer") get logit -10000; start and end logits are softmaxed;
2. a span (s, e) with s <= e < s + max_answer_len inside the context scores p_start[s] * p_end[e];
3. the window's ``top_k`` best spans become character spans through the offsets (widened to
   whole words with ``align_to_words``).

Answers from all windows are pooled (the same text found twice adds its scores, as in 4.x)
and the ``top_k`` best returned. With ``handle_impossible_answer`` the empty answer competes
with score min over windows of p_start[CLS] * p_end[CLS].
"""

from __future__ import annotations

import torch

from peluk.errors import PipelineError
from peluk.pipelines.base import Pipeline

MASKED = -10000.0  # what 4.x gave impossible positions (not -inf: a window may have no context)


class QuestionAnsweringPipeline(Pipeline):
    """``pipe(question=..., context=...)`` → ``{"score", "start", "end", "answer"}``.

    Inputs: ``question=``/``context=`` keywords (strings, or lists of the same length; one
    context may serve a list of questions), a ``{"question", "context"}`` dict, a list of such
    dicts, or two positional strings (question, context). A list gives a list of results.

    Call-time parameters:
        top_k: answers per input (default 1: one dict; more: a list of dicts, best first,
            possibly fewer than top_k if the context has fewer candidate spans).
        doc_stride: tokens shared by consecutive windows (default min(128, max_seq_len // 2)).
        max_answer_len: longest answer, in tokens (default 15).
        max_seq_len: tokens per window, question included (default min(384, the model's maximum)).
        max_question_len: questions longer than this many tokens are cut (default 64).
        handle_impossible_answer: let the empty answer ``""`` (start = end = 0) win (default False).
        align_to_words: widen answers to whole words (default True).

    >>> qa = pipeline("question-answering", model="path/to/squad-model")                  # doctest: +SKIP
    >>> qa(question="Di mana ibu kota Indonesia?", context="Ibu kota Indonesia adalah Jakarta.")  # doctest: +SKIP
    {'score': 0.97, 'start': 26, 'end': 33, 'answer': 'Jakarta'}
    """

    per_token = ("start_logits", "end_logits")
    defaults = {"top_k": 1, "doc_stride": None, "max_answer_len": 15, "max_seq_len": None, "max_question_len": 64,
                "handle_impossible_answer": False, "align_to_words": True}

    def __call__(self, *args, question=None, context=None, batch_size: int | None = None, **params):
        if len(args) == 2 and all(isinstance(a, str) for a in args):
            question, context = args
            args = ()
        if args and (question is not None or context is not None) or len(args) > 1:
            raise PipelineError(f"{self.task}: pass question= and context=, one {{'question', 'context'}} dict "
                                "or a list of them")
        if args:
            inputs = args[0]
            if isinstance(inputs, str):
                raise PipelineError(f"{self.task}: a lone string is not an input; pass question= and context=")
        elif question is None or context is None:
            raise PipelineError(f"{self.task}: both question= and context= are needed")
        elif isinstance(question, str) and isinstance(context, str):
            inputs = {"question": question, "context": context}
        elif isinstance(question, (list, tuple)) and isinstance(context, str):
            inputs = [{"question": q, "context": context} for q in question]
        elif isinstance(question, (list, tuple)) and isinstance(context, (list, tuple)):
            if len(question) != len(context):
                raise PipelineError(f"{self.task}: {len(question)} questions but {len(context)} contexts")
            inputs = [{"question": q, "context": c} for q, c in zip(question, context)]
        else:
            raise PipelineError(f"{self.task}: question= and context= are strings or lists of strings")
        return super().__call__(inputs, batch_size, **params)

    def is_single(self, inputs) -> bool:
        return isinstance(inputs, dict)

    def preprocess(self, item, top_k=1, doc_stride=None, max_answer_len=15, max_seq_len=None, max_question_len=64,
                   handle_impossible_answer=False, align_to_words=True):
        question, context = _validate(item, self.task)
        if not isinstance(top_k, int) or top_k < 1:
            raise PipelineError(f"{self.task}: top_k must be an int >= 1, got {top_k!r}")
        for name, value in (("max_answer_len", max_answer_len), ("max_question_len", max_question_len)):
            if not isinstance(value, int) or value < 1:
                raise PipelineError(f"{self.task}: {name} must be an int >= 1, got {value!r}")
        # a window longer than the model's position table would crash it: never exceed it
        max_seq_len = min(max_seq_len or 384, self.max_length or 384)
        if doc_stride is None:
            doc_stride = min(max_seq_len // 2, 128)
        if doc_stride > max_seq_len:
            raise PipelineError(f"{self.task}: doc_stride ({doc_stride}) is larger than max_seq_len ({max_seq_len})")
        question = self._cut_question(question, max_question_len)

        # the question goes on the side that is never truncated nor padded
        question_first = self.tokenizer.padding_side == "right"
        pair = (question, context) if question_first else (context, question)
        n_question = len(self.tokenizer(question, add_special_tokens=False, verbose=False)["input_ids"])
        room = max_seq_len - n_question - self.tokenizer.num_special_tokens_to_add(pair=True)
        if room < 1:
            raise PipelineError(f"{self.task}: the question takes {n_question} tokens, leaving no room for the "
                                f"context in max_seq_len={max_seq_len}; shorten it or lower max_question_len")
        # the tokenizer cannot step through the context with a stride as long as a window's
        # context part; 4.x raised there, a shorter overlap still covers the whole context
        stride = min(doc_stride, room - 1)
        enc = self.tokenizer(*pair, truncation="only_second" if question_first else "only_first",
                             max_length=max_seq_len, stride=stride, return_overflowing_tokens=True,
                             return_offsets_mapping=True)
        context_index = 1 if question_first else 0
        cls_id = self.tokenizer.cls_token_id
        features, windows = [], []
        for i, ids in enumerate(enc["input_ids"]):
            sequence_ids = enc.sequence_ids(i)
            is_context = [s == context_index for s in sequence_ids]
            # p_mask: True where no answer can be; the CLS token stays in the softmax for "no answer"
            p_mask = [not c and t != cls_id for c, t in zip(is_context, ids)]
            features.append(self.model_inputs({k: v[i] for k, v in enc.items() if k != "overflow_to_sample_mapping"}))
            windows.append({"p_mask": p_mask, "is_context": is_context, "offsets": enc["offset_mapping"][i],
                            "encoding": enc.encodings[i]})
        return features, (context, context_index, windows)

    def forward(self, batch, **params):
        out = self.model(**batch)
        return {"start_logits": out.start_logits, "end_logits": out.end_logits}

    def postprocess(self, ctx, outputs, top_k=1, doc_stride=None, max_answer_len=15, max_seq_len=None,
                    max_question_len=64, handle_impossible_answer=False, align_to_words=True):
        context, context_index, windows = ctx
        null_score = 1e6
        answers: list[dict] = []
        for out, window in zip(outputs, windows):
            p_mask = torch.tensor(window["p_mask"])
            start = torch.softmax(out["start_logits"].float().cpu().masked_fill(p_mask, MASKED), dim=-1)
            end = torch.softmax(out["end_logits"].float().cpu().masked_fill(p_mask, MASKED), dim=-1)
            # 4.x reads "no answer" at position 0, which is where the CLS token is
            null_score = min(null_score, (start[0] * end[0]).item())
            start[0] = end[0] = 0.0
            for s, e, score in _best_spans(start, end, torch.tensor(window["is_context"]), top_k, max_answer_len):
                first, last = _char_span(window, s, e, context_index, align_to_words)
                text = context[first:last]
                same = next((a for a in answers if a["answer"].lower() == text.lower()), None)
                if same is not None:  # one answer found in two windows (or two places) counts twice
                    same["score"] += score
                else:
                    answers.append({"score": score, "start": first, "end": last, "answer": text})
        if handle_impossible_answer:
            answers.append({"score": null_score, "start": 0, "end": 0, "answer": ""})
        answers = sorted(answers, key=lambda a: a["score"], reverse=True)[:top_k]
        if top_k == 1:
            return answers[0] if answers else {"score": 0.0, "start": 0, "end": 0, "answer": ""}
        return answers

    def _cut_question(self, question: str, max_tokens: int) -> str:
        """The question's text up to its ``max_tokens``-th token (the whole question if shorter)."""
        enc = self.tokenizer(question, add_special_tokens=False, return_offsets_mapping=True, verbose=False)
        if len(enc["input_ids"]) <= max_tokens:
            return question
        return question[:enc["offset_mapping"][max_tokens - 1][1]]


def _validate(item, task: str) -> tuple[str, str]:
    if not isinstance(item, dict) or "question" not in item or "context" not in item:
        raise PipelineError(f"{task}: each input is a {{'question': ..., 'context': ...}} dict, got {item!r:.80}")
    question, context = item["question"], item["context"]
    for name, value in (("question", question), ("context", context)):
        if not isinstance(value, str):
            raise PipelineError(f"{task}: {name} must be a string, got {type(value).__name__}")
        if not value.strip():
            raise PipelineError(f"{task}: {name} is empty")
    return question, context


def _best_spans(start: torch.Tensor, end: torch.Tensor, allowed: torch.Tensor, top_k: int, max_answer_len: int):
    """The ``top_k`` best (s, e, p_start[s] * p_end[e]) with s <= e < s + max_answer_len, both in ``allowed``."""
    scores = start[:, None] * end[None, :]  # (T, T): row = start token, column = end token
    scores = torch.triu(scores).tril(max_answer_len - 1)
    scores = scores * (allowed[:, None] & allowed[None, :])
    k = min(top_k, int((scores > 0).sum()))
    if k == 0:
        return []
    best = scores.flatten().topk(k)
    T = scores.shape[1]
    return [(i // T, i % T, v) for v, i in zip(best.values.tolist(), best.indices.tolist())]


def _char_span(window: dict, s: int, e: int, context_index: int, align_to_words: bool) -> tuple[int, int]:
    """Character span of tokens s..e; with ``align_to_words``, of the whole words they are in."""
    offsets = window["offsets"]
    if align_to_words:
        enc = window["encoding"]
        first_word, last_word = enc.token_to_word(s), enc.token_to_word(e)
        if first_word is not None and last_word is not None:
            first = enc.word_to_chars(first_word, context_index)
            last = enc.word_to_chars(last_word, context_index)
            if first is not None and last is not None:
                return first[0], last[1]
        # a tokenizer without words (or a word cut by the window edge): token offsets instead
    return offsets[s][0], offsets[e][1]
