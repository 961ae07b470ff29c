"""Live monitoring on a real server with real HTTP traffic: the reference stored with the
version, windows profiled and stored, drift flagging exactly the shifted columns after the
shift and nothing before, prediction drift, data quality, health, and the validation
policies (flag, reject)."""

from __future__ import annotations

import datetime as dt
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest
import requests
from postgres import new_database
from postgres import server as postgres_server
from servers import CliServer, Store, infer_json, log_scale_versions, models, start_cli

import pilothouse as ph

FEATURES = ["a", "b", "c", "d"]


@pytest.fixture(scope="module")
def pg() -> Iterator[tuple[Path, int]]:
    with postgres_server() as running:
        yield running


CITIES = ["oslo", "rome", "paris"]


def _frame(n: int = 2000, seed: int = 0) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    frame = pd.DataFrame({f: rng.normal(size=n).astype(np.float32) for f in FEATURES})
    frame["city"] = rng.choice(CITIES, size=n)
    return frame


def _pipeline(frame: pd.DataFrame) -> Any:
    from sklearn.compose import ColumnTransformer
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import Pipeline
    from sklearn.preprocessing import OneHotEncoder, StandardScaler

    y = ((frame["a"] + frame["b"] - frame["c"] > 0) ^ (frame["city"] == "oslo")).astype(int)
    return Pipeline(
        [
            (
                "prep",
                ColumnTransformer(
                    [
                        ("num", StandardScaler(), FEATURES),
                        ("cat", OneHotEncoder(handle_unknown="ignore"), ["city"]),
                    ]
                ),
            ),
            ("clf", LogisticRegression(max_iter=500)),
        ]
    ).fit(frame, y)


def _body(rows: pd.DataFrame) -> dict[str, Any]:
    n = len(rows)
    inputs = [
        {"name": f, "shape": [n, 1], "datatype": "FP32", "data": rows[f].tolist()} for f in FEATURES
    ]
    inputs.append({"name": "city", "shape": [n, 1], "datatype": "BYTES", "data": list(rows.city)})
    return {"inputs": inputs}


def _send(server: CliServer, frame: pd.DataFrame, per_request: int = 50) -> int:
    session = requests.Session()
    sent = 0
    for start in range(0, len(frame), per_request):
        r = session.post(
            f"{server.url}/v2/models/churn/infer",
            json=_body(frame.iloc[start : start + per_request]),
            timeout=10,
        )
        assert r.status_code == 200, r.text
        sent += 1
    return sent


def _next_second() -> dt.datetime:
    """Sleeps into the next second (plus a margin) and returns its start, in UTC."""
    now = time.time()
    boundary = int(now) + 1
    time.sleep(boundary - now + 0.05)
    return dt.datetime.fromtimestamp(boundary, tz=dt.timezone.utc)


def _served(store: Store, frame: pd.DataFrame) -> ph.ModelVersion:
    with store.registry.start_run(name="train") as run:
        return run.log_model(_pipeline(frame), name="churn", training_data=frame)


