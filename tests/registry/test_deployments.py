"""Deployments in the registry (SQLite and PostgreSQL): written by deploy, read by servers."""

from __future__ import annotations

import pytest

import models
import pilothouse as ph


def test_deployments_are_stored_versioned_and_audited(registry: ph.Registry) -> None:
    data, X = models.logistic_regression(zipmap=False)
    registry.log_model(data, "churn", input_example=X[:2])
    registry.log_model(data, "churn")
    registry.set_alias("churn", "champion", 1)
    registry.set_alias("churn", "challenger", 2)
    d = ph.deploy(
        "churn-api",
        model="churn",
        routes=[("champion", 0.9), ("challenger", 0.1)],
        registry=registry,
    )
    assert (d.generation, d.model, d.versions) == (1, "churn", {"@champion": 1, "@challenger": 2})
    assert d.spec["batching"] == {
        "max_batch_size": 64,
        "max_queue_delay_us": 0,
        "queue_capacity": 1024,
    }
    d = ph.deploy(
        "churn-api", model="churn", alias="champion", shadow="challenger", registry=registry
    )
    assert d.generation == 2 and d.shadow == "@challenger" and d.routes == [("@champion", 1.0)]
    registry.set_alias("churn", "champion", 2)
    (listed,) = ph.deployments(registry=registry)
    assert listed.versions["@champion"] == 2  # aliases are resolved at read time
    assert "deployment churn-api" in listed._repr_html_()
    actions = [e.action for e in registry.audit_log("churn")]
    assert actions.count("deployment.set") == 2
    ph.undeploy("churn-api", registry=registry)
    assert ph.deployments(registry=registry) == []
    assert "deployment.delete" in [e.action for e in registry.audit_log("churn")]
    assert registry.verify_audit_log() > 0


def test_deploy_refuses_what_cannot_be_served(registry: ph.Registry) -> None:
    data, _ = models.logistic_regression(zipmap=False)
    registry.log_model(data, "churn")
    with pytest.raises(ph.NotFoundError, match="nope"):
        ph.deploy("x", model="nope", version=1, registry=registry)
    with pytest.raises(ph.NotFoundError, match="champion"):
        ph.deploy("x", model="churn", alias="champion", registry=registry)
    with pytest.raises(ph.NotFoundError, match="models:/churn/5"):
        ph.deploy("x", model="churn", version=5, registry=registry)
    with pytest.raises(ph.ValidationError, match="add up to 0"):
        ph.deploy("x", model="churn", routes=[(1, 0.0)], registry=registry)
    with pytest.raises(ph.ValidationError, match="max_batch_size"):
        ph.deploy("x", model="churn", version=1, max_batch_size=0, registry=registry)
    with pytest.raises(ph.ValidationError, match="deployment name"):
        ph.deploy("bad name", model="churn", version=1, registry=registry)
    with pytest.raises(ph.NotFoundError):
        ph.undeploy("x", registry=registry)
    assert ph.deployments(registry=registry) == []
