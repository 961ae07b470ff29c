"""Two server replicas over one PostgreSQL registry follow the same deployment and alias
moves, and fire each alert once."""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
from postgres import new_database, server
from receivers import Receiver
from servers import infer_json, scale_model, wait_version

import pilothouse as ph


@pytest.fixture(scope="module")
def pg() -> Iterator[tuple[Path, int]]:
    with server() as running:
        yield running


def test_replicas_follow_one_postgres_registry(pg: tuple[Path, int], tmp_path: Path) -> None:
    uri = f"{new_database(*pg)}?artifacts={tmp_path / 'artifacts'}"
    registry = ph.Registry(uri)
    for k in (1.0, 5.0):
        registry.log_model(scale_model(k), "scale", input_example=np.ones((2, 4), np.float32))
    registry.set_alias("scale", "champion", 1)
    ph.deploy("scale", alias="champion", registry=registry)
    replicas = [
        ph.serve(port=0, registry=uri, poll_interval_ms=50, log_dir=str(tmp_path / f"log{i}"))
        for i in range(2)
    ]
    try:
        for srv in replicas:
            wait_version(srv.url, "scale", 1)
        registry.set_alias("scale", "champion", 2)
        for srv in replicas:
            wait_version(srv.url, "scale", 2, timeout=5)
            r = infer_json(srv.url, "scale", {"x": np.ones((1, 4), np.float32)})
            assert r.json()["outputs"][0]["data"] == [5.0] * 4
    finally:
        for srv in replicas:
            srv.stop()
    for i in range(2):
        log = ph.inference_log("scale", since=None, log_dir=tmp_path / f"log{i}")
        assert list(log.version) == [2]


def test_two_replicas_fire_each_alert_once(
    pg: tuple[Path, int], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("PILOTHOUSE_WEBHOOK_ALLOW_PRIVATE", "1")  # the receiver is local
    uri = f"{new_database(*pg)}?artifacts={tmp_path / 'artifacts'}"
    registry = ph.Registry(uri)
    registry.log_model(scale_model(2.0), "scale", input_example=np.ones((2, 4), np.float32))
    ph.deploy("scale", "scale", version=1, monitoring={"window": "1s"}, registry=registry)
    receiver = Receiver()
    ph.add_channel("team", "slack", url=receiver.url, registry=registry)
    ph.add_alert_rule("scale", "traffic", "requests >= 1", registry=registry)
    replicas = [
        ph.serve(port=0, registry=uri, poll_interval_ms=50, log_dir=str(tmp_path / f"log{i}"))
        for i in range(2)
    ]
    try:
        for srv in replicas:
            wait_version(srv.url, "scale", 1)
        for _ in range(5):  # both replicas serve, and both evaluate the windows they store
            for srv in replicas:
                infer_json(srv.url, "scale", {"x": np.ones((1, 4), np.float32)})
        deadline = time.monotonic() + 15
        while not receiver.received and time.monotonic() < deadline:
            time.sleep(0.05)
        time.sleep(3)  # every window of both replicas stored and evaluated by now
    finally:
        for srv in replicas:
            srv.stop()
        receiver.close()
    assert len(receiver.received) == 1, [b for _, b in receiver.received]
    alerts = ph.alerts("scale", registry=registry)
    assert len(alerts) == 1 and alerts.state[0] == "firing"
    fired = [e for e in registry.audit_log(model="scale") if e.action == "alert.fire"]
    assert len(fired) == 1 and fired[0].actor.startswith("pilothouse-server/")
