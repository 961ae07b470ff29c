"""Alert rules, states and alerts in the registry, on SQLite and on PostgreSQL: rules
checked when added, windows stepping each rule (for_windows, hysteresis, only_if), every
window's outcome recorded once however many replicas evaluate it, silences,
acknowledgements, and the audit trail."""

from __future__ import annotations

from typing import Any

import pytest
from alert_setup import MINUTE, deployed, window
from postgres import Backend

import models
import pilothouse as ph


def test_rules_fire_resolve_and_are_audited(backend: Backend) -> None:
    reg = deployed(backend)
    ph.add_alert_rule(
        "churn",
        "inputs drifting",
        "drift_share > 0.3",
        for_windows=2,
        resolve_when="drift_share < 0.2",
        severity="warning",
        labels={"team": "risk"},
        registry=reg,
    )
    ph.add_alert_rule(
        "churn",
        "drift that hurts",
        "drift_share > 0.3",
        only_if="estimated.roc_auc < reference.roc_auc.lower",
        severity="critical",
        registry=reg,
    )
    steps = []
    for minute, (share, auc) in enumerate(
        [(0.5, 0.9), (0.6, 0.9), (0.25, 0.9), (0.5, 0.6), (0.1, 0.9)], start=1
    ):
        changes = window(
            reg,
            minute,
            drift_share=share,
            **{"estimated.roc_auc": auc, "reference.roc_auc.lower": 0.8},
        )
        steps.append(sorted((c["rule"], c["transition"]) for c in changes))
    assert steps == [
        [("inputs drifting", "pending")],
        [("inputs drifting", "fired")],
        [],  # 0.25: not below 0.2 yet, so still firing (hysteresis)
        [("drift that hurts", "fired")],  # the harmless drift before never fired it
        [("drift that hurts", "resolved"), ("inputs drifting", "resolved")],
    ]
    table = ph.alerts("churn", registry=reg)
    assert list(table.rule) == ["drift that hurts", "inputs drifting"]
    assert set(table.state) == {"resolved"}
    first = table[table.rule == "inputs drifting"].iloc[0]
    assert first.fired_window.timestamp() * 1e6 == 2 * MINUTE
    assert first.resolved_window.timestamp() * 1e6 == 5 * MINUTE
    assert first.series == {"drift_share": 0.6}
    assert first.severity == "warning" and not first.silenced
    rules = ph.alert_rules("churn", registry=reg)
    assert set(rules.state) == {"inactive"} and list(rules.labels)[1] == {"team": "risk"}
    actions = [e.action for e in reg.audit_log(model="churn")]
    assert actions.count("alert.fire") == 2 and actions.count("alert.resolve") == 2
    assert actions.count("alert_rule.set") == 2
    assert reg.verify_audit_log() > 0


def test_each_window_advances_a_rule_once_across_replicas(backend: Backend) -> None:
    reg = deployed(backend)
    other = backend.open("replica-2")  # a second process on the same registry
    ph.add_alert_rule("churn", "slow", "latency_p99_ms > 50", registry=reg)
    assert [c["transition"] for c in window(reg, 1, latency_p99_ms=80.0)] == ["fired"]
    assert window(other, 1, latency_p99_ms=80.0) == []  # the same window: done already
    assert window(other, 1, latency_p99_ms=10.0) == []  # whatever it computed
    assert window(reg, 0, latency_p99_ms=10.0) == []  # an older window: too late
    assert [c["transition"] for c in window(other, 2, latency_p99_ms=10.0)] == ["resolved"]
    assert window(reg, 2, latency_p99_ms=10.0) == []
    fired = ph.alerts("churn", registry=reg)
    assert len(fired) == 1 and fired.state[0] == "resolved"
    # a window where the series is missing (no traffic) changes nothing
    assert [c["transition"] for c in window(reg, 3, latency_p99_ms=99.0)] == ["fired"]
    assert window(reg, 4) == []
    assert ph.alerts("churn", state="firing", registry=reg).rule.tolist() == ["slow"]


def test_silences_acknowledgements_and_replacing_a_rule(backend: Backend) -> None:
    reg = deployed(backend)
    lead = backend.open("lead")
    ph.add_alert_rule("churn", "errors", "error_rate > 0.1", severity="critical", registry=reg)
    made = ph.silence("churn", rule="errors", for_="2h", reason="load test", registry=reg)
    assert made["rule"] == "errors" and made["reason"] == "load test"
    assert [s["id"] for s in ph.silences("churn", registry=reg)] == [made["id"]]
    (fired,) = window(reg, 1, error_rate=0.5)
    assert fired["alert"]["silenced"] is True
    alert_id = fired["alert"]["id"]
    acked = ph.ack(alert_id, registry=lead)
    assert acked["acked_by"] == "lead" and acked["acked_at"] is not None
    with pytest.raises(ph.ConflictError, match="acknowledged already, by lead"):
        ph.ack(alert_id, registry=reg)
    # replacing the rule starts it over, and closes what the old one left firing
    ph.add_alert_rule("churn", "errors", "error_rate > 0.2", registry=reg)
    assert ph.alerts("churn", state="firing", registry=reg).empty
    rules = ph.alert_rules("churn", registry=reg)
    assert (rules.when[0], rules.state[0], rules.severity[0]) == (
        "error_rate > 0.2",
        "inactive",
        "warning",
    )
    ph.delete_alert_rule("churn", "errors", registry=reg)
    assert ph.alert_rules("churn", registry=reg).empty
    actions = [e.action for e in reg.audit_log(model="churn")]
    assert {"alert.silence", "alert.ack", "alert_rule.delete"} <= set(actions)