def test_drift_quality_and_health_from_real_traffic(store: Store, cli: Any) -> None:
    frame = _frame()
    mv = _served(store, frame)
    reference = ph.get_reference(mv, registry=store.registry)
    assert reference is not None and reference.rows == len(frame)
    assert set(reference.columns) == {*FEATURES, "city"}
    outputs = ph.get_reference(mv, outputs=True, registry=store.registry)
    assert outputs is not None and "label" in outputs.columns

    ph.deploy(
        "churn",
        "churn",
        version=1,
        monitoring={"window": "1s", "feature_metrics": True},
        registry=store.registry,
    )
    server: CliServer = cli()
    before_start = _next_second()
    requests_before = _send(server, frame)  # the reference itself: nothing can drift
    shift = _next_second()
    shifted = frame.copy()
    for f in ("a", "b", "c"):
        shifted[f] = shifted[f] + np.float32(3.0)
    shifted.loc[shifted.index % 3 == 0, "city"] = "lima"
    requests_after = _send(server, shifted)
    time.sleep(1.3)  # the last window closes and is stored
    server.wait_for(
        lambda: (
            ph.monitor("churn", registry=store.registry)
            .health(since=before_start, window=None)["requests"]
            .sum()
            == requests_before + requests_after
        ),
        timeout=10,
        what="every request counted in the stored windows",
    )

    mon = ph.monitor("churn", registry=store.registry)
    before = mon.drift(since=before_start, until=shift, window=None)
    after = mon.drift(since=shift, window=None)
    assert set(before.column) == {*FEATURES, "city"}
    assert not before.drifted.any(), before
    assert set(after[after.drifted].column) == {"a", "b", "c", "city"}, after
    assert (after.rows == len(frame)).all()

    per_second = mon.drift(since=before_start, window="1s")
    flagged = per_second[per_second.drifted]
    assert (flagged.window_start >= pd.Timestamp(shift)).all()
    assert set(flagged.column) == {"a", "b", "c", "city"}

    predictions_before = mon.prediction_drift(since=before_start, until=shift, window=None)
    predictions_after = mon.prediction_drift(since=shift, window=None)
    assert not predictions_before.drifted.any()
    assert predictions_after.drifted.any()

    quality = mon.quality(since=shift, window=None)
    unseen = quality[(quality.column == "city") & (quality.check == "unseen_category")]
    assert int(unseen["count"].sum()) == int((shifted.city == "lima").sum())
    assert quality[quality.check == "out_of_range"]["count"].sum() > 0
    assert mon.quality(since=before_start, until=shift, window=None).empty

    health = mon.health(since=before_start, window=None)
    assert int(health.requests.sum()) == requests_before + requests_after
    assert int(health.errors.sum()) == 0 and int(health.rows.sum()) == 2 * len(frame)
    assert (health.latency_p99_ms > 0).all()
    assert health.cpu_seconds.sum() > 0 and (health.rss_bytes > 1 << 20).all()

    merged = mon.profile(since=before_start)
    assert merged is not None and merged.rows == 2 * len(frame)
    report = mon.report(since=shift)
    assert set(report.drifted_columns) == {"a", "b", "c", "city"}

    over_http = requests.get(
        f"{server.url}/v2/models/churn/monitoring/drift",
        params={"since": shift.isoformat()},
        timeout=10,
    ).json()
    assert {c["column"] for c in over_http["columns"] if c["drifted"]} == {"a", "b", "c", "city"}
    missing = requests.get(f"{server.url}/v2/models/nope/monitoring/drift", timeout=10)
    assert missing.status_code == 404 and "nope" in missing.json()["error"]

    # the latest window (shifted) as Prometheus gauges, per feature as asked
    assert server.metric("pilothouse_monitor_drift_share", deployment="churn") > 0
    drifted = {
        f: server.metric("pilothouse_monitor_feature_drifted", deployment="churn", column=f)
        for f in [*FEATURES, "city"]
    }
    assert {f for f, v in drifted.items() if v == 1} == {"a", "b", "c", "city"}, drifted
    statistic = server.metric(
        "pilothouse_monitor_feature_drift_statistic", deployment="churn", side="inputs", column="a"
    )
    latest = per_second[per_second.column == "a"].sort_values("window_start").iloc[-1]
    assert statistic == pytest.approx(latest.statistic, rel=1e-9), (statistic, latest)


@pytest.mark.parametrize("policy", ["flag", "reject"])
def test_validation_policies_name_the_failed_check(store: Store, cli: Any, policy: str) -> None:
    frame = _frame(500)
    _served(store, frame)
    ph.deploy(
        "churn",
        "churn",
        version=1,
        monitoring={"validation": policy, "window": "1s"},
        registry=store.registry,
    )
    server: CliServer = cli()
    good = requests.post(
        f"{server.url}/v2/models/churn/infer", json=_body(frame.iloc[:3]), timeout=10
    )
    assert good.status_code == 200 and "parameters" not in good.json()
    bad_rows = frame.iloc[:2].copy()
    bad_rows["city"] = "lima"
    bad = requests.post(f"{server.url}/v2/models/churn/infer", json=_body(bad_rows), timeout=10)
    if policy == "reject":
        assert bad.status_code == 400
        assert "city: unseen_category" in bad.json()["error"]
    else:
        assert bad.status_code == 200
        assert bad.json()["parameters"]["quality"] == "city: unseen_category"
    # per-feature gauges are opt-in: the dataset share only, by default
    server.wait_for(
        lambda: "pilothouse_monitor_drift_share{" in requests.get(f"{server.url}/metrics").text,
        timeout=10,
        what="a closed window's drift share",
    )
    assert "pilothouse_monitor_feature_drifted{" not in requests.get(f"{server.url}/metrics").text


