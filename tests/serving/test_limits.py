"""Memory is bounded by bytes, not counts: connection limit, header and body read timeouts,
the in-flight byte budget (503 + Retry-After), and the payload log's byte budget with its two
overflow policies, against a real disk that fills up (a small tmpfs)."""

from __future__ import annotations

import concurrent.futures as cf
import json
import socket
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
import requests
from servers import CliServer, Store, infer_json, log_scale_versions, models

import pilothouse as ph


def address(server: CliServer) -> tuple[str, int]:
    host, port = server.url.removeprefix("http://").split(":")
    return host, int(port)


def test_slow_clients_cannot_hold_the_server(store: Store, cli: object) -> None:
    log_scale_versions(store, "scale", (1.0,))
    ph.deploy("scale", version=1, registry=store.registry)
    server: CliServer = cli(  # type: ignore[operator]
        "--max-connections",
        "4",
        "--header-read-timeout-ms",
        "500",
        "--body-read-timeout-ms",
        "500",
    )
    # Four connections taken by clients that never finish: two stop inside the headers,
    # two inside a body they claimed to be 1 MB.
    stalled = []
    for payload in (
        b"POST /v2/models/scale/infer HTTP/1.1\r\nHost: x\r\n",
        b"POST /v2/models/scale/infer HTTP/1.1\r\nHost: x\r\n",
        b"POST /v2/models/scale/infer HTTP/1.1\r\nHost: x\r\nContent-Length: 1000000\r\n\r\n{",
        b"POST /v2/models/scale/infer HTTP/1.1\r\nHost: x\r\nContent-Length: 1000000\r\n\r\n{",
    ):
        s = socket.create_connection(address(server))
        s.sendall(payload)
        stalled.append(s)
    started = time.monotonic()
    # A fifth client waits for a slot, and gets one once the timeouts free them.
    r = infer_json(server.url, "scale", {"x": np.ones((1, 4), np.float32)})
    waited = time.monotonic() - started
    assert r.status_code == 200
    assert 0.3 < waited < 5, waited
    answers = []
    for s in stalled:
        s.settimeout(5)
        try:
            answers.append(s.recv(4096))
        except OSError:
            answers.append(b"")
        s.close()
    # The body-timeout clients are told why; the header-timeout ones are cut off.
    assert sum(b"408" in a.split(b"\r\n")[0] for a in answers) == 2, answers
    assert any(b"body_read_timeout_ms" in a for a in answers), answers


def test_the_in_flight_byte_budget_answers_503(store: Store, cli: object) -> None:
    data, X = models.random_forest(n_estimators=100)
    store.registry.log_model(data, "slow", input_example=X[:2])
    ph.deploy("slow", version=1, max_batch_size=1, registry=store.registry)
    big = np.repeat(X, 40, axis=0)[:3000]
    one = len(str(big.ravel().tolist())) + 200  # about one body's bytes
    # Room for two bodies at once, not three.
    server: CliServer = cli(  # type: ignore[operator]
        "--inference-threads",
        "1",
        "--max-body-bytes",
        str(one + 10_000),
        "--max-inflight-bytes",
        str(int(2.5 * one)),
    )

    def send(_: int) -> requests.Response:
        return infer_json(server.url, "slow", {"X": big})

    with cf.ThreadPoolExecutor(8) as pool:
        answers = list(pool.map(send, range(16)))
    codes = [a.status_code for a in answers]
    assert set(codes) <= {200, 503}, codes
    assert codes.count(200) >= 2 and codes.count(503) >= 1, codes
    busy = next(a for a in answers if a.status_code == 503)
    assert busy.headers["retry-after"] == "1"
    assert "max_inflight_bytes" in busy.json()["error"]
    # Once the burst is over, the budget is whole again.
    assert send(0).status_code == 200


@pytest.fixture
def small_disk(tmp_path: Path) -> Iterator[Path]:
    """A 1 MiB file system for the payload log (root mounts a tmpfs; CI runs as root)."""
    mount = tmp_path / "small-disk"
    mount.mkdir()
    subprocess.run(["mount", "-t", "tmpfs", "-o", "size=1m", "tmpfs", str(mount)], check=True)
    try:
        yield mount
    finally:
        subprocess.run(["umount", "-l", str(mount)], check=False)


def grow(disk: Path) -> None:
    subprocess.run(["mount", "-o", "remount,size=256m", str(disk)], check=True)