@pytest.mark.parametrize(
    ("kwargs", "error", "message"),
    [
        ({"when": "drift_share >"}, ph.ValidationError, "when: condition"),
        ({"when": "a > 1", "resolve_when": "b ~ 2"}, ph.ValidationError, "resolve_when"),
        ({"when": "a > 1", "only_if": "(a > 1"}, ph.ValidationError, "only_if"),
        ({"when": "a > 1", "severity": "page-me"}, ph.ValidationError, "info, warning, critical"),
        ({"when": "a > 1", "actions": ["reboot"]}, ph.ValidationError, "retrain or rollback"),
        ({"when": "a > 1", "for_windows": 0}, ph.ValidationError, "for_windows"),
        ({"when": "a > 1", "deployment": "nope"}, ph.NotFoundError, "deployment not found"),
        ({"when": "a > 1", "name": "../x"}, ph.ValidationError, "alert rule name"),
    ],
)
def test_bad_rules_are_refused_and_nothing_is_stored(
    backend: Backend, kwargs: dict[str, Any], error: type[Exception], message: str
) -> None:
    reg = deployed(backend)
    args = {"deployment": "churn", "name": "r", **kwargs}
    with pytest.raises(error, match=message.replace("(", "\\(")):
        ph.add_alert_rule(
            args.pop("deployment"), args.pop("name"), args.pop("when"), registry=reg, **args
        )
    assert ph.alert_rules(registry=reg).empty
    with pytest.raises(ph.ValidationError, match="give a reason"):
        ph.silence("churn", reason=" ", registry=reg)
    with pytest.raises(ph.NotFoundError, match="alert not found"):
        ph.ack(999, registry=reg)


def test_a_rollback_action_moves_the_alias_back_unless_a_policy_forbids(
    backend: Backend,
) -> None:
    reg = backend.open("ann")
    lead = backend.open("lead")
    raw, _ = models.logistic_regression()
    for _ in range(3):
        reg.log_model(raw, "churn")
    reg.set_alias("churn", "champion", 1)
    reg.set_alias("churn", "champion", 2)
    ph.deploy("churn", alias="champion", registry=reg)
    ph.add_alert_rule(
        "churn", "accuracy", "realized.accuracy < 0.8", actions=["rollback"], registry=reg
    )
    (fired,) = window(reg, 1, **{"realized.accuracy": 0.6})
    assert fired["rollback"] == {"alias": "champion", "version": 1}
    assert reg.get_version("models:/churn@champion").version == 1
    moves = reg.alias_history("churn", "champion")
    assert (moves[-1].version, moves[-1].previous, moves[-1].actor) == (1, 2, "ann")
    event = [e for e in reg.audit_log(model="churn") if e.action == "alias.rollback"][-1]
    assert event.details["reason"] == "alert rule 'accuracy' of deployment churn fired"

    # a guarded alias rolls back only when its policy allows it
    window(reg, 2, **{"realized.accuracy": 0.9})  # resolved
    lead.set_policy("churn", "champion")
    request = reg.request_promotion("churn", "champion", 3)
    lead.approve(request)
    reg.set_alias("churn", "champion", 3)
    (refused,) = window(reg, 3, **{"realized.accuracy": 0.6})
    assert "does not allow automatic rollback" in refused["rollback"]["error"]
    assert reg.get_version("models:/churn@champion").version == 3
    window(reg, 4, **{"realized.accuracy": 0.9})
    lead.set_policy("churn", "champion", allow_rollback=True)
    (allowed,) = window(reg, 5, **{"realized.accuracy": 0.6})
    assert allowed["rollback"] == {"alias": "champion", "version": 1}
    # the policy keeps guarding the alias, and keeps allowing rollbacks when re-set
    lead.set_policy("churn", "champion")
    policy = [e for e in reg.audit_log(model="churn") if e.action == "policy.set"][-1]
    assert policy.details["allow_rollback"] is True
    with pytest.raises(ph.ApprovalRequiredError):
        reg.set_alias("churn", "champion", 3)


def test_a_rule_is_kept_as_written_and_evaluated_as_written(backend: Backend) -> None:
    reg = deployed(backend)
    # 1e300 written out in full would pass the length a condition may have
    ph.add_alert_rule("churn", "huge", "a > 1e300 or b > 1e-300", registry=reg)
    assert ph.alert_rules("churn", registry=reg).when[0] == "a > 1e300 or b > 1e-300"
    assert [c["transition"] for c in window(reg, 1, a=2e300, b=0.0)] == ["fired"]
