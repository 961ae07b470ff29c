"""Hostile requests against a real `pilothouse serve`: sizes a client claims never become
allocations, the server stays up, data files are owner-only, and paths never come from names."""

from __future__ import annotations

import json
import stat
from pathlib import Path

import numpy as np
import pytest
import requests
from servers import CliServer, Store, infer_json, log_scale_versions

import pilothouse as ph


@pytest.fixture
def server(store: Store, cli: object) -> CliServer:
    log_scale_versions(store, "scale", (1.0,))
    ph.deploy("scale", version=1, registry=store.registry)
    return cli()  # type: ignore[operator, no-any-return]


def alive(server: CliServer) -> bool:
    r = infer_json(server.url, "scale", {"x": np.ones((1, 4), np.float32)})
    return r.status_code == 200 and server.process.poll() is None


# Each body claims far more elements than it carries; before the fix the first one aborted
# the process ("memory allocation of 140737488355328 bytes failed").
CLAIMS = [
    b'{"inputs":[{"data":[],"name":"x","shape":[17592186044416],"datatype":"FP64"}]}',
    b'{"inputs":[{"name":"x","shape":[17592186044416],"datatype":"FP32","data":[1]}]}',
    b'{"inputs":[{"data":[1,2],"name":"x","shape":[4611686018427387904,4],"datatype":"FP32"}]}',
    b'{"inputs":[{"name":"x","shape":[1048576,1048576],"datatype":"FP32","data":[]}]}',
]


@pytest.mark.parametrize("body", CLAIMS, ids=range(len(CLAIMS)))
def test_claimed_sizes_are_refused_not_allocated(server: CliServer, body: bytes) -> None:
    r = requests.post(f"{server.url}/v2/models/scale/infer", data=body, timeout=10)
    assert r.status_code == 400, r.text
    message = r.json()["error"]
    assert message.startswith("input 'x'") and ("elements" in message or "large" in message)
    assert alive(server)


def test_binary_claims_are_refused(server: CliServer) -> None:
    head = json.dumps(
        {
            "inputs": [
                {
                    "name": "x",
                    "shape": [1 << 44],
                    "datatype": "BYTES",
                    "parameters": {"binary_data_size": 8},
                }
            ]
        }
    ).encode()
    r = requests.post(
        f"{server.url}/v2/models/scale/infer",
        data=head + b"\x01\x00\x00\x00a\x00\x00\x00",
        headers={"Inference-Header-Content-Length": str(len(head))},
        timeout=10,
    )
    assert r.status_code == 400 and "input 'x'" in r.json()["error"], r.text
    assert alive(server)


def test_a_huge_timeout_in_a_spec_is_refused(store: Store) -> None:
    log_scale_versions(store, "scale", (1.0,))
    with pytest.raises(ph.PilothouseError, match="timeout_ms must be between 1 and 3600000"):
        ph.deploy("scale", version=1, timeout_ms=2**63, registry=store.registry)
    with pytest.raises(ph.PilothouseError, match="queue_capacity must be between"):
        ph.deploy("scale", version=1, queue_capacity=2**40, registry=store.registry)


def mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def test_data_files_are_owner_only(store: Store, server: CliServer) -> None:
    for _ in range(3):
        assert alive(server)
    home = store.home
    db = home / "registry.db"
    assert mode(db) == 0o600
    assert mode(home) == 0o700
    for wal in home.glob("registry.db-*"):
        assert mode(wal) == 0o600, wal
    artifacts = list((home / "artifacts").rglob("*.onnx"))
    assert artifacts and all(mode(a) == 0o600 for a in artifacts)
    assert all(mode(d) == 0o700 for d in (home / "artifacts").rglob("*") if d.is_dir())
    server.wait_for(
        lambda: any(store.log_dir.rglob("*.parquet")), timeout=15, what="a payload-log segment"
    )
    assert mode(store.log_dir) == 0o700
    for p in store.log_dir.rglob("*"):
        assert mode(p) == (0o700 if p.is_dir() else 0o600), p


def test_inference_log_names_are_never_paths(store: Store, tmp_path: Path) -> None:
    outside = tmp_path / "outside"
    outside.mkdir()
    for name in ("../outside", "/etc", "a/b", "..", ""):
        with pytest.raises(ph.ValidationError, match="deployment name"):
            ph.inference_log(name, registry=store.registry)
