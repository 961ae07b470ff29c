"""Registry operations: pilothouse (SQLite) vs MLflow (SQLite backend, local artifacts).

One run, the same operations on both, medians and the ratio MLflow / pilothouse (above 1 is
pilothouse faster):

* log a run with 10 params and 10 metrics and register a ~100 KB ONNX model as a new version
  (a different model each time, so both sides write every artifact; the SQLite registry
  commits with synchronous=FULL, durable across a power loss)
* move an alias
* search versions with a filter, over 10,000 versions in 100 models
* load a version by alias, ready to predict
* `import` of each package, in a fresh interpreter

    python benchmarks/registry.py [--versions 10000] [--iterations 200]
"""

from __future__ import annotations

import argparse
import logging
import os
import statistics
import subprocess
import sys
import tempfile
import time
import warnings
from collections.abc import Callable
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parents[1] / "tests"))

import models
import pilothouse as ph


def median_ms(fn: Callable[[int], object], n: int) -> float:
    times = []
    for i in range(n):
        start = time.perf_counter()
        fn(i)
        times.append((time.perf_counter() - start) * 1000)
    return statistics.median(times)


def import_ms(module: str, runs: int = 7) -> float:
    """Wall time of `import module` in a fresh interpreter, minus an empty interpreter's."""

    def once(code: str) -> float:
        start = time.perf_counter()
        subprocess.run([sys.executable, "-c", code], check=True, capture_output=True)
        return (time.perf_counter() - start) * 1000

    empty = statistics.median(once("pass") for _ in range(runs))
    return statistics.median(once(f"import {module}") for _ in range(runs)) - empty


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--versions", type=int, default=10_000, help="versions to search over")
    parser.add_argument("--iterations", type=int, default=200, help="timed repetitions")
    args = parser.parse_args()
    n = args.iterations

    import mlflow
    from mlflow import MlflowClient

    logging.getLogger("mlflow").setLevel(logging.ERROR)
    warnings.filterwarnings("ignore")
    os.environ["MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR"] = "false"

    raw, _ = models.mlp(inputs=20, hidden=150)
    import onnx

    proto = onnx.load_from_string(raw)
    print(
        f"model: MLP, {len(raw) / 1024:.0f} KB ONNX; {n} iterations; search over {args.versions} versions"
    )
    rows: list[tuple[str, float, float]] = []

    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        reg = ph.Registry(f"sqlite://{root / 'ph' / 'registry.db'}", actor="bench")
        mlflow.set_tracking_uri(f"sqlite:///{root / 'mlflow.db'}")
        mlflow.set_registry_uri(f"sqlite:///{root / 'mlflow.db'}")
        experiment = mlflow.create_experiment("bench", artifact_location=(root / "mlruns").as_uri())
        client = MlflowClient()
        params = {f"p{i}": i * 0.5 for i in range(10)}
        metrics = {f"m{i}": i * 0.1 for i in range(10)}

        # 1. log a run and register a version. Every iteration logs a different model (its
        # doc string says which), as training does: pilothouse stores artifacts by content,
        # so logging the same bytes again would skip the artifact write MLflow always does.
        variants = []
        for i in range(n + 1):
            proto.doc_string = f"iteration {i}"
            variants.append(
                (proto.SerializeToString(), onnx.load_from_string(proto.SerializeToString()))
            )

        def ph_log(i: int) -> None:
            with reg.start_run(name=f"r{i}", experiment="bench") as run:
                run.log_params(params)
                run.log_metrics(metrics)
                run.log_model(variants[i][0], "bench")

        def mlflow_log(i: int) -> None:
            with mlflow.start_run(experiment_id=experiment, run_name=f"r{i}"):
                mlflow.log_params(params)
                mlflow.log_metrics(metrics)
                mlflow.onnx.log_model(
                    variants[i][1],
                    name="model",
                    registered_model_name="bench",
                    pip_requirements=["onnx"],
                )

        ph_log(n), mlflow_log(n)  # warm up (the last variant, not timed again)
        rows.append(("log run + register version", median_ms(mlflow_log, n), median_ms(ph_log, n)))

        # 2. move an alias
        versions = n + 1
        rows.append(
            (
                "move an alias",
                median_ms(
                    lambda i: client.set_registered_model_alias(
                        "bench", "champion", 1 + i % versions
                    ),
                    n,
                ),
                median_ms(lambda i: reg.set_alias("bench", "champion", 1 + i % versions), n),
            )
        )

        # 4. load by alias, ready to predict
        rows.append(
            (
                "load version by alias",
                median_ms(
                    lambda i: mlflow.pyfunc.load_model("models:/bench@champion"), max(10, n // 10)
                ),
                median_ms(lambda i: reg.load_model("models:/bench@champion"), max(10, n // 10)),
            )
        )

        # 3. search over many versions in 100 models
        per_model = max(1, args.versions // 100)
        print(f"populating {per_model * 100} versions in each registry...", flush=True)
        start = time.perf_counter()
        for m in range(100):
            for v in range(per_model):
                reg._core.log_model(
                    "bench",
                    f"model_{m}",
                    raw,
                    {},
                    tags={"team": "risk" if v % 2 else "growth", "v": str(v)},
                )
        ph_fill = time.perf_counter() - start
        start = time.perf_counter()
        source = (root / "mlruns").as_uri()
        for m in range(100):
            client.create_registered_model(f"model_{m}")
            for v in range(per_model):
                client.create_model_version(
                    f"model_{m}", source, tags={"team": "risk" if v % 2 else "growth", "v": str(v)}
                )
        mlflow_fill = time.perf_counter() - start
        print(f"(filling took pilothouse {ph_fill:.1f} s, MLflow {mlflow_fill:.1f} s)")
        query = "name = 'model_42' and tags.team = 'risk'"
        expected = per_model // 2
        assert len(reg.search_versions(query)) == expected
        assert len(client.search_model_versions(query, max_results=10_000)) == expected
        rows.append(
            (
                f"search {per_model * 100} versions",
                median_ms(lambda i: client.search_model_versions(query, max_results=10_000), n),
                median_ms(lambda i: reg.search_versions(query), n),
            )
        )

    rows.append(("import the package", import_ms("mlflow"), import_ms("pilothouse")))

    print()
    header = f"{'operation':<30} {'MLflow ms':>10} {'pilothouse ms':>14} {'MLflow/pilothouse':>18}"
    print(header)
    print("-" * len(header))
    for name, theirs, ours in rows:
        print(f"{name:<30} {theirs:>10.2f} {ours:>14.2f} {theirs / ours:>17.1f}x")
    print(
        "\ntargets: log+register >= 20x faster; search < 5 ms at 10,000 versions; import < 150 ms"
    )


if __name__ == "__main__":
    main()
