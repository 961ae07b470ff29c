"""Where pilothouse keeps its files, and the URIs Python reads or writes.

This module owns the home folder (``$PILOTHOUSE_HOME``, else ``~/.pilothouse``), the default
registry URI (``$PILOTHOUSE_URI``, else the embedded SQLite database ``registry.db`` in the
home folder), the default artifact folder (``artifacts/`` in the home folder), the payload
log's default folder (``inference-log/`` beside a registry's artifact folder), the
``models:/`` references to versions, and the check for a password written into a registry URI.
Every other module asks here; none decides a path or reads a URI of its own. (The Rust
registry parses registry URIs themselves.)
"""

from __future__ import annotations

import os
import re
from pathlib import Path

__all__ = [
    "MODEL_URI_PREFIX",
    "alias_uri",
    "default_artifacts",
    "default_uri",
    "has_password",
    "home",
    "inference_log_dir",
    "is_model_uri",
    "reference_uri",
    "version_uri",
]

MODEL_URI_PREFIX = "models:/"

_PASSWORD_IN_URI = re.compile(r"^[a-z][a-z0-9+.-]*://[^/@?#]*:[^/@?#]*@|[?&]password=", re.I)


def home() -> Path:
    """``$PILOTHOUSE_HOME``, else ``~/.pilothouse``: the embedded registry and its artifacts."""
    return Path(os.environ.get("PILOTHOUSE_HOME", Path.home() / ".pilothouse")).expanduser()


def default_uri() -> str:
    """``$PILOTHOUSE_URI``, else ``sqlite:///<PILOTHOUSE_HOME or ~/.pilothouse>/registry.db``."""
    return os.environ.get("PILOTHOUSE_URI") or f"sqlite://{home() / 'registry.db'}"


def default_artifacts() -> Path:
    """The artifact folder for registries whose URI names none (SQLite beside its database
    file names its own; PostgreSQL without ``?artifacts=`` uses this one)."""
    return home() / "artifacts"


def inference_log_dir(artifact_root: str | os.PathLike[str]) -> Path:
    """Where a server writes its payload log by default: ``inference-log`` beside the
    registry's artifact folder."""
    return Path(artifact_root).parent / "inference-log"


def is_model_uri(value: object) -> bool:
    """True for a registry reference (``models:/churn/3``, ``models:/churn@champion``)."""
    return isinstance(value, str) and value.startswith(MODEL_URI_PREFIX)


def version_uri(name: str, version: int | str) -> str:
    """``models:/name/3``, or ``models:/name/latest``."""
    return f"{MODEL_URI_PREFIX}{name}/{version}"


def alias_uri(name: str, alias: str) -> str:
    """``models:/name@alias``."""
    return f"{MODEL_URI_PREFIX}{name}@{alias}"


def reference_uri(name: str, version: int | str) -> str:
    """A version given beside a model's name: a number or ``latest`` names a version,
    anything else an alias."""
    if str(version).isdigit() or version == "latest":
        return version_uri(name, version)
    return alias_uri(name, str(version))


def has_password(uri: str) -> bool:
    """True when a URI carries a password (``user:secret@host`` or ``?password=``)."""
    return _PASSWORD_IN_URI.search(uri) is not None
