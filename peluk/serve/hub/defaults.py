"""The hub's default content: the models that come with peluk, as repositories with model cards.

On its first start (an empty hub) ``peluk hub serve`` imports them, so a new user finds real
models to browse, clone and load: the packaged ``sentence-transformers/all-MiniLM-L6-v2`` (with
its own card), ``HuggingFaceTB/SmolLM2-135M-Instruct-GGUF`` (the GGUF file and a card written
here) and peluk's own ``peluk/sentiment-en`` / ``peluk/sentiment-id`` once their recipes have
built them into ``peluk/assets/``. Files go through the hub's own storage (large ones and
``.gitattributes`` matches as LFS objects), one commit per repository; nothing is imported twice.

>>> import_defaults(Hub(home))                               # doctest: +SKIP
[{'repo': 'sentence-transformers/all-MiniLM-L6-v2', 'status': 'imported', 'files': 13, ...}, ...]
"""

from __future__ import annotations

import json
from pathlib import Path

from peluk.errors import ModelNotFoundError
from peluk.hub import BUILTIN, builtin_path
from peluk.serve.hub.auth import User, create_user, get_user
from peluk.serve.hub.service import Hub

MARKER = "defaults_imported"  # in the hub's home: the first start's import has been done
AUTHOR = User("peluk", fullname="peluk hub", is_admin=True)  # acts as an admin, in this process only
SKIPPED_DIRS = {"__pycache__", ".cache", ".git"}

SMOLLM2_CARD = """---
license: apache-2.0
library_name: gguf
pipeline_tag: text-generation
base_model: HuggingFaceTB/SmolLM2-135M-Instruct
language:
- en
tags:
- gguf
- llama
- smollm2
- chat
---

# SmolLM2-135M-Instruct (GGUF, Q4_1)

The instruction-tuned SmolLM2-135M (`HuggingFaceTB/SmolLM2-135M-Instruct`) by Hugging Face,
quantized to 4 bits (Q4_1) in llama.cpp's GGUF format: a 135M-parameter Llama-architecture chat
model small enough for any CPU. It is the model that comes with peluk (`peluk chat`); this hub
imported it from peluk's model package on its first start.

## Use

```python
from huggingface_hub import hf_hub_download
path = hf_hub_download("HuggingFaceTB/SmolLM2-135M-Instruct-GGUF", "{file}")
```

then `peluk chat --model <path>`, or any GGUF runtime (llama.cpp: `llama-cli -m <path>`).

## License

Apache 2.0, as the original model.
"""


def _files(root: Path) -> list[tuple[str, Path]]:
    """(path in the repository, file on disk) under ``root``: .gitattributes first, hidden files skipped."""
    found = []
    for path in sorted(root.rglob("*")):
        parts = path.relative_to(root).parts
        if path.is_file() and not any(p in SKIPPED_DIRS or p.startswith("checkpoint-") for p in parts[:-1]) \
                and (not parts[-1].startswith(".") or parts == (".gitattributes",)):
            found.append(("/".join(parts), path))
    return sorted(found, key=lambda item: item[0] != ".gitattributes")


def available() -> list[tuple[str, list[tuple[str, Path | bytes]], str]]:
    """The default repositories whose files are on this machine: (repo id, files, where from)."""
    out = []
    for repo_id, spec in BUILTIN.items():
        try:
            path = builtin_path(spec)
        except ModelNotFoundError:  # model package not installed, asset not built yet
            continue
        if not path.exists():
            continue
        if path.is_file():  # a GGUF file: the repository gets it plus a card
            card = SMOLLM2_CARD.replace("{file}", path.name) if "SmolLM2" in repo_id else f"# {repo_id}\n"
            out.append((repo_id, [("README.md", card.encode()), (path.name, path)], spec))
        elif (path / "config.json").exists() or (path / "adapter_config.json").exists():
            out.append((repo_id, _files(path), spec))  # a directory with a model in it (not just a training log)
    return out


def import_repo(hub: Hub, repo_id: str, files: list[tuple[str, Path | bytes]], source: str) -> dict:
    """Create ``repo_id`` (public model) with ``files`` in one commit; its namespace becomes a user if needed."""
    namespace, name = repo_id.split("/")
    if hub.db.get_repo("model", namespace, name) is not None:
        return {"repo": repo_id, "status": "exists"}
    if get_user(hub.db, namespace) is None:
        create_user(hub.db, namespace)
    repo = hub.create_repo("model", namespace, name, private=False, user=AUTHOR)
    total = 0
    try:
        with hub.staging(repo) as stage:
            stage.set_base(hub.git(repo).head("refs/heads/main"))
            for path, content in files:
                if isinstance(content, bytes):
                    stage.add_bytes(path, content)
                    total += len(content)
                    continue
                size = content.stat().st_size
                total += size
                if size and (size > hub.storage.lfs_threshold or path in stage.rules):
                    stage.add_lfs(path, _store(hub, content), size)  # streamed: never the whole file in memory
                else:
                    stage.add_bytes(path, content.read_bytes())
            sha, _ = hub.commit(repo, "main", stage.ops(), f"Import {repo_id}",
                                f"Imported by the peluk hub on its first start from {source}.", AUTHOR)
    except BaseException:
        hub.delete_repo(repo)  # no half-imported repository
        raise
    return {"repo": repo_id, "status": "imported", "files": len(files), "bytes": total, "sha": sha}


def _store(hub: Hub, file: Path) -> str:
    with hub.storage.lfs.writer() as writer, open(file, "rb") as f:
        while chunk := f.read(1 << 22):
            writer.write(chunk)
        return writer.finish()


def import_defaults(hub: Hub) -> list[dict]:
    """Import every default model available here and not in the hub yet; one result dict per repository."""
    return [import_repo(hub, repo_id, files, source) for repo_id, files, source in available()]


def import_on_first_start(hub: Hub) -> list[dict] | None:
    """``import_defaults`` once in a hub's life, when it is still empty; None when it is not the first start.

    Done is recorded in ``home/defaults_imported`` (deleting the default repositories later is final).
    """
    marker = hub.home / MARKER
    if marker.exists():
        return None
    results = [] if hub.db.query("SELECT name FROM repos LIMIT 1") else import_defaults(hub)
    marker.write_text(json.dumps(results, indent=1) + "\n")
    return results
