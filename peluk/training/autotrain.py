"""No-code training (``peluk train``): a labelled file in, a fine-tuned model with a model card out.

``train_text_classification`` reads a CSV/TSV/JSON file (or two), maps labels to ids,
tokenizes, fine-tunes (fully or with LoRA), evaluates, and writes the model, its tokenizer
and a ``README.md`` model card. ``train_token_classification`` does the same from CoNLL files.
The recipes in ``recipes/`` are calls to these.

>>> result = train_text_classification("train.csv", model="path/to/bert", output="out")  # doctest: +SKIP
>>> result["metrics"]["eval_accuracy"]
0.91
"""

from __future__ import annotations

import os
import random
from pathlib import Path

from peluk.errors import TrainingError

DEFAULT_LORA_TARGETS = {  # every linear layer of the block: LoRA on all of them trains close to full fine-tuning
    "bert": ["query", "key", "value", "attention.output.dense", "intermediate.dense", "output.dense"],
    "roberta": ["query", "key", "value", "attention.output.dense", "intermediate.dense", "output.dense"],
    "xlm-roberta": ["query", "key", "value", "attention.output.dense", "intermediate.dense", "output.dense"],
    "distilbert": ["q_lin", "k_lin", "v_lin", "out_lin", "lin1", "lin2"],
}


def _load_table(path: str, column_names: list[str] | None, delimiter: str | None):
    from peluk.data import load_dataset

    suffix = Path(path).suffix.lower()
    if suffix in (".json", ".jsonl"):
        return load_dataset("json", data_files=str(path), split="train")
    if suffix == ".parquet":
        return load_dataset("parquet", data_files=str(path), split="train")
    delimiter = delimiter or ("\t" if suffix == ".tsv" else ",")
    return load_dataset("csv", data_files=str(path), split="train", delimiter=delimiter, column_names=column_names)


def _column(ds, name: str, path: str) -> str:
    if name in ds.column_names:
        return name
    if name.isdigit() and int(name) < len(ds.column_names):  # a column given by position
        return ds.column_names[int(name)]
    raise TrainingError(f"{path} has no column {name!r}; its columns are {ds.column_names}")


