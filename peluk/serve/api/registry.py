"""Which models the API serves, where their files are, and which of them are in memory.

A model id resolves (``Registry.source``) to a :class:`Source`: files on disk, a revision, a
task and a kind (encoder, causal LM, encoder-decoder). In order:

1. ids given to ``peluk serve --models`` as local paths (``local/<folder>`` or ``ID=PATH``);
2. repositories of this hub (access rules of the hub: private ones need a token that may read
   them); their files at the current commit are exported once into ``home/inference/``
   (LFS objects as symbolic links, no copies);
3. peluk's built-in names (``peluk.hub.BUILTIN``: the packaged MiniLM and SmolLM2, peluk's own models).

Loading (``Registry.use``) happens on first use, in a worker thread, once even when many
requests ask at the same time. Loaded models are kept while their weights fit in the memory
budget; beyond it the least recently used idle ones are evicted. A new commit of a hub
repository is a new revision: it loads anew, and the old one ages out.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import json
import logging
import os
import shutil
import threading
import time
import uuid
from dataclasses import dataclass
from pathlib import Path

from peluk.serve.api.protocol import ApiError
from peluk.serve.api.settings import CLASSIFIER, DEFAULT_MODELS, EMBEDDING, LLM, Settings

log = logging.getLogger("peluk.serve")

# pipeline_tag → the Auto class the task loads (sentence-similarity shares the embedding model)
AUTO = {"feature-extraction": "AutoModel", "sentence-similarity": "AutoModel", "sentence-embeddings": "AutoModel",
        "text-classification": "AutoModelForSequenceClassification",
        "zero-shot-classification": "AutoModelForSequenceClassification",
        "token-classification": "AutoModelForTokenClassification", "fill-mask": "AutoModelForMaskedLM",
        "question-answering": "AutoModelForQuestionAnswering", "text-generation": "AutoModelForCausalLM",
        "text2text-generation": "AutoModelForSeq2SeqLM", "summarization": "AutoModelForSeq2SeqLM",
        "translation": "AutoModelForSeq2SeqLM"}
TASKS = tuple(t for t in AUTO if t != "sentence-embeddings")
SEQ2SEQ_TYPES = {"t5", "bart", "mbart", "marian"}


@dataclass(frozen=True)
class Source:
    """A servable model's files: ``kind`` is "encoder", "causal" or "seq2seq"; ``task`` the
    default pipeline task (card's ``pipeline_tag``, else guessed from config.json)."""

    id: str
    path: Path
    revision: str
    task: str
    kind: str
    embedding: bool = False  # sentence-transformers layout (modules.json): pooled sentence vectors
    sliding_window: bool = False


class Loaded:
    """A model in memory with its tokenizer, pipelines, batcher and (causal LMs) generation engine."""

    def __init__(self, source: Source, auto: str, model, tokenizer, nbytes: int):
        self.source, self.auto, self.model, self.tokenizer, self.nbytes = source, auto, model, tokenizer, nbytes
        self.pipelines: dict[str, object] = {}
        self.batcher = None
        self.engine = None
        self.in_flight, self.last_used = 0, time.monotonic()
        self.lock = threading.Lock()  # tokenizing on the API's side (prompts) vs. the worker threads

    @property
    def max_length(self) -> int:
        return self.model.config.max_input_length or 2048

    def pipeline(self, task: str):
        if task not in self.pipelines:
            from peluk.pipelines import pipeline

            self.pipelines[task] = pipeline(task, model=self.model, tokenizer=self.tokenizer)
        return self.pipelines[task]

    def close(self) -> None:
        for worker in (self.batcher, self.engine):
            if worker is not None:
                worker.close()


def guess(config: dict, directory: Path) -> tuple[str, str]:
    """(kind, task) from config.json, when the card names no pipeline_tag."""
    model_type = config.get("model_type", "")
    architectures = config.get("architectures") or []
    if config.get("is_encoder_decoder") or model_type in SEQ2SEQ_TYPES:
        task = "translation" if model_type == "marian" else "text2text-generation"
        if "summarization" in (config.get("task_specific_params") or {}) and model_type != "marian":
            task = "summarization"
        return "seq2seq", task
    if any(a.endswith(("ForCausalLM", "LMHeadModel")) for a in architectures):
        return "causal", "text-generation"
    for suffix, task in (("ForSequenceClassification", "text-classification"),
                         ("ForTokenClassification", "token-classification"),
                         ("ForQuestionAnswering", "question-answering"), ("ForMaskedLM", "fill-mask")):
        if any(a.endswith(suffix) for a in architectures):
            if task == "text-classification" and any(str(v).lower().startswith("entail")
                                                     for v in (config.get("id2label") or {}).values()):
                task = "zero-shot-classification"
            return "encoder", task
    return "encoder", "feature-extraction"


def describe(model_id: str, path: Path, revision: str, card_task: str | None) -> Source:
    """A Source for files at ``path`` (a directory, or a .gguf file / a directory holding one)."""
    if path.is_dir() and not (path / "config.json").exists():
        ggufs = sorted(path.glob("*.gguf"))
        if ggufs:
            path = ggufs[0]
    if path.suffix == ".gguf":
        return Source(model_id, path, revision, "text-generation", "causal")
    try:
        config = json.loads((path / "config.json").read_text())
    except (OSError, ValueError) as e:
        raise ApiError(422, f"model {model_id} cannot be served: no readable config.json ({e})", "validation") from None
    if not isinstance(config, dict):
        raise ApiError(422, f"model {model_id} cannot be served: config.json is not an object", "validation")
    kind, task = guess(config, path)
    if card_task is None:
        card_task = _card_task(path)
    if card_task in TASKS and (kind == "encoder") == (card_task not in ("text-generation", "text2text-generation",
                                                                         "summarization", "translation")):
        task = card_task
    window = config.get("sliding_window")
    return Source(model_id, path, revision, task, kind, (path / "modules.json").exists(),
                  bool(window) and window < (config.get("max_position_embeddings") or 0))


def _card_task(path: Path) -> str | None:
    try:
        from peluk.serve.hub.cards import metadata

        tag = metadata((path / "README.md").read_text(errors="replace")).get("pipeline_tag")
        return tag if isinstance(tag, str) else None
    except Exception:  # no card, or not YAML: the config decides
        return None


def model_bytes(model) -> int:
    seen, total = set(), 0
    for t in list(model.parameters()) + list(model.buffers()):
        try:
            storage = t.untyped_storage()
        except (RuntimeError, NotImplementedError):
            continue
        if storage.data_ptr() not in seen:
            seen.add(storage.data_ptr())
            total += storage.nbytes()
    return total


class Registry:
    def __init__(self, hub, settings: Settings, metrics, make_workers):
        self.hub, self.settings, self.metrics, self.make_workers = hub, settings, metrics, make_workers
        self.loaded: collections.OrderedDict[tuple, Loaded] = collections.OrderedDict()  # LRU order
        self.loading: dict[tuple, asyncio.Future] = {}
        self.local = {}  # id → path, from --models
        self.order = []  # the ids of --models (or the defaults), for default_for
        for spec in settings.models or DEFAULT_MODELS:
            model_id, _, value = spec.partition("=") if "=" in spec else ("", "", spec)
            path = Path(value).expanduser()
            if path.exists():
                model_id = model_id or f"local/{path.stem if path.is_file() else path.name}"
                self.local[model_id] = path.resolve()
            self.order.append(model_id or value)
        self.exports = Path(hub.home) / "inference"
        self._sources: dict[str, Source] = {}
        self._export_lock = threading.Lock()
        metrics.gauge_fn("peluk_models_loaded", lambda: {(): float(len(self.loaded))})
        metrics.gauge_fn("peluk_model_memory_bytes",
                         lambda: {(("model", e.source.id),): float(e.nbytes) for e in list(self.loaded.values())})

    # --- resolving ids --------------------------------------------------------------------------
    def source(self, model_id: str, user=None) -> Source:
        """Resolve ``model_id`` for ``user`` (blocking: database, maybe an export).

        Raises:
            ApiError: 404 (unknown, or a private repo the user may not read), 422 (not servable).
        """
        if model_id in self.local:
            return self._cached(model_id, lambda: describe(model_id, self.local[model_id], "local", None))
        namespace, _, name = model_id.partition("/")
        repo = self.hub.db.get_repo("model", namespace, name) if name and "/" not in name else None
        if repo is not None:
            from peluk.serve.hub.service import RepoNotFound

            try:
                repo = self.hub.find("model", model_id, user)
            except RepoNotFound:
                raise self.not_found(model_id) from None
            if not repo.sha:
                raise ApiError(422, f"{model_id} has no commits yet: push a model first", "validation")
            path = self._export(repo)
            return self._cached(f"{model_id}@{repo.sha}", lambda: describe(model_id, path, repo.sha, repo.pipeline_tag))
        from peluk.hub import BUILTIN, builtin_path

        if model_id in BUILTIN:
            def make():
                try:
                    path = builtin_path(BUILTIN[model_id])
                except FileNotFoundError as e:
                    raise ApiError(404, f"{model_id} is not installed here: {e}", "not_found",
                                   headers={"X-Error-Code": "RepoNotFound"}) from None
                if path.is_dir() and not (path / "config.json").exists() and not list(path.glob("*.gguf")):
                    raise ApiError(404, f"{model_id} is not built yet (its recipe in recipes/ makes it)", "not_found",
                                   headers={"X-Error-Code": "RepoNotFound"})
                return describe(model_id, path, "builtin", None)
            return self._cached(model_id, make)
        raise self.not_found(model_id)

    @staticmethod
    def not_found(model_id: str) -> ApiError:
        return ApiError(404, f"Model {model_id} not found: not on this hub (or private), not built in, and not "
                        "given to peluk serve --models", "not_found", code="model_not_found",
                        headers={"X-Error-Code": "RepoNotFound"})

    def _cached(self, key: str, make) -> Source:
        if key not in self._sources:
            self._sources[key] = make()
        return self._sources[key]

    def _export(self, repo) -> Path:
        """The repository's files at its head commit, in ``home/inference/<owner>--<name>/<sha>``."""
        from peluk.hub import NOT_FOR_LOADING, select

        target = self.exports / f"{repo.namespace}--{repo.name}" / repo.sha
        if target.exists():
            return target
        with self._export_lock:
            if target.exists():
                return target
            git = self.hub.git(repo)
            entries = {e.path: e for e in git.tree(repo.sha, recursive=True) if e.type == "file"}
            tmp = target.with_name(f".{repo.sha}.{uuid.uuid4().hex[:8]}")
            try:
                for path in select(sorted(entries), ignore_patterns=NOT_FOR_LOADING, prefer_safetensors=True):
                    dest = tmp / path
                    dest.parent.mkdir(parents=True, exist_ok=True)
                    stored, data = git.open(entries[path])
                    if stored is not None:
                        try:
                            os.symlink(stored, dest)
                        except OSError:
                            shutil.copyfile(stored, dest)
                    else:
                        dest.write_bytes(data)
                tmp.mkdir(parents=True, exist_ok=True)
                os.replace(tmp, target)
            finally:
                shutil.rmtree(tmp, ignore_errors=True)
        return target

    def default_for(self, role: str) -> str:
        """The id serving ``role`` ("llm", "embedding", "classifier") when a request names no model:
        the first fitting model of ``--models``, else the built-in default."""
        for model_id in self.order:
            try:
                source = self.source(model_id)
            except ApiError:
                continue
            if role == "llm" and source.kind == "causal" or role == "embedding" and source.embedding \
                    or role == "classifier" and source.task == "text-classification":
                return model_id
        return {"llm": LLM, "embedding": EMBEDDING, "classifier": CLASSIFIER}[role]

    # --- loading --------------------------------------------------------------------------------
    @contextlib.asynccontextmanager
    async def use(self, source: Source, task: str, wait: bool = True):
        """The loaded model for ``task`` (loaded now if needed), marked busy while in use."""
        auto = "AutoModelForCausalLM" if source.kind == "causal" else AUTO.get(task, "AutoModel")
        if source.kind == "seq2seq":
            auto = "AutoModelForSeq2SeqLM"
        key = (source.id, source.revision, auto)
        entry = self.loaded.get(key)
        if entry is None:
            if not wait and key not in self.loading:
                asyncio.ensure_future(self._load(key, source, auto))
            if not wait:
                raise ApiError(503, f"Model {source.id} is currently loading", "loading",
                               headers={"Retry-After": "5"})
            entry = await self._load(key, source, auto)
        entry.in_flight += 1
        entry.last_used = time.monotonic()
        self.loaded.move_to_end(key)
        try:
            yield entry
        finally:
            entry.in_flight -= 1

    async def _load(self, key: tuple, source: Source, auto: str) -> Loaded:
        if key in self.loaded:
            return self.loaded[key]
        if key not in self.loading:
            self.loading[key] = asyncio.ensure_future(self._load_now(key, source, auto))
        return await asyncio.shield(self.loading[key])

    async def _load_now(self, key, source: Source, auto: str) -> Loaded:
        try:
            entry = await asyncio.to_thread(self._read, source, auto)
            self.make_workers(entry)
            self.loaded[key] = entry
            self.metrics.inc("peluk_model_loads_total", model=source.id)
            await self._evict(keep=key)
            return entry
        finally:
            self.loading.pop(key, None)

    def _read(self, source: Source, auto: str) -> Loaded:
        import torch

        from peluk import models
        from peluk.tokenizer import AutoTokenizer

        started = time.perf_counter()
        quant = self.settings.quantize.get(source.id)
        dtype = torch.bfloat16 if quant == "bf16" else torch.float32 if quant == "none" else None
        try:
            model = getattr(models, auto).from_pretrained(source.path, dtype=dtype)
            if quant in ("int8", "int4") and source.kind == "causal":
                from peluk.nn.quant import quantize_linears

                if not any(type(m).__name__ == "QuantLinear" for m in model.modules()):
                    quantize_linears(model, bits=8 if quant == "int8" else 4)
            tokenizer = AutoTokenizer.from_pretrained(source.path)
        except (ValueError, OSError) as e:  # peluk's errors: unsupported model, missing files, ...
            raise ApiError(422, f"model {source.id} cannot be loaded: {e}", "validation") from None
        model.eval()
        log.info("peluk serve: loaded %s (%s) in %.1fs", source.id, auto, time.perf_counter() - started)
        return Loaded(source, auto, model, tokenizer, model_bytes(model))

    async def _evict(self, keep: tuple) -> None:
        budget = self.settings.memory_budget_mb * 2 ** 20
        while sum(e.nbytes for e in self.loaded.values()) > budget:
            victim = next((k for k, e in self.loaded.items() if k != keep and e.in_flight == 0), None)
            if victim is None:
                log.warning("peluk serve: loaded models exceed the memory budget of %s MB (all busy)",
                            self.settings.memory_budget_mb)
                return
            entry = self.loaded.pop(victim)
            self.metrics.inc("peluk_model_evictions_total", model=entry.source.id)
            log.info("peluk serve: evicted %s to stay within %s MB", entry.source.id, self.settings.memory_budget_mb)
            await asyncio.to_thread(entry.close)
        from peluk.nn.quant import release_freed_memory

        release_freed_memory()

    async def preload(self) -> None:
        """Load the configured (or default) models, one after the other, skipping what fails."""
        for model_id in self.order:
            try:
                source = await asyncio.to_thread(self.source, model_id)
                async with self.use(source, source.task):
                    pass
            except ApiError as e:
                log.info("peluk serve: not preloading %s: %s", model_id, e.message)
            except Exception:
                log.exception("peluk serve: preloading %s failed", model_id)

    def listing(self, user=None) -> list[str]:
        """Ids worth listing in /v1/models: configured, built in and available, loaded, public hub models."""
        from peluk.hub import BUILTIN

        ids = list(dict.fromkeys([*self.order, *BUILTIN, *(e.source.id for e in self.loaded.values())]))
        available = []
        for model_id in ids:
            try:
                self.source(model_id, user)
                available.append(model_id)
            except ApiError:
                continue
        for repo in self.hub.db.search_repos("model", getattr(user, "name", None),
                                             bool(getattr(user, "is_admin", False)), limit=200):
            if repo.id not in available and (repo.pipeline_tag in TASKS or repo.library_name == "gguf"):
                available.append(repo.id)
        return available

    def close(self) -> None:
        for entry in self.loaded.values():
            entry.close()
        self.loaded.clear()
