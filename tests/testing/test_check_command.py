"""`pilothouse check` end to end: a TOML suite run against registered versions by the real
command, its table, exit status and JUnit XML, the result recorded on the version and in
the audit log, and a policy that refuses an approval until a passing check is recorded."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
import xml.etree.ElementTree as ET
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest
from sklearn.linear_model import LogisticRegression

import pilothouse as ph

TRAIN_MODULE = """
import numpy as np
from sklearn.linear_model import LogisticRegression

def train(data):
    y = (data["age"] - 40 + data["income"] - 50 > 0).astype(int)
    return LogisticRegression().fit(data, y)

def train_noisy(data):
    rng = np.random.default_rng()
    y = (data["age"] - 40 + data["income"] - 50 + rng.normal(0, 30, len(data)) > 0).astype(int)
    return LogisticRegression().fit(data, y)
"""


@pytest.fixture
def setup(tmp_path: Path) -> dict[str, Any]:
    """A registry where churn v1 is good and v2 weak (it ignores income), both with their
    training data as reference; data files and a suite beside them."""
    rng = np.random.default_rng(0)
    n = 3000
    X = pd.DataFrame({"age": rng.normal(40, 10, n), "income": rng.normal(50, 15, n)})
    X = X.astype("float32")
    y = ((X.age - 40) / 10 + (X.income - 50) / 15 + rng.normal(0, 1, n) > 0).astype(int)
    uri = f"sqlite://{tmp_path / 'registry.db'}?artifacts={tmp_path / 'artifacts'}"
    reg = ph.Registry(uri, actor="ann")
    good = LogisticRegression().fit(X, y)
    weak = LogisticRegression().fit(X.assign(income=0.0), y)
    reg.log_model(good, "churn", input_example=X[:2], training_data=X)
    reg.log_model(weak, "churn", input_example=X[:2], training_data=X)
    reg.set_alias("churn", "champion", 2)
    data = tmp_path / "data"
    data.mkdir()
    X.assign(churned=y).to_csv(data / "test.csv", index=False)
    X.sample(1000, random_state=1).to_parquet(data / "live.parquet")
    spoiled = X.sample(1000, random_state=2).reset_index(drop=True)
    spoiled.loc[:9, "age"] = 500.0  # out of the reference's range
    spoiled.assign(extra=1.0).to_parquet(data / "spoiled.parquet")
    (tmp_path / "train_churn.py").write_text(TRAIN_MODULE)
    return {"dir": tmp_path, "uri": uri, "registry": reg}


def suite(tmp_path: Path, text: str, name: str = "model-checks.toml") -> Path:
    path = tmp_path / name
    path.write_text(textwrap.dedent(text))
    return path


PASSING = """
    name = "model-checks"
    baseline = "champion"

    [data]
    live = "data/live.parquet"
    test = { path = "data/test.csv", target = "churned" }

    [[checks]]
    check = "valid"
    data = "live"

    [[checks]]
    check = "no_drift"
    data = "live"
    max_drift_share = 0.5

    [[checks]]
    check = "better"
    data = "test"
    metric = "roc_auc"
    confidence = 0.95
    resamples = 200

    [[checks]]
    name = "training is deterministic"
    check = "reproducible"
    train = "train_churn:train"
    data = "live"
"""

FAILING = """
    name = "model-checks"

    [data]
    spoiled = "data/spoiled.parquet"
    test = { path = "data/test.csv", target = "churned" }

    [[checks]]
    check = "valid"
    data = "spoiled"

    [[checks]]
    check = "predictions_close"
    data = "test"
    atol = 0.001
    max_flip_rate = 0.01

    [[checks]]
    check = "better"
    data = "test"
    resamples = 200

    [[checks]]
    name = "noisy training"
    check = "reproducible"
    train = "train_churn:train_noisy"
    data = "test"
    runs = 2