def fill_until_refused(server: CliServer, attempts: int) -> list[requests.Response]:
    # Random inputs compress badly: each answered request puts ~100 kB in the log.
    rng = np.random.default_rng(0)
    answers = []
    for _ in range(attempts):
        x = rng.normal(size=(2000, 4)).astype(np.float32)
        answers.append(infer_json(server.url, "scale", {"x": x}))
    return answers


def logging_to(store: Store, cli: object, disk: Path, *flags: str) -> CliServer:
    """The scale model served with its payload log on `disk` and a 1 MiB log budget."""
    log_scale_versions(store, "scale", (1.0,))
    ph.deploy("scale", version=1, registry=store.registry)
    return cli(  # type: ignore[operator, no-any-return]
        "--log-dir",
        str(disk),
        "--flush-interval-ms",
        "50",
        "--log-buffer-bytes",
        "1048576",
        *flags,
    )


# small_disk comes first so that it is torn down last, after the server stopped.
def test_a_full_disk_blocks_admission_and_loses_no_answered_request(
    small_disk: Path, store: Store, cli: object
) -> None:
    server = logging_to(store, cli, small_disk)
    answers = fill_until_refused(server, 120)
    codes = [a.status_code for a in answers]
    assert set(codes) <= {200, 503}, codes
    assert 503 in codes, "the log never pushed back though the disk is full"
    refused = next(a for a in answers if a.status_code == 503)
    assert "payload log is behind" in refused.json()["error"]
    assert refused.headers["retry-after"] == "1"
    assert server.metric("pilothouse_payload_log_errors_total") >= 1
    assert server.metric("pilothouse_payload_log_dropped_total") == 0
    answered = {a.headers["x-request-id"] for a in answers if a.status_code == 200}
    grow(small_disk)  # space again: every answered request reaches the log
    server.wait_for(
        lambda: server.metric("pilothouse_payload_log_buffered_bytes") == 0,
        timeout=20,
        what="the kept records to be written",
    )
    logged = ph.inference_log("scale", since=None, log_dir=small_disk)
    assert answered <= set(logged.request_id)
    assert infer_json(server.url, "scale", {"x": np.ones((1, 4), np.float32)}).status_code == 200


def test_the_drop_policy_answers_and_counts_what_it_drops(
    small_disk: Path, store: Store, cli: object
) -> None:
    server = logging_to(store, cli, small_disk, "--log-overflow", "drop")
    answers = fill_until_refused(server, 120)
    assert {a.status_code for a in answers} == {200}
    server.wait_for(
        lambda: server.metric("pilothouse_payload_log_dropped_total") >= 1,
        what="dropped records to be counted",
    )
    assert any("records are being dropped" in line for line in server.lines)
    grow(small_disk)
    server.wait_for(
        lambda: server.metric("pilothouse_payload_log_buffered_bytes") == 0,
        timeout=20,
        what="the kept records to be written",
    )
    dropped = server.metric("pilothouse_payload_log_dropped_total")
    logged = ph.inference_log("scale", since=None, log_dir=small_disk)
    assert len(logged) + dropped == len(answers)


def test_a_client_that_never_reads_its_answer_is_cut_off(store: Store, cli: object) -> None:
    log_scale_versions(store, "scale", (1.0,))
    ph.deploy("scale", version=1, registry=store.registry)
    server: CliServer = cli(  # type: ignore[operator]
        "--max-connections",
        "1",
        "--write-timeout-ms",
        "500",
        "--max-body-bytes",
        "16777216",
    )
    # An answer of several MB to a client with a tiny receive buffer that reads nothing: the
    # server's writes block, and the only connection slot is held until the timeout.
    rows = 200_000
    body = json.dumps(
        {
            "inputs": [
                {"name": "x", "shape": [rows, 4], "datatype": "FP32", "data": [1.5] * (rows * 4)}
            ]
        }
    ).encode()
    s = socket.socket()
    s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    s.connect(address(server))
    s.sendall(
        b"POST /v2/models/scale/infer HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
        + f"Content-Length: {len(body)}\r\n\r\n".encode()
        + body
    )
    time.sleep(0.3)
    started = time.monotonic()
    r = infer_json(server.url, "scale", {"x": np.ones((1, 4), np.float32)})
    waited = time.monotonic() - started
    assert r.status_code == 200
    assert waited < 10, waited  # served once the stalled client was cut off
    s.close()
