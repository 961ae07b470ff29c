"""The exceptions pilothouse raises. Every one derives from :class:`PilothouseError`."""

from pilothouse._core import (
    ApprovalRequiredError,
    ConflictError,
    InferenceError,
    InputError,
    IntegrityError,
    ModelLoadError,
    NotFoundError,
    PilothouseError,
    ProfileFormatError,
    RuntimeUnavailableError,
    StoreUnavailableError,
    ValidationError,
)

__all__ = [
    "ApprovalRequiredError",
    "ConflictError",
    "InferenceError",
    "InputError",
    "IntegrityError",
    "ModelLoadError",
    "NotFoundError",
    "PilothouseError",
    "ProfileFormatError",
    "RuntimeUnavailableError",
    "StoreUnavailableError",
    "ValidationError",
]
