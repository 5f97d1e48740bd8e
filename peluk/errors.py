"""The exception tree of peluk.

Every error peluk raises on purpose derives from :class:`PelukError`, and also from the
built-in exception a caller would naturally catch (``FileNotFoundError``, ``ValueError``,
``KeyError``), so both ``except peluk.errors.PelukError`` and ``except ValueError`` work.
Messages name the file, key or field at fault and say what to do about it.

    PelukError
    ├── ModelNotFoundError      (FileNotFoundError)  no such directory / repo / weight file
    │   ├── RevisionNotFoundError                    a hub repo has no such branch, tag or commit
    │   ├── EntryNotFoundError                       a hub repo has no such file at that revision
    │   └── NotCachedError                           offline (or hub unreachable) and not in the local cache
    ├── ConfigError             (ValueError)         unreadable or invalid config.json
    │   └── UnsupportedModelError                    model_type peluk does not implement
    ├── WeightsError            (ValueError)         corrupt file, missing/unexpected keys, shapes
    ├── TokenizerError          (ValueError)         no usable tokenizer files, bad arguments
    ├── PipelineError           (ValueError)         unknown task, no default model, bad input
    ├── TrainingError           (ValueError)         bad training arguments, unusable checkpoint
    ├── DatasetNotFoundError    (FileNotFoundError)  no such data file, directory or dataset repo
    ├── DatasetError            (ValueError)         bad rows (file + line), bad columns or arguments
    └── HubError                (OSError)            a hub request failed (HTTP status, server message),
        │                                            or a download did not match its ETag
        ├── HubUnreachableError                      the hub's endpoint cannot be reached
        └── HubAuthError                             no token, an invalid one, or one without access (401/403)
            └── GatedRepoError                       a gated repository's files are not for this token
"""

from __future__ import annotations


class PelukError(Exception):
    """Base class of every error peluk raises deliberately."""


class ModelNotFoundError(PelukError, FileNotFoundError):
    """A model directory, repository or weight file does not exist."""


class ConfigError(PelukError, ValueError):
    """config.json (or another JSON file) is missing a field, has a bad value, or is not JSON."""


class UnsupportedModelError(ConfigError):
    """The config's ``model_type`` (or a feature it asks for) is not implemented by peluk."""


class WeightsError(PelukError, ValueError):
    """A checkpoint cannot be loaded: corrupt file, missing or unexpected keys, wrong shapes."""


class TokenizerError(PelukError, ValueError):
    """No usable tokenizer files, or invalid tokenizer arguments."""


class PipelineError(PelukError, ValueError):
    """Unknown task, a task without a default model, or input a pipeline cannot take."""


class TrainingError(PelukError, ValueError):
    """Bad training arguments, a dataset the Trainer cannot batch, or an unusable checkpoint."""


class DatasetNotFoundError(PelukError, FileNotFoundError):
    """A data file, data directory, saved dataset or dataset repository does not exist."""


class DatasetError(PelukError, ValueError):
    """Data that cannot be read (the message names the file and line), or a bad column or argument."""


class RevisionNotFoundError(ModelNotFoundError):
    """A hub repository has no branch, tag or commit of that name."""


class EntryNotFoundError(ModelNotFoundError):
    """A hub repository has no such file at the requested revision."""


class NotCachedError(ModelNotFoundError):
    """Offline (or the hub cannot be reached) and the repo, revision or file is not in the local cache."""


class HubError(PelukError, OSError):
    """A hub request failed; ``status`` is the HTTP status when there was an answer."""

    status: int | None = None


class HubUnreachableError(HubError):
    """The hub's endpoint cannot be reached (refused, unknown host, timeout)."""


class HubAuthError(HubError):
    """The hub wants a token, rejected the one given, or the token may not do this (401/403)."""


class GatedRepoError(HubAuthError):
    """A gated repository: its files are only for the users it lets in."""


__all__ = [
    "PelukError",
    "ModelNotFoundError",
    "ConfigError",
    "UnsupportedModelError",
    "WeightsError",
    "TokenizerError",
    "PipelineError",
    "TrainingError",
    "DatasetNotFoundError",
    "DatasetError",
    "RevisionNotFoundError",
    "EntryNotFoundError",
    "NotCachedError",
    "HubError",
    "HubUnreachableError",
    "HubAuthError",
    "GatedRepoError",
]
