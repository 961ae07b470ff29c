"""The registry commands print readable tables and, with --json, one JSON document."""

from __future__ import annotations

from typing import Any

from commandline import TIME, Cli, minute, table

import pilothouse as ph


def test_version(cli: Cli) -> None:
    assert cli.ok("--version") == f"pilothouse {ph.__version__}\n"
    assert ph.__version__ and ph.__version__[0].isdigit()


def test_models(cli: Cli, populated: dict[str, Any]) -> None:
    rows = table(cli.ok("models"))
    assert [r["MODEL"] for r in rows] == ["churn", "fraud"]
    churn, fraud = rows
    # three versions, the newest archived: latest is 2
    assert (churn["VERSIONS"], churn["LATEST"], churn["ALIASES"]) == ("3", "2", "champion=1")
    assert (fraud["VERSIONS"], fraud["LATEST"], fraud["ALIASES"]) == ("1", "1", "—")
    assert churn["CREATED BY"] == "ann"
    assert churn["CREATED"] == minute(populated["v1"].created_at)
    document = cli.json("models")
    assert [m["name"] for m in document] == ["churn", "fraud"]
    assert document[0] | {"created_at": None} == {
        "name": "churn",
        "versions": 3,
        "archived": 1,
        "latest_version": 2,
        "aliases": {"champion": 1},
        "description": "",
        "created_at": None,
        "created_by": "ann",
    }
    assert minute(document[0]["created_at"]) == churn["CREATED"]
    # --registry names another registry; an empty one says so
    empty = cli.home.parent / "empty.db"
    assert cli.ok("models", "--registry", f"sqlite://{empty}") == f"no models in sqlite://{empty}\n"
    assert cli.ok("--registry", f"sqlite://{empty}", "models", "--json") == "[]\n"


def test_versions(cli: Cli, populated: dict[str, Any]) -> None:
    rows = table(cli.ok("versions", "churn"))
    assert [(r["VERSION"], r["STATUS"], r["ALIASES"]) for r in rows] == [
        ("3", "archived", "—"),
        ("2", "active", "—"),
        ("1", "active", "champion"),
    ]
    assert rows[2]["METRICS"] == "auc=0.9132, f1=0.84" and rows[1]["METRICS"] == "—"
    assert {r["CREATED BY"] for r in rows} == {"ann"}
    assert all(TIME.fullmatch(r["CREATED"]) for r in rows)
    assert rows[2]["CREATED"] == minute(populated["v1"].created_at)
    document = cli.json("versions", "churn")
    assert [v["version"] for v in document] == [3, 2, 1]
    v1 = document[2]
    assert v1["uri"] == "models:/churn/1" and v1["run_id"] == populated["v1"].run_id
    assert v1["metrics"] == {"auc": 0.9132, "f1": 0.84} and v1["tags"] == {"team": "risk"}
    assert v1["sha256"] == populated["v1"].sha256 and v1["aliases"] == ["champion"]
    assert document[1]["parent"] == "models:/churn/1"
    assert "_registry" not in v1


def test_search(cli: Cli, populated: dict[str, Any]) -> None:
    rows = table(cli.ok("search", "metrics.auc > 0.9"))
    assert [(r["MODEL"], r["VERSION"], r["ALIASES"]) for r in rows] == [("churn", "1", "champion")]
    ordered = cli.json("search", "name = 'churn'", "--order-by", "version desc")
    assert [v["version"] for v in ordered] == [2, 1]  # archived versions need status named
    assert cli.ok("search", "metrics.auc > 0.99") == "no versions match 'metrics.auc > 0.99'\n"
    assert len(cli.json("search", "--limit", "2")) == 2


