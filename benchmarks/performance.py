"""Performance estimation without labels: pilothouse's CBPE against NannyML's, on the same
data, in one run.

A synthetic classifier (binary, and three classes) whose scores are over-confident (so both
tools calibrate them) serves a reference period of 100,000 labelled rows and an analysis
period of 1,000,000 rows whose inputs drift (covariate shift: the relation between inputs
and labels stays, which is CBPE's assumption). Both tools get the same pandas frames, the
same chunks (5,000 rows) and the same metrics; each is timed from the frames to its table of
estimates (fit and estimate; ours on both cores, and again in a process of its own limited to
one thread, as NannyML computes; NannyML runs in its own virtualenv,
``~/.cache/pilothouse/nannyml-venv``, as it pins its own pandas and scikit-learn, and is
timed inside its process, without its import). The labels of the analysis rows are known to
the benchmark, so each tool's error is the mean absolute difference between its estimate
and the realized metric, over the analysis chunks.

Then feedback ingestion: a million labels by request id through ``ph.log_feedback`` into a
registry on SQLite and on PostgreSQL (a real server started here), labels per second.

    python benchmarks/performance.py [--rows 1000000] [--reference 100000] [--chunk 5000]
"""

from __future__ import annotations

import argparse
import gc
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import pandas as pd

NANNYML_PYTHON = Path.home() / ".cache/pilothouse/nannyml-venv/bin/python"
METRICS = ["roc_auc", "f1", "precision", "recall", "accuracy"]

NANNYML = r"""
import json, sys, time, warnings
import pandas as pd
import nannyml as nml
warnings.filterwarnings("ignore")
folder, kind, chunk, metrics = sys.argv[1], sys.argv[2], int(sys.argv[3]), sys.argv[4].split(",")
reference = pd.read_parquet(f"{folder}/{kind}-reference.parquet")
analysis = pd.read_parquet(f"{folder}/{kind}-analysis.parquet")
if kind == "binary":
    proba, problem = "proba", "classification_binary"
else:
    proba, problem = {c: f"proba_{c}" for c in range(3)}, "classification_multiclass"
started = time.perf_counter()
estimator = nml.CBPE(y_pred_proba=proba, y_pred="pred", y_true="target", problem_type=problem,
                     metrics=metrics, chunk_size=chunk)
estimator.fit(reference)
result = estimator.estimate(analysis.drop(columns="target"))
seconds = time.perf_counter() - started
frame = result.filter(period="analysis").to_df()
out = {m: frame[(m, "value")].tolist() for m in metrics}
out["start"] = frame[("chunk", "start_index")].tolist()
print(json.dumps({"seconds": seconds, "estimates": out}))
"""


def sigmoid(z: np.ndarray) -> np.ndarray:
    return 1.0 / (1.0 + np.exp(-z))


def binary(n: int, seed: int, drift: bool) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    # the inputs' mean moves along the analysis period
    shift = np.linspace(0.0, 1.2, n) if drift else np.zeros(n)
    x = rng.normal(size=(n, 4)) + shift[:, None] * np.array([1.0, -0.5, 0.0, 0.3])
    z = x @ np.array([1.2, -0.8, 0.5, 0.3]) - 0.4
    target = (rng.random(n) < sigmoid(z)).astype(np.int64)
    proba = sigmoid(1.6 * z)  # over-confident: calibration is needed
    return pd.DataFrame({"proba": proba, "pred": (proba >= 0.5).astype(np.int64), "target": target})


def multiclass(n: int, seed: int, drift: bool) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    shift = np.linspace(0.0, 1.0, n) if drift else np.zeros(n)
    x = rng.normal(size=(n, 3)) + shift[:, None] * np.array([0.8, -0.4, 0.2])
    logits = x @ np.array([[1.0, -0.5, 0.2], [-0.3, 0.9, -0.6], [0.2, 0.1, 1.1]])
    p_true = np.exp(logits) / np.exp(logits).sum(axis=1, keepdims=True)
    cumulative = p_true.cumsum(axis=1)
    target = (rng.random(n)[:, None] > cumulative).sum(axis=1).clip(0, 2)
    sharp = np.exp(1.5 * logits)
    proba = sharp / sharp.sum(axis=1, keepdims=True)
    frame = pd.DataFrame({f"proba_{c}": proba[:, c] for c in range(3)})
    frame["pred"] = proba.argmax(axis=1).astype(np.int64)
    frame["target"] = target.astype(np.int64)
    return frame