def train_text_classification(data: str, *, model: str, output: str, validation: str | None = None,
                              text_column: str = "text", text_pair_column: str | None = None,
                              label_column: str = "label", label_names: list[str] | None = None,
                              column_names: list[str] | None = None, delimiter: str | None = None,
                              validation_split: float = 0.1, epochs: float = 3, lr: float = 5e-5,
                              batch_size: int = 32, max_length: int = 128, lora: bool = False, lora_r: int = 16,
                              bf16: bool = False, seed: int = 42, weight_decay: float = 0.01,
                              warmup_ratio: float = 0.06, max_train_rows: int | None = None,
                              dataset_name: str | None = None, dataset_description: str = "",
                              language: list[str] | None = None, title: str | None = None,
                              intended_use: str = "", command: str | None = None, quiet: bool = False,
                              save_dtype: str | None = None, class_weights: str | None = None) -> dict:
    """Fine-tune ``model`` for text classification on ``data``; returns metrics and the output path.

    Labels may be strings (sorted into ids) or integers (named by ``label_names`` if given).
    ``save_dtype="float16"`` halves the saved weights (they load back as float32).
    ``class_weights="balanced"`` weighs the loss by inverse class frequency (helps macro-F1 when a
    class is rare, e.g. SmSA's neutral).
    Without ``validation``, ``validation_split`` of the data is held out (stratified).

    Raises:
        TrainingError: a missing column, fewer than two labels, or an unusable file.
    """
    import numpy as np
    import torch

    from peluk.models import AutoModelForSequenceClassification
    from peluk.tokenizer import AutoTokenizer
    from peluk.training.card import write_model_card
    from peluk.training.metrics import classification_metrics
    from peluk.training.trainer import Trainer
    from peluk.training.args import TrainingArguments

    train = _load_table(data, column_names, delimiter)
    text_col, label_col = _column(train, text_column, data), _column(train, label_column, data)
    pair_col = _column(train, text_pair_column, data) if text_pair_column else None
    dev = _load_table(validation, column_names, delimiter) if validation else None
    values = sorted(set(train.unique(label_col)) | (set(dev.unique(label_col)) if dev is not None else set()),
                    key=lambda v: (not isinstance(v, (int, np.integer)), v))
    if len(values) < 2:
        raise TrainingError(f"{data}: column {label_col!r} has fewer than two distinct labels ({values})")
    if all(isinstance(v, (int, np.integer)) for v in values):
        values = [int(v) for v in values]
        # 0..n-1 are ids already; other integers (AG News' 1..4) are numbered in sorted order
        ids = {v: v for v in values} if values == list(range(len(values))) else {v: i for i, v in enumerate(values)}
        names = label_names or [str(v) for v in values]
        if len(names) != len(values):
            raise TrainingError(f"label_names has {len(names)} names but {data} has {len(values)} labels {values}")
    else:
        names = label_names or [str(v) for v in values]
        unknown = [v for v in values if str(v) not in names]
        if unknown:
            raise TrainingError(f"labels {unknown} are not among label_names {names}")
        ids = {v: names.index(str(v)) for v in values}
    tokenizer = AutoTokenizer.from_pretrained(model)

    def encode(batch):
        texts = [str(t) for t in batch[text_col]]
        pairs = [str(t) for t in batch[pair_col]] if pair_col else None
        enc = tokenizer(texts, pairs, truncation=True, max_length=max_length)
        return {"input_ids": enc["input_ids"], "attention_mask": enc["attention_mask"],
                "labels": [ids[v] for v in batch[label_col]]}

    if dev is None:
        split = train.train_test_split(test_size=validation_split, seed=seed, stratify_by_column=None)
        train, dev = split["train"], split["test"]
    if max_train_rows and len(train) > max_train_rows:
        train = train.shuffle(seed=seed).select(range(max_train_rows))
    columns = train.column_names
    train = train.map(encode, batched=True, remove_columns=columns, desc="tokenize")
    dev = dev.map(encode, batched=True, remove_columns=dev.column_names, desc="tokenize")

    torch.manual_seed(seed)
    net = AutoModelForSequenceClassification.from_pretrained(
        model, num_labels=len(names), id2label=dict(enumerate(names)), label2id={n: i for i, n in enumerate(names)},
        ignore_mismatched_sizes=True)
    base_type = net.config.model_type
    if lora:
        from peluk.training.lora import LoraConfig, get_peft_model

        targets = DEFAULT_LORA_TARGETS.get(base_type)
        net = get_peft_model(net, LoraConfig(r=lora_r, lora_alpha=2 * lora_r, lora_dropout=0.1,
                                             target_modules=targets, task_type="SEQ_CLS",
                                             base_model_name_or_path=str(model)))
    args = TrainingArguments(output, learning_rate=lr, per_device_train_batch_size=batch_size,
                             per_device_eval_batch_size=max(64, batch_size), num_train_epochs=epochs,
                             weight_decay=weight_decay, warmup_ratio=warmup_ratio, eval_strategy="epoch",
                             save_strategy="epoch", save_total_limit=1, load_best_model_at_end=True,
                             metric_for_best_model="f1_macro", logging_steps=50, seed=seed, bf16=bf16,
                             disable_tqdm=quiet)
    trainer_class = Trainer
    if class_weights == "balanced":
        counts = np.bincount(np.asarray(train["labels"]), minlength=len(names)).astype(np.float64)
        trainer_class = _weighted_trainer(Trainer, torch.tensor(counts.sum() / (len(names) * np.maximum(counts, 1)),
                                                                dtype=torch.float32))
    elif class_weights is not None:
        raise TrainingError(f"class_weights={class_weights!r}: only 'balanced' is supported")
    trainer = trainer_class(net, args, train_dataset=train, eval_dataset=dev, processing_class=tokenizer,
                            compute_metrics=classification_metrics)
    result = trainer.train()
    metrics = trainer.evaluate()
    if save_dtype and not lora:
        trainer.model.to(getattr(torch, save_dtype))
    trainer.save_model(output)
    if lora:  # the adapter + the labelled config: peluk (and transformers + PEFT) load the directory as a model
        net.get_base_model().config.save_pretrained(output)
    for path in Path(output).glob("checkpoint-*"):  # the final model is saved; checkpoints were for resuming
        import shutil

        shutil.rmtree(path, ignore_errors=True)
    shown = {k.removeprefix("eval_"): v for k, v in metrics.items()
             if k in ("eval_accuracy", "eval_f1_macro", "eval_precision_macro", "eval_recall_macro")}
    write_model_card(output, title=title or Path(output).name, base_model=str(model), task="text-classification",
                     pipeline_tag="text-classification", dataset=dataset_name or Path(data).name,
                     dataset_description=dataset_description or f"`{Path(data).name}` ({len(train)} training rows, "
                                                                 f"{len(dev)} evaluation rows).",
                     metrics=shown, labels=names, train_runtime_s=result["train_runtime"], language=language,
                     intended_use=intended_use, command=command,
                     hyperparameters={"epochs": epochs, "learning_rate": lr, "batch_size": batch_size,
                                      "max_length": max_length, "weight_decay": weight_decay,
                                      "warmup_ratio": warmup_ratio, "seed": seed, "bf16": bf16,
                                      "class_weights": class_weights or "none",
                                      "method": f"LoRA r={lora_r} on {targets} + classifier" if lora else
                                      "full fine-tuning"})
    return {"output": str(output), "metrics": metrics, "train": result, "labels": names}


