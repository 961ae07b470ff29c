"""pilothouse: take machine-learning models into production and keep them healthy there.

>>> import pilothouse as ph
>>> ph.__version__
'0.1.0'
"""

from pilothouse._core import __version__
from pilothouse.errors import (
    InferenceError,
    InputError,
    ModelLoadError,
    PilothouseError,
    RuntimeUnavailableError,
)
from pilothouse.model import Model, TensorSpec, load_model

__all__ = [
    "InferenceError",
    "InputError",
    "Model",
    "ModelLoadError",
    "PilothouseError",
    "RuntimeUnavailableError",
    "TensorSpec",
    "__version__",
    "load_model",
]