def test_aliases_requests_and_decisions(cli: Cli, populated: dict[str, Any]) -> None:
    (champion,) = table(cli.ok("aliases", "churn"))
    assert champion == {
        "ALIAS": "champion",
        "VERSION": "1",
        "GUARDED": "yes",
        "REQUIRES CHECK": "—",
        "MOVED": champion["MOVED"],
        "MOVED BY": "ann",
        "APPROVAL": "—",
    }
    assert TIME.fullmatch(champion["MOVED"])
    first = populated["request"].id

    (pending,) = table(cli.ok("approvals", "--pending"))
    assert pending["ID"] == str(first) and pending["STATUS"] == "pending"
    assert (pending["MODEL"], pending["ALIAS"], pending["VERSION"]) == ("churn", "champion", "2")
    assert (pending["REQUESTED BY"], pending["REASON"]) == ("ann", "auc +2 points")
    assert (pending["DECIDED"], pending["DECIDED BY"], pending["CHECKS"]) == ("—", "—", "—")

    # a guarded alias does not move without an approved request
    assert "guarded" in cli.fails("alias", "set", "churn", "champion", "2")
    # the requester cannot approve their own request
    assert "cannot also decide" in cli.fails("approve", str(first))
    said = cli.ok("approve", str(first), "--reason", "reviewed", actor="lead")
    assert said.startswith(f"approved request {first} (churn@champion -> version 2")
    assert "pilothouse alias set churn champion 2" in said
    assert cli.ok("alias", "set", "churn", "champion", "2") == (
        "churn@champion -> version 2 (models:/churn/2)\n"
    )
    (moved,) = cli.json("aliases", "churn")
    assert moved["version"] == 2 and moved["approval_id"] == first and moved["guarded"] is True

    second = cli.json("request-promotion", "churn", "champion", "1", "--reason", "roll back")
    assert second["status"] == "pending" and second["requested_by"] == "ann"
    assert cli.run("reject", str(second["id"]), actor="lead").returncode == 2  # --reason needed
    rejected = cli.json("reject", str(second["id"]), "--reason", "no", actor="lead")
    assert rejected["status"] == "rejected" and rejected["decision_reason"] == "no"

    decided = table(cli.ok("approvals", "--model", "churn"))
    assert [(r["ID"], r["STATUS"], r["DECIDED BY"]) for r in decided] == [
        (str(first), "used", "lead"),  # approved, then used by the alias move
        (str(second["id"]), "rejected", "lead"),
    ]
    assert all(TIME.fullmatch(r["DECIDED"]) for r in decided)
    assert cli.ok("approvals", "--pending") == "no pending promotion requests\n"
    assert cli.json("approvals", "--model", "fraud") == []

    assert cli.ok("alias", "set", "fraud", "staging", "1") == (
        "fraud@staging -> version 1 (models:/fraud/1)\n"
    )
    assert cli.json("alias", "delete", "fraud", "staging") == {
        "model": "fraud",
        "alias": "staging",
        "deleted": True,
    }
    assert cli.ok("aliases", "fraud") == "fraud has no aliases\n"


def test_audit(cli: Cli, populated: dict[str, Any]) -> None:
    events = populated["registry"].audit_log()
    rows = table(cli.ok("audit", "--limit", "3"))
    assert [int(r["SEQ"]) for r in rows] == [e.seq for e in events[-3:]]
    last = rows[-1]
    assert (last["ACTOR"], last["ACTION"], last["MODEL"]) == ("ann", "approval.request", "churn")
    assert "reason=auc +2 points" in last["DETAILS"] and "alias=champion" in last["DETAILS"]
    assert TIME.fullmatch(last["TIME"])
    policy = next(r for r in rows if r["ACTION"] == "policy.set")
    assert policy["ACTOR"] == "lead"
    fraud = cli.json("audit", "--model", "fraud")
    assert [e["action"] for e in fraud] == ["model.create", "version.create"]
    assert {e["model"] for e in fraud} == {"fraud"}
    assert fraud[1]["details"]["sha256"] == populated["fraud"].sha256
    assert len(cli.json("audit")) == len(events)  # 50 by default, fewer here


def test_errors_are_one_line_on_stderr(cli: Cli, populated: dict[str, Any]) -> None:
    assert cli.fails("versions", "nope") == "error: model not found: nope"
    assert cli.fails("aliases", "nope", "--json") == "error: model not found: nope"
    assert cli.fails("lineage", "churn", "9") == "error: version not found: models:/churn/9"
    assert "unexpected character '~'" in cli.fails("search", "bogus ~ 1")
    assert "approval request not found: 99" in cli.fails("approve", "99")
    # a password on the command line: warned about, and never printed back
    done = cli.run(
        "models", "--registry", "postgresql://ann:hunter2@127.0.0.1:1/reg?connect_timeout=2"
    )
    assert done.returncode == 1 and done.stdout == ""
    warning, error = done.stderr.splitlines()
    assert warning.startswith("warning: a password in --registry") and "PGPASSWORD" in warning
    assert error.startswith("error: registry store unavailable at postgresql://ann:***@")
    assert "hunter2" not in done.stderr
    # usage errors are argparse's (status 2)
    assert cli.run("versions").returncode == 2
    assert cli.fails("audit", "verify", "--model", "churn", code=2).endswith("do not apply")
