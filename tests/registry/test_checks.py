"""Model checks recorded on versions, and the policy that an approval needs a passing one:
on SQLite and on PostgreSQL."""

from __future__ import annotations

import pytest
from postgres import Backend

import models
import pilothouse as ph
from pilothouse.testing import CheckResult


def _results(*verdicts: tuple[str, bool]) -> list[CheckResult]:
    return [
        CheckResult(name, passed, f"{name} {'held' if passed else 'broke'}", [{"column": "a"}])
        for name, passed in verdicts
    ]


def test_checks_are_recorded_listed_and_audited(backend: Backend) -> None:
    ann = backend.open("ann")
    raw, _ = models.logistic_regression()
    ann.log_model(raw, "churn")
    ann.log_model(raw, "churn")

    first = ann.record_check("churn", 2, "nightly", _results(("assert_valid", True)))
    second = ann.record_check(
        "churn", 2, "nightly", _results(("assert_valid", True), ("assert_better", False))
    )
    other = ann.record_check("churn", 1, "smoke", _results(("assert_valid", True)))
    assert (first.passed, second.passed, other.passed) == (True, False, True)
    assert second.failed == ["assert_better"] and second.recorded_by == "ann"
    assert second.results["checks"][1]["rows"] == [{"column": "a"}]
    assert [c.id for c in ann.checks("churn")] == [other.id, second.id, first.id]
    assert [c.id for c in ann.checks("churn", 2)] == [second.id, first.id]

    event = [e for e in ann.audit_log(model="churn") if e.action == "check.record"][-2]
    assert event.details == {
        "id": second.id,
        "version": 2,
        "suite": "nightly",
        "suite_sha256": None,
        "passed": False,
        "failed": ["assert_better"],
    }
    assert ann.verify_audit_log() > 0

    # what is wrong is named, and nothing is recorded
    with pytest.raises(ph.NotFoundError, match="version"):
        ann.record_check("churn", 9, "nightly", _results(("assert_valid", True)))
    with pytest.raises(ph.ValidationError, match="suite name"):
        ann.record_check("churn", 2, "../x", _results(("assert_valid", True)))
    with pytest.raises(ph.ValidationError, match="at least one check"):
        ann.record_check("churn", 2, "nightly", [])
    with pytest.raises(ph.ValidationError, match="'name' and 'passed'"):
        ann.record_check("churn", 2, "nightly", {"checks": [{"name": "x", "passed": "yes"}]})
    big = {"checks": [{"name": "x", "passed": True, "rows": ["y" * 1000] * 1100}]}
    with pytest.raises(ph.ValidationError, match="leave the data out"):
        ann.record_check("churn", 2, "nightly", big)
    # the verdict is read from the results: a caller cannot claim a pass they do not hold
    core = ann._core
    claimed = core.record_check(
        "ann", "churn", 2, "x", '{"checks": [{"name": "a", "passed": false}]}'
    )
    assert claimed.passed is False
    for bad in (
        '{"checks": []}',
        '{"checks": [{"name": "a", "passed": "yes"}]}',
        '{"checks": [{"passed": true}]}',
        "[]",
    ):
        with pytest.raises(ph.ValidationError, match="check results"):
            core.record_check("ann", "churn", 2, "x", bad)
    with pytest.raises(ph.ValidationError, match="is a version of fraud, not churn"):
        fraud = ann.log_model(raw, "fraud")
        ann.record_check("churn", fraud, "nightly", _results(("assert_valid", True)))
    assert len(ann.checks("churn")) == 4
    # NaN (a p-value that could not be computed) is kept as null, not refused
    nan = CheckResult("assert_no_drift", True, "ok", [{"p_value": float("nan")}])
    kept = ann.record_check("churn", 1, "smoke", [nan])
    assert kept.results["checks"][0]["rows"] == [{"p_value": None}]


