"""`pilothouse alerts`: alerts, rules and channels as tables and JSON, a silence and an
acknowledgement, against a registry where a rule fired."""

from __future__ import annotations

from typing import Any

from commandline import Cli, table

import pilothouse as ph
from pilothouse import _core


def test_alerts_rules_channels_silence_and_ack(cli: Cli, populated: dict[str, Any]) -> None:
    reg = cli.registry("ann")
    ph.deploy("churn", "churn", version=1, registry=reg)
    ph.add_alert_rule(
        "churn", "slow", "latency_p99_ms > 50", for_windows=2, severity="critical", registry=reg
    )
    assert cli.ok("alerts", "list") == "no alerts\n"
    for minute in (1, 2):
        _core.evaluate_alerts(
            reg._core, "ann", "churn", minute * 60_000_000, {"latency_p99_ms": 80.0}
        )

    (row,) = table(cli.ok("alerts", "list", "churn", "--state", "firing"))
    assert (row["RULE"], row["SEVERITY"], row["STATE"], row["FIRED"]) == (
        "slow",
        "critical",
        "firing",
        "1970-01-01 00:02",
    )
    (rule,) = table(cli.ok("alerts", "rules", "churn"))
    assert (rule["WHEN"], rule["FOR"], rule["STATE"]) == ("latency_p99_ms > 50", "2", "firing")
    assert cli.ok("alerts", "channels") == "no channels\n"

    said = cli.ok("alerts", "ack", row["ID"], actor="lead")
    assert said == f"acknowledged alert {row['ID']} (churn: slow)\n"
    assert "acknowledged already, by lead" in cli.fails("alerts", "ack", row["ID"])
    (acked,) = cli.json("alerts", "list", "churn")
    assert acked["acked_by"] == "lead" and acked["series"] == {"latency_p99_ms": 80.0}

    said = cli.ok(
        "alerts", "silence", "churn", "--rule", "slow", "--for", "2h", "--reason", "load test"
    )
    assert said.startswith("silenced rule slow of churn until ")
    assert [s["reason"] for s in ph.silences("churn", registry=reg)] == ["load test"]
    assert "give a reason" in cli.fails("alerts", "silence", "churn", "--reason", " ")
    assert "deployment not found" in cli.fails("alerts", "silence", "nope", "--reason", "x")
    assert cli.run("alerts", "silence", "churn").returncode == 2  # --reason is required