def _weighted_trainer(base, weights):
    """A Trainer whose loss is cross-entropy weighted per class."""
    import torch.nn.functional as F

    class WeightedTrainer(base):
        def compute_loss(self, model, inputs, return_outputs=False):
            inputs = dict(inputs)
            labels = inputs.pop("labels")
            out = model(**inputs)
            loss = F.cross_entropy(out["logits"].float(), labels, weight=weights.to(labels.device))
            return (loss, out) if return_outputs else loss

    return WeightedTrainer


def train_token_classification(data: str, *, model: str, output: str, validation: str | None = None,
                               epochs: float = 3, lr: float = 5e-5, batch_size: int = 32, max_length: int = 128,
                               bf16: bool = False, seed: int = 42, max_train_rows: int | None = None,
                               dataset_name: str | None = None, language: list[str] | None = None,
                               command: str | None = None, quiet: bool = False) -> dict:
    """Fine-tune ``model`` for token classification (NER) on CoNLL files; returns metrics and the path."""
    import torch

    from peluk.data import Dataset
    from peluk.data.collate import DataCollatorForTokenClassification
    from peluk.data.conll import align_labels, read_conll, tag_names
    from peluk.models import AutoModelForTokenClassification
    from peluk.tokenizer import AutoTokenizer
    from peluk.training.args import TrainingArguments
    from peluk.training.card import write_model_card
    from peluk.training.metrics import token_classification_metrics
    from peluk.training.trainer import Trainer

    train_rows = read_conll(data)
    if validation:
        dev_rows = read_conll(validation)
    else:
        random.Random(seed).shuffle(train_rows)
        cut = max(1, len(train_rows) // 10)
        dev_rows, train_rows = train_rows[:cut], train_rows[cut:]
    if max_train_rows:
        train_rows = train_rows[:max_train_rows]
    names = tag_names(train_rows + dev_rows)
    tag_id = {t: i for i, t in enumerate(names)}
    tokenizer = AutoTokenizer.from_pretrained(model)

    def encode(rows):
        enc = tokenizer([r["tokens"] for r in rows], is_split_into_words=True, truncation=True, max_length=max_length)
        return [{"input_ids": enc["input_ids"][i], "attention_mask": enc["attention_mask"][i],
                 "labels": align_labels(enc.word_ids(i), [tag_id[t] for t in r["ner_tags"]])}
                for i, r in enumerate(rows)]

    train, dev = Dataset.from_list(encode(train_rows)), Dataset.from_list(encode(dev_rows))
    torch.manual_seed(seed)
    net = AutoModelForTokenClassification.from_pretrained(model, num_labels=len(names), id2label=dict(enumerate(names)),
                                                          label2id=tag_id, ignore_mismatched_sizes=True)
    args = TrainingArguments(output, learning_rate=lr, per_device_train_batch_size=batch_size,
                             per_device_eval_batch_size=max(64, batch_size), num_train_epochs=epochs,
                             weight_decay=0.01, warmup_ratio=0.06, eval_strategy="epoch", save_strategy="no",
                             logging_steps=50, seed=seed, bf16=bf16, disable_tqdm=quiet)
    trainer = Trainer(net, args, train_dataset=train, eval_dataset=dev, processing_class=tokenizer,
                      data_collator=DataCollatorForTokenClassification(tokenizer),
                      compute_metrics=token_classification_metrics(dict(enumerate(names))))
    result = trainer.train()
    metrics = trainer.evaluate()
    trainer.save_model(output)
    shown = {k.removeprefix("eval_"): v for k, v in metrics.items()
             if k in ("eval_f1", "eval_precision", "eval_recall", "eval_accuracy")}
    write_model_card(output, title=Path(output).name, base_model=str(model), task="token-classification",
                     pipeline_tag="token-classification", dataset=dataset_name or Path(data).name,
                     dataset_description=f"`{Path(data).name}`: {len(train_rows)} training sentences, "
                                         f"{len(dev_rows)} evaluation sentences; tags {names}.",
                     metrics=shown, labels=names, train_runtime_s=result["train_runtime"], language=language,
                     command=command, hyperparameters={"epochs": epochs, "learning_rate": lr, "batch_size": batch_size,
                                                       "max_length": max_length, "seed": seed, "bf16": bf16})
    return {"output": str(output), "metrics": metrics, "train": result, "labels": names}


def env_threads() -> None:
    """Use every core for training unless the user set OMP_NUM_THREADS."""
    import torch

    if "OMP_NUM_THREADS" not in os.environ:
        torch.set_num_threads(os.cpu_count() or 1)
