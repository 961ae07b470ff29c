"""Bad input gets a clear error that names what was wrong; nothing crashes the interpreter."""

from __future__ import annotations

import subprocess
import sys
import textwrap
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import polars as pl
import pyarrow as pa
import pytest

import pilothouse as ph


def test_error_hierarchy() -> None:
    for cls in (ph.ModelLoadError, ph.InputError, ph.RuntimeUnavailableError, ph.InferenceError):
        assert issubclass(cls, ph.PilothouseError)
    assert issubclass(ph.PilothouseError, Exception)


# -- loading ---------------------------------------------------------------------------------


def test_missing_file(tmp_path: Path) -> None:
    with pytest.raises(ph.ModelLoadError, match=r"absent\.onnx.*no such file"):
        ph.load_model(tmp_path / "absent.onnx")


def test_not_onnx(tmp_path: Path) -> None:
    path = tmp_path / "readme.onnx"
    path.write_text("this is a text file, not a model\n" * 20)
    with pytest.raises(ph.ModelLoadError, match=r"readme\.onnx"):
        ph.load_model(path)


def test_empty_file(tmp_path: Path) -> None:
    path = tmp_path / "empty.onnx"
    path.write_bytes(b"")
    with pytest.raises(ph.ModelLoadError, match=r"empty\.onnx.*empty"):
        ph.load_model(path)


def test_corrupt_file(tmp_path: Path, mlp: tuple[Path, Any]) -> None:
    data = mlp[0].read_bytes()
    truncated = tmp_path / "truncated.onnx"
    truncated.write_bytes(data[: len(data) // 3])
    with pytest.raises(ph.ModelLoadError, match=r"truncated\.onnx"):
        ph.load_model(truncated)
    flipped = bytearray(data)
    for i in range(40, len(flipped), 97):
        flipped[i] ^= 0xFF
    corrupt = tmp_path / "corrupt.onnx"
    corrupt.write_bytes(bytes(flipped))
    with pytest.raises(ph.ModelLoadError, match=r"corrupt\.onnx"):
        ph.load_model(corrupt)


def test_directory(tmp_path: Path) -> None:
    with pytest.raises(ph.ModelLoadError, match="directory"):
        ph.load_model(tmp_path)


def test_unsupported_opset(tmp_path: Path) -> None:
    import onnx
    from onnx import TensorProto, helper

    graph = helper.make_graph(
        [helper.make_node("Relu", ["x"], ["y"])],
        "future",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [None, 2])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [None, 2])],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 999)])
    model.ir_version = 8
    path = tmp_path / "future.onnx"
    onnx.save(model, path)
    with pytest.raises(ph.ModelLoadError, match=r"future\.onnx.*(opset|999)"):
        ph.load_model(path)


def test_bad_options(logreg: tuple[Path, Any]) -> None:
    with pytest.raises(ValueError, match="optimization"):
        ph.load_model(logreg[0], optimization="fastest")
    with pytest.raises(ValueError, match="intra_op_threads"):
        ph.load_model(logreg[0], intra_op_threads=0)
    with pytest.raises(ValueError, match="max_sessions"):
        ph.load_model(logreg[0], max_sessions=0)


# -- inputs ----------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def lr(logreg: tuple[Path, np.ndarray]) -> tuple[ph.Model, np.ndarray]:
    return ph.load_model(logreg[0]), logreg[1]


def test_wrong_input_name(lr: tuple[ph.Model, np.ndarray]) -> None:
    model, X = lr
    with pytest.raises(ph.InputError, match=r"input 'features'.*no input of that name.*\[X\]"):
        model.predict({"features": X[:2]})


def test_missing_input(multi_io: tuple[Path, dict[str, np.ndarray]]) -> None:
    path, sample = multi_io
    model = ph.load_model(path)
    partial = {k: v for k, v in sample.items() if k not in ("s", "flag")}
    with pytest.raises(ph.InputError, match=r"missing.*s, flag"):
        model.predict(partial)


