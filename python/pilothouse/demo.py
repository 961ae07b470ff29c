"""The pilothouse demo: train a model, register it with its lineage, promote it, load it by
alias and predict, serve it over HTTP (Open Inference Protocol), check live data for drift,
estimate accuracy without labels, and gate a promotion on a suite of model checks.

Run it with ``python -m pilothouse.demo``. It uses the embedded defaults (an SQLite registry
and artifact folder) in a temporary folder, so it leaves nothing behind, and needs the
``pilothouse[sklearn,pandas]`` extras.
"""

from __future__ import annotations

import json
import tempfile
import time
import urllib.request
from pathlib import Path
from typing import Any

import numpy as np

import pilothouse as ph


def churn_data(n: int, seed: int = 0, more_calls: float = 0.0) -> tuple[Any, np.ndarray]:
    import pandas as pd

    rng = np.random.default_rng(seed)
    frame = pd.DataFrame(
        {
            "tenure_months": rng.integers(1, 72, n).astype(np.float64),
            "monthly_charges": rng.normal(70, 20, n),
            "support_calls": rng.poisson(1.5, n).astype(np.float64) + more_calls,
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
        registry = ph.connect(f"sqlite://{Path(tmp) / 'registry.db'}", actor="demo")
        with registry.start_run(name="train-churn", experiment="churn") as run:
            run.log_params({"C": 1.0, "max_iter": 500})
            run.log_metrics({"train_accuracy": float(clf.score(X_train, y_train))})
            version = run.log_model(
                clf, name="churn", training_data=X_train, tags={"team": "retention"}
            )
        print(
            f"2. registered {version.uri} ({version.size} bytes ONNX, sha256 {version.sha256[:12]}…)"
        )
        registry.set_alias("churn", "champion", version.version)
        print(f"3. alias champion -> version {version.version}")

        model = ph.load_model("models:/churn@champion")
        print(f"4. loaded by alias: {model!r}")

        X_live, y_live = churn_data(1_000, seed=1)
        out = model.predict(X_live)
        probabilities = out["probabilities"][:, 1]
        agree = np.mean(out["label"] == clf.predict(X_live))
        print(
            f"5. predicted {len(probabilities)} rows from pandas: mean churn probability "
            f"{probabilities.mean():.3f}; labels agree with scikit-learn on {agree:.1%}"
        )
        one = X_live.iloc[[0]]
        runs = 2_000
        start = time.perf_counter()
        for _ in range(runs):
            model.predict(one)
        per_call = (time.perf_counter() - start) / runs * 1e6
        print(f"6. single-row latency from pandas: {per_call:.1f} µs per predict")

        lineage = registry.lineage("models:/churn@champion")
        assert lineage.run is not None and lineage.dataset is not None
        print(
            f"7. lineage: run {lineage.run['name']} (params {lineage.run['params']}), "
            f"dataset {lineage.dataset['fingerprint'][:12]}… ({lineage.dataset['rows']} rows)"
        )
        anchor = registry.audit_head()  # kept outside the registry, it catches truncation
        events = registry.verify_audit_log(anchor=anchor)
        print(f"8. audit log: {events} events, hash chain verified against anchor {anchor.seq}")

        with ph.serve(port=0) as server:
            ph.deploy("churn", alias="champion", monitoring={"window": "1s"})
            rows = X_live.iloc[:3].to_numpy(np.float32)
            body = {
                "inputs": [
                    {
                        "name": "X",
                        "shape": list(rows.shape),
                        "datatype": "FP32",
                        "data": rows.ravel().tolist(),
                    }
                ]
            }
            request = urllib.request.Request(
                f"{server.url}/v2/models/churn/infer",
                data=json.dumps(body).encode(),
                headers={"Content-Type": "application/json"},
            )
            deadline = time.monotonic() + 10
            while True:  # the server picks the new deployment up within its poll interval
                try:
                    with urllib.request.urlopen(request, timeout=10) as response:
                        answer = json.load(response)
                        request_id = response.headers["X-Request-ID"]
                    break
                except urllib.error.HTTPError as e:
                    if e.code != 404 or time.monotonic() > deadline:
                        raise
                    time.sleep(0.05)
            labels = next(o for o in answer["outputs"] if o["name"] == "label")["data"]
            print(
                f"9. served at {server.url}: POST /v2/models/churn/infer answered by version "
                f"{answer['model_version']} with labels {labels}"
            )
            with urllib.request.urlopen(f"{server.url}/v2/models/churn/stats", timeout=10) as r:
                stats = json.load(r)["model_stats"][0]
            print(
                f"   Triton-style statistics: {stats['inference_count']} rows in "
                f"{stats['execution_count']} model run(s); /config and classification work too"
            )
            # the labels of the three answers arrive later, over HTTP, by request id
            feedback = urllib.request.Request(
                f"{server.url}/v2/models/churn/feedback",
                data=json.dumps(
                    [
                        {"id": f"{request_id}/{i}", "target": int(y)}
                        for i, y in enumerate(y_live[:3])
                    ]
                ).encode(),
                headers={"Content-Type": "application/json"},
            )
            with urllib.request.urlopen(feedback, timeout=10) as r:
                accepted = json.load(r)["accepted"]
        log = ph.inference_log("churn")
        rows = log["input.X"].iloc[0] if "input.X" in log.columns else []
        print(
            f"10. payload log: {len(log)} request(s) with inputs, outputs and latency; each "
            f"tensor a typed Parquet column (input.X of the first: {len(rows)} rows of "
            f"{len(rows[0]) if rows else 0} features), for DuckDB or polars to read"
        )
        health = ph.monitor("churn").health(since="10m", window=None)
        print(
            f"    monitoring: {int(health.requests.sum())} request(s) in the stored windows, "
            "compared with the reference stored at log_model (ph.monitor(...).drift())"
        )

        performance = ph.monitor("churn").performance(since="10m", window=None)
        accuracy = performance[performance.metric == "accuracy"].iloc[0]
        print(
            f"    feedback: {accepted} labels joined to the answers by request id -> realized "
            f"accuracy {accuracy.value:.2f} (label coverage {accuracy.label_coverage:.0%}); "
            "ph.compare and mon.export work on the same rows"
        )

        ph.add_alert_rule("churn", "slow", "latency_p99_ms > 250", for_windows=2)
        ph.add_alert_rule("churn", "errors", "error_rate > 0.05", severity="critical")
        time.sleep(1.1)  # rules read closed windows only: let the last second end
        changes = ph.evaluate_alerts("churn", since="10m", window="1s")
        rules = ph.alert_rules("churn")
        print(
            f"    alerts: {len(rules)} rules evaluated on the closed 1s windows (the last "
            f"at {rules.window_start.max():%H:%M:%S}) -> "
            f"{sum(c['transition'] == 'fired' for c in changes)} fired; states "
            f"{dict(zip(rules.name, rules.state))} (recorded once per window; sending them "
            "to Slack, PagerDuty or email is not built yet)"
        )

        X_drifted = X_live.copy()
        X_drifted["monthly_charges"] = X_drifted["monthly_charges"] * 1.3 + 10
        report = ph.drift(X_train, X_drifted)
        print(
            f"11. drift of live data against training: {report.drifted_columns} drifted "
            f"(dataset drift: {report.dataset_drift})"
        )

        # labels come late: estimate accuracy from the model's own probabilities meanwhile
        X_valid, y_valid = churn_data(4_000, seed=3)
        X_later, y_later = churn_data(4_000, seed=4, more_calls=2)  # inputs moved, not the relation

        def scored(X: Any) -> dict[str, Any]:
            return {"pred": clf.predict(X), "proba": clf.predict_proba(X)[:, 1]}

        estimate = ph.estimate_performance(
            {**scored(X_valid), "target": y_valid},
            scored(X_later),
            y_pred="pred",
            y_pred_proba="proba",
            y_true="target",
            chunk_number=1,
            metrics=["accuracy"],
        ).to_pandas()
        realized = float((clf.predict(X_later) == y_later).mean())
        print(
            f"12. accuracy estimated without labels (CBPE): {estimate['estimate'][0]:.3f} "
            f"(band {estimate['lower'][0]:.3f}-{estimate['upper'][0]:.3f}); "
            f"realized once labels came: {realized:.3f}"
        )

        # the same checks in a test suite (pytest picks the plugin up on its own)
        import pilothouse.testing as pht

        try:
            pht.assert_valid(X_valid.assign(support_calls=X_valid["support_calls"] + 9), X_valid)
        except pht.CheckFailed as failed:
            print(f"13. model test: {failed.result.summary}")

        # a promotion gated by a suite of checks (`pilothouse check` runs the same from TOML)
        retrained = make_pipeline(StandardScaler(), LogisticRegression(C=0.1, max_iter=500))
        challenger = registry.log_model(
            retrained.fit(X_train, y_train), name="churn", training_data=X_train
        )
        lead = ph.connect(f"sqlite://{Path(tmp) / 'registry.db'}", actor="lead")
        lead.set_policy("churn", "champion", require_check="release")
        promotion = registry.request_promotion("churn", "champion", challenger.version)
        refused = "accepted without a check"  # what the policy must prevent
        try:
            lead.approve(promotion)
        except ph.ApprovalRequiredError:
            refused = "refused while no check is recorded"
        X_valid.assign(churned=y_valid).to_parquet(Path(tmp) / "valid.parquet")
        suite = {
            "name": "release",
            "baseline": "champion",
            "data": {"valid": {"path": str(Path(tmp) / "valid.parquet"), "target": "churned"}},
            "checks": [
                {"check": "valid", "data": "valid", "max_failure_rate": 0.01},
                {
                    "check": "predictions_close",
                    "data": "valid",
                    "atol": 0.05,
                    "max_flip_rate": 0.05,
                },
            ],
        }
        result = pht.run_suite(suite, "churn", challenger.version, registry=registry)
        approved = lead.approve(promotion)
        print(
            f"14. promotion gate: approval {refused}; suite {result.suite} "
            f"{'passed' if result.passed else 'failed'} on {result.candidate} and was recorded; "
            f"then {approved.status} by {approved.decided_by}"
        )


if __name__ == "__main__":
    main()
