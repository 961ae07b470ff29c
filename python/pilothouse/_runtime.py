"""Finds and loads ONNX Runtime's shared library, once per process.

The library comes from the ``onnxruntime`` wheel (``onnxruntime/capi/libonnxruntime.so.*``),
found without importing onnxruntime; ``ORT_DYLIB_PATH`` overrides it.
"""

from __future__ import annotations

import importlib.util
import os
import sys
import threading
from pathlib import Path

from pilothouse import _core
from pilothouse.errors import RuntimeUnavailableError

__all__ = ["ensure_runtime", "find_library"]

_lock = threading.Lock()
_FIX = (
    "Install it with `pip install 'onnxruntime>=1.22'`, or set ORT_DYLIB_PATH to the full "
    "path of a libonnxruntime shared library, version 1.22 or newer."
)


def _library_patterns() -> tuple[str, ...]:
    if sys.platform == "darwin":
        return ("libonnxruntime.*.dylib", "libonnxruntime.dylib")
    if sys.platform == "win32":
        return ("onnxruntime.dll",)
    return ("libonnxruntime.so.*", "libonnxruntime.so")


def find_library() -> tuple[Path | None, list[str]]:
    """Return the library to load (or None) and the places that were looked at."""
    override = os.environ.get("ORT_DYLIB_PATH")
    if override:
        return Path(override), [f"ORT_DYLIB_PATH={override}"]
    try:
        spec = importlib.util.find_spec("onnxruntime")
    except (ImportError, ValueError):
        spec = None
    if spec is None or not spec.submodule_search_locations:
        return None, ["the 'onnxruntime' Python package (not installed)"]
    looked = []
    for location in spec.submodule_search_locations:
        capi = Path(location) / "capi"
        looked.append(str(capi))
        for pattern in _library_patterns():
            found = sorted(p for p in capi.glob(pattern) if p.is_file())
            if found:
                return found[-1], looked
    return None, [f"{p} (no libonnxruntime shared library inside)" for p in looked]


def ensure_runtime() -> str:
    """Load ONNX Runtime if it is not loaded yet; return the library's path."""
    loaded = _core.loaded_runtime()
    if loaded is not None:
        return loaded
    with _lock:
        loaded = _core.loaded_runtime()
        if loaded is not None:
            return loaded
        path, looked = find_library()
        if path is None:
            raise RuntimeUnavailableError(
                f"ONNX Runtime was not found; looked at {', '.join(looked)}. {_FIX}"
            )
        return _core.init_runtime(str(path))
