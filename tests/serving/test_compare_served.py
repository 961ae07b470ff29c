"""Champion-challenger on a real server's shadow traffic, CBPE on served windows before
their labels arrive (estimate, then realized once the labels cover the window), and
performance against model age.

The comparison runs on 40 disjoint bursts of traffic: a challenger as good as the champion
(trained on another sample of the same data) must be flagged in few of them (the false
positive rate at 95% confidence), a truly better one in most (the power). Everything is
seeded, so the counts are the same on every run; they are printed for the record."""

from __future__ import annotations

import datetime as dt
import time
from typing import Any

import numpy as np
import pandas as pd
import pytest
import requests
from servers import CliServer, Store
from sklearn.linear_model import LogisticRegression

import pilothouse as ph

FEATURES = ["a", "b", "c", "d"]


def _data(n: int, seed: int) -> tuple[pd.DataFrame, np.ndarray]:
    rng = np.random.default_rng(seed)
    x = pd.DataFrame({f: rng.normal(size=n).astype(np.float32) for f in FEATURES})
    signal = 0.8 * x.a + 0.8 * x.b + 1.2 * x.c - x.d + rng.normal(scale=1.0, size=n)
    return x, (signal > 0).astype(int).to_numpy()


def _log(store: Store, columns: list[str], seed: int) -> ph.ModelVersion:
    """A logistic regression on `columns` (the others weigh nothing), trained on 3000 rows
    drawn with `seed`; it takes every feature so that all versions share the signature."""
    x, y = _data(3000, seed)
    masked = x.copy()
    for f in FEATURES:
        if f not in columns:
            masked[f] = 0.0
    model = LogisticRegression(max_iter=500).fit(masked, y)
    for i, f in enumerate(FEATURES):
        if f not in columns:
            model.coef_[0, i] = 0.0
    with store.registry.start_run(name=f"train-{seed}") as run:
        return run.log_model(model, name="churn", training_data=x)


def _send(url: str, x: pd.DataFrame, prefix: str, per_request: int = 100) -> pd.DataFrame:
    session = requests.Session()
    ids = []
    for start in range(0, len(x), per_request):
        rows = x.iloc[start : start + per_request]
        rid = f"{prefix}-{start}"
        body = {
            "inputs": [
                {
                    "name": "X",
                    "shape": [len(rows), 4],
                    "datatype": "FP32",
                    "data": rows[FEATURES].to_numpy().ravel().tolist(),
                }
            ]
        }
        r = session.post(
            f"{url}/v2/models/churn/infer", json=body, headers={"X-Request-ID": rid}, timeout=10
        )
        assert r.status_code == 200, r.text
        ids += [f"{rid}/{i}" for i in range(len(rows))]
    return pd.DataFrame({"request_id": ids})


def _wait_kept(mon: ph.Monitor, n: int) -> None:
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        if len(mon.predictions(since=None)) >= n:
            return
        time.sleep(0.2)
    raise AssertionError(f"kept {len(mon.predictions(since=None))} of {n} rows")


def _bursts(server: CliServer, store: Store, seed: int, bursts: int, rows: int) -> list[Any]:
    """Sends `bursts` bursts of `rows` rows, labels them all, and answers each burst's
    (since, until)."""
    x, y = _data(bursts * rows, seed)
    spans = []
    sent = []
    for b in range(bursts):
        since = dt.datetime.now(dt.timezone.utc)
        part = _send(server.url, x.iloc[b * rows : (b + 1) * rows], f"s{seed}-b{b}")
        part["truth"] = y[b * rows : (b + 1) * rows]
        sent.append(part)
        time.sleep(0.01)
        spans.append((since, dt.datetime.now(dt.timezone.utc)))
        time.sleep(0.01)
    sent_all = pd.concat(sent, ignore_index=True)
    mon = ph.monitor("churn", registry=store.registry)
    _wait_kept(mon, 2 * len(sent_all))  # the primary's rows and the shadow's
    ph.log_feedback(
        "churn", ids=sent_all.request_id, targets=sent_all.truth, registry=store.registry
    )
    return spans


@pytest.mark.parametrize("challenger", ["equal", "better"])
def test_shadow_comparison_flags_a_better_challenger_and_rarely_an_equal_one(
    store: Store, cli: Any, challenger: str
) -> None:
    champion = _log(store, ["a", "b", "c"], seed=1)
    other = _log(store, ["a", "b", "c"] if challenger == "equal" else FEATURES, seed=2)
    ph.deploy(
        "churn", "churn", version=champion.version, shadow=other.version, registry=store.registry
    )
    server: CliServer = cli()
    spans = _bursts(server, store, seed=11, bursts=40, rows=500)
    flagged = 0
    flips = []
    for since, until in spans:
        c = ph.compare(
            "churn",
            champion.version,
            other.version,
            since=since,
            until=until,
            registry=store.registry,
        )
        assert c.paired and c.labelled == 500 and c.requests == 500
        flips.append(c.flip_rate)
        flagged += c.verdict == "challenger better"
        assert c.verdict != "champion better" or challenger == "equal"
    rate = flagged / len(spans)
    print(
        f"\n{challenger} challenger: flagged better in {flagged} of {len(spans)} bursts "
        f"({rate:.0%}); mean flip rate {np.mean(flips):.3f}"
    )
    if challenger == "equal":
        assert rate <= 0.15
        assert 0 < np.mean(flips) < 0.1
    else:
        assert rate >= 0.8
    whole = ph.compare(
        "churn",
        champion.version,
        other.version,
        since=spans[0][0],
        metric="roc_auc",
        resamples=500,
        registry=store.registry,
    )
    assert "paired bootstrap of 500" in whole.method and whole.labelled == 40 * 500
    if challenger == "better":
        assert whole.verdict == "challenger better" and whole.difference > 0.02, whole
    else:
        # 20,000 paired requests resolve even a tiny real difference: it stays tiny
        assert abs(whole.difference) < 0.005, whole
    evidence = whole.to_evidence()
    assert evidence["verdict"] == whole.verdict and len(evidence["interval"]) == 2
    request = store.registry.request_promotion(
        "churn", "champion", other.version, "shadow comparison", evidence=whole
    )
    assert request.evidence == evidence
    assert store.registry.approvals("churn")[-1].evidence == evidence
    event = store.registry.audit_log("churn")[-1]
    assert event.action == "approval.request" and event.details["evidence"] == evidence
    assert "compare churn" in whole._repr_html_()


