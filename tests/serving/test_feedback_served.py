"""Feedback joined to served answers through a real server: labels arriving late in several
batches by request id (Python) and by correlation key (HTTP), a flag with its comment,
realized metrics per window equal to scikit-learn's on the same rows, per segment, the
export of exactly the labelled rows, and two replicas on PostgreSQL whose rows merge."""

from __future__ import annotations

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
from servers import CliServer, Store
from sklearn.metrics import accuracy_score, f1_score, log_loss, precision_score, roc_auc_score

import pilothouse as ph

FEATURES = ["a", "b", "c", "d"]
CITIES = ["oslo", "rome", "paris"]


@pytest.fixture(scope="module")
def pg() -> Iterator[tuple[Path, int]]:
    with postgres_server() as running:
        yield running


def _frame(n: int, seed: int = 0) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    frame = pd.DataFrame({f: rng.normal(size=n).astype(np.float32) for f in FEATURES})
    frame["city"] = rng.choice(CITIES, size=n)
    return frame


def _truth(frame: pd.DataFrame, seed: int = 1) -> np.ndarray:
    rng = np.random.default_rng(seed)
    signal = frame["a"] + frame["b"] - frame["c"] + rng.normal(scale=0.8, size=len(frame))
    return (signal > 0).astype(int).to_numpy()


def _model(frame: pd.DataFrame) -> Any:
    from sklearn.compose import ColumnTransformer
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import Pipeline
    from sklearn.preprocessing import OneHotEncoder

    return Pipeline(
        [
            (
                "prep",
                ColumnTransformer(
                    [
                        ("num", "passthrough", FEATURES),
                        ("cat", OneHotEncoder(handle_unknown="ignore"), ["city"]),
                    ]
                ),
            ),
            ("clf", LogisticRegression(max_iter=500)),
        ]
    ).fit(frame, _truth(frame))


def _body(rows: pd.DataFrame, keys: list[str] | None = None) -> dict[str, Any]:
    n = len(rows)
    inputs = [
        {"name": f, "shape": [n, 1], "datatype": "FP32", "data": rows[f].tolist()} for f in FEATURES
    ]
    inputs.append({"name": "city", "shape": [n, 1], "datatype": "BYTES", "data": list(rows.city)})
    body: dict[str, Any] = {"inputs": inputs}
    if keys is not None:
        body["parameters"] = {"correlation_id": keys if n > 1 else keys[0]}
    return body


def _answers(response: requests.Response) -> tuple[list[int], list[float]]:
    outputs = {o["name"]: o for o in response.json()["outputs"]}
    labels = [int(v) for v in outputs["label"]["data"]]
    proba = np.asarray(outputs["probabilities"]["data"], dtype=np.float64).reshape(-1, 2)
    return labels, proba[:, 1].tolist()


def _serve_traffic(url: str, frame: pd.DataFrame, prefix: str) -> pd.DataFrame:
    """Sends `frame` as single-row requests (ids `<prefix>-<i>`, every other one with a
    correlation key) and a few requests of several rows; answers what was sent and got."""
    session = requests.Session()
    sent = []
    i = 0
    while i < len(frame):
        n = 3 if i % 20 == 0 else 1
        rows = frame.iloc[i : i + n]
        rid = f"{prefix}-{i}"
        keys = [f"loan-{prefix}-{i + j}" for j in range(len(rows))] if i % 2 else None
        r = session.post(
            f"{url}/v2/models/churn/infer",
            json=_body(rows, keys),
            headers={"X-Request-ID": rid},
            timeout=10,
        )
        assert r.status_code == 200, r.text
        assert r.headers["X-Request-ID"] == rid
        labels, p1 = _answers(r)
        for j in range(len(rows)):
            sent.append(
                {
                    "row": i + j,
                    "request_id": rid if len(rows) == 1 else f"{rid}/{j}",
                    "key": None if keys is None else keys[j],
                    "label": labels[j],
                    "p1": p1[j],
                }
            )
        i += len(rows)
    return pd.DataFrame(sent)


