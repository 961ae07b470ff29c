"""What a run records about where it ran: the calling code's git commit and the environment,
and the fingerprint of a training dataset."""

from __future__ import annotations

import functools
import hashlib
import json
import platform
import subprocess
import sys
from importlib import metadata
from pathlib import Path
from typing import Any

__all__ = ["GitProbe", "dataset_fingerprint", "environment"]

KEY_PACKAGES = (
    "pilothouse",
    "numpy",
    "pandas",
    "polars",
    "pyarrow",
    "scikit-learn",
    "skl2onnx",
    "onnx",
    "onnxruntime",
    "torch",
    "xgboost",
    "lightgbm",
)


@functools.lru_cache(maxsize=1)
def _environment() -> str:
    packages = {}
    for name in KEY_PACKAGES:
        try:
            packages[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            continue
    return json.dumps(
        {
            "python": platform.python_version(),
            "implementation": platform.python_implementation(),
            "platform": platform.platform(),
            "executable": sys.executable,
            "packages": packages,
        }
    )


def environment() -> dict[str, Any]:
    """Python, platform and the versions of the key packages that are installed.

    Read once per process: reading package metadata costs milliseconds per package.
    """
    result: dict[str, Any] = json.loads(_environment())
    return result


class GitProbe:
    """Asks git, in the background, for (commit, dirty) of the work tree holding `path`.

    One `git status --porcelain=v2 --branch` gives both: the `# branch.oid` header and one
    line per tracked file that differs from the commit. Started when a run starts, read when
    it ends, so the training script never waits for git.
    """

    def __init__(self, path: Path) -> None:
        folder = path if path.is_dir() else path.parent
        try:
            self._process: subprocess.Popen[str] | None = subprocess.Popen(
                ["git", "status", "--porcelain=v2", "--branch", "--untracked-files=no"],
                cwd=folder,
                stdout=subprocess.PIPE,
                stderr=subprocess.DEVNULL,
                text=True,
            )
        except OSError:
            self._process = None

    def result(self, timeout: float = 10.0) -> tuple[str | None, bool | None]:
        if self._process is None:
            return None, None
        try:
            out, _ = self._process.communicate(timeout=timeout)
        except subprocess.TimeoutExpired:
            self._process.kill()
            self._process.communicate()
            return None, None
        if self._process.returncode != 0:
            return None, None
        commit = None
        dirty = False
        for line in out.splitlines():
            if line.startswith("# branch.oid "):
                oid = line.split(" ", 2)[2].strip()
                commit = None if oid == "(initial)" else oid
            elif line and not line.startswith("#"):
                dirty = True
        return commit, dirty if commit else None


def _frame_digest(frame: Any) -> tuple[str, dict[str, str], int]:
    import pandas as pd

    hashed = pd.util.hash_pandas_object(frame, index=False).to_numpy()
    schema = {str(c): str(t) for c, t in zip(frame.columns, frame.dtypes)}
    return hashlib.sha256(hashed.tobytes()).hexdigest(), schema, len(frame)


def dataset_fingerprint(data: Any) -> tuple[str, dict[str, Any], int]:
    """A content hash of the data and its schema, the schema, and the row count.

    The same values with the same column names and types give the same fingerprint,
    whatever library holds them.
    """
    if hasattr(data, "to_pandas") and not hasattr(data, "iloc"):
        data = data.to_pandas()  # polars, pyarrow
    if hasattr(data, "iloc") and hasattr(data, "columns"):
        content, columns, rows = _frame_digest(data)
        schema: dict[str, Any] = {"columns": columns}
    else:
        import numpy as np

        array = np.ascontiguousarray(np.asarray(data))
        if array.dtype == object:
            content = hashlib.sha256(json.dumps(array.tolist(), default=str).encode()).hexdigest()
        else:
            content = hashlib.sha256(array.tobytes()).hexdigest()
        schema = {"dtype": str(array.dtype), "shape": list(array.shape[1:])}
        rows = int(array.shape[0]) if array.ndim else 1
    fingerprint = hashlib.sha256(
        (content + json.dumps(schema, sort_keys=True)).encode()
    ).hexdigest()
    return fingerprint, schema, rows
