"""The real clients against ``peluk serve`` on loopback: huggingface_hub's InferenceClient for
every task (answers equal to peluk's own pipelines), text generation and chat with and without
streaming, and the openai client (chat, streaming chat, completions, embeddings, models)."""

from __future__ import annotations

import numpy as np
import pytest
from huggingface_hub import InferenceClient

import peluk
from tests.serve.api.conftest import LLM, MINILM

TEXTS = ["Peluk is a hub.", "Harga beras naik lagi minggu ini."]


def close(a, b, tol=1e-4):
    assert np.allclose(np.asarray(a, dtype=np.float64), np.asarray(b, dtype=np.float64), atol=tol)


def test_feature_extraction_and_similarity(api_server, minilm_dir):
    client = InferenceClient(model=api_server.model(MINILM))
    one = client.feature_extraction(TEXTS[0])
    two = client.feature_extraction(TEXTS, normalize=True, truncate=True)
    want = peluk.pipeline("sentence-embeddings", model=minilm_dir)(TEXTS)
    assert one.dtype == np.float32 and one.shape == (1, 384) and two.shape == (2, 384)
    close(two, want)
    close(one[0], want[0])
    sims = client.sentence_similarity("A cat sleeps on the sofa.", ["A kitten naps on the couch.", "Rice got dearer."])
    assert len(sims) == 2 and sims[0] > sims[1]
    vectors = peluk.pipeline("sentence-embeddings", model=minilm_dir)(["A cat sleeps on the sofa.",
                                                                     "A kitten naps on the couch."])
    close(sims[0], float(vectors[0] @ vectors[1]))


def test_text_classification(api_server, zoo):
    client = InferenceClient(model=api_server.model("tiny/sentiment"))
    labels = client.text_classification("I love this!")
    want = peluk.pipeline("text-classification", model=zoo["tiny/sentiment"])("I love this!", top_k=None)
    assert [x.label for x in labels] == [w["label"] for w in want]
    close([x.score for x in labels], [w["score"] for w in want])
    assert len(client.text_classification("I love this!", top_k=1)) == 1


def test_token_classification(api_server, zoo):
    client = InferenceClient(model=api_server.model("tiny/ner"))
    text = "Alice lives in Paris"
    got = client.token_classification(text, aggregation_strategy="simple")
    want = peluk.pipeline("ner", model=zoo["tiny/ner"], aggregation_strategy="simple")(text)
    assert [(e.entity_group, e.word, e.start, e.end) for e in got] == \
        [(w["entity_group"], w["word"], w["start"], w["end"]) for w in want]
    close([e.score for e in got], [w["score"] for w in want])
    plain = client.token_classification(text, aggregation_strategy="none", ignore_labels=[])
    assert len(plain) == 4 and all(e.entity for e in plain)  # one per token


def test_fill_mask(api_server, zoo):
    client = InferenceClient(model=api_server.model("tiny/fill-mask"))
    got = client.fill_mask("Paris is the [MASK] of France.", top_k=3)
    want = peluk.pipeline("fill-mask", model=zoo["tiny/fill-mask"])("Paris is the [MASK] of France.", top_k=3)
    assert [(g.token, g.token_str, g.sequence) for g in got] == \
        [(w["token"], w["token_str"], w["sequence"]) for w in want]


def test_question_answering(api_server, zoo):
    client = InferenceClient(model=api_server.model("tiny/qa"))
    got = client.question_answering(question="Who lives in Paris?", context="Alice lives in Paris.")
    want = peluk.pipeline("question-answering", model=zoo["tiny/qa"])(question="Who lives in Paris?",
                                                                      context="Alice lives in Paris.")
    assert (got.answer, got.start, got.end) == (want["answer"], want["start"], want["end"])
    many = client.question_answering(question="Who lives in Paris?", context="Alice lives in Paris.", top_k=2)
    assert isinstance(many, list) and len(many) == 2


def test_zero_shot_classification(api_server, zoo):
    client = InferenceClient(model=api_server.model("tiny/nli"))
    labels = ["sports", "politics", "cooking"]
    got = client.zero_shot_classification("The match ended 2-1.", candidate_labels=labels)
    want = peluk.pipeline("zero-shot-classification", model=zoo["tiny/nli"])("The match ended 2-1.",
                                                                             candidate_labels=labels)
    assert [g.label for g in got] == want["labels"]
    close([g.score for g in got], want["scores"])
    assert abs(sum(g.score for g in got) - 1) < 1e-4


def test_translation_and_summarization(api_server, zoo):
    text = "Hello, how are you?"
    want = peluk.pipeline("text2text-generation", model=zoo["tiny/bart"])(text, max_new_tokens=6)[0]["generated_text"]
    base = api_server.model("tiny/bart")
    out = InferenceClient(model=f"{base}/pipeline/translation").translation(
        text, generate_parameters={"max_new_tokens": 6})
    assert out.translation_text == want
    out = InferenceClient(model=f"{base}/pipeline/summarization").summarization(
        text, generate_parameters={"max_new_tokens": 6}, truncation="longest_first")
    assert out.summary_text == want