def _wait_kept(mon: ph.Monitor, n: int, server: CliServer | None = None) -> pd.DataFrame:
    deadline = time.monotonic() + 15
    while time.monotonic() < deadline:
        kept = mon.predictions(since=None)
        if len(kept) >= n:
            return kept
        time.sleep(0.2)
    raise AssertionError(f"the server kept {len(mon.predictions(since=None))} of {n} rows")


def test_late_labels_by_id_and_key_give_sklearns_metrics_per_window(
    store: Store, cli: Any, tmp_path: Path
) -> None:
    train = _frame(3000, seed=0)
    with store.registry.start_run(name="train") as run:
        run.log_model(_model(train), name="churn", training_data=train)
    ph.deploy(
        "churn",
        "churn",
        version=1,
        monitoring={"window": "1s", "segments": ["city"]},
        registry=store.registry,
    )
    server: CliServer = cli()
    served = _frame(400, seed=7)
    truth = _truth(served, seed=8)
    sent = _serve_traffic(server.url, served.iloc[:200], "r")
    time.sleep(1.1)  # the rest lands in later windows
    sent = pd.concat([sent, _serve_traffic(server.url, served.iloc[200:], "s")])
    sent["row"] = np.arange(len(sent))
    sent["truth"] = truth[sent["row"]]
    mon = ph.monitor("churn", registry=store.registry)
    kept = _wait_kept(mon, len(sent))
    assert len(kept) == len(sent) and set(kept.request_id) == set(sent.request_id)
    assert (
        kept["output.label"].tolist()
        == sent.set_index("request_id").loc[kept.request_id]["label"].tolist()
    )
    assert set(kept["segment.city"]) == set(CITIES)

    # nothing labelled yet: every window has coverage 0 and no realized value
    before = mon.performance(since=None, window="1s")
    assert (before.label_coverage == 0).all()
    assert before[before.metric == "accuracy"].value.isna().all()

    # labels arrive late, in batches: by id from Python (two batches), by key over HTTP
    by_id = sent[sent.key.isna()]
    first, second = by_id.iloc[: len(by_id) // 2], by_id.iloc[len(by_id) // 2 :]
    counts = ph.log_feedback(
        "churn", ids=first.request_id, targets=first.truth, registry=store.registry
    )
    assert counts["accepted"] == len(first)
    # a wrong label first, then the right one: the second replaces the first
    ph.log_feedback(
        "churn", ids=second.request_id, targets=1 - second.truth, registry=store.registry
    )
    counts = ph.log_feedback(
        "churn", ids=second.request_id, targets=second.truth, registry=store.registry
    )
    assert counts["replaced"] == len(second)
    by_key = sent[sent.key.notna()].iloc[:-10]  # ten keyed rows stay unlabelled
    answer = requests.post(
        f"{server.url}/v2/models/churn/feedback",
        json=[{"key": k, "target": int(t)} for k, t in zip(by_key.key, by_key.truth)]
        + [{"id": "never-served", "target": 1}, {"key": by_key.key.iloc[0], "target": 1}],
        timeout=10,
    )
    assert answer.status_code == 200, answer.text
    counts = answer.json()
    checked_since = pd.Timestamp(counts.pop("checked_since"))
    assert pd.Timestamp.now(tz="UTC") - checked_since > pd.Timedelta(hours=23)
    assert counts == {
        "accepted": len(by_key) + 2,
        "duplicates": 1,
        "unknown_ids": 1,
        "unknown_keys": 0,
        "unknown": ["never-served"],
    }
    # ...and the key's label that was sent twice is set right again
    requests.post(
        f"{server.url}/v2/models/churn/feedback",
        json=[{"key": by_key.key.iloc[0], "target": int(by_key.truth.iloc[0])}],
        timeout=10,
    ).raise_for_status()
    # a flag with its comment
    flagged_id = sent.request_id.iloc[5]
    r = requests.post(
        f"{server.url}/v2/models/churn/feedback",
        json=[{"id": flagged_id, "good": False, "comment": "customer stayed", "user": "ops"}],
        timeout=10,
    )
    assert r.status_code == 200 and r.json()["accepted"] == 1

    labelled_ids = set(first.request_id) | set(second.request_id) | set(by_key.request_id)
    kept = mon.predictions(since=None).set_index("request_id")
    sent = sent.set_index("request_id")
    sent["window"] = kept.loc[sent.index, "time"].dt.floor("1s")
    sent["city"] = kept.loc[sent.index, "segment.city"]
    labelled = sent[sent.index.isin(labelled_ids)]
    assert (kept.loc[labelled.index, "target"].astype(int) == labelled.truth).all()

    table = mon.performance(since=None, window="1s")
    assert set(table.kind) == {"realized"}
    windows = table[table.metric == "accuracy"].set_index("window_start")
    assert len(windows) >= 2
    for start, part in sent.groupby("window"):
        rows = part[part.index.isin(labelled_ids)]
        got = windows.loc[start]
        assert got.predictions == len(part) and got.labelled == len(rows)
        assert got.label_coverage == len(rows) / len(part)
        assert got.value == accuracy_score(rows.truth, rows.label)
    # the same numbers are the series alert rules read (realized.<metric>, label_coverage)
    from pilothouse.alerts import window_series

    series = window_series("churn", since=None, window="1s", registry=store.registry)
    for start, got in windows.iterrows():
        values = series[int(start.timestamp() * 1_000_000)]
        assert values["realized.accuracy"] == got.value
        assert values["label_coverage"] == got.label_coverage
    # a rule on performance: the server, which has no performance series, left these
    # windows to the client, which fires it on the first window with labels
    bar = float(windows.value.max()) + 0.01
    ph.add_alert_rule("churn", "accuracy", f"realized.accuracy < {bar}", registry=store.registry)
    changes = ph.evaluate_alerts("churn", since=None, window="1s", registry=store.registry)
    assert [c["transition"] for c in changes] == ["fired"], changes
    scored = windows[windows.value.notna()]
    assert changes[0]["window_start"] == scored.index[0]
    assert changes[0]["alert"]["series"]["realized.accuracy"] == scored.value.iloc[0]
    assert ph.evaluate_alerts("churn", since=None, window="1s", registry=store.registry) == []
    whole = mon.performance(since=None, window=None).set_index("metric")
    assert whole.loc["accuracy", "value"] == accuracy_score(labelled.truth, labelled.label)
    assert whole.loc["precision", "value"] == pytest.approx(
        precision_score(labelled.truth, labelled.label), rel=1e-12
    )
    assert whole.loc["f1", "value"] == pytest.approx(
        f1_score(labelled.truth, labelled.label), rel=1e-12
    )
    assert whole.loc["roc_auc", "value"] == pytest.approx(
        roc_auc_score(labelled.truth, labelled.p1), rel=1e-12
    )
    assert whole.loc["log_loss", "value"] == pytest.approx(
        log_loss(labelled.truth, labelled.p1, labels=[0, 1]), rel=1e-6
    )
    assert whole.loc["flagged", "value"] == 1 and whole.loc["flagged_bad_rate", "value"] == 1.0

    matrix = mon.confusion(since=None, window=None).set_index(["true", "predicted"])["count"]
    for t in (0, 1):
        for p in (0, 1):
            expected = int(((labelled.truth == t) & (labelled.label == p)).sum())
            assert matrix.loc[(str(t), str(p))] == expected

    per_city = mon.performance(since=None, window=None, by="city", metrics=["accuracy"])
    per_city = per_city[per_city.metric == "accuracy"].set_index("segment")
    for city, part in labelled.groupby("city"):
        assert per_city.loc[city, "value"] == accuracy_score(part.truth, part.label)

    server.wait_for(
        lambda: (
            len(ph.inference_log("churn", since=None, registry=store.registry))
            == sent.index.str.split("/").str[0].nunique()
        ),
        what="every request in the payload log",
    )
    flags = mon.feedback(kind="flag", good=False)
    assert list(flags.request_id) == [flagged_id]
    assert flags.comment.iloc[0] == "customer stayed" and flags.user.iloc[0] == "ops"
    assert int(flags["output.label"].iloc[0]) == sent.loc[flagged_id, "label"]
    flagged_row = served.iloc[int(sent.loc[flagged_id, "row"])]
    assert flags["input.city"].iloc[0] == flagged_row.city

    exported = mon.export(tmp_path / "retrain.parquet", since=None)
    assert set(exported.request_id) == labelled_ids
    back = pd.read_parquet(tmp_path / "retrain.parquet")
    assert set(back.request_id) == labelled_ids and len(back) == len(labelled_ids)
    row = back.set_index("request_id").loc[labelled.index[3]]
    expected = served.iloc[int(labelled.row.iloc[3])]
    assert row["input.a"] == pytest.approx(float(expected.a))
    assert row["input.city"] == expected.city and int(row["target"]) == labelled.truth.iloc[3]
    assert (tmp_path / "retrain.parquet").stat().st_mode & 0o077 == 0


def test_bad_feedback_is_refused_whole_and_names_the_item(store: Store, cli: Any) -> None:
    train = _frame(500)
    with store.registry.start_run(name="train") as run:
        run.log_model(_model(train), name="churn", training_data=train)
    ph.deploy("churn", "churn", version=1, registry=store.registry)
    server: CliServer = cli()
    url = f"{server.url}/v2/models/churn/feedback"
    for body, words in [
        ([{"id": "a", "target": 1}, {"id": "b"}], "either a label (target) or a flag"),
        ([{"id": "a", "target": 1}, {"target": 1}], "either a request id or a correlation key"),
        ([{"id": "a", "target": [1]}], "item 0: target is a class label"),
        ([{"id": "a", "target": 1, "time": "yesterday"}], "item 0: time"),
        ([{"id": "a", "target": 1, "extra": 2}], "unknown field"),
        ([{"key": "a\u0000b", "target": 1}], "control character"),
        ([{"id": "a", "target": 1, "time": 1e10}], "a time from 1970 to 2262"),
        ([{"id": "a", "target": "x\u0000"}], "no NUL"),
        ({"id": "a"}, "JSON list"),
    ]:
        r = requests.post(url, json=body, timeout=10)
        assert r.status_code == 400, (body, r.text)
        assert words in r.json()["error"], r.json()
    assert ph.monitor("churn", registry=store.registry).feedback().empty
    r = requests.post(f"{server.url}/v2/models/nope/feedback", json=[], timeout=10)
    assert r.status_code == 404
    # without an X-Request-ID, the body's v2 id is the request's id, and feedback joins it
    by_body = requests.post(
        f"{server.url}/v2/models/churn/infer", json={**_body(_frame(1)), "id": "body-7"}, timeout=10
    )
    assert by_body.status_code == 200 and by_body.headers["X-Request-ID"] == "body-7"
    assert by_body.json()["id"] == "body-7"
    mon = ph.monitor("churn", registry=store.registry)
    assert list(_wait_kept(mon, 1).request_id) == ["body-7"]
    bad_key = requests.post(
        f"{server.url}/v2/models/churn/infer",
        json=_body(_frame(2), ["only-one"]),
        timeout=10,
    )
    assert bad_key.status_code == 400 and "1 keys for 2 rows" in bad_key.json()["error"]


def test_two_replicas_without_payloads_merge_their_rows(
    pg: tuple[Path, int], tmp_path: Path
) -> None:
    uri = f"{new_database(*pg)}?artifacts={tmp_path / 'artifacts'}"
    registry = ph.Registry(uri, actor="test")
    train = _frame(2000)
    with registry.start_run(name="train") as run:
        run.log_model(_model(train), name="churn", training_data=train)
    ph.deploy("churn", "churn", version=1, log_payloads=False, registry=registry)
    replicas = [
        ph.serve(port=0, registry=uri, poll_interval_ms=50, log_dir=str(tmp_path / f"log{i}"))
        for i in range(2)
    ]
    try:
        served = _frame(300, seed=3)
        truth = _truth(served, seed=4)
        parts = [
            _serve_traffic(srv.url, served.iloc[i * 150 : (i + 1) * 150], f"rep{i}")
            for i, srv in enumerate(replicas)
        ]
    finally:
        for srv in replicas:
            srv.stop()
    sent = pd.concat(parts, ignore_index=True)
    sent["truth"] = truth
    mon = ph.monitor("churn", registry=registry)
    kept = _wait_kept(mon, len(sent))
    assert kept.replica.nunique() == 2
    assert not any(c.startswith("input.") for c in mon.export(tmp_path / "x.parquet", since=None))
    ph.log_feedback("churn", ids=sent.request_id, targets=sent.truth, registry=registry)
    whole = mon.performance(since=None, window=None).set_index("metric")
    assert whole.loc["accuracy", "value"] == accuracy_score(sent.truth, sent.label)
    assert whole.loc["roc_auc", "value"] == pytest.approx(
        roc_auc_score(sent.truth, sent.p1), rel=1e-12
    )
    assert whole.loc["accuracy", "label_coverage"] == 1.0


def test_a_regressors_errors_per_window_equal_sklearns(store: Store, cli: Any) -> None:
    from sklearn.metrics import mean_absolute_error, r2_score, root_mean_squared_error

    from models import gradient_boosting_regressor

    onnx, x = gradient_boosting_regressor()
    path = store.home / "gbr.onnx"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(onnx)
    store.registry.log_model(str(path), "price", input_example=x[:2], training_data=x)
    ph.deploy("price", "price", version=1, log_payloads=False, registry=store.registry)
    server: CliServer = cli()
    rng = np.random.default_rng(5)
    rows = rng.normal(size=(120, x.shape[1])).astype(np.float32)
    truth = rows[:, 0] * 2.0 - rows[:, 1] ** 2 + rng.normal(scale=0.3, size=len(rows))
    session = requests.Session()
    ids, predicted = [], []
    for i, row in enumerate(rows):
        body = {
            "inputs": [
                {"name": "X", "shape": [1, len(row)], "datatype": "FP32", "data": row.tolist()}
            ]
        }
        r = session.post(
            f"{server.url}/v2/models/price/infer",
            json=body,
            headers={"X-Request-ID": f"p{i}"},
            timeout=10,
        )
        assert r.status_code == 200, r.text
        ids.append(f"p{i}")
        predicted.append(float(r.json()["outputs"][0]["data"][0]))
    mon = ph.monitor("price", registry=store.registry)
    _wait_kept(mon, len(rows))
    labelled = slice(0, 100)  # twenty answers stay unlabelled
    ph.log_feedback(
        "price", ids=ids[labelled], targets=truth[labelled].tolist(), registry=store.registry
    )
    whole = mon.performance(since=None, window=None).set_index("metric")
    t, p = truth[labelled], np.asarray(predicted)[labelled]
    assert whole.loc["mae", "value"] == pytest.approx(mean_absolute_error(t, p), rel=1e-6)
    assert whole.loc["rmse", "value"] == pytest.approx(root_mean_squared_error(t, p), rel=1e-6)
    assert whole.loc["r2", "value"] == pytest.approx(r2_score(t, p), rel=1e-6)
    assert whole.loc["mae", "label_coverage"] == 100 / 120
    assert "accuracy" not in whole.index
