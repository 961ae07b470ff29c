"""ph.log_feedback: labels and flags stored durably, on SQLite and PostgreSQL."""

from __future__ import annotations

import datetime as dt

import numpy as np
import pandas as pd
import pytest

import pilothouse as ph


def test_labels_by_id_and_key_round_trip(registry: ph.Registry) -> None:
    ids = [f"req-{i}" for i in range(2_500)]  # more than one insert batch
    labels = np.arange(2_500) % 3
    counts = ph.log_feedback("churn", ids=ids, targets=labels, registry=registry)
    assert counts == {"accepted": 2_500, "replaced": 0}
    counts = ph.log_feedback(
        "churn", keys=pd.Series(["loan-1", "loan-2"]), targets=["yes", "no"], registry=registry
    )
    assert counts == {"accepted": 2, "replaced": 0}
    got = ph.monitor("churn", registry=registry).feedback(kind="target")
    assert len(got) == 2_502
    assert got["request_id"].iloc[:2_500].tolist() == ids
    assert got["target"].iloc[:2_500].tolist() == [float(x) for x in labels]
    assert got["key"].iloc[2_500:].tolist() == ["loan-1", "loan-2"]
    assert got["target"].iloc[2_500:].tolist() == ["yes", "no"]
    assert (got["received_by"] == registry.actor).all()
    assert str(got["received"].dt.tz) == "UTC"


def test_flags_with_comments_and_second_labels_replace(registry: ph.Registry) -> None:
    when = dt.datetime(2026, 11, 30, 12, tzinfo=dt.timezone.utc)
    ph.log_feedback(
        "churn",
        ids=["a1b2"],
        good=False,
        comment="customer stayed",
        user="ops",
        time=when,
        registry=registry,
    )
    ph.log_feedback("churn", ids=["c3"], good=True, registry=registry)
    bad = ph.monitor("churn", registry=registry).feedback(kind="flag", good=False)
    assert bad[["request_id", "comment", "user"]].values.tolist() == [
        ["a1b2", "customer stayed", "ops"]
    ]
    assert bad["time"].iloc[0] == pd.Timestamp(when)
    # a second label for a request, in a later batch and twice within one batch
    ph.log_feedback("churn", ids=["r1", "r2"], targets=[1, 0], registry=registry)
    counts = ph.log_feedback("churn", ids=["r1", "r3", "r3"], targets=[0, 1, 0], registry=registry)
    assert counts == {"accepted": 3, "replaced": 2}
    labels = ph.monitor("churn", registry=registry).feedback(kind="target")
    # both labels of r1 stay on record, oldest first: readers take the last
    assert labels[labels["request_id"] == "r1"]["target"].tolist() == [1.0, 0.0]
    actions = [e.action for e in registry.audit_log()]
    assert actions.count("feedback.logged") == 4


def test_bad_feedback_is_refused_whole(registry: ph.Registry) -> None:
    with pytest.raises(ph.ValidationError, match=r"ids .* or keys"):
        ph.log_feedback("churn", targets=[1], registry=registry)
    with pytest.raises(ph.ValidationError, match=r"targets .* or good"):
        ph.log_feedback("churn", ids=["a"], registry=registry)
    with pytest.raises(ph.ValidationError, match="targets: 1 values for 2 rows"):
        ph.log_feedback("churn", ids=["a", "b"], targets=[1], registry=registry)
    with pytest.raises(ph.ValidationError, match="row 1 has no value"):
        ph.log_feedback("churn", ids=["a", "b"], targets=[1.0, float("nan")], registry=registry)
    with pytest.raises(ph.ValidationError, match="no empty or missing"):
        ph.log_feedback("churn", ids=["a", ""], targets=[1, 0], registry=registry)
    with pytest.raises(ph.ValidationError, match=r"True .* or False"):
        ph.log_feedback("churn", ids=["a"], good=["yes"], registry=registry)
    with pytest.raises(ph.ValidationError, match="at most 4096"):
        ph.log_feedback("churn", ids=["a"], good=True, comment="x" * 5000, registry=registry)
    with pytest.raises(ph.ValidationError, match="deployment"):
        ph.log_feedback("no such/name", ids=["a"], good=True, registry=registry)
    # nothing of the refused calls was stored
    assert len(ph.monitor("churn", registry=registry).feedback()) == 0
