"""Question answering against a brute-force reference built from transformers' model logits.

transformers 5 has no question-answering pipeline, so the reference is written out here from
the 4.x definition: in each window, softmax the start and end logits over the context tokens
plus CLS, score every span s <= e < s + max_answer_len of the context as p_start[s] * p_end[e],
map the best spans to characters through the offsets, and add up the scores of answers with
the same text. The tiny checkpoints say ``model_max_length=48``, so a SQuAD paragraph needs
several windows.
"""

from __future__ import annotations

import json

import pytest
import torch

import peluk
from peluk.errors import PipelineError
from tests.pipelines.test_token_classification import MAX_TOKENS, checkpoint

PAIRS = [
    ("Where is the capital of Indonesia?", "Jakarta is the capital of Indonesia, on the island of Java."),
    ("Siapa presiden pertama Indonesia?", "Soekarno adalah presiden pertama Republik Indonesia."),
    ("What did the committee decide?", "The committee decided to postpone the vote until next week."),
    ("Kapan candi Borobudur dibangun?", "Candi Borobudur dibangun pada abad ke-9 oleh wangsa Syailendra."),
    ("Who wrote it?", "Pramoedya Ananta Toer wrote Bumi Manusia while imprisoned on Buru Island."),
]


@pytest.fixture(scope="module", params=["bert", "roberta"])
def qa(request, tmp_path_factory, minilm_dir):
    """(peluk pipeline, transformers model, transformers tokenizer) on one tiny checkpoint."""
    import transformers

    arch = request.param
    path = checkpoint(arch, "question-answering", tmp_path_factory.mktemp(arch), minilm_dir)
    ref_model = transformers.AutoModelForQuestionAnswering.from_pretrained(path).eval()
    return peluk.pipeline("question-answering", model=path), ref_model, transformers.AutoTokenizer.from_pretrained(path)


