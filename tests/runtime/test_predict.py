"""Model.predict against onnxruntime's own InferenceSession, for every model and input form."""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd
import polars as pl
import pyarrow as pa
import pytest

import pilothouse as ph
from models import onnxruntime_outputs, zipmap_to_matrix

FORMS = ["numpy", "numpy-float64", "list", "dict", "pandas", "polars", "arrow-table", "arrow-batch"]


def as_form(X: np.ndarray, form: str, input_name: str) -> Any:
    columns = [f"f{i}" for i in range(X.shape[1])]
    frame = pd.DataFrame(X, columns=columns)
    return {
        "numpy": lambda: X,
        "numpy-float64": lambda: X.astype(np.float64),
        "list": lambda: X.tolist(),
        "dict": lambda: {input_name: X},
        "pandas": lambda: frame,
        "polars": lambda: pl.from_pandas(frame),
        "arrow-table": lambda: pa.Table.from_pandas(frame),
        "arrow-batch": lambda: pa.RecordBatch.from_pandas(frame),
    }[form]()


def assert_same(ours: dict[str, np.ndarray], theirs: dict[str, Any], model: ph.Model) -> None:
    assert list(ours) == [s.name for s in model.outputs]
    for spec in model.outputs:
        got, want = ours[spec.name], theirs[spec.name]
        if spec.kind == "zipmap":
            want = zipmap_to_matrix(want, spec.labels)
        want = np.asarray(want)
        assert got.shape == want.shape, spec.name
        if want.dtype.kind in "fc":
            np.testing.assert_allclose(got, want, rtol=1e-6, atol=1e-6, err_msg=spec.name)
        else:
            np.testing.assert_array_equal(got, want, err_msg=spec.name)


@pytest.mark.parametrize("form", FORMS)
@pytest.mark.parametrize("fixture", ["logreg", "logreg_nozipmap", "forest", "gbr"])
def test_sklearn_models_match_onnxruntime(
    fixture: str, form: str, request: pytest.FixtureRequest
) -> None:
    path, X = request.getfixturevalue(fixture)
    model = ph.load_model(path)
    batch = X[:37]
    theirs = onnxruntime_outputs(path, {model.inputs[0].name: batch})
    ours = model.predict(as_form(batch, form, model.inputs[0].name))
    assert_same(ours, theirs, model)


def test_mlp_matches_onnxruntime(mlp: tuple[Any, np.ndarray]) -> None:
    path, X = mlp
    model = ph.load_model(path)
    assert [(s.name, s.dtype, s.shape) for s in model.inputs] == [("x", "float32", (None, 20))]
    assert_same(model.predict(X), onnxruntime_outputs(path, {"x": X}), model)
    # one row, given as a 2-D array
    assert_same(model.predict(X[:1]), onnxruntime_outputs(path, {"x": X[:1]}), model)


def test_zipmap_becomes_a_probability_matrix_with_known_labels(
    forest: tuple[Any, np.ndarray],
) -> None:
    path, X = forest
    model = ph.load_model(path)
    probs = next(s for s in model.outputs if s.kind == "zipmap")
    assert probs.labels == [0, 1, 2]
    assert model.labels() == [0, 1, 2]
    out = model.predict(X[:10])
    matrix = out[probs.name]
    assert matrix.shape == (10, 3) and matrix.dtype == np.float32
    np.testing.assert_allclose(matrix.sum(axis=1), 1.0, rtol=1e-5)
    np.testing.assert_array_equal(
        np.array(probs.labels)[matrix.argmax(axis=1)], out["output_label"]
    )


