"""Converting trained estimators to ONNX, the format pilothouse serves.

scikit-learn estimators and pipelines convert with skl2onnx (the ``pilothouse[sklearn]``
extra). The input signature is inferred from a sample of the training data: a numeric array
or all-numeric frame becomes one 2-D input whose column order is recorded in the model's
metadata; a frame with string or categorical columns becomes one input per column, as
skl2onnx expects for pipelines with encoders. Classifiers are converted without ZipMap, so
probabilities come out as a plain matrix (the faster form).
"""

from __future__ import annotations

import json
from typing import Any

import numpy as np

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