def realized(frame: pd.DataFrame, kind: str, chunk: int) -> dict[str, list[float]]:
    from sklearn.metrics import (
        accuracy_score,
        f1_score,
        precision_score,
        recall_score,
        roc_auc_score,
    )

    out: dict[str, list[float]] = {m: [] for m in METRICS}
    average = "binary" if kind == "binary" else "macro"
    for start in range(0, len(frame), chunk):
        part = frame.iloc[start : start + chunk]
        y, p = part["target"], part["pred"]
        scores = part["proba"] if kind == "binary" else part[[f"proba_{c}" for c in range(3)]]
        out["roc_auc"].append(roc_auc_score(y, scores, multi_class="ovr"))
        out["f1"].append(f1_score(y, p, average=average))
        out["precision"].append(precision_score(y, p, average=average))
        out["recall"].append(recall_score(y, p, average=average))
        out["accuracy"].append(accuracy_score(y, p))
    return out


def ours(
    reference: pd.DataFrame, analysis: pd.DataFrame, kind: str, chunk: int
) -> tuple[float, dict[str, list[float]]]:
    import pilothouse as ph

    proba: str | dict[int, str] = (
        "proba" if kind == "binary" else {c: f"proba_{c}" for c in range(3)}
    )
    unlabelled = analysis.drop(columns="target")
    started = time.perf_counter()
    estimate = ph.estimate_performance(
        reference,
        unlabelled,
        y_pred="pred",
        y_pred_proba=proba,
        y_true="target",
        chunk_size=chunk,
        metrics=METRICS,
    )
    frame = estimate.to_pandas()
    seconds = time.perf_counter() - started
    return seconds, {m: frame.loc[frame["metric"] == m, "estimate"].tolist() for m in METRICS}


def ours_one_thread(folder: Path, kind: str, chunk: int) -> float:
    """Ours on one core (rayon's pool of one thread), as NannyML runs: a fresh process, best
    of seven (a run of a fifth of a second is at the mercy of this shared host's moments, which
    a ten-second run averages over: more samples of the short one, as timeit takes)."""
    code = (
        "import sys, json, pandas as pd; sys.path.insert(0, sys.argv[1]); import performance as b; "
        "r = pd.read_parquet(sys.argv[2] + '/' + sys.argv[3] + '-reference.parquet'); "
        "a = pd.read_parquet(sys.argv[2] + '/' + sys.argv[3] + '-analysis.parquet'); "
        "print(json.dumps(min(b.ours(r, a, sys.argv[3], int(sys.argv[4]))[0] for _ in range(7))))"
    )
    done = subprocess.run(
        [sys.executable, "-c", code, str(Path(__file__).parent), str(folder), kind, str(chunk)],
        check=True,
        capture_output=True,
        text=True,
        env={**os.environ, "RAYON_NUM_THREADS": "1"},
    )
    return float(done.stdout.strip().splitlines()[-1])


def theirs(folder: Path, kind: str, chunk: int) -> tuple[float, dict[str, list[float]]]:
    done = subprocess.run(
        [str(NANNYML_PYTHON), "-c", NANNYML, str(folder), kind, str(chunk), ",".join(METRICS)],
        check=True,
        capture_output=True,
        text=True,
    )
    answer = json.loads(done.stdout.strip().splitlines()[-1])
    return answer["seconds"], answer["estimates"]