def test_a_policy_requires_a_passing_check_before_approval(backend: Backend) -> None:
    ann, lead = backend.open("ann"), backend.open("lead")
    raw, _ = models.logistic_regression()
    for _ in range(3):
        ann.log_model(raw, "churn")
    ann.set_alias("churn", "champion", 1)
    lead.set_policy("churn", "champion", require_check="model-checks")
    assert ann.policies("churn") == ["champion"]
    assert ann.required_checks("churn") == {"champion": "model-checks"}
    with pytest.raises(ph.ValidationError, match="needs require_approval"):
        lead.set_policy("churn", "canary", require_approval=False, require_check="x")

    request = ann.request_promotion("churn", "champion", 2, reason="better")
    assert request.checks == []
    with pytest.raises(ph.ApprovalRequiredError, match="none is recorded") as refused:
        lead.approve(request)
    assert "pilothouse check churn --candidate 2" in str(refused.value)
    # a passing check on another version, or on another model's version 2, does not do
    ann.record_check("churn", 3, "model-checks", _results(("valid", True)))
    ann.log_model(raw, "fraud")
    ann.log_model(raw, "fraud")
    ann.record_check("fraud", 2, "model-checks", _results(("valid", True)))
    with pytest.raises(ph.ApprovalRequiredError, match="none is recorded"):
        lead.approve(request)
    assert ann.get_version("churn", 2).version == 2
    assert ann.approvals("churn")[0].status == "pending"  # the refusal changed nothing

    # a check of another suite, or a failing one of the required suite, does not do
    ann.record_check("churn", 2, "smoke", _results(("assert_valid", True)))
    failing = ann.record_check(
        "churn", 2, "model-checks", _results(("valid", True), ("better", False))
    )
    with pytest.raises(ph.ApprovalRequiredError, match=f"record {failing.id}\\) failed: better"):
        lead.approve(request)

    passing = ann.record_check("churn", 2, "model-checks", _results(("valid", True)))
    (listed,) = ann.approvals("churn")
    assert [(c.suite, c.passed, c.id) for c in listed.checks] == [
        ("model-checks", True, passing.id),
        ("smoke", True, listed.checks[1].id),
    ]
    approved = lead.approve(request, reason="checks pass")
    assert approved.status == "approved"
    ann.set_alias("churn", "champion", 2)
    decision = [e for e in ann.audit_log(model="churn") if e.action == "approval.approve"][-1]
    assert decision.details["checks"] == [
        {
            "id": passing.id,
            "suite": "model-checks",
            "suite_sha256": None,
            "passed": True,
            "failed": [],
        }
    ]

    # the newest check is what counts: a later failure blocks the next approval
    request3 = ann.request_promotion("churn", "champion", 3)
    assert [c.passed for c in request3.checks] == [True]  # shown with the request
    asked = [e for e in ann.audit_log(model="churn") if e.action == "approval.request"][-1]
    assert [c["suite"] for c in asked.details["checks"]] == ["model-checks"]
    ann.record_check("churn", 3, "model-checks", _results(("valid", False)))
    with pytest.raises(ph.ApprovalRequiredError, match="failed: valid"):
        lead.approve(request3)
    # a rejection needs no check
    assert lead.reject(request3, "valid fails").status == "rejected"

    # "*": every suite's newest check on the version must pass, and there must be one
    lead.set_policy("churn", "champion", require_check="*")
    ann.log_model(raw, "churn")
    unchecked = ann.request_promotion("churn", "champion", 4)
    with pytest.raises(ph.ApprovalRequiredError, match="requires a passing check on version 4"):
        lead.approve(unchecked)
    ann.record_check("churn", 1, "a", _results(("x", True)))
    ann.record_check("churn", 1, "b", _results(("y", False)))
    back = ann.request_promotion("churn", "champion", 1)
    with pytest.raises(ph.ApprovalRequiredError, match="suite 'b'"):
        lead.approve(back)
    ann.record_check("churn", 1, "b", _results(("y", True)))
    assert lead.approve(back).status == "approved"

    # guarding the alias again keeps the requirement; "" drops it and keeps the guard
    lead.set_policy("churn", "champion")
    assert ann.required_checks("churn") == {"champion": "*"}
    lead.set_policy("churn", "champion", require_check="")
    assert ann.required_checks("churn") == {}
    assert ann.policies("churn") == ["champion"]
    events = [e for e in ann.audit_log(model="churn") if e.action == "policy.set"]
    assert events[0].details == {
        "alias": "champion",
        "require_approval": True,
        "require_check": "model-checks",
        "allow_rollback": False,
    }
    assert [e.details["require_check"] for e in events[1:]] == ["*", "*", None]


def test_the_check_must_still_pass_when_the_alias_moves(backend: Backend) -> None:
    ann, lead, ci = backend.open("ann"), backend.open("lead"), backend.open("ci")
    raw, _ = models.logistic_regression()
    for _ in range(3):
        ann.log_model(raw, "churn")
    ann.set_alias("churn", "champion", 1)

    # approved before the policy required a check: the move is refused until one passes
    lead.set_policy("churn", "champion")
    early = lead.approve(ann.request_promotion("churn", "champion", 2))
    assert early.status == "approved" and early.checks == []
    lead.set_policy("churn", "champion", require_check="model-checks")
    with pytest.raises(ph.ApprovalRequiredError, match="none is recorded"):
        ann.set_alias("churn", "champion", 2)
    assert ann.get_version("models:/churn@champion").version == 1
    assert ann.approvals("churn")[0].status == "approved"  # not used up by the refusal
    ok = ci.record_check("churn", 2, "model-checks", _results(("valid", True)))
    moved = ann.set_alias("churn", "champion", 2)
    assert moved.version == 2
    event = [e for e in ann.audit_log(model="churn") if e.action == "alias.set"][-1]
    assert event.details["checks"] == [
        {"id": ok.id, "suite": "model-checks", "suite_sha256": None, "passed": True, "failed": []}
    ]

    # approved on a pass, then a failing check recorded: the move is refused
    ci.record_check("churn", 3, "model-checks", _results(("valid", True)))
    request = ann.request_promotion("churn", "champion", 3)
    approved = lead.approve(request)
    ci.record_check("churn", 3, "model-checks", _results(("valid", False)))
    with pytest.raises(ph.ApprovalRequiredError, match="failed: valid"):
        ann.set_alias("churn", "champion", 3)
    # the decided request shows the checks its decision saw, not the newer failure
    (decided,) = [a for a in ann.approvals("churn") if a.id == approved.id]
    assert [c.passed for c in decided.checks] == [True]
    ci.record_check("churn", 3, "model-checks", _results(("valid", True)))
    assert ann.set_alias("churn", "champion", 3).version == 3

    # the requester's own passing check, recorded after the approval, does not stand in for it
    ci.record_check("churn", 1, "model-checks", _results(("valid", False)))
    back = ann.request_promotion("churn", "champion", 1)
    ci.record_check("churn", 1, "model-checks", _results(("valid", True)))
    lead.approve(back)
    ci.record_check("churn", 1, "model-checks", _results(("valid", False)))
    ann.record_check("churn", 1, "model-checks", _results(("valid", True)))  # the requester
    with pytest.raises(ph.ApprovalRequiredError, match="recorded by ann, who requested"):
        ann.set_alias("churn", "champion", 1)
    ci.record_check("churn", 1, "model-checks", _results(("valid", True)))
    assert ann.set_alias("churn", "champion", 1).version == 1
