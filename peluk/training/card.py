"""Model cards: ``README.md`` with Hugging Face's YAML metadata, written next to trained weights.

The YAML header carries what the Hub (and peluk's hub) index for search: base model,
datasets, language, license, pipeline tag, and the evaluation results in the ``model-index``
shape. The body says what the model is for, how it was trained, how well it does, and
where it will fail.
"""

from __future__ import annotations

import datetime
import json
import os
import platform
from pathlib import Path

LIMITATIONS = (
    "- It learned from one dataset's domain and labelling conventions; text from other domains "
    "(social media, legal, code-mixed Indonesian–English, other dialects) can be misclassified "
    "with high confidence.\n"
    "- Sarcasm, negation across clauses and mixed sentiment remain hard for a model of this size.\n"
    "- Biases of the training data (topics, named people and groups, annotators' judgements) carry "
    "over into predictions; do not use it for decisions about people without human review.\n"
    "- Scores are not calibrated probabilities."
)


def _yaml_value(value) -> str:
    return json.dumps(value, ensure_ascii=False)  # JSON scalars and lists are valid YAML


def write_model_card(directory: str | os.PathLike, *, title: str, base_model: str, task: str, pipeline_tag: str,
                     dataset: str, dataset_description: str, metrics: dict[str, float], hyperparameters: dict,
                     train_runtime_s: float, language: list[str] | None = None, license: str = "apache-2.0",
                     intended_use: str = "", limitations: str = LIMITATIONS, labels: list[str] | None = None,
                     command: str | None = None) -> Path:
    """Write ``directory/README.md``; returns its path."""
    directory = Path(directory)
    lines = ["---", f"base_model: {_yaml_value(base_model)}", f"datasets: {_yaml_value([dataset])}"]
    if language:
        lines.append(f"language: {_yaml_value(language)}")
    lines += [f"license: {license}", "library_name: peluk", f"pipeline_tag: {pipeline_tag}",
              f"tags: {_yaml_value(['peluk', task])}", "model-index:", f"- name: {_yaml_value(title)}", "  results:",
              "  - task:", f"      type: {pipeline_tag}", "    dataset:", f"      name: {_yaml_value(dataset)}",
              f"      type: {_yaml_value(dataset)}", "    metrics:"]
    for name, value in metrics.items():
        lines += [f"    - type: {_yaml_value(name)}", f"      value: {round(float(value), 4)}"]
    lines.append("---")
    table = "\n".join(f"| {k} | {float(v):.4f} |" for k, v in metrics.items())
    params = "\n".join(f"- {k}: {v}" for k, v in hyperparameters.items())
    label_text = f"\nLabels: {', '.join(f'`{x}`' for x in labels)}.\n" if labels else ""
    body = f"""
# {title}

A {task} model fine-tuned from `{base_model}` with peluk's Trainer on {dataset}.
{label_text}
## Intended use
{intended_use or f"{task} of short texts like those in {dataset}."}

```python
from peluk import pipeline
clf = pipeline("{pipeline_tag}", model="{directory.name}")
```

## Training data
{dataset_description}

## Evaluation
| metric | value |
|---|---|
{table}

## Training procedure
{params}
- training time: {train_runtime_s / 60:.1f} min on {os.cpu_count()} CPU cores ({platform.processor() or platform.machine()}),
  {datetime.date.today().isoformat()}
{f"- reproduce with: `{command}`" if command else ""}

## Limitations and bias
{limitations}
"""
    path = directory / "README.md"
    directory.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".md.tmp")
    tmp.write_text("\n".join(lines) + "\n" + body, encoding="utf-8")
    os.replace(tmp, path)
    return path
