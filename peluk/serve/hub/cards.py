"""Model and dataset cards: README.md YAML front matter → ``cardData``, its checks, search tags.

>>> metadata("---\\nlicense: mit\\npipeline_tag: text-classification\\n---\\n# My model\\n")
{'license': 'mit', 'pipeline_tag': 'text-classification'}
>>> validate("---\\ntags: 3\\n---\\n", "model")[0]
['"tags" must be a list of strings, not int']
"""

from __future__ import annotations

import datetime
import re

FRONT_MATTER = re.compile(r"\A\ufeff?---[ \t]*\r?\n(.*?)(?:\r?\n)?^---[ \t]*$", re.S | re.M)
LICENSES = set(
    "apache-2.0 mit openrail openrail++ bigscience-openrail-m creativeml-openrail-m bigscience-bloom-rail-1.0 "
    "bigcode-openrail-m afl-3.0 artistic-2.0 bsl-1.0 bsd bsd-2-clause bsd-3-clause bsd-3-clause-clear "
    "c-uda cc cc0-1.0 cc-by-2.0 cc-by-2.5 cc-by-3.0 cc-by-4.0 cc-by-sa-3.0 cc-by-sa-4.0 cc-by-nc-2.0 "
    "cc-by-nc-3.0 cc-by-nc-4.0 cc-by-nd-4.0 cc-by-nc-nd-3.0 cc-by-nc-nd-4.0 cc-by-nc-sa-2.0 cc-by-nc-sa-3.0 "
    "cc-by-nc-sa-4.0 cdla-sharing-1.0 cdla-permissive-1.0 cdla-permissive-2.0 wtfpl ecl-2.0 epl-1.0 epl-2.0 "
    "etalab-2.0 eupl-1.1 eupl-1.2 agpl-3.0 gfdl gpl gpl-2.0 gpl-3.0 lgpl lgpl-2.1 lgpl-3.0 isc h-research "
    "intel-research lppl-1.3c ms-pl apple-ascl apple-amlr mpl-2.0 odc-by odbl openmdw-1.0 "
    "openrail++ osl-3.0 postgresql ofl-1.1 ncsa unlicense zlib pddl lgpl-lr deepfloyd-if-license "
    "fair-noncommercial-research-license llama2 llama3 llama3.1 llama3.2 llama3.3 llama4 gemma unknown other".split())
STRING_LISTS = ("tags", "datasets", "metrics", "language", "base_model", "task_categories", "task_ids",
                "size_categories", "language_creators", "annotations_creators", "multilinguality")
DATASET_TAG_KEYS = ("task_categories", "task_ids", "size_categories", "language_creators",
                    "annotations_creators", "multilinguality", "source_datasets")


class CardError(ValueError):
    """README.md front matter that is not valid YAML or not a mapping."""


def _jsonable(value):
    """YAML dates and other non-JSON scalars become strings, so cardData round-trips as JSON."""
    if isinstance(value, dict):
        return {str(k): _jsonable(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_jsonable(v) for v in value]
    if isinstance(value, (datetime.date, datetime.datetime)):
        return value.isoformat()
    if value is None or isinstance(value, (str, int, float, bool)):
        return value
    return str(value)


def metadata(readme: str) -> dict:
    """The YAML front matter of a README as a dict ({} when there is none).

    Raises:
        CardError: the front matter is not YAML or not a mapping (the message says where).
    """
    import yaml  # PyYAML; safe_load never builds arbitrary objects

    match = FRONT_MATTER.match(readme)
    if not match:
        return {}
    try:
        data = yaml.safe_load(match.group(1))
    except yaml.YAMLError as e:
        raise CardError(f"Invalid YAML in README.md metadata: {e}".replace("\n", " ")) from None
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise CardError(f"README.md metadata must be a YAML mapping (key: value), not {type(data).__name__}")
    return _jsonable(data)


def validate(readme: str, repo_type: str = "model") -> tuple[list[str], list[str]]:
    """(errors, warnings) of a README's metadata, as ``/api/validate-yaml`` reports them."""
    try:
        data = metadata(readme)
    except CardError as e:
        return [str(e)], []
    errors, warnings = [], []
    for key in STRING_LISTS:
        value = data.get(key)
        if value is None or isinstance(value, str):
            continue
        if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
            kind = type(value).__name__ if not isinstance(value, list) else "a list with non-strings"
            errors.append(f'"{key}" must be a list of strings, not {kind}')
    for key in ("pipeline_tag", "library_name", "license_name", "license_link"):
        if key in data and data[key] is not None and not isinstance(data[key], str):
            errors.append(f'"{key}" must be a string, not {type(data[key]).__name__}')
    licenses = data.get("license")
    for lic in licenses if isinstance(licenses, list) else [licenses] if licenses is not None else []:
        if not isinstance(lic, str):
            errors.append(f'"license" must be a string or a list of strings, not {type(lic).__name__}')
        elif lic.lower() not in LICENSES:
            warnings.append(f'"license" {lic!r} is not a known license id; use "other" with license_name')
    if "model-index" in data and not isinstance(data["model-index"], list):
        errors.append('"model-index" must be a list')
    return errors, warnings


def _strings(value) -> list[str]:
    if isinstance(value, str):
        return [value]
    return [v for v in value if isinstance(v, str)] if isinstance(value, list) else []


def search_tags(card: dict, repo_type: str, files: list[str]) -> list[str]:
    """The tags a repository is found by (Hub conventions: ``license:mit``, ``dataset:x``, ...)."""
    tags = _strings(card.get("tags"))
    if repo_type == "model":
        tags += _strings(card.get("library_name")) + _strings(card.get("pipeline_tag"))
        tags += [f"dataset:{d}" for d in _strings(card.get("datasets"))]
        tags += [f"base_model:{b}" for b in _strings(card.get("base_model"))]
        tags += _strings(card.get("language"))
        tags += ["safetensors"] * any(f.endswith(".safetensors") for f in files)
        tags += ["gguf"] * any(f.endswith(".gguf") for f in files)
    else:
        tags += [f"language:{lang}" for lang in _strings(card.get("language"))]
        for key in DATASET_TAG_KEYS:
            tags += [f"{key}:{v}" for v in _strings(card.get(key))]
    tags += [f"license:{lic}" for lic in _strings(card.get("license"))]
    return list(dict.fromkeys(tags))
