"""Real ONNX models for the tests, made with scikit-learn + skl2onnx and onnx.helper.

Each builder returns ``(onnx_bytes, sample_inputs)``. ``python tests/models.py DIR`` writes
the small ones to DIR for the Rust crate's integration tests.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

import numpy as np
import onnx
from onnx import TensorProto, helper

RNG_SEED = 7
N_FEATURES = 4


def _training_data(n: int = 300, features: int = N_FEATURES) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(RNG_SEED)
    X = rng.normal(size=(n, features)).astype(np.float32)
    y = ((X[:, 0] + 0.5 * X[:, 1] - X[:, 2]) > 0).astype(np.int64)
    return X, y


def _convert(estimator: Any, sample: Any, zipmap: bool = True, **kw: Any) -> bytes:
    from skl2onnx import to_onnx

    options = None if zipmap else {id(estimator): {"zipmap": False}}
    return to_onnx(estimator, sample, options=options, target_opset=17, **kw).SerializeToString()


def logistic_regression(zipmap: bool = True) -> tuple[bytes, np.ndarray]:
    from sklearn.linear_model import LogisticRegression

    X, y = _training_data()
    clf = LogisticRegression(max_iter=500).fit(X, y)
    return _convert(clf, X[:1], zipmap=zipmap), X


def random_forest(n_estimators: int = 30) -> tuple[bytes, np.ndarray]:
    from sklearn.ensemble import RandomForestClassifier

    X, y = _training_data()
    y3 = y + (X[:, 3] > 1).astype(np.int64)  # three classes: 0, 1, 2
    clf = RandomForestClassifier(n_estimators=n_estimators, max_depth=6, random_state=0)
    clf.fit(X, y3)
    return _convert(clf, X[:1]), X


def gradient_boosting_regressor() -> tuple[bytes, np.ndarray]:
    from sklearn.ensemble import GradientBoostingRegressor

    X, _ = _training_data()
    target = X[:, 0] * 2.0 - X[:, 1] ** 2
    reg = GradientBoostingRegressor(n_estimators=40, max_depth=3, random_state=0).fit(X, target)
    return _convert(reg, X[:1].astype(np.float32)), X


def churn_frame(n: int = 200) -> Any:
    import pandas as pd

    rng = np.random.default_rng(RNG_SEED)
    return pd.DataFrame(
        {
            "age": rng.integers(18, 80, size=n).astype(np.float32),
            "income": rng.normal(50_000, 15_000, size=n).astype(np.float32),
            "city": rng.choice(["paris", "oslo", "lima"], size=n).astype(object),
        }
    )


def mixed_pipeline() -> tuple[bytes, Any]:
    """A pipeline with a categorical one-hot column: one ONNX input per feature, string labels."""
    from skl2onnx.common.data_types import FloatTensorType, StringTensorType
    from sklearn.compose import ColumnTransformer
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import Pipeline
    from sklearn.preprocessing import OneHotEncoder, StandardScaler

    frame = churn_frame()
    labels = np.where((frame["age"] > 45) ^ (frame["city"] == "oslo"), "churn", "stay")
    pipe = Pipeline(
        [
            (
                "prep",
                ColumnTransformer(
                    [
                        ("num", StandardScaler(), ["age", "income"]),
                        ("cat", OneHotEncoder(handle_unknown="ignore"), ["city"]),
                    ]
                ),
            ),
            ("clf", LogisticRegression(max_iter=500)),
        ]
    ).fit(frame, labels)
    initial = [
        ("age", FloatTensorType([None, 1])),
        ("income", FloatTensorType([None, 1])),
        ("city", StringTensorType([None, 1])),
    ]
    from skl2onnx import convert_sklearn

    onx = convert_sklearn(pipe, initial_types=initial, target_opset=17)
    return onx.SerializeToString(), frame


def mlp(inputs: int = 20, hidden: int = 64, outputs: int = 2) -> tuple[bytes, np.ndarray]:
    """A small MLP built node by node with onnx.helper."""
    rng = np.random.default_rng(RNG_SEED)

    def init(name: str, shape: tuple[int, ...]) -> onnx.TensorProto:
        values = (rng.normal(size=shape) / np.sqrt(shape[0])).astype(np.float32)
        return helper.make_tensor(name, TensorProto.FLOAT, shape, values.ravel().tolist())

    nodes = [
        helper.make_node("MatMul", ["x", "w1"], ["h1"]),
        helper.make_node("Add", ["h1", "b1"], ["h1b"]),
        helper.make_node("Relu", ["h1b"], ["a1"]),
        helper.make_node("MatMul", ["a1", "w2"], ["h2"]),
        helper.make_node("Add", ["h2", "b2"], ["h2b"]),
        helper.make_node("Relu", ["h2b"], ["a2"]),
        helper.make_node("MatMul", ["a2", "w3"], ["h3"]),
        helper.make_node("Add", ["h3", "b3"], ["logits"]),
    ]
    graph = helper.make_graph(
        nodes,
        "mlp",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [None, inputs])],
        [helper.make_tensor_value_info("logits", TensorProto.FLOAT, [None, outputs])],
        [
            init("w1", (inputs, hidden)),
            init("b1", (hidden,)),
            init("w2", (hidden, hidden)),
            init("b2", (hidden,)),
            init("w3", (hidden, outputs)),
            init("b3", (outputs,)),
        ],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    onnx.checker.check_model(model)
    X = rng.normal(size=(64, inputs)).astype(np.float32)
    return model.SerializeToString(), X


def on_demand(size: int = 256, rounds: int | None = None) -> bytes:
    """y = x, computed after max(work) rounds of h = tanh(h @ w) on a size x size constant
    (outer-scope initializers, so nothing folds away): one version that is as fast or as slow
    as its `work` input asks, about half a millisecond of CPU per round. With `rounds`, every
    request takes that many, whatever `work` says (a slower version of the same model)."""
    from onnx import numpy_helper

    rng = np.random.default_rng(0)
    w = (rng.standard_normal((size, size)) / np.sqrt(size)).astype(np.float32)
    h0 = rng.standard_normal((size, size)).astype(np.float32)
    step = helper.make_graph(
        [
            helper.make_node("Identity", ["cond_in"], ["cond_out"]),
            helper.make_node("MatMul", ["h_in", "w"], ["product"]),
            helper.make_node("Tanh", ["product"], ["h_out"]),
        ],
        "round",
        [
            helper.make_tensor_value_info("i", TensorProto.INT64, []),
            helper.make_tensor_value_info("cond_in", TensorProto.BOOL, []),
            helper.make_tensor_value_info("h_in", TensorProto.FLOAT, [size, size]),
        ],
        [
            helper.make_tensor_value_info("cond_out", TensorProto.BOOL, []),
            helper.make_tensor_value_info("h_out", TensorProto.FLOAT, [size, size]),
        ],
    )
    count = (
        [
            helper.make_node("ReduceMax", ["work"], ["most"], keepdims=0),
            helper.make_node("Cast", ["most"], ["rounds"], to=TensorProto.INT64),
        ]
        if rounds is None
        else [
            helper.make_node("ReduceMax", ["work"], ["most"], keepdims=0),
            helper.make_node("Cast", ["most"], ["asked"], to=TensorProto.INT64),
            helper.make_node("Mul", ["asked", "no"], ["ignored"]),
            helper.make_node("Add", ["ignored", "fixed"], ["rounds"]),
        ]
    )
    graph = helper.make_graph(
        [
            *count,
            helper.make_node("Loop", ["rounds", "", "h0"], ["h"], body=step),
            helper.make_node("ReduceSum", ["h"], ["total"], keepdims=0),
            helper.make_node("Mul", ["total", "zero"], ["nothing"]),
            helper.make_node("Add", ["x", "nothing"], ["y"]),
        ],
        "on_demand",
        [
            helper.make_tensor_value_info("x", TensorProto.FLOAT, [None, 4]),
            helper.make_tensor_value_info("work", TensorProto.FLOAT, [None, 1]),
        ],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [None, 4])],
        [
            numpy_helper.from_array(w, "w"),
            numpy_helper.from_array(h0, "h0"),
            helper.make_tensor("zero", TensorProto.FLOAT, [], [0.0]),
            helper.make_tensor("no", TensorProto.INT64, [], [0]),
            helper.make_tensor("fixed", TensorProto.INT64, [], [rounds or 0]),
        ],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    onnx.checker.check_model(model)
    return bytes(model.SerializeToString())


def multi_io() -> tuple[bytes, dict[str, np.ndarray]]:
    """Six inputs, one of each element type, and six outputs."""
    nodes = [
        helper.make_node("ReduceSum", ["a", "axes"], ["a_sum"], keepdims=1),
        helper.make_node("Add", ["b", "b"], ["b_doubled"]),
        helper.make_node("Identity", ["s"], ["s_same"]),
        helper.make_node("Neg", ["d"], ["d_neg"]),
        helper.make_node("Add", ["i", "one"], ["i_plus"]),
        helper.make_node("Not", ["flag"], ["flag_not"]),
    ]
    f = helper.make_tensor_value_info
    graph = helper.make_graph(
        nodes,
        "multi_io",
        [
            f("a", TensorProto.FLOAT, [None, 3]),
            f("b", TensorProto.INT64, [None, 2]),
            f("s", TensorProto.STRING, [None]),
            f("d", TensorProto.DOUBLE, [None]),
            f("i", TensorProto.INT32, [None]),
            f("flag", TensorProto.BOOL, [None]),
        ],
        [
            f("a_sum", TensorProto.FLOAT, [None, 1]),
            f("b_doubled", TensorProto.INT64, [None, 2]),
            f("s_same", TensorProto.STRING, [None]),
            f("d_neg", TensorProto.DOUBLE, [None]),
            f("i_plus", TensorProto.INT32, [None]),
            f("flag_not", TensorProto.BOOL, [None]),
        ],
        [
            helper.make_tensor("axes", TensorProto.INT64, [1], [1]),
            helper.make_tensor("one", TensorProto.INT32, [], [1]),
        ],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    onnx.checker.check_model(model)
    rng = np.random.default_rng(RNG_SEED)
    n = 5
    sample = {
        "a": rng.normal(size=(n, 3)).astype(np.float32),
        "b": rng.integers(-100, 100, size=(n, 2)).astype(np.int64),
        "s": np.array(["alpha", "beta", "", "δέλτα", "e"], dtype=object),
        "d": rng.normal(size=n).astype(np.float64),
        "i": rng.integers(-5, 5, size=n).astype(np.int32),
        "flag": np.array([True, False, True, True, False]),
    }
    return model.SerializeToString(), sample


def string_identity() -> bytes:
    """A string model: `t` is the input `s` unchanged (ONNX strings are byte strings)."""
    graph = helper.make_graph(
        [helper.make_node("Identity", ["s"], ["t"])],
        "echo",
        [helper.make_tensor_value_info("s", TensorProto.STRING, [None])],
        [helper.make_tensor_value_info("t", TensorProto.STRING, [None])],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    return model.SerializeToString()


def with_feature_names(model_bytes: bytes, names: list[str]) -> bytes:
    """Record the column order a model was trained on, as pilothouse does when logging."""
    model = onnx.load_from_string(model_bytes)
    entry = model.metadata_props.add()
    entry.key = "pilothouse.feature_names"
    entry.value = json.dumps(names)
    return model.SerializeToString()


def onnxruntime_outputs(path: Path, feeds: dict[str, Any]) -> dict[str, Any]:
    """What onnxruntime's own InferenceSession answers, with pilothouse's default threads."""
    import onnxruntime as ort

    opts = ort.SessionOptions()
    opts.intra_op_num_threads = 1
    opts.inter_op_num_threads = 1
    session = ort.InferenceSession(str(path), opts, providers=["CPUExecutionProvider"])
    names = [o.name for o in session.get_outputs()]
    return dict(zip(names, session.run(None, feeds)))


def zipmap_to_matrix(rows: list[dict[Any, float]], labels: list[Any]) -> np.ndarray:
    return np.array([[row[label] for label in labels] for row in rows], dtype=np.float32)


def write_rust_fixtures(out: Path) -> None:
    out.mkdir(parents=True, exist_ok=True)
    lr, _ = logistic_regression()
    (out / "logreg.onnx").write_bytes(with_feature_names(lr, ["f0", "f1", "f2", "f3"]))
    (out / "multi_io.onnx").write_bytes(multi_io()[0])
    (out / "mlp.onnx").write_bytes(mlp(inputs=4, hidden=8)[0])
    (out / "mixed.onnx").write_bytes(mixed_pipeline()[0])


if __name__ == "__main__":
    write_rust_fixtures(Path(sys.argv[1]))