@pytest.mark.parametrize("form", ["pandas", "polars", "arrow-table", "dict"])
def test_mixed_pipeline_takes_one_column_per_input(
    mixed: tuple[Any, pd.DataFrame], form: str
) -> None:
    path, frame = mixed
    model = ph.load_model(path)
    assert [s.name for s in model.inputs] == ["age", "income", "city"]
    assert [s.dtype for s in model.inputs] == ["float32", "float32", "string"]
    assert model.labels() == ["churn", "stay"]
    batch = frame.iloc[:25].reset_index(drop=True)
    feeds = {
        "age": batch[["age"]].to_numpy(np.float32),
        "income": batch[["income"]].to_numpy(np.float32),
        "city": batch[["city"]].to_numpy().astype(object),
    }
    theirs = onnxruntime_outputs(path, feeds)
    data: Any = {
        "pandas": lambda: batch[["city", "income", "age"]],  # order does not matter by name
        "polars": lambda: pl.from_pandas(batch),
        "arrow-table": lambda: pa.Table.from_pandas(batch),
        "dict": lambda: {k: v for k, v in feeds.items()},
    }[form]()
    ours = model.predict(data)
    assert_same(ours, theirs, model)
    assert set(ours["output_label"]) <= {"churn", "stay"}


def test_categorical_and_dictionary_columns(mixed: tuple[Any, pd.DataFrame]) -> None:
    path, frame = mixed
    model = ph.load_model(path)
    plain = model.predict(frame)
    as_category = frame.assign(city=frame["city"].astype("category"))
    np.testing.assert_array_equal(model.predict(as_category)["output_label"], plain["output_label"])
    table = pa.Table.from_pandas(frame)
    idx = table.schema.get_field_index("city")
    encoded = table.set_column(idx, "city", table.column("city").dictionary_encode())
    np.testing.assert_array_equal(model.predict(encoded)["output_label"], plain["output_label"])
    lazy = pl.from_pandas(frame).with_columns(pl.col("city").cast(pl.Categorical))
    np.testing.assert_array_equal(model.predict(lazy)["output_label"], plain["output_label"])


def test_multiple_inputs_and_outputs_of_every_type(
    multi_io: tuple[Any, dict[str, np.ndarray]],
) -> None:
    path, sample = multi_io
    model = ph.load_model(path)
    assert [s.dtype for s in model.inputs] == [
        "float32",
        "int64",
        "string",
        "float64",
        "int32",
        "bool",
    ]
    ours = model.predict(sample)
    theirs = onnxruntime_outputs(path, sample)
    assert_same(ours, theirs, model)
    assert ours["s_same"].dtype == object
    assert ours["s_same"].tolist() == ["alpha", "beta", "", "δέλτα", "e"]
    assert ours["b_doubled"].dtype == np.int64 and ours["i_plus"].dtype == np.int32
    assert ours["flag_not"].dtype == np.bool_ and ours["d_neg"].dtype == np.float64
    # unicode numpy arrays and lists work for string inputs; python ints for int inputs
    again = model.predict(
        {**sample, "s": np.array(sample["s"].tolist()), "i": sample["i"].tolist()}
    )
    assert again["s_same"].tolist() == ours["s_same"].tolist()
    np.testing.assert_array_equal(again["i_plus"], ours["i_plus"])


def test_recorded_feature_order_is_followed(model_dir: Any) -> None:
    import models

    raw, X = models.logistic_regression()
    path = model_dir / "ordered.onnx"
    path.write_bytes(models.with_feature_names(raw, ["b", "c", "a", "d"]))
    model = ph.load_model(path)
    assert model.feature_names == ["b", "c", "a", "d"]
    frame = pd.DataFrame(X[:20], columns=["b", "c", "a", "d"])
    shuffled = frame[["d", "a", "c", "b"]]
    expected = model.predict(X[:20])
    for data in (shuffled, pl.from_pandas(shuffled), pa.Table.from_pandas(shuffled)):
        got = model.predict(data)
        np.testing.assert_array_equal(got["output_probability"], expected["output_probability"])


def test_non_contiguous_and_fortran_arrays(logreg: tuple[Any, np.ndarray]) -> None:
    path, X = logreg
    model = ph.load_model(path)
    expected = model.predict(np.ascontiguousarray(X[:30]))
    fortran = np.asfortranarray(X[:30])
    strided = np.ascontiguousarray(np.repeat(X[:30], 2, axis=0))[::2]
    for data in (fortran, strided):
        got = model.predict(data)
        np.testing.assert_array_equal(got["output_probability"], expected["output_probability"])


