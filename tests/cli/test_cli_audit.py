"""`pilothouse audit verify` passes on an intact log and fails, status 1, on a tampered one."""

from __future__ import annotations

import json
import sqlite3
from typing import Any

import pytest
from commandline import Cli


def _sql(cli: Cli, statement: str) -> None:
    """Edit the store directly, as someone with access to the database file could."""
    with sqlite3.connect(cli.home / "registry.db") as conn:
        conn.executescript(statement)


@pytest.mark.parametrize(
    "tamper",
    [
        "UPDATE audit SET actor = 'mallory' WHERE seq = 4;",
        "DELETE FROM audit WHERE seq = 4;",
        "UPDATE audit SET details = '{\"version\": 99}' WHERE seq = 4;",
    ],
    ids=["edit", "delete", "details"],
)
def test_verify_fails_after_tampering(cli: Cli, populated: dict[str, Any], tamper: str) -> None:
    count = len(populated["registry"].audit_log())
    assert cli.ok("audit", "verify") == f"audit log intact: {count} events, hash chain verified\n"
    assert cli.json("audit", "verify") == {"ok": True, "events": count, "error": None}
    _sql(cli, tamper)

    done = cli.run("audit", "verify")
    assert done.returncode == 1 and done.stdout == ""
    assert done.stderr.count("\n") == 1 and "Traceback" not in done.stderr
    assert done.stderr.startswith("error: the audit log does not verify: ")
    assert "audit log broken at event" in done.stderr

    as_json = cli.run("audit", "verify", "--json")
    assert as_json.returncode == 1
    assert as_json.stderr == done.stderr
    document = json.loads(as_json.stdout)
    assert document["ok"] is False and document["events"] is None
    assert "audit log broken at event" in document["error"]


def test_an_anchor_catches_deleted_newest_events(cli: Cli, populated: dict[str, Any]) -> None:
    anchor = cli.ok("audit", "head").strip()
    seq, _, digest = anchor.partition(":")
    head = populated["registry"].audit_head()
    assert (int(seq), digest) == (head.seq, head.hash)
    assert cli.json("audit", "head")["anchor"] == anchor
    assert cli.ok("audit", "verify", "--anchor", anchor) == (
        f"audit log intact: {head.seq} events, hash chain verified, anchor {seq} matches\n"
    )
    _sql(cli, f"DELETE FROM audit WHERE seq >= {head.seq - 1};")
    # what is left still chains, so only the anchor shows the loss
    assert cli.ok("audit", "verify").startswith(f"audit log intact: {head.seq - 2} events")
    error = cli.fails("audit", "verify", "--anchor", anchor)
    assert f"truncated: the anchor names event {head.seq}" in error
    assert "not 'seq:hash'" in cli.fails("audit", "verify", "--anchor", "four")
    assert cli.fails("audit", "--anchor", anchor, code=2) == (
        "error: --anchor goes with `pilothouse audit verify`"
    )