def test_a_replaced_reference_reaches_the_running_server(store: Store, cli: Any) -> None:
    # "lima" is unseen in the training data: rejected; once the reference is replaced by
    # data that has it, the running server (no restart, no redeploy) accepts it
    frame = _frame(500)
    _served(store, frame)
    ph.deploy(
        "churn", "churn", version=1, monitoring={"validation": "reject"}, registry=store.registry
    )
    server: CliServer = cli()
    rows = frame.iloc[:2].copy()
    rows["city"] = "lima"

    def status() -> int:
        url = f"{server.url}/v2/models/churn/infer"
        return int(requests.post(url, json=_body(rows), timeout=10).status_code)

    assert status() == 400
    wider = pd.concat([frame, rows], ignore_index=True)
    ph.set_reference("models:/churn/1", wider, registry=store.registry)
    server.wait_for(lambda: status() == 200, timeout=10, what="the new reference in use")
    assert '"reference_reloaded"' in "\n".join(server.lines)


def test_monitoring_settings_are_checked(store: Store) -> None:
    frame = _frame(200)
    _served(store, frame)
    with pytest.raises(ph.ValidationError, match="window"):
        ph.deploy("churn", "churn", version=1, monitoring={"window": "7s"}, registry=store.registry)
    with pytest.raises(ph.ValidationError, match="unknown keys"):
        ph.deploy("churn", "churn", version=1, monitoring={"windw": "1m"}, registry=store.registry)
    with pytest.raises(ph.ValidationError, match="validation"):
        ph.deploy(
            "churn", "churn", version=1, monitoring={"validation": "warn"}, registry=store.registry
        )


def _scale_traffic(server: CliServer, n: int, rows: int = 3) -> None:
    session = requests.Session()
    for i in range(n):
        x = np.full((rows, 4), float(i % 7), np.float32)
        body = {
            "inputs": [
                {"name": "x", "shape": [rows, 4], "datatype": "FP32", "data": x.ravel().tolist()}
            ]
        }
        r = session.post(f"{server.url}/v2/models/scale/infer", json=body, timeout=10)
        assert r.status_code == 200, r.text


def test_windows_fill_with_payload_logging_off_and_survive_a_restart(
    store: Store, cli: Any
) -> None:
    log_scale_versions(store, "scale", (2.0,))
    ph.deploy("scale", version=1, log_payloads=False, registry=store.registry)
    first: CliServer = cli()
    _scale_traffic(first, 40)
    assert first.stop() == 0  # SIGTERM: the open window is closed and stored
    second: CliServer = cli()
    _scale_traffic(second, 25)
    assert second.stop() == 0
    mon = ph.monitor("scale", registry=store.registry)
    health = mon.health(since=None, window=None)
    assert int(health.requests.sum()) == 65 and int(health.rows.sum()) == 65 * 3
    served = mon.profile(since=None)
    assert served is not None and served.rows == 65 * 3
    assert sorted(served.columns) == ["x[0]", "x[1]", "x[2]", "x[3]"]
    # no request content on disk: the payload log holds ids and timings only
    log = ph.inference_log("scale", since=None, registry=store.registry, decode=False)
    assert len(log) == 65
    assert not [c for c in log.columns if c.startswith(("input", "output"))], log.columns


