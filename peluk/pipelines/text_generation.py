"""Text generation: continue a prompt, or answer a chat (messages rendered with the model's
chat template), returning ``generated_text`` as transformers does."""

from __future__ import annotations


from peluk.errors import PipelineError
from peluk.pipelines.base import Pipeline

GENERATION_OPTIONS = ("max_new_tokens", "max_length", "min_new_tokens", "do_sample", "temperature", "top_k", "top_p",
                      "min_p", "repetition_penalty", "no_repeat_ngram_size", "num_beams", "length_penalty",
                      "early_stopping", "num_return_sequences", "eos_token_id", "pad_token_id")


def is_chat(item) -> bool:
    return isinstance(item, (list, tuple)) and len(item) > 0 and all(isinstance(m, dict) and "role" in m for m in item)


class TextGenerationPipeline(Pipeline):
    """``pipe("Once upon a time")`` → ``[{"generated_text": "Once upon a time..."}]``;
    ``pipe([{"role": "user", "content": "Halo!"}])`` → ``[{"generated_text": [...messages, assistant reply]}]``.

    Parameters: the generation options (``max_new_tokens``, ``do_sample``, ``temperature``,
    ``top_k``, ``top_p``, ``min_p``, ``repetition_penalty``, ``num_beams``, ...), plus
    ``return_full_text`` (prompt + continuation; False: only the new text), ``stop`` (strings),
    ``seed``, ``continue_final_message``. A list of prompts gives a list of lists.
    """

    padding_side = "left"
    defaults = {**{k: None for k in GENERATION_OPTIONS}, "return_full_text": True, "stop": None, "seed": None,
                "continue_final_message": None, "skip_special_tokens": True}

    def __init__(self, model, tokenizer, batch_size=None, **kwargs):
        super().__init__(model, tokenizer, batch_size=batch_size or 8, **kwargs)

    def is_single(self, inputs) -> bool:
        return isinstance(inputs, str) or is_chat(inputs)

    def preprocess(self, item, continue_final_message=None, **params):
        if is_chat(item):
            cont = item[-1]["role"] == "assistant" if continue_final_message is None else continue_final_message
            text = self.tokenizer.apply_chat_template(list(item), add_generation_prompt=not cont,
                                                      continue_final_message=cont, tokenize=False)
            enc = self.tokenizer(text, add_special_tokens=False)
            context = (list(item), cont)
        elif isinstance(item, str):
            enc = self.tokenizer(item)
            context = (item, None)
        else:
            raise PipelineError(f"{self.task}: inputs are prompt strings or chats (lists of {{'role', 'content'}} "
                                f"dicts), got {type(item).__name__}")
        if not enc["input_ids"]:
            raise PipelineError(f"{self.task}: the prompt is empty")
        return [{"input_ids": list(enc["input_ids"]), "attention_mask": list(enc["attention_mask"])}], context

    def forward(self, batch, stop=None, seed=None, **params):
        from peluk.generation import generate

        options = {k: params[k] for k in GENERATION_OPTIONS if params.get(k) is not None}
        if options.get("pad_token_id") is None and self.tokenizer.pad_token_id is not None:
            options["pad_token_id"] = self.tokenizer.pad_token_id
        sequences = generate(self.model, batch["input_ids"], batch["attention_mask"], tokenizer=self.tokenizer,
                             stop=stop, seed=seed, **options)
        n = sequences.shape[0] // batch["input_ids"].shape[0]  # num_return_sequences
        prompt = batch["input_ids"].shape[1]
        return {"new_tokens": sequences[:, prompt:].reshape(batch["input_ids"].shape[0], n, -1)}

    def postprocess(self, context, outputs, return_full_text=True, stop=None, skip_special_tokens=True, **params):
        prompt, cont = context
        records = []
        for row in outputs[0]["new_tokens"]:
            text = self.tokenizer.decode(row.tolist(), skip_special_tokens=skip_special_tokens)
            for s in stop or []:  # cut at a stop string (the model may have produced more in a batch)
                if s and s in text:
                    text = text[:text.index(s)]
            if not return_full_text:
                records.append({"generated_text": text})
            elif isinstance(prompt, str):
                records.append({"generated_text": prompt + text})
            elif cont:
                last = dict(prompt[-1], content=prompt[-1]["content"] + text)
                records.append({"generated_text": prompt[:-1] + [last]})
            else:
                records.append({"generated_text": prompt + [{"role": "assistant", "content": text}]})
        return records


__all__ = ["TextGenerationPipeline", "is_chat"]
