"""The pilothouse demo: train a model, convert it to ONNX, load it and predict.

Run it with ``python -m pilothouse.demo``. It works in a temporary folder and needs the
``pilothouse[sklearn,pandas]`` extras.
"""

from __future__ import annotations

import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

import pilothouse as ph
from pilothouse.convert import sklearn_to_onnx


def churn_data(n: int, seed: int = 0) -> tuple[Any, np.ndarray]:
    import pandas as pd

    rng = np.random.default_rng(seed)
    frame = pd.DataFrame(
        {
            "tenure_months": rng.integers(1, 72, n).astype(np.float64),
            "monthly_charges": rng.normal(70, 20, n),
            "support_calls": rng.poisson(1.5, n).astype(np.float64),
            "age": rng.integers(18, 80, n).astype(np.float64),
        }
    )
    logit = (
        -0.04 * frame["tenure_months"]
        + 0.03 * frame["monthly_charges"]
        + 0.5 * frame["support_calls"]
        - 2.0
    )
    churned = (rng.random(n) < 1 / (1 + np.exp(-logit))).astype(int)
    return frame, churned


def main() -> None:
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    print(f"pilothouse {ph.__version__}")
    X_train, y_train = churn_data(5_000)
    clf = make_pipeline(StandardScaler(), LogisticRegression(max_iter=500)).fit(X_train, y_train)
    print(f"1. trained {type(clf[-1]).__name__} on {len(y_train)} rows")

    with tempfile.TemporaryDirectory(prefix="pilothouse-demo-") as tmp:
        path = Path(tmp) / "churn.onnx"
        path.write_bytes(sklearn_to_onnx(clf, X_train))
        print(f"2. converted to ONNX: {path.name}, {path.stat().st_size} bytes")

        model = ph.load_model(path)
        print(f"3. loaded: {model!r}")

        X_live, _ = churn_data(1_000, seed=1)
        out = model.predict(X_live)
        probabilities = out["probabilities"][:, 1]
        agree = np.mean(out["label"] == clf.predict(X_live))
        print(
            f"4. predicted {len(probabilities)} rows from pandas: mean churn probability "
            f"{probabilities.mean():.3f}; labels agree with scikit-learn on {agree:.1%}"
        )
        one = X_live.iloc[[0]]
        runs = 2_000
        start = time.perf_counter()
        for _ in range(runs):
            model.predict(one)
        per_call = (time.perf_counter() - start) / runs * 1e6
        print(f"5. single-row latency from pandas: {per_call:.1f} µs per predict")


if __name__ == "__main__":
    main()