def test_integer_and_small_dtypes_are_cast(logreg: tuple[Any, np.ndarray]) -> None:
    path, _ = logreg
    model = ph.load_model(path)
    ints = np.array([[1, 0, 3, 2], [0, 0, 0, 0]])  # representable in every dtype below
    expected = model.predict(ints.astype(np.float32))
    for dtype in (np.int64, np.int32, np.int8, np.uint16, np.float16):
        got = model.predict(ints.astype(dtype))
        np.testing.assert_array_equal(got["output_probability"], expected["output_probability"])


def test_pandas_nullable_and_reused_frames(logreg: tuple[Any, np.ndarray], model_dir: Any) -> None:
    import models

    path, X = logreg
    model = ph.load_model(path)
    frame = pd.DataFrame(X[:6], columns=["a", "b", "c", "d"]).astype("Float64")
    frame.iloc[2, 1] = pd.NA
    got = model.predict(frame)
    want = X[:6].copy()
    want[2, 1] = np.nan
    np.testing.assert_array_equal(got["output_label"], model.predict(want)["output_label"])
    # row slices share the frame's column index (the plan is reused); a renamed frame is not
    plain = pd.DataFrame(X[:6], columns=["a", "b", "c", "d"])
    for i in range(3):
        np.testing.assert_array_equal(
            model.predict(plain.iloc[[i]])["output_probability"],
            model.predict(X[i : i + 1])["output_probability"],
        )
    ordered = ph.load_model(
        _write(
            model_dir,
            "ordered2.onnx",
            models.with_feature_names(models.logistic_regression()[0], ["a", "b", "c", "d"]),
        )
    )
    first = ordered.predict(plain)["output_probability"]
    reordered = plain[["d", "c", "b", "a"]]
    np.testing.assert_array_equal(ordered.predict(reordered)["output_probability"], first)
    renamed = plain.rename(columns={"a": "z"})
    with pytest.raises(ph.InputError, match=r"lacks \[a\]"):
        ordered.predict(renamed)
    np.testing.assert_array_equal(ordered.predict(plain)["output_probability"], first)


def _write(directory: Any, name: str, data: bytes) -> Any:
    path = directory / name
    path.write_bytes(data)
    return path


@pytest.mark.parametrize("dtype", [np.float32, np.float64, np.int64])
def test_frames_of_one_dtype_in_any_layout(logreg: tuple[Any, np.ndarray], dtype: Any) -> None:
    """pandas hands out Fortran-ordered blocks; they must reach the model row by row."""
    path, X = logreg
    model = ph.load_model(path)
    data = (X[:300] * 10).astype(dtype)
    expected = model.predict(np.ascontiguousarray(data, dtype=np.float32))
    frame = pd.DataFrame(data, columns=["a", "b", "c", "d"])
    assert not frame.to_numpy().flags["C_CONTIGUOUS"]
    np.testing.assert_array_equal(
        model.predict(frame)["output_probability"], expected["output_probability"]
    )
    np.testing.assert_array_equal(
        model.predict(np.asfortranarray(data))["output_probability"],
        expected["output_probability"],
    )


def test_single_block_read_matches_to_numpy() -> None:
    from pilothouse.model import _single_block

    rng = np.random.default_rng(3)
    frame = pd.DataFrame(rng.normal(size=(7, 3)), columns=["x", "y", "z"])
    block = _single_block(frame)
    assert block is not None
    np.testing.assert_array_equal(block, frame.to_numpy())
    reordered = frame[["z", "x", "y"]]
    np.testing.assert_array_equal(_single_block(reordered), reordered.to_numpy())
    mixed = frame.assign(w=np.arange(7))
    assert _single_block(mixed) is None  # two blocks: the public path
    assert _single_block(frame.astype("Float64")) is None  # extension dtype
