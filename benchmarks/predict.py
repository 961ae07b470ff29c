"""In-process prediction: pilothouse Model.predict vs onnxruntime InferenceSession.run.

Same models, same thread settings (1 intra-op, 1 inter-op thread), one process, one run.
Each case alternates short blocks of the two so that machine noise hits both alike; the
table shows per-call medians and the ratio pilothouse / onnxruntime (below 1 is faster).

    python benchmarks/predict.py [--quick]
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import onnxruntime as ort
import pandas as pd

sys.path.insert(0, str(Path(__file__).parents[1] / "tests"))

import models
import pilothouse as ph

FEATURES = 20


def build(tmp: Path) -> dict[str, Path]:
    from sklearn.ensemble import RandomForestClassifier
    from sklearn.linear_model import LogisticRegression

    from pilothouse.convert import sklearn_to_onnx

    rng = np.random.default_rng(0)
    X = rng.normal(size=(5_000, FEATURES)).astype(np.float32)
    y = (X[:, 0] + X[:, 1] * X[:, 2] > 0).astype(int)
    out = {}
    lr = LogisticRegression(max_iter=500).fit(X, y)
    forest = RandomForestClassifier(n_estimators=100, max_depth=10, random_state=0).fit(X, y)
    for name, est in (("logistic regression", lr), ("random forest (100 trees)", forest)):
        path = tmp / f"{name.split()[0]}.onnx"
        path.write_bytes(sklearn_to_onnx(est, X[:1]))
        out[name] = path
    path = tmp / "mlp.onnx"
    path.write_bytes(models.mlp(inputs=FEATURES, hidden=256)[0])
    out["MLP 20-256-256-2"] = path
    return out


def per_call(fn: Callable[[], object], calls: int) -> float:
    start = time.perf_counter_ns()
    for _ in range(calls):
        fn()
    return (time.perf_counter_ns() - start) / calls / 1000.0


def compare(
    ours: Callable[[], object], theirs: Callable[[], object], calls: int, rounds: int
) -> tuple[float, float]:
    ours(), theirs()  # warm up
    a, b = [], []
    for _ in range(rounds):
        a.append(per_call(ours, calls))
        b.append(per_call(theirs, calls))
    return statistics.median(a), statistics.median(b)


def cases(
    model: ph.Model, sess: ort.InferenceSession, name: str, X: np.ndarray, frame: pd.DataFrame
) -> list[tuple[str, Callable[[], object], Callable[[], object]]]:
    """The same work both ways; from pandas, onnxruntime users call to_numpy themselves."""
    return [
        ("numpy", lambda: model.predict(X), lambda: sess.run(None, {name: X})),
        (
            "pandas",
            lambda: model.predict(frame),
            lambda: sess.run(None, {name: frame.to_numpy(dtype=np.float32)}),
        ),
    ]


def session(path: Path) -> ort.InferenceSession:
    opts = ort.SessionOptions()
    opts.intra_op_num_threads = 1
    opts.inter_op_num_threads = 1
    return ort.InferenceSession(str(path), opts, providers=["CPUExecutionProvider"])


def throughput(fn: Callable[[], object], threads: int, seconds: float) -> float:
    count = [0] * threads
    stop = time.perf_counter() + seconds

    def work(i: int) -> None:
        n = 0
        while time.perf_counter() < stop:
            fn()
            n += 1
        count[i] = n

    workers = [threading.Thread(target=work, args=(i,)) for i in range(threads)]
    for w in workers:
        w.start()
    for w in workers:
        w.join()
    return sum(count) / seconds


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true", help="fewer rounds, for a smoke run")
    args = parser.parse_args()
    # Many short alternating blocks: on a shared VM, noise comes in bursts of seconds, and
    # short blocks let both sides sample the same bursts.
    rounds = 10 if args.quick else 60
    budget = {1: 100, 64: 25, 4096: 1}

    rng = np.random.default_rng(1)
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        paths = build(Path(tmp))
        for name, path in paths.items():
            model = ph.load_model(path, max_sessions=1)
            sess = session(path)
            input_name = sess.get_inputs()[0].name
            for batch in (1, 64, 4096):
                X = rng.normal(size=(batch, FEATURES)).astype(np.float32)
                frame = pd.DataFrame(X, columns=[f"f{i}" for i in range(FEATURES)])
                calls = max(1, budget[batch] // (10 if "forest" in name and batch > 1 else 1))

                # same answers first
                got = model.predict(X)
                want = sess.run(None, {input_name: X})
                for g, w in zip(got.values(), want):
                    np.testing.assert_allclose(g, w, rtol=1e-5, atol=1e-6)

                for source, ours, theirs in cases(model, sess, input_name, X, frame):
                    a, b = compare(ours, theirs, calls, rounds)
                    rows.append((name, batch, source, a, b, a / b))

        print()
        print("In-process predict, median µs per call (1 intra-op / 1 inter-op thread)")
        header = (
            f"{'model':<26} {'batch':>5} {'input':<7} {'pilothouse':>11} "
            f"{'onnxruntime':>12} {'ratio':>6}"
        )
        print(header)
        print("-" * len(header))
        for name, batch, source, a, b, ratio in rows:
            print(f"{name:<26} {batch:>5} {source:<7} {a:>11.1f} {b:>12.1f} {ratio:>6.2f}")
        worst = max(r[5] for r in rows)
        worst_b1 = max(r[5] for r in rows if r[1] == 1)
        print(f"\nworst ratio overall: {worst:.2f} (target <= 1.0)")
        print(f"worst ratio at batch 1: {worst_b1:.2f} (target <= 0.8)")

        # Threads: one shared Model, sessions opened on demand (one per core by default).
        forest_path = paths["random forest (100 trees)"]
        model = ph.load_model(forest_path)
        sess = session(forest_path)
        X = rng.normal(size=(64, FEATURES)).astype(np.float32)
        input_name = sess.get_inputs()[0].name
        seconds = 1.0 if args.quick else 3.0
        print("\nThroughput from Python threads, forest, batch 64 (calls/s)")
        print(f"{'threads':>7} {'pilothouse':>11} {'onnxruntime (one session)':>26}")
        for threads in (1, 2, 4, 8):
            a = throughput(lambda: model.predict(X), threads, seconds)
            b = throughput(lambda: sess.run(None, {input_name: X}), threads, seconds)
            print(f"{threads:>7} {a:>11.0f} {b:>26.0f}")
        print(f"(pilothouse opened {model._core.sessions} sessions; cores: {_cores()})")


def _cores() -> int:
    import os

    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1


if __name__ == "__main__":
    main()
