"""The real SmolLM2 GGUF end to end: exact-path greedy tokens equal transformers', the
text-generation pipeline shaped as transformers', chat CLI."""

from __future__ import annotations

import io

import pytest
import torch

import peluk
from peluk.errors import PipelineError

CHAT = [{"role": "user", "content": "What is the capital of Indonesia? Answer in one sentence."}]


@pytest.fixture(scope="module")
def smol(smol_path):
    return (peluk.AutoModelForCausalLM.from_pretrained(smol_path, dtype=torch.float32),
            peluk.AutoTokenizer.from_pretrained(smol_path))


def test_exact_path_first_32_greedy_tokens_equal_transformers(smol, smol_hf):
    model, tok = smol
    hf_model, hf_tok = smol_hf
    ids = tok.apply_chat_template(CHAT, add_generation_prompt=True, return_tensors="pt", return_dict=False)
    want_ids = hf_tok.apply_chat_template(CHAT, add_generation_prompt=True, return_tensors="pt", return_dict=False)
    assert torch.equal(ids, want_ids)
    with torch.inference_mode():
        got = model.generate(ids, max_new_tokens=32, min_new_tokens=32)
        want = hf_model.generate(ids, max_new_tokens=32, min_new_tokens=32, do_sample=False)
        logits, ref_logits = model(ids).logits, hf_model(ids).logits
    print(f"\nSmolLM2 fp32 logits max abs diff vs transformers: {(logits - ref_logits).abs().max():.2e}")
    assert torch.equal(got, want), (tok.decode(got[0]), hf_tok.decode(want[0]))


def test_quantized_lean_decode_step_agrees_with_forward(smol_path, smol):
    """The default GGUF path (weights kept quantized): its lean decode step against forward on the
    same model, teacher-forced along forward's own greedy continuation. bfloat16 activations round
    differently after the small float32 differences (SDPA vs two matmuls), hence not equal."""
    model = peluk.AutoModelForCausalLM.from_pretrained(smol_path)
    ids = smol[1].apply_chat_template(CHAT, add_generation_prompt=True, return_tensors="pt", return_dict=False)
    with torch.inference_mode():
        model.decode_step = model.forward  # the module path
        want = model.generate(ids, max_new_tokens=24, min_new_tokens=24)[0, ids.shape[1]:]
        del model.decode_step
        lean, ref = (model.make_cache(1, ids.shape[1] + 24) for _ in range(2))
        model(ids, cache=lean), model(ids, cache=ref)
        got, diffs = [], []
        for token in want[:-1]:
            a = model.decode_step(token.view(1, 1), cache=lean).logits[0, -1]
            b = model(token.view(1, 1), cache=ref).logits[0, -1]
            got.append(int(a.argmax()) == int(b.argmax()))
            diffs.append(float((a - b).abs().max() / b.abs().max()))
    assert model._lean
    print(f"\nlean vs forward, quantized SmolLM2: top-1 {sum(got)}/{len(got)}, max rel. logit diff {max(diffs):.1e}")
    assert sum(got) >= len(got) - 2 and max(diffs) < 0.05


def test_pipeline_matches_transformers_pipeline(smol_path, smol_hf):
    import transformers

    ours = peluk.pipeline("text-generation", model=smol_path, dtype=torch.float32)
    theirs = transformers.pipeline("text-generation", model=smol_hf[0], tokenizer=smol_hf[1])
    for inputs in ("Jakarta is", CHAT):
        for kwargs in ({"max_new_tokens": 12}, {"max_new_tokens": 12, "return_full_text": False}):
            assert ours(inputs, **kwargs) == theirs(inputs, do_sample=False, **kwargs)


def test_pipeline_batches_and_defaults(smol_path):
    prompts = ["Jakarta is", "The three primary colours are", CHAT]
    exact = peluk.pipeline("text-generation", dtype=torch.float32)
    batched = exact(prompts, max_new_tokens=8)
    assert len(batched) == 3 and all(len(r) == 1 for r in batched)
    for prompt, result in zip(prompts, batched):  # left-padded batches give each row's own tokens
        assert result == exact(prompt, max_new_tokens=8)
    pipe = peluk.pipeline("text-generation")  # the packaged SmolLM2, weights kept quantized (int4/int8)
    assert type(pipe.model.model.layers[0].mlp.down_proj).__name__ == "QuantLinear"
    answer = pipe(CHAT, max_new_tokens=12)[0]["generated_text"][-1]["content"]
    assert "Jakarta" in answer
    sampled = pipe("Once upon a time", max_new_tokens=8, do_sample=True, seed=3, num_return_sequences=2)
    assert len(sampled) == 2 and sampled == pipe("Once upon a time", max_new_tokens=8, do_sample=True, seed=3,
                                                 num_return_sequences=2)
    stopped = pipe("Count: one, two, three,", max_new_tokens=20, stop=[","], return_full_text=False)
    assert "," not in stopped[0]["generated_text"]
    with pytest.raises(PipelineError):
        pipe(42)


def test_cli_chat_and_run(smol_path, monkeypatch, capsys):
    from peluk.cli import main

    monkeypatch.setattr("sys.stdin", io.StringIO("What is 2 + 2?\n/stats\nAnd 3 + 3?\n/exit\n"))
    assert main(["chat", "--max-new-tokens", "16", "--dtype", "float32"]) == 0
    out = capsys.readouterr().out
    assert "tokens/s" in out and "stats on" in out
    assert main(["run", "text-generation", "Jakarta is", "--max-new-tokens", "5", "--json"]) == 0
    assert "Jakarta is" in capsys.readouterr().out
