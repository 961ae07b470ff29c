"""The typed records at the Python boundary: what _core hands out is frozen and typed, and
what it takes (specs, options) is refused with a message naming the bad part."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest
from sklearn.linear_model import LogisticRegression

import pilothouse as ph
from pilothouse import _core


def _logged(registry: ph.Registry) -> ph.ModelVersion:
    rng = np.random.default_rng(0)
    X = pd.DataFrame(rng.normal(size=(80, 2)), columns=["a", "b"])
    clf = LogisticRegression().fit(X, (X["a"] > 0).astype(int))
    with registry.start_run(name="train") as run:
        run.log_params({"C": 1.0})
        run.log_metrics({"auc": 0.9})
        return run.log_model(clf, name="churn", training_data=X, tags={"team": "risk"})


def test_records_are_frozen_and_typed(registry: ph.Registry) -> None:
    mv = _logged(registry)
    record = registry._core.get_version("churn", mv.version)
    assert isinstance(record, _core.VersionRecord)
    assert (record.model, record.version, record.uri) == ("churn", 1, "models:/churn/1")
    assert record.tags == {"team": "risk"} and record.parent is None
    assert record.signature["inputs"][0]["name"] == mv.signature["inputs"][0]["name"]
    with pytest.raises(AttributeError):
        record.version = 2  # type: ignore[misc]

    run = registry._core.get_run(mv.run_id or "")
    assert isinstance(run, _core.RunRecord)
    assert run.params == {"C": "1.0"} and run.metrics == {"auc": 0.9}
    ((value, step, at),) = run.metric_history["auc"]
    assert (value, step) == (0.9, 0) and at > 0

    head = registry._core.audit_head()
    events = registry._core.audit_log()
    assert isinstance(head, _core.AuditHeadRecord) and head.seq == events[-1].seq
    assert head.hash == events[-1].hash and events[-1].prev_hash == events[-2].hash

    lineage = registry._core.lineage("churn", 1)
    assert isinstance(lineage.version, _core.VersionRecord) and lineage.run is not None
    assert lineage.run.id == run.id and lineage.dataset is not None
    assert lineage.dataset.versions == ["models:/churn/1"]


def test_non_finite_numbers_and_bad_shapes_are_refused_by_name(registry: ph.Registry) -> None:
    _logged(registry)
    with pytest.raises(ph.ValidationError, match=r"\['weight'\] is NaN"):
        ph.deploy("churn-svc", "churn", routes=[("champion", math.nan)], registry=registry)
    with pytest.raises(ph.ValidationError, match=r"deployment spec.*is an object"):
        registry._core.set_deployment("me", "churn-svc", "churn", "{}")  # type: ignore[arg-type]
    assert ph.deployments(registry=registry) == []

    rng = np.random.default_rng(1)
    a, b = pd.DataFrame({"x": rng.normal(size=200)}), pd.DataFrame({"x": rng.normal(size=200)})
    with pytest.raises(ph.InputError, match=r"\['threshold'\] is inf"):
        ph.drift(a, b, threshold=math.inf)


def test_drift_options_name_columns_as_the_report_does() -> None:
    rng = np.random.default_rng(2)
    ref = pd.DataFrame({0: rng.normal(size=300), 1: rng.normal(size=300)})
    cur = pd.DataFrame({0: rng.normal(size=300) + 3, 1: rng.normal(size=300)})
    report = ph.drift(ref, cur, methods={0: "psi"}, thresholds={1: 0.5})
    by_column = {c["column"]: c for c in report._data["columns"]}
    assert by_column["0"]["method"] == "psi" and by_column["0"]["drifted"]
    assert by_column["1"]["threshold"] == 0.5