def _greedy(smol_path, prompt: str, n: int) -> str:
    pipe = peluk.pipeline("text-generation", model=smol_path)
    return pipe(prompt, max_new_tokens=n, do_sample=False, return_full_text=False)[0]["generated_text"]


def test_text_generation(api_server, smol_path):
    client = InferenceClient(model=api_server.model(LLM))
    prompt = "Once upon a time"
    text = client.text_generation(prompt, max_new_tokens=8)
    assert text == _greedy(smol_path, prompt, 8)
    assert "".join(client.text_generation(prompt, max_new_tokens=8, stream=True)) == text
    details = client.text_generation(prompt, max_new_tokens=8, details=True)
    assert details.generated_text == text and details.details.generated_tokens == len(details.details.tokens)
    assert details.details.finish_reason in ("length", "eos_token")
    events = list(client.text_generation(prompt, max_new_tokens=4, stream=True, details=True))
    assert events[-1].generated_text == "".join(e.token.text for e in events)
    assert events[-1].details.finish_reason in ("length", "eos_token")
    full = client.text_generation(prompt, max_new_tokens=4, return_full_text=True, stop=["\n"])
    assert full.startswith(prompt)


def test_chat_completion(api_server):
    messages = [{"role": "system", "content": "You are terse."}, {"role": "user", "content": "Say hi"}]
    for client in (InferenceClient(model=api_server.model(LLM)), InferenceClient(base_url=api_server.url)):
        out = client.chat_completion(messages, max_tokens=8, temperature=0)
        text = out.choices[0].message.content
        assert text and out.choices[0].finish_reason in ("stop", "length") and out.usage.completion_tokens <= 8
        chunks = list(client.chat_completion(messages, max_tokens=8, temperature=0, stream=True))
        assert "".join(c.choices[0].delta.content or "" for c in chunks if c.choices) == text


def test_endpoint_info_and_health(api_server):
    client = InferenceClient(model=api_server.model(LLM), provider="hf-inference")
    info = client.get_endpoint_info()
    assert info["model_id"] == LLM and info["max_total_tokens"] > info["max_input_tokens"]
    assert client.health_check()


def test_openai_client(api_server):
    openai = pytest.importorskip("openai")
    token = api_server.token("olivia")
    client = openai.OpenAI(base_url=f"{api_server.url}/v1", api_key=token, max_retries=0)
    messages = [{"role": "user", "content": "Say hi"}]
    out = client.chat.completions.create(model=LLM, messages=messages, max_tokens=8, temperature=0, seed=1)
    text = out.choices[0].message.content
    assert text and out.model == LLM and out.usage.completion_tokens <= 8
    stream = client.chat.completions.create(model="peluk-default", messages=messages, max_tokens=8, temperature=0,
                                            stream=True, stream_options={"include_usage": True})
    chunks = list(stream)
    assert "".join(c.choices[0].delta.content or "" for c in chunks if c.choices) == text
    assert chunks[-1].usage is not None and chunks[-1].usage.completion_tokens == out.usage.completion_tokens
    sampled = client.chat.completions.create(model=LLM, messages=messages, max_tokens=6, temperature=0.8, seed=7, n=2,
                                             logprobs=True, top_logprobs=2)
    assert len(sampled.choices) == 2 and sampled.choices[0].logprobs.content[0].top_logprobs
    again = client.chat.completions.create(model=LLM, messages=messages, max_tokens=6, temperature=0.8, seed=7, n=2)
    assert [c.message.content for c in again.choices] == [c.message.content for c in sampled.choices]
    done = client.completions.create(model=LLM, prompt="Once upon a time", max_tokens=5, temperature=0)
    assert done.choices[0].text and done.usage.completion_tokens <= 5
    emb = client.embeddings.create(model=MINILM, input=["Peluk is a hub.", "Another one."])  # base64 by default
    floats = client.embeddings.create(model=MINILM, input="Peluk is a hub.", encoding_format="float")
    assert len(emb.data) == 2 and len(emb.data[0].embedding) == 384
    close(emb.data[0].embedding, floats.data[0].embedding, 1e-6)
    ids = [m.id for m in client.models.list()]
    assert LLM in ids and MINILM in ids
    with pytest.raises(openai.NotFoundError) as e:
        client.chat.completions.create(model="nobody/nothing", messages=messages, max_tokens=2)
    assert "not found" in str(e.value).lower()
    bad = openai.OpenAI(base_url=f"{api_server.url}/v1", api_key="hf_not_a_token", max_retries=0)
    with pytest.raises(openai.AuthenticationError):
        bad.models.list()