def test_two_servers_on_postgres_count_every_request_once(
    pg: tuple[Path, int], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    home = tmp_path / "home"
    monkeypatch.setenv("PILOTHOUSE_HOME", str(home))
    uri = f"{new_database(*pg)}?artifacts={tmp_path / 'artifacts'}"
    registry = ph.Registry(uri)
    pg_store = Store(uri, home, registry)
    log_scale_versions(pg_store, "scale", (2.0,))
    ph.deploy("scale", version=1, monitoring={"window": "1s"}, registry=registry)
    servers = [start_cli(pg_store, "--log-dir", str(tmp_path / f"log{i}")) for i in range(2)]
    try:
        for i, (server, n) in enumerate(zip(servers, (37, 23))):
            _scale_traffic(server, n, rows=1 + i)
    finally:
        codes = [s.stop() for s in servers]
    assert codes == [0, 0]
    mon = ph.monitor("scale", registry=registry)
    health = mon.health(since=None, window=None)
    assert int(health.requests.sum()) == 37 + 23
    assert int(health.rows.sum()) == 37 * 1 + 23 * 2
    per_second = mon.health(since=None, window="1s")
    assert int(per_second.requests.sum()) == 60
    served = mon.profile(since=None)
    assert served is not None and served.rows == 37 + 46


def _work_traffic(server: CliServer, work: int, until: float) -> int:
    """Requests (one row each) asking for `work` rounds, one after another until `until`."""
    session = requests.Session()
    sent = 0
    while time.time() < until:
        body: dict[str, Any] = {
            "inputs": [
                {"name": "x", "shape": [1, 4], "datatype": "FP32", "data": [1.0, 2.0, 3.0, 4.0]},
                {"name": "work", "shape": [1, 1], "datatype": "FP32", "data": [float(work)]},
            ]
        }
        r = session.post(f"{server.url}/v2/models/loop/infer", json=body, timeout=10)
        assert r.status_code == 200, r.text
        assert r.json()["outputs"][0]["data"] == [1.0, 2.0, 3.0, 4.0]
        sent += 1
    return sent


def test_latency_anomaly_flagged_when_the_model_is_made_slow(store: Store, cli: Any) -> None:
    # The baseline of a window is the windows before it of the same version, at least five
    # of them with requests (health.rs `latency_anomaly`): here the slowdown happens inside
    # one version. Its graph runs max(work) rounds of a 256x256 MatMul: with work=0 a
    # request takes well under a millisecond in the model, with work=100 some 25-50 ms of
    # CPU, on the same version, route, payload size and rows; nothing else changes.
    fast_windows = 6  # five make the baseline of the sixth, which must not be flagged
    x = np.ones((1, 4), np.float32)
    store.registry.log_model(
        models.on_demand(), "loop", input_example={"x": x, "work": np.zeros((1, 1), np.float32)}
    )
    ph.deploy("loop", version=1, monitoring={"window": "1s"}, registry=store.registry)
    server: CliServer = cli()
    _work_traffic(server, 0, time.time() + 0.2)  # warm-up, in a window the reads leave out
    start = _next_second()
    fast = _work_traffic(server, 0, start.timestamp() + fast_windows - 0.05)
    slowdown = _next_second()
    assert slowdown == start + dt.timedelta(seconds=fast_windows)
    slow = _work_traffic(server, 100, slowdown.timestamp() + 1.95)
    assert fast > 0 and slow > 0
    mon = ph.monitor("loop", registry=store.registry)
    # every request counts exactly once, also one that arrived just before its window closed
    # and answered after (it counts in the next window, not in a second copy of its own)
    server.wait_for(
        lambda: int(mon.health(since=start, window="1s").requests.sum()) == fast + slow,
        timeout=10,
        what=f"{fast} + {slow} requests counted",
    )

    health = mon.health(since=start, window="1s")
    assert (health.version == 1).all() and int(health.errors.sum()) == 0
    before = health[health.window_start < pd.Timestamp(slowdown)]
    after = health[health.window_start >= pd.Timestamp(slowdown)]
    assert len(before) == fast_windows and len(after) >= 2, health
    assert not before.latency_anomaly.any(), health
    assert after.latency_anomaly.all(), health
    # the margin the verdicts rest on: the slow p99 is many times the baseline's
    assert after.latency_p99_ms.min() > 4 * before.latency_p99_ms.median(), health

    over_http = requests.get(
        f"{server.url}/v2/models/loop/monitoring/health",
        params={"since": start.isoformat(), "window": "1s"},
        timeout=10,
    )
    assert over_http.status_code == 200, over_http.text
    flags = {
        pd.Timestamp(row["window_start_us"], unit="us", tz="UTC"): row["latency_anomaly"]
        for row in over_http.json()["rows"]
    }
    assert flags == dict(zip(health.window_start, health.latency_anomaly)), over_http.text


def test_latency_anomaly_flagged_when_a_slower_version_takes_over(store: Store, cli: Any) -> None:
    # A version just deployed has no windows of its own to be compared with: its first
    # windows are held against the deployment's recent ones (the version before it), so a
    # slower version is flagged when it takes over, and the version before it is not.
    x = np.ones((1, 4), np.float32)
    example = {"x": x, "work": np.zeros((1, 1), np.float32)}
    store.registry.log_model(models.on_demand(), "loop", input_example=example)
    store.registry.log_model(models.on_demand(rounds=100), "loop", input_example=example)
    ph.deploy("loop", version=1, monitoring={"window": "1s"}, registry=store.registry)
    server: CliServer = cli()
    _work_traffic(server, 0, time.time() + 0.2)
    start = _next_second()
    _work_traffic(server, 0, start.timestamp() + 5.95)
    ph.deploy("loop", version=2, monitoring={"window": "1s"}, registry=store.registry)

    def serving_version() -> str:
        body = {
            "inputs": [
                {"name": "x", "shape": [1, 4], "datatype": "FP32", "data": [1.0, 2.0, 3.0, 4.0]},
                {"name": "work", "shape": [1, 1], "datatype": "FP32", "data": [0.0]},
            ]
        }
        r = requests.post(f"{server.url}/v2/models/loop/infer", json=body, timeout=10)
        return str(r.json().get("model_version"))

    server.wait_for(lambda: serving_version() == "2", timeout=20, what="version 2 serving")
    swapped = _next_second()
    _work_traffic(server, 0, swapped.timestamp() + 1.95)  # version 2 ignores work: all slow
    mon = ph.monitor("loop", registry=store.registry)
    last = pd.Timestamp(swapped + dt.timedelta(seconds=1))
    server.wait_for(
        lambda: (mon.health(since=start, window="1s").window_start >= last).any(),
        timeout=10,
        what="the second window of version 2 stored",
    )
    health = mon.health(since=start, window="1s")
    # the windows of version 1 before the swap was asked for (the swap's own window may be
    # slowed by loading version 2 beside it)
    old = health[
        (health.version == 1)
        & (health.window_start < pd.Timestamp(start) + pd.Timedelta(seconds=6))
    ]
    new = health[health.version == 2]
    assert len(old) == 6 and not old.latency_anomaly.any(), health
    full = new[new.window_start >= pd.Timestamp(swapped)]
    assert len(full) == 2 and full.latency_anomaly.all(), health
    assert full.latency_p99_ms.min() > 4 * old.latency_p99_ms.median(), health


def test_inputs_the_log_keeps_private_are_not_monitored(store: Store, cli: Any) -> None:
    # redacted ("s") and hashed ("a") inputs: no profile of theirs is stored (a profile holds
    # categories and extremes: the values the log policy keeps out of the payload log)
    data, sample = models.multi_io()
    store.registry.log_model(data, "io", input_example={k: v[:2] for k, v in sample.items()})
    ph.deploy(
        "io",
        version=1,
        redact=["s"],
        hash_inputs=["a"],
        monitoring={"window": "1s"},
        registry=store.registry,
    )
    server: CliServer = cli()
    start = _next_second()
    for _ in range(3):
        assert infer_json(server.url, "io", dict(sample)).status_code == 200
    mon = ph.monitor("io", registry=store.registry)
    server.wait_for(
        lambda: int(mon.health(since=start, window=None).requests.sum()) == 3,
        timeout=10,
        what="3 requests counted",
    )
    profile = mon.profile(since=start)
    assert profile is not None and profile.rows == 3 * len(sample["d"])
    columns = set(profile.columns)
    assert not {c for c in columns if c.split("[")[0] in ("a", "s")}, columns
    assert {"d", "i", "flag"} <= columns and "b[0]" in columns, columns
