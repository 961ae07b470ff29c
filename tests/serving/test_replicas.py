"""Two server replicas over one PostgreSQL registry follow the same deployment and alias moves."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
from postgres import new_database, server
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
