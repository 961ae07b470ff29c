"""The exceptions pilothouse raises. Every one derives from :class:`PilothouseError`."""

from pilothouse._core import (
    InferenceError,
    InputError,
    ModelLoadError,
    PilothouseError,
    RuntimeUnavailableError,
)

__all__ = [
    "InferenceError",
    "InputError",
    "ModelLoadError",
    "PilothouseError",
    "RuntimeUnavailableError",
]
