"""sklearn_to_onnx: signatures inferred from the training data, feature order recorded."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import polars as pl
import pytest
from sklearn.linear_model import LogisticRegression

import pilothouse as ph
from pilothouse.convert import sklearn_to_onnx


def _load(tmp_path: Path, data: bytes) -> ph.Model:
    path = tmp_path / "m.onnx"
    path.write_bytes(data)
    return ph.load_model(path)


def test_numeric_frame_records_columns(tmp_path: Path) -> None:
    rng = np.random.default_rng(0)
    X = pd.DataFrame(rng.normal(size=(200, 3)), columns=["b", "a", "c"])
    y = (X["a"] > 0).astype(int)
    clf = LogisticRegression().fit(X, y)
    model = _load(tmp_path, sklearn_to_onnx(clf, X))
    assert model.feature_names == ["b", "a", "c"]
    assert [o.name for o in model.outputs] == ["label", "probabilities"]
    out = model.predict(X[["c", "b", "a"]])
    np.testing.assert_allclose(out["probabilities"], clf.predict_proba(X), atol=1e-5)
    np.testing.assert_array_equal(model.predict(pl.from_pandas(X))["label"], clf.predict(X))


def test_mixed_frame_gets_one_input_per_column(tmp_path: Path, mixed: tuple[Any, Any]) -> None:
    from sklearn.compose import ColumnTransformer
    from sklearn.pipeline import Pipeline
    from sklearn.preprocessing import OneHotEncoder

    frame = mixed[1].assign(visits=np.arange(len(mixed[1])) % 5)
    y = (frame["city"] == "oslo").astype(int)
    pipe = Pipeline(
        [
            (
                "prep",
                ColumnTransformer([("cat", OneHotEncoder(), ["city"])], remainder="passthrough"),
            ),
            ("clf", LogisticRegression(max_iter=1000)),
        ]
    ).fit(frame, y)
    model = _load(tmp_path, sklearn_to_onnx(pipe, frame))
    assert [(s.name, s.dtype) for s in model.inputs] == [
        ("age", "float32"),
        ("income", "float32"),
        ("city", "string"),
        ("visits", "int64"),
    ]
    np.testing.assert_array_equal(model.predict(frame)["label"], pipe.predict(frame))


def test_numpy_sample_and_bad_sample(tmp_path: Path) -> None:
    rng = np.random.default_rng(0)
    X = rng.normal(size=(100, 2))
    clf = LogisticRegression().fit(X, X[:, 0] > 0)
    model = _load(tmp_path, sklearn_to_onnx(clf, X.astype(np.float32)))
    assert model.feature_names is None and model.inputs[0].shape == (None, 2)
    with pytest.raises(ph.InputError, match="2-D"):
        sklearn_to_onnx(clf, X[0])


def test_a_missing_converter_is_a_clear_error(monkeypatch: pytest.MonkeyPatch) -> None:
    import sys

    X = np.random.default_rng(0).normal(size=(50, 2))
    clf = LogisticRegression().fit(X, X[:, 0] > 0)
    monkeypatch.setitem(sys.modules, "skl2onnx", None)  # as if the extra were not installed
    with pytest.raises(ImportError, match=r"pip install 'pilothouse\[sklearn\]'"):
        sklearn_to_onnx(clf, X)