def test_array_for_a_multi_input_model(multi_io: tuple[Path, Any]) -> None:
    model = ph.load_model(multi_io[0])
    with pytest.raises(ph.InputError, match=r"6 inputs \(a, b, s, d, i, flag\)"):
        model.predict(np.zeros((2, 3), np.float32))


def test_wrong_dtype(lr: tuple[ph.Model, np.ndarray], multi_io: tuple[Path, Any]) -> None:
    model, _ = lr
    with pytest.raises(ph.InputError, match=r"input 'X'.*string data.*float32"):
        model.predict(np.array([["a", "b", "c", "d"]]))
    multi = ph.load_model(multi_io[0])
    sample = dict(multi_io[1])
    with pytest.raises(ph.InputError, match=r"input 'b'.*float64.*int64"):
        multi.predict({**sample, "b": sample["b"].astype(np.float64)})
    with pytest.raises(ph.InputError, match=r"input 's'.*float32.*string"):
        multi.predict({**sample, "s": np.zeros(5, np.float32)})
    with pytest.raises(ph.InputError, match=r"input 's': element 2 is None"):
        multi.predict({**sample, "s": np.array(["a", "b", None, "d", "e"], dtype=object)})
    with pytest.raises(ph.InputError, match=r"input 'X'.*complex"):
        model.predict(np.zeros((1, 4), np.complex64))


def test_int32_overflow(multi_io: tuple[Path, Any]) -> None:
    multi = ph.load_model(multi_io[0])
    sample = dict(multi_io[1])
    big = np.array([1, 2, 3, 2**40, 5], dtype=np.int64)
    with pytest.raises(ph.InputError, match=r"input 'i'.*1099511627776.*int32"):
        multi.predict({**sample, "i": big})


def test_wrong_rank_and_feature_count(lr: tuple[ph.Model, np.ndarray]) -> None:
    model, X = lr
    with pytest.raises(ph.InputError, match=r"input 'X'.*got 3 features.*expects 4"):
        model.predict(X[:5, :3])
    with pytest.raises(ph.InputError, match=r"input 'X'.*1-D.*reshape it to \(1, -1\)"):
        model.predict(X[0])
    with pytest.raises(ph.InputError, match=r"input 'X'.*3-D"):
        model.predict(X[:4].reshape(2, 2, 4))


def test_ragged_and_empty(lr: tuple[ph.Model, np.ndarray]) -> None:
    model, _ = lr
    with pytest.raises(ph.InputError, match=r"input 'X'.*ragged"):
        model.predict([[1.0, 2.0, 3.0, 4.0], [1.0, 2.0]])
    with pytest.raises(ph.InputError, match=r"input 'X'.*empty"):
        model.predict(np.zeros((0, 4), np.float32))
    with pytest.raises(ph.InputError, match=r"input 'X'.*empty"):
        model.predict(pd.DataFrame({c: pd.Series([], dtype=float) for c in "abcd"}))
    with pytest.raises(ph.InputError, match=r"no columns"):
        model.predict(pd.DataFrame())


def test_tables_with_wrong_columns(
    lr: tuple[ph.Model, np.ndarray], mixed: tuple[Path, Any]
) -> None:
    model, X = lr
    three = pd.DataFrame(X[:3, :3], columns=["a", "b", "c"])
    for data in (three, pl.from_pandas(three), pa.Table.from_pandas(three)):
        with pytest.raises(ph.InputError, match=r"input 'X'.*3 columns.*expects 4 features"):
            model.predict(data)
    strings = pd.DataFrame({"a": ["x"], "b": [1.0], "c": [1.0], "d": [1.0]})
    with pytest.raises(ph.InputError, match=r"input 'X'.*\['a'\].*not numeric"):
        model.predict(strings)
    with pytest.raises(ph.InputError, match=r"input 'X'.*column 'a'.*string.*float32"):
        model.predict(pa.Table.from_pandas(strings))

    pipeline = ph.load_model(mixed[0])
    frame = mixed[1]
    with pytest.raises(ph.InputError, match=r"city.*no column named city"):
        pipeline.predict(frame.drop(columns=["city"]))
    with_nulls = frame.iloc[:4].copy()
    with_nulls.loc[1, "city"] = None
    with pytest.raises(ph.InputError, match=r"'city'.*1 missing"):
        pipeline.predict(with_nulls)
    with pytest.raises(ph.InputError, match=r"'city'.*1 missing"):
        pipeline.predict(pa.Table.from_pandas(with_nulls))


