"""Turning a trained model into what the registry stores: ONNX bytes, a signature record and
an input example.

This module owns the conversions :func:`pilothouse.log_model` makes before anything is
stored: a model given as an ONNX file, bytes, an ``onnx.ModelProto`` or a scikit-learn
estimator becomes ONNX bytes (:func:`onnx_bytes`); the loaded model's inputs and outputs
become the signature dict the registry keeps (:func:`signature`); a few rows of the
training data or example become the input example's JSON (:func:`example_json`).

scikit-learn estimators and pipelines convert with skl2onnx (the ``pilothouse[sklearn]``
extra). The input signature is inferred from a sample of the training data: a numeric array
or all-numeric frame becomes one 2-D input whose column order is recorded in the model's
metadata; a frame with string or categorical columns becomes one input per column, as
skl2onnx expects for pipelines with encoders. Classifiers are converted without ZipMap, so
probabilities come out as a plain matrix (the faster form). numpy is imported only when
something is converted, so that ``import pilothouse`` stays fast.
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from pilothouse import _core
from pilothouse.errors import InputError

__all__ = ["FEATURE_NAMES_KEY", "sklearn_to_onnx"]

FEATURE_NAMES_KEY = "pilothouse.feature_names"


def _require_skl2onnx() -> Any:
    try:
        import skl2onnx
    except ImportError as e:
        raise ImportError(
            "converting scikit-learn models needs skl2onnx: pip install 'pilothouse[sklearn]'"
        ) from e
    return skl2onnx


def _initial_types(sample: Any) -> tuple[list[tuple[str, Any]], list[str] | None]:
    import numpy as np
    from skl2onnx.common.data_types import (
        DoubleTensorType,
        FloatTensorType,
        Int64TensorType,
        StringTensorType,
    )

    columns = getattr(sample, "columns", None)
    if columns is not None and hasattr(sample, "dtypes"):
        names = [str(c) for c in columns]
        kinds = [getattr(t, "kind", "O") for t in sample.dtypes]
        if all(k in "biuf" for k in kinds):
            return [("X", FloatTensorType([None, len(names)]))], names
        types: list[tuple[str, Any]] = []
        for name, kind in zip(names, kinds):
            if kind == "f":
                types.append((name, FloatTensorType([None, 1])))
            elif kind in "biu":
                types.append((name, Int64TensorType([None, 1])))
            else:
                types.append((name, StringTensorType([None, 1])))
        return types, None
    array = np.asarray(sample)
    if array.ndim != 2:
        raise InputError(f"the sample must be 2-D (rows, features); got shape {array.shape}")
    if array.dtype == np.float64:
        return [("X", DoubleTensorType([None, array.shape[1]]))], None
    if array.dtype.kind in "iub" or array.dtype == np.float32:
        return [("X", FloatTensorType([None, array.shape[1]]))], None
    return [("X", StringTensorType([None, array.shape[1]]))], None


def sklearn_to_onnx(
    estimator: Any,
    sample: Any,
    *,
    zipmap: bool = False,
    target_opset: int | None = None,
) -> bytes:
    """Convert a fitted scikit-learn estimator or pipeline to ONNX bytes.

    ``sample`` is some of the training data (numpy, pandas, polars); its column names and
    types define the model's inputs.
    """
    skl2onnx = _require_skl2onnx()
    if hasattr(sample, "to_pandas") and not hasattr(sample, "iloc"):
        sample = sample.to_pandas()
    initial, feature_names = _initial_types(sample)
    options = None if zipmap else {id(estimator): {"zipmap": False}}
    try:
        onx = skl2onnx.convert_sklearn(
            estimator, initial_types=initial, options=options, target_opset=target_opset
        )
    except (RuntimeError, NameError) as e:
        if "zipmap" in str(e).lower() and options is not None:
            onx = skl2onnx.convert_sklearn(
                estimator, initial_types=initial, target_opset=target_opset
            )
        else:
            raise
    if feature_names is not None:
        entry = onx.metadata_props.add()
        entry.key = FEATURE_NAMES_KEY
        entry.value = json.dumps(feature_names)
    data: bytes = onx.SerializeToString()
    return data


def _is_sklearn(model: Any) -> bool:
    return hasattr(model, "fit") and (hasattr(model, "predict") or hasattr(model, "transform"))


def onnx_bytes(model: Any, sample: Any) -> bytes:
    """``model`` as ONNX bytes: read from a file, taken as bytes or an ``onnx.ModelProto``,
    or converted from scikit-learn (its signature inferred from ``sample``)."""
    if isinstance(model, (bytes, bytearray, memoryview)):
        return bytes(model)
    if isinstance(model, (str, os.PathLike)):
        path = Path(model)
        if not path.is_file():
            raise FileNotFoundError(f"no ONNX file at {path}")
        return path.read_bytes()
    if hasattr(model, "SerializeToString"):
        data: bytes = model.SerializeToString()
        return data
    if _is_sklearn(model):
        if sample is None:
            raise InputError(
                "converting a scikit-learn model needs training_data or input_example to "
                "infer its input signature"
            )
        return sklearn_to_onnx(model, sample)
    raise InputError(
        f"cannot register a {type(model).__module__}.{type(model).__name__}: pass an ONNX "
        "file path, ONNX bytes, an onnx.ModelProto or a scikit-learn estimator"
    )


def example_json(sample: Any, core: _core.Model, rows: int = 5) -> str | None:
    """The first ``rows`` rows of ``sample`` as the input example's JSON, or None when they
    cannot be written as JSON."""
    if sample is None:
        return None
    import numpy as np

    try:
        if hasattr(sample, "to_pandas") and not hasattr(sample, "iloc"):
            sample = sample.to_pandas()
        if hasattr(sample, "iloc"):
            head = sample.iloc[:rows]
            payload: Any = {"columns": {str(c): head[c].tolist() for c in head.columns}}
        elif isinstance(sample, Mapping):
            payload = {"inputs": {k: np.asarray(v)[:rows].tolist() for k, v in sample.items()}}
        else:
            payload = {"inputs": {core.inputs[0].name: np.asarray(sample)[:rows].tolist()}}
        return json.dumps(payload, default=str)
    except (TypeError, ValueError):
        return None


def signature(core: _core.Model) -> dict[str, Any]:
    """A loaded model's inputs, outputs, feature names and opsets, as the registry keeps them."""

    def spec(s: _core.TensorSpec) -> dict[str, Any]:
        out: dict[str, Any] = {
            "name": s.name,
            "dtype": s.dtype,
            "shape": list(s.shape),
            "kind": s.kind,
        }
        if s.labels is not None:
            out["labels"] = s.labels
        return out

    return {
        "inputs": [spec(s) for s in core.inputs],
        "outputs": [spec(s) for s in core.outputs],
        "feature_names": core.feature_names,
        "opsets": core.opsets,
    }