"""


def pilothouse(
    setup: dict[str, Any], *args: str, actor: str = "ann"
) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("PILOTHOUSE_")}
    env.update(PILOTHOUSE_HOME=str(setup["dir"] / "home"), PILOTHOUSE_ACTOR=actor)
    return subprocess.run(
        [sys.executable, "-m", "pilothouse.cli", *args, "--registry", setup["uri"]],
        capture_output=True,
        text=True,
        env=env,
        cwd=setup["dir"] / "data",  # paths in a suite are relative to the suite, not here
        timeout=300,
    )


def test_a_passing_suite_exits_0_prints_a_table_writes_junit_and_is_recorded(
    setup: dict[str, Any],
) -> None:
    path = suite(setup["dir"], PASSING)
    junit = setup["dir"] / "report.xml"
    done = pilothouse(
        setup, "check", "churn", "--candidate", "1", "--suite", str(path), "--junit", str(junit)
    )
    assert done.returncode == 0, done.stdout + done.stderr
    lines = done.stdout.splitlines()
    assert lines[0] == "suite model-checks on models:/churn/1 against models:/churn/2: passed"
    assert lines[1].split() == ["CHECK", "KIND", "VERDICT", "SECONDS", "SUMMARY"]
    names = ["valid", "no_drift", "better", "training is deterministic"]
    for name, line in zip(names, lines[2:6]):
        assert line.startswith(name + " ") and " passed " in line, line
    assert "recorded as check 1 on models:/churn/1" in done.stdout

    tree = ET.parse(junit).getroot()
    (testsuite,) = tree.iter("testsuite")
    assert testsuite.get("name") == "pilothouse.model-checks"
    assert (testsuite.get("tests"), testsuite.get("failures"), testsuite.get("errors")) == (
        "4",
        "0",
        "0",
    )
    cases = [c.get("name") for c in testsuite.iter("testcase")]
    assert cases == ["valid", "no_drift", "better", "training is deterministic"]
    props = {p.get("name"): p.get("value") for p in testsuite.iter("property")}
    assert props["pilothouse.candidate"] == "models:/churn/1"
    assert props["pilothouse.baseline"] == "models:/churn/2"
    assert props["pilothouse.record"] == "1"

    reg: ph.Registry = setup["registry"]
    (record,) = reg.checks("churn", 1)
    assert record.passed and record.suite == "model-checks" and record.recorded_by == "ann"
    better = record.results["checks"][2]
    assert better["check"] == "better" and better["rows"][0]["metric"] == "roc_auc"
    assert better["rows"][0]["lower"] > 0 and better["details"]["resamples"] == 200
    assert record.results["suite_sha256"] and record.results["baseline"] == "models:/churn/2"
    event = [e for e in reg.audit_log(model="churn") if e.action == "check.record"][-1]
    assert event.details["passed"] is True and event.details["version"] == 1

    listed = pilothouse(setup, "checks", "churn", "--json")
    assert [c["id"] for c in json.loads(listed.stdout)] == [1]
    table = pilothouse(setup, "checks", "churn").stdout.splitlines()
    assert table[1].split()[:4] == ["1", "1", "model-checks", "passed"]

    # --no-record runs and reports without recording
    again = pilothouse(
        setup, "check", "churn", "--candidate", "1", "--suite", str(path), "--no-record"
    )
    assert again.returncode == 0 and "recorded" not in again.stdout
    assert len(reg.checks("churn")) == 1


def test_a_failing_suite_exits_1_and_names_what_failed(setup: dict[str, Any]) -> None:
    path = suite(setup["dir"], FAILING)
    junit = setup["dir"] / "report.xml"
    done = pilothouse(
        setup,
        "check",
        "churn",
        "--candidate",
        "champion",
        "--baseline",
        "1",
        "--suite",
        str(path),
        "--junit",
        str(junit),
    )
    assert done.returncode == 1, done.stdout + done.stderr
    out = done.stdout
    first = out.splitlines()[0]
    assert first == (
        "suite model-checks on models:/churn/2 against models:/churn/1: FAILED "
        "(valid, predictions_close, better, noisy training)"
    )
    # which columns, which checks, which statistic against which threshold, which rows
    assert "extra" in out and "age" in out and "out_of_range" in out
    assert "flip" in out and "roc_auc" in out
    assert "noisy training: assert_reproducible: training is not reproducible" in out

    testsuite = next(ET.parse(junit).getroot().iter("testsuite"))
    assert (testsuite.get("failures"), testsuite.get("errors")) == ("4", "0")
    failure = next(testsuite.iter("failure"))
    assert "age" in (failure.text or "") and failure.get("message")

    record = setup["registry"].checks("churn", 2)[0]
    assert not record.passed
    assert record.failed == ["valid", "predictions_close", "better", "noisy training"]
    valid = record.results["checks"][0]
    assert {r["column"] for r in valid["rows"]} >= {"age", "extra"}

    # JSON for a pipeline: the same verdicts
    as_json = pilothouse(
        setup,
        "check",
        "churn",
        "--candidate",
        "2",
        "--baseline",
        "1",
        "--suite",
        str(path),
        "--json",
        "--no-record",
    )
    document = json.loads(as_json.stdout)
    assert as_json.returncode == 1 and document["passed"] is False
    assert (document["model"], document["version"]) == ("churn", 2)
    assert [c["passed"] for c in document["checks"]] == [False, False, False, False]


def test_a_check_that_cannot_run_is_an_error_and_the_others_still_run(
    setup: dict[str, Any],
) -> None:
    pd.DataFrame({"height": [1.0, 2.0]}).to_parquet(setup["dir"] / "data" / "wrong.parquet")
    path = suite(
        setup["dir"],
        """
        baseline = 1
        [data]
        wrong = "data/wrong.parquet"
        live = "data/live.parquet"
        [[checks]]
        check = "predictions_close"
        data = "wrong"
        [[checks]]
        check = "valid"
        data = "live"
        """,
        name="smoke.toml",
    )
    junit = setup["dir"] / "smoke.xml"
    done = pilothouse(setup, "check", "churn", "--suite", str(path), "--junit", str(junit))
    assert done.returncode == 1
    rows = done.stdout.splitlines()[2:4]
    assert rows[0].split()[:3] == ["predictions_close", "predictions_close", "error"]
    assert "age" in rows[0]  # the model's missing input is named
    assert rows[1].split()[:3] == ["valid", "valid", "passed"]
    testsuite = next(ET.parse(junit).getroot().iter("testsuite"))
    assert (testsuite.get("failures"), testsuite.get("errors")) == ("0", "1")
    first_case = next(testsuite.iter("testcase"))
    assert [e.tag for e in first_case] == ["error"]
    assert first_case[0].get("type") != "CheckFailed"
    record = setup["registry"].checks("churn", 2)[0]
    assert record.suite == "smoke" and record.failed == ["predictions_close"]
    assert record.results["checks"][0]["error"] is True


@pytest.mark.parametrize(
    ("text", "message"),
    [
        (
            "[[checks]]\ncheck = 'valid'\ndata = 'x'\n[data]\nx = 'train_churn.py'",
            "is not .parquet",
        ),
        ("[[checks]]\ncheck = 'fast'\ndata = 'x'", "check = 'fast' is not one of valid"),
        (
            "[data]\nx = 'data/live.parquet'\n[[checks]]\ncheck = 'valid'\ndata = 'x'\natol = 1",
            "unknown parameter(s) atol; valid takes",
        ),
        ("[[checks]]\ncheck = 'valid'\ndata = 'nope'", 'data = "nope" is not declared'),
        ("checks = [", "is not valid TOML"),
        (
            "[data]\nt = 'data/test.csv'\n[[checks]]\ncheck = 'better'\ndata = 't'",
            "better needs the labels",
        ),
        (
            "[data]\nt = 'data/test.csv'\n[[checks]]\ncheck = 'reproducible'\ndata = 't'",
            'train = "module:function"',
        ),
        ("colour = 'red'", "unknown key(s) colour"),
        (
            "[data]\nx = 'data/gone.parquet'\n[[checks]]\ncheck = 'valid'\ndata = 'x'",
            "is not a file",
        ),
        (
            "[data]\nx = 'data/live.parquet'\n[[checks]]\ncheck = 'valid'\ndata = 'x'\n"
            'name = "a\\u0001b"',
            "without control characters",
        ),
        ("[[checks]]\ncheck = ['valid']\ndata = 'x'", "is not one of valid"),
        ("name = 'bad name!'\n[[checks]]\ncheck = 'valid'", "name = 'bad name!'"),
        ("baseline = true\n[[checks]]\ncheck = 'valid'", "baseline must be an alias"),
        (
            "[data]\nx = 'data/live.parquet'\n[[checks]]\ncheck = 'no_drift'\ndata = 'x'\n"
            "max_drift_share = 'lots'",
            "max_drift_share = 'lots' must be a number",
        ),
        (
            "[data]\nx = 'data/test.csv'\n[[checks]]\ncheck = 'better'\ndata = 'x'\n"
            "resamples = 2.5",
            "must be a whole number",
        ),
        (
            "[data]\nx = 'data/live.parquet'\n[[checks]]\ncheck = 'valid'\ndata = 'x'\n"
            "ignore = 'age'",
            "must be a list of names",
        ),
        (
            "[data]\nx = 'data/live.parquet'\n[[checks]]\ncheck = 'reproducible'\n"
            "data = 'x'\ntrain = ':'",
            'train = "module:function"',
        ),
        (
            "[data]\nx = { path = 'data/test.csv', target = 'churned' }\n[[checks]]\n"
            "check = 'better'\ndata = 'x'\nreference = 'x'",
            "reference goes with valid and no_drift",
        ),
    ],
)
def test_suite_mistakes_are_named_before_any_check_runs(
    setup: dict[str, Any], text: str, message: str
) -> None:
    path = suite(setup["dir"], text, name="bad.toml")
    done = pilothouse(setup, "check", "churn", "--suite", str(path))
    assert done.returncode == 2 and done.stdout == ""
    assert done.stderr.startswith("error: ") and message in done.stderr, done.stderr
    assert "Traceback" not in done.stderr
    assert setup["registry"].checks("churn") == []


def test_a_policy_refuses_approval_until_the_check_passes(setup: dict[str, Any]) -> None:
    reg: ph.Registry = setup["registry"]
    guard = pilothouse(
        setup, "policy", "churn", "champion", "--require-check", "model-checks", actor="lead"
    )
    assert guard.returncode == 0, guard.stderr
    aliases = pilothouse(setup, "aliases", "churn").stdout.splitlines()
    assert aliases[0].split()[:5] == ["ALIAS", "VERSION", "GUARDED", "REQUIRES", "CHECK"]
    assert aliases[1].split()[:4] == ["champion", "2", "yes", "model-checks"]

    asked = pilothouse(setup, "request-promotion", "churn", "champion", "1", "--json")
    request = json.loads(asked.stdout)
    assert request["checks"] == []
    refused = pilothouse(setup, "approve", str(request["id"]), actor="lead")
    assert refused.returncode == 1
    assert "requires a passing check of suite 'model-checks' on version 1" in refused.stderr
    assert "none is recorded" in refused.stderr

    failing = suite(
        setup["dir"],
        FAILING.replace('name = "model-checks"', 'name = "model-checks"\nbaseline = 2'),
    )
    assert (
        pilothouse(setup, "check", "churn", "--candidate", "1", "--suite", str(failing)).returncode
        == 1
    )
    refused = pilothouse(setup, "approve", str(request["id"]), actor="lead")
    assert refused.returncode == 1 and "failed: valid" in refused.stderr

    passing = suite(setup["dir"], PASSING)
    assert (
        pilothouse(setup, "check", "churn", "--candidate", "1", "--suite", str(passing)).returncode
        == 0
    )
    table = pilothouse(setup, "approvals", "--model", "churn").stdout.splitlines()
    assert "model-checks passed" in table[1]
    approved = pilothouse(
        setup, "approve", str(request["id"]), "--reason", "checks pass", actor="lead"
    )
    assert approved.returncode == 0, approved.stderr
    reg.set_alias("churn", "champion", 1)
    assert reg.get_version("models:/churn@champion").version == 1
    decision = [e for e in reg.audit_log(model="churn") if e.action == "approval.approve"][-1]
    assert [c["suite"] for c in decision.details["checks"]] == ["model-checks"]
    assert decision.details["checks"][0]["passed"] is True


def test_a_junit_file_that_cannot_be_written_stops_before_any_check(
    setup: dict[str, Any],
) -> None:
    path = suite(setup["dir"], PASSING)
    done = pilothouse(
        setup, "check", "churn", "--suite", str(path), "--junit", "/nonexistent/dir/r.xml"
    )
    assert done.returncode == 2 and "its folder does not exist" in done.stderr
    assert setup["registry"].checks("churn") == []