def test_missing_floats_become_nan(lr: tuple[ph.Model, np.ndarray]) -> None:
    model, X = lr
    table = pa.table({f"f{i}": pa.array([float(X[0, i]), None]) for i in range(4)})
    out = model.predict(table)
    assert out["output_probability"].shape == (2, 2)
    direct = model.predict(np.array([X[0], [np.nan] * 4], dtype=np.float32))
    np.testing.assert_array_equal(out["output_label"], direct["output_label"])


def test_unsupported_object(lr: tuple[ph.Model, np.ndarray]) -> None:
    model, _ = lr
    with pytest.raises(ph.InputError, match=r"cannot feed builtins\.set"):
        model.predict({1, 2})
    with pytest.raises(
        ph.InputError, match=r"input 'X'.*numpy dtype .*not supported|input 'X'.*object"
    ):
        model.predict({"X": np.array([[object()] * 4])})


def _run_isolated(code: str, **env: str) -> subprocess.CompletedProcess[str]:
    import os

    return subprocess.run(
        [sys.executable, "-c", textwrap.dedent(code)],
        capture_output=True,
        text=True,
        env={**os.environ, **env},
        timeout=120,
    )


def test_runtime_missing_is_a_clear_error(tmp_path: Path, logreg: tuple[Path, Any]) -> None:
    code = f"""
        import pilothouse as ph
        try:
            ph.load_model({str(logreg[0])!r})
        except ph.RuntimeUnavailableError as e:
            print("RAISED", e)
    """
    result = _run_isolated(code, ORT_DYLIB_PATH="/nowhere/libonnxruntime.so.1.99")
    assert result.returncode == 0, result.stderr
    assert "RAISED" in result.stdout
    assert "/nowhere/libonnxruntime.so.1.99" in result.stdout
    assert "pip install" in result.stdout and "ORT_DYLIB_PATH" in result.stdout

    bogus = tmp_path / "libonnxruntime.so"
    bogus.write_text("not a shared library")
    result = _run_isolated(code, ORT_DYLIB_PATH=str(bogus))
    assert "RAISED" in result.stdout and str(bogus) in result.stdout, result.stdout + result.stderr


def test_runtime_package_absent_is_a_clear_error(logreg: tuple[Path, Any]) -> None:
    code = f"""
        import importlib.abc, sys

        class HideOnnxRuntime(importlib.abc.MetaPathFinder):
            def find_spec(self, name, path=None, target=None):
                if name == "onnxruntime" or name.startswith("onnxruntime."):
                    raise ModuleNotFoundError(name)
                return None

        sys.meta_path.insert(0, HideOnnxRuntime())
        import pilothouse as ph
        try:
            ph.load_model({str(logreg[0])!r})
        except ph.RuntimeUnavailableError as e:
            print("RAISED", e)
    """
    import os

    env = {k: v for k, v in os.environ.items() if k != "ORT_DYLIB_PATH"}
    result = subprocess.run(
        [sys.executable, "-c", textwrap.dedent(code)],
        capture_output=True,
        text=True,
        env=env,
        timeout=120,
    )
    assert "RAISED" in result.stdout, result.stdout + result.stderr
    assert "not installed" in result.stdout and "pip install" in result.stdout