def ingestion(labels: int) -> list[tuple[str, float, float]]:
    """Labels per second through ``ph.log_feedback`` (one call, ids and targets) into a
    registry on SQLite and on PostgreSQL (a real server, on 127.0.0.1, started here)."""
    import pilothouse as ph

    sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests"))
    from postgres import new_database, server

    ids = [f"req-{i:09d}" for i in range(labels)]
    targets = np.arange(labels) % 2
    out = []
    with tempfile.TemporaryDirectory(prefix="pilothouse-bench-feedback-") as tmp, server() as pg:
        for backend, uri in (
            ("SQLite", f"sqlite://{tmp}/registry.db"),
            ("PostgreSQL", new_database(*pg)),
        ):
            registry = ph.Registry(uri, actor="bench")
            started = time.perf_counter()
            counts = ph.log_feedback("churn", ids=ids, targets=targets, registry=registry)
            seconds = time.perf_counter() - started
            assert counts["accepted"] == labels
            out.append((backend, seconds, labels / seconds))
            # its background threads go with it, before the server stops
            del registry
            gc.collect()
    return out


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--reference", type=int, default=100_000)
    parser.add_argument("--chunk", type=int, default=5_000)
    parser.add_argument("--rounds", type=int, default=3, help="timings per tool; the best is kept")
    parser.add_argument("--labels", type=int, default=1_000_000, help="labels ingested per backend")
    args = parser.parse_args()
    if not NANNYML_PYTHON.exists():
        sys.exit(
            f"NannyML's virtualenv is missing ({NANNYML_PYTHON}): python3 -m venv it and "
            "pip install nannyml statsmodels (make bench does)"
        )
    rows = []
    with tempfile.TemporaryDirectory(prefix="pilothouse-bench-performance-") as tmp:
        folder = Path(tmp)
        for kind, make in (("binary", binary), ("multiclass", multiclass)):
            reference = make(args.reference, 1, False)
            analysis = make(args.rows, 2, True)
            reference.to_parquet(folder / f"{kind}-reference.parquet")
            analysis.to_parquet(folder / f"{kind}-analysis.parquet")
            truth = realized(analysis, kind, args.chunk)
            ours_runs = [ours(reference, analysis, kind, args.chunk) for _ in range(args.rounds)]
            theirs_runs = [theirs(folder, kind, args.chunk) for _ in range(args.rounds)]
            our_seconds = min(s for s, _ in ours_runs)
            one_thread = ours_one_thread(folder, kind, args.chunk)
            their_seconds = min(s for s, _ in theirs_runs)
            for metric in METRICS:
                real = np.asarray(truth[metric])
                ours_error = np.mean(np.abs(np.asarray(ours_runs[0][1][metric]) - real))
                theirs_error = np.mean(np.abs(np.asarray(theirs_runs[0][1][metric]) - real))
                rows.append((kind, metric, ours_error, theirs_error))
            print(
                f"{kind}: pilothouse {our_seconds:.3f} s, NannyML {their_seconds:.3f} s", flush=True
            )
            rows.append((kind, "seconds", our_seconds, their_seconds))
            rows.append((kind, "seconds, one thread", one_thread, their_seconds))
    print()
    print(
        f"CBPE, reference {args.reference:,} rows, analysis {args.rows:,} rows in chunks of "
        f"{args.chunk:,}; best of {args.rounds}"
    )
    print(
        f"{'problem':11} {'pilothouse':20} {'pilothouse s':>13} {'NannyML s':>10} {'speed-up':>9}"
    )
    for kind, metric, a, b in rows:
        if metric.startswith("seconds"):
            threads = "1 thread" if "one" in metric else "2 threads (rayon)"
            print(f"{kind:11} {threads:20} {a:>13.3f} {b:>10.3f} {b / a:>8.0f}x")
    print()
    print("mean absolute error of the estimate against the realized metric, per analysis chunk")
    print(f"{'problem':11} {'metric':10} {'pilothouse':>11} {'NannyML':>9} {'ratio':>7}")
    for kind, metric, a, b in rows:
        if not metric.startswith("seconds"):
            print(f"{kind:11} {metric:10} {a:>11.4f} {b:>9.4f} {a / b:>6.2f}x")
    print()
    print(f"feedback ingestion: {args.labels:,} labels by request id in one ph.log_feedback call")
    print(f"{'backend':11} {'seconds':>8} {'labels/s':>10}")
    for backend, seconds, rate in ingestion(args.labels):
        print(f"{backend:11} {seconds:>8.2f} {rate:>10,.0f}")


if __name__ == "__main__":
    main()