def reference(ref_model, ref_tok, question, context, top_k=1, max_answer_len=15, align_to_words=False,
              handle_impossible_answer=False, max_seq_len=MAX_TOKENS, doc_stride=None, question_first=True):
    """The 4.x answer(s), found by enumerating every span of every window."""
    doc_stride = min(max_seq_len // 2, 128) if doc_stride is None else doc_stride
    pair = (question, context) if question_first else (context, question)
    enc = ref_tok(*pair, truncation="only_second" if question_first else "only_first", max_length=max_seq_len,
                  stride=doc_stride, return_overflowing_tokens=True, return_offsets_mapping=True)
    in_context = 1 if question_first else 0
    answers, null = [], 1e6
    for w, ids in enumerate(enc["input_ids"]):
        inputs = {k: torch.tensor([enc[k][w]]) for k in ref_tok.model_input_names if k in enc}
        with torch.no_grad():
            out = ref_model(**inputs)
        context_tokens = [i for i, s in enumerate(enc.sequence_ids(w)) if s == in_context]
        visible = torch.full((len(ids),), float("-inf"))
        visible[[0] + context_tokens] = 0.0  # the context and CLS
        p_start = torch.softmax(out.start_logits[0] + visible, -1)
        p_end = torch.softmax(out.end_logits[0] + visible, -1)
        null = min(null, (p_start[0] * p_end[0]).item())
        spans = sorted(((p_start[s] * p_end[e]).item(), s, e) for s in context_tokens for e in context_tokens
                       if s <= e < s + max_answer_len)[::-1][:top_k]
        for score, s, e in spans:
            first, last = enc["offset_mapping"][w][s][0], enc["offset_mapping"][w][e][1]
            if align_to_words:
                word = enc.encodings[w].token_to_word
                first = enc.encodings[w].word_to_chars(word(s), in_context)[0]
                last = enc.encodings[w].word_to_chars(word(e), in_context)[1]
            same = [a for a in answers if a["answer"].lower() == context[first:last].lower()]
            if same:
                same[0]["score"] += score
            else:
                answers.append({"score": score, "start": first, "end": last, "answer": context[first:last]})
    if handle_impossible_answer:
        answers.append({"score": null, "start": 0, "end": 0, "answer": ""})
    answers = sorted(answers, key=lambda a: a["score"], reverse=True)[:top_k]
    return answers[0] if top_k == 1 else answers


def _same(got, want):
    got, want = ([got], [want]) if isinstance(want, dict) else (got, want)
    assert len(got) == len(want), (got, want)
    for a, b in zip(got, want):
        assert (a["start"], a["end"], a["answer"]) == (b["start"], b["end"], b["answer"]), (a, b)
        assert abs(a["score"] - b["score"]) < 1e-5 + 1e-3 * b["score"], (a, b)


def test_short_contexts_match_brute_force(qa):
    pipe, ref_model, ref_tok = qa
    for question, context in PAIRS:
        assert len(ref_tok(question, context)["input_ids"]) <= MAX_TOKENS  # one window
        for options in ({}, {"align_to_words": True}, {"top_k": 5}, {"top_k": 3, "max_answer_len": 2},
                        {"top_k": 4, "handle_impossible_answer": True}):
            got = pipe(question=question, context=context, align_to_words=options.get("align_to_words", False),
                       **{k: v for k, v in options.items() if k != "align_to_words"})
            _same(got, reference(ref_model, ref_tok, question, context, **options))
            for answer in [got] if isinstance(got, dict) else got:
                assert answer["answer"] == context[answer["start"]:answer["end"]]


def test_context_first_when_padding_left(qa):
    pipe, ref_model, ref_tok = qa
    pipe.tokenizer.padding_side = "left"
    try:
        for question, context in PAIRS[:3]:
            _same(pipe(question=question, context=context, top_k=3),
                  reference(ref_model, ref_tok, question, context, top_k=3, align_to_words=True, question_first=False))
    finally:
        pipe.tokenizer.padding_side = "right"


def test_long_contexts_are_windowed(qa, shared_data):
    pipe, ref_model, ref_tok = qa
    squad = json.loads((shared_data / "squad_v1.1" / "dev-v1.1.json").read_text())
    items = [{"question": p["qas"][0]["question"], "context": p["context"]}
             for p in squad["data"][0]["paragraphs"][:3]]
    stride = 10
    features, (_, _, windows) = pipe.preprocess(items[0], **{**pipe.params, "doc_stride": stride})
    assert len(features) >= 3 and all(len(f["input_ids"]) <= MAX_TOKENS for f in features)
    for this, after in zip(windows, windows[1:]):  # consecutive windows share doc_stride context tokens
        spans = [o for o, c in zip(this["offsets"], this["is_context"]) if c]
        next_spans = [o for o, c in zip(after["offsets"], after["is_context"]) if c]
        assert spans[-stride:] == next_spans[:stride]
    got = pipe(items, top_k=2, doc_stride=stride)
    assert len(got) == len(items)
    for item, answers in zip(items, got):  # results in input order
        _same(answers, reference(ref_model, ref_tok, item["question"], item["context"], top_k=2,
                                 align_to_words=True, doc_stride=stride))
        assert all(a["answer"] == item["context"][a["start"]:a["end"]] for a in answers)
    small = pipe(items[0], doc_stride=8, max_answer_len=4)
    _same(small, reference(ref_model, ref_tok, **items[0], doc_stride=8, max_answer_len=4, align_to_words=True))
    # the default doc_stride (24) is longer than what a window leaves for the context after a
    # long question (the tokenizer would refuse it): a shorter overlap is used instead
    for item, answer in zip(items, pipe(items)):
        assert answer["answer"] == item["context"][answer["start"]:answer["end"]] and answer["answer"]


def test_input_forms_and_batches(qa):
    pipe = qa[0]
    (q1, c1), (q2, c2) = PAIRS[:2]
    one = pipe(question=q1, context=c1)
    assert set(one) == {"score", "start", "end", "answer"}
    assert pipe({"question": q1, "context": c1}) == one
    assert pipe(q1, c1) == one
    # batches are sorted by length inside; results come back in input order, as if one by one
    batch = pipe([{"question": q, "context": c} for q, c in PAIRS], batch_size=2)
    for got, (question, context) in zip(batch, PAIRS):
        _same(got, pipe(question=question, context=context))
    _same(pipe(question=[q1, q2], context=[c1, c2]), batch[:2])
    _same(pipe(question=[q1, PAIRS[2][0]], context=c1)[:1], [one])
    assert len(list(pipe(iter([{"question": q1, "context": c1}] * 3)))) == 3
    # a question longer than max_question_len is cut rather than crowding out the context
    long_question = " ".join(["Apa yang terjadi pada hari itu"] * 20)
    answer = pipe(question=long_question, context=c2, max_question_len=8)
    assert answer["answer"] == c2[answer["start"]:answer["end"]] and answer["answer"]


def test_bad_input(qa):
    pipe = qa[0]
    assert pipe([]) == []
    for question, context in (("", "Jakarta"), ("Where?", ""), ("  ", "Jakarta"), (None, "Jakarta")):
        with pytest.raises(PipelineError):
            pipe({"question": question, "context": context})
    with pytest.raises(PipelineError, match="question"):
        pipe(question="Where?")
    with pytest.raises(PipelineError, match="question="):
        pipe("Where?")
    with pytest.raises(PipelineError):
        pipe({"context": "Jakarta"})
    with pytest.raises(PipelineError, match="top_k"):
        pipe(question="Where?", context="Jakarta", top_k=0)
    with pytest.raises(PipelineError, match="doc_stride"):
        pipe(question="Where?", context="Jakarta", doc_stride=100)
    with pytest.raises(PipelineError, match="unknown parameter"):
        pipe(question="Where?", context="Jakarta", topk=2)
    with pytest.raises(PipelineError, match="no room"):  # a 64-token question fills a 48-token window
        pipe(question=" ".join(["Apa yang terjadi pada hari itu"] * 20), context="Jakarta")
