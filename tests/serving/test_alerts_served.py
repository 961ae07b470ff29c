"""Alert rules over a real server's monitored traffic: drift injected into real HTTP
requests fires the rule that watches drift and not the one gated on errors, recovery
resolves it, and evaluating the same windows again (as another replica would) fires
nothing twice."""

from __future__ import annotations

import time
from typing import Any

import numpy as np
from servers import CliServer, Store
from test_monitoring import _frame, _next_second, _send, _served

import pilothouse as ph


def test_drift_in_served_traffic_fires_and_recovery_resolves(store: Store, cli: Any) -> None:
    frame = _frame()
    _served(store, frame)
    ph.deploy("churn", "churn", version=1, monitoring={"window": "1s"}, registry=store.registry)
    reg = store.registry
    ph.add_alert_rule(
        "churn",
        "inputs drifting",
        "drift_share > 0.3",
        resolve_when="drift_share < 0.2",
        registry=reg,
    )
    ph.add_alert_rule(
        "churn",
        "drift with errors",
        "drift_share > 0.3",
        only_if="error_rate > 0.5",
        severity="critical",
        registry=reg,
    )
    ph.add_alert_rule("churn", "no traffic rule", "latency_p99_ms > 60000", registry=reg)
    server: CliServer = cli()
    start = _next_second()
    _send(server, frame)  # like the reference
    shift = _next_second()
    shifted = frame.copy()
    for f in ("a", "b", "c"):
        shifted[f] = shifted[f] + np.float32(3.0)
    _send(server, shifted)
    recovery = _next_second()
    _send(server, frame)
    time.sleep(1.3)  # the last window closes and is stored
    server.wait_for(
        lambda: len(ph.monitor("churn", registry=reg).health(since=start, window="1s")) >= 3,
        timeout=10,
        what="three stored windows",
    )
    time.sleep(1.1)

    changes = ph.evaluate_alerts("churn", since=start, window="1s", registry=reg)
    fired = [c for c in changes if c["transition"] == "fired"]
    resolved = [c for c in changes if c["transition"] == "resolved"]
    assert [c["rule"] for c in fired] == ["inputs drifting"], changes
    assert [c["rule"] for c in resolved] == ["inputs drifting"], changes
    assert fired[0]["window_start"] >= shift and resolved[0]["window_start"] >= recovery
    assert fired[0]["alert"]["series"]["drift_share"] > 0.3
    # again, as a second replica evaluating the same windows would: nothing new
    assert ph.evaluate_alerts("churn", since=start, window="1s", registry=reg) == []
    table = ph.alerts("churn", registry=reg)
    assert list(table.rule) == ["inputs drifting"] and list(table.state) == ["resolved"]
    from pilothouse.alerts import window_series

    read = window_series("churn", since=start, window="1s", registry=reg)
    assert len(read) >= 3
    for values in read.values():
        assert {"requests", "error_rate", "latency_p99_ms", "drift_share"} <= set(values)
        assert values["error_rate"] == 0.0 and values["requests"] > 0
    # each column's drift statistic is a series too: the shifted columns moved, d did not
    after = [v for w, v in read.items() if w >= shift.timestamp() * 1e6]
    assert max(v["drift.a.statistic"] for v in after) > 1.0
    assert max(v["drift.d.statistic"] for v in after) < 0.5