def test_served_windows_are_estimated_until_labels_cover_them(store: Store, cli: Any) -> None:
    mv = _log(store, FEATURES, seed=3)
    x_ref, y_ref = _data(5000, seed=4)  # held out: not the training rows
    ph.set_reference(mv, x_ref, targets=y_ref, registry=store.registry)
    ph.deploy(
        "churn", "churn", version=mv.version, monitoring={"window": "1s"}, registry=store.registry
    )
    server: CliServer = cli()
    # four windows of traffic, the last two with the inputs shifted (covariate shift)
    sent = []
    for w in range(4):
        now = time.time()
        time.sleep(int(now) + 1 - now + 0.02)
        x, y = _data(1000, seed=20 + w)
        if w >= 2:
            x["c"] = x["c"] + 1.5
            x["a"] = x["a"] * 0.3
            signal = 0.8 * x.a + 0.8 * x.b + 1.2 * x.c - x.d
            y = (signal + np.random.default_rng(30 + w).normal(size=len(x)) > 0).astype(int)
            y = y.to_numpy()
        part = _send(server.url, x, f"w{w}")
        part["truth"] = y
        sent.append(part)
    sent_all = pd.concat(sent, ignore_index=True)
    mon = ph.monitor("churn", registry=store.registry)
    _wait_kept(mon, len(sent_all))
    before = mon.performance(since=None, window="1s", metrics=["accuracy", "roc_auc"])
    acc = before[before.metric == "accuracy"]
    assert len(acc) >= 4 and set(acc.kind) == {"estimated"}
    assert acc.value.notna().all() and (acc.lower <= acc.value).all()
    assert (acc.value <= acc.upper).all() and acc.realized.isna().all()

    # the labels of the first two bursts arrive: their windows switch to realized
    early = pd.concat(sent[:2])
    ph.log_feedback("churn", ids=early.request_id, targets=early.truth, registry=store.registry)
    mid = mon.performance(since=None, window="1s", metrics=["accuracy"])
    mid = mid[mid.metric == "accuracy"]
    kinds = mid.groupby("kind").size().to_dict()
    assert kinds.get("realized", 0) >= 1 and kinds.get("estimated", 0) >= 1
    realized = mid[mid.kind == "realized"]
    assert (realized.label_coverage >= 0.5).all() and realized.estimated.notna().all(), (
        mid.to_string()
    )

    ph.log_feedback(
        "churn", ids=sent_all.request_id, targets=sent_all.truth, registry=store.registry
    )
    after = mon.performance(since=None, window="1s", metrics=["accuracy", "roc_auc"])
    assert set(after.kind[after.metric.isin(["accuracy", "roc_auc"])]) == {"realized"}
    # under covariate shift the estimate holds: it lies within its band of the realized value
    # windows of the bursts (a burst that spilled a few rows into the next second leaves a
    # window too small to judge)
    checked = after[after.metric.isin(["accuracy", "roc_auc"]) & (after.predictions >= 500)]
    assert len(checked) >= 8
    inside = (checked.lower <= checked.realized) & (checked.realized <= checked.upper)
    assert inside.mean() >= 0.9, checked[
        ["window_start", "metric", "estimated", "realized", "lower", "upper"]
    ]


def test_staleness_reads_performance_against_model_age(store: Store, cli: Any) -> None:
    mv = _log(store, FEATURES, seed=5)
    ph.deploy("churn", "churn", version=mv.version, registry=store.registry)
    server: CliServer = cli()
    x, y = _data(600, seed=6)
    part = _send(server.url, x, "age")
    mon = ph.monitor("churn", registry=store.registry)
    _wait_kept(mon, len(part))
    ph.log_feedback("churn", ids=part.request_id, targets=y, registry=store.registry)
    curve = mon.staleness(since=None, age="1h")
    acc = curve[curve.metric == "accuracy"]
    assert list(acc.version) == [mv.version] and list(acc.age_days) == [0.0]
    kept = mon.predictions(since=None).set_index("request_id").loc[part.request_id]
    expected = float(np.mean(kept["output.label"].astype(int).to_numpy() == y))
    assert acc.value.iloc[0] == expected and acc.labelled.iloc[0] == 600
