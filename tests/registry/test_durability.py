"""Webhooks against a real receiver, concurrent writer processes, and writers killed mid-write."""

from __future__ import annotations

import hashlib
import hmac
import json
import os
import random
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest
from postgres import Backend, self_signed
from receivers import Receiver

import models
import pilothouse as ph


def test_private_destinations_are_refused_unless_allowed(
    backend: Backend, monkeypatch: pytest.MonkeyPatch
) -> None:
    registry = backend.open()
    raw, _ = models.logistic_regression()
    registry.log_model(raw, "churn")
    monkeypatch.delenv("PILOTHOUSE_WEBHOOK_ALLOW_PRIVATE", raising=False)
    for url, why in (
        ("http://127.0.0.1:8080/hook", "loopback"),
        ("http://169.254.169.254/latest/meta-data", "link-local"),
        ("http://10.0.0.7/hook", "private"),
        ("http://localhost:9/hook", "loopback"),
        ("http://[::1]:9/hook", "loopback"),
    ):
        with pytest.raises(ph.ValidationError, match=why):
            registry.add_webhook("churn", url, secret="s")
    # Allowed, and then disallowed again before delivery: refused at delivery, not retried.
    monkeypatch.setenv("PILOTHOUSE_WEBHOOK_ALLOW_PRIVATE", "1")
    receiver = Receiver()
    try:
        registry.add_webhook("churn", receiver.url, secret="s", events=["version.created"])
        monkeypatch.delenv("PILOTHOUSE_WEBHOOK_ALLOW_PRIVATE")
        registry.log_model(raw, "churn")
        assert registry.flush_webhooks(10)
        (d,) = registry.webhook_deliveries("churn")
        assert not d["ok"] and d["attempts"] == 1 and "loopback" in d["error"]
        assert receiver.received == []
    finally:
        receiver.close()


def test_redirects_are_not_followed_and_https_is_verified(
    backend: Backend, fast_retries: None, tmp_path: Path
) -> None:
    registry = backend.open()
    raw, _ = models.logistic_regression()
    registry.log_model(raw, "churn")
    target = Receiver()
    redirecting = Receiver(status=307, location=target.url)
    # An HTTPS receiver with a self-signed certificate: the client speaks TLS and refuses it.
    cert, key = self_signed(tmp_path, "receiver", "127.0.0.1")
    secure = Receiver(tls=(cert, key))
    try:
        registry.add_webhook("churn", redirecting.url, secret="s", events=["version.created"])
        registry.add_webhook("churn", secure.url, secret="s", events=["version.created"])
        registry.log_model(raw, "churn")
        assert registry.flush_webhooks(20)
        by_url = {d["webhook_id"]: d for d in registry.webhook_deliveries("churn")}
        redirect, tls = by_url[min(by_url)], by_url[max(by_url)]
        assert not redirect["ok"] and redirect["status_code"] == 307
        assert redirect["attempts"] == 1 and "redirects are not followed" in redirect["error"]
        assert target.received == [] and len(redirecting.received) == 1
        assert not tls["ok"] and tls["status_code"] is None
        assert "certificate" in tls["error"].lower() or "unknownissuer" in tls["error"].lower()
        assert secure.received == []
    finally:
        for r in (target, redirecting, secure):
            r.close()


OUTBOX_WRITER = textwrap.dedent(
    """
    import os, sys
    import pilothouse as ph
    registry = ph.Registry(sys.argv[1], actor="ann")
    data = open(sys.argv[2], "rb").read()
    registry.log_model(data, "churn")
    print("logged", flush=True)
    os._exit(0)  # exits at once: nothing in memory survives
    """
)


def test_queued_deliveries_survive_the_process_that_queued_them(
    backend: Backend, fast_retries: None, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # This process's own sender must not use the retries up while the receiver is down.
    monkeypatch.setenv("PILOTHOUSE_WEBHOOK_BACKOFF_MS", "60000")
    monkeypatch.setenv("PILOTHOUSE_WEBHOOK_ATTEMPTS", "5")
    registry = backend.open()
    raw, _ = models.logistic_regression()
    registry.log_model(raw, "churn")
    receiver = Receiver()
    port = receiver.server.server_port
    url = receiver.url
    receiver.close()  # down while the event happens
    registry.add_webhook("churn", url, secret="s", events=["version.created"])
    model = tmp_path / "m.onnx"
    model.write_bytes(raw)
    # A long first backoff: the writer's thread cannot deliver before the process is gone.
    env = {
        **os.environ,
        "PILOTHOUSE_WEBHOOK_BACKOFF_MS": "60000",
        "PILOTHOUSE_WEBHOOK_ATTEMPTS": "5",
    }
    out = subprocess.run(
        [sys.executable, "-c", OUTBOX_WRITER, backend.uri, str(model)],
        capture_output=True,
        text=True,
        env=env,
        timeout=60,
    )
    assert "logged" in out.stdout, out.stderr
    assert registry.webhook_deliveries("churn") == []
    back = Receiver(port=port)  # the receiver comes back; any process drains the outbox
    try:
        backend.sql("UPDATE outbox SET next_at = 0, claimed_until = 0")
        again = backend.open()
        assert again.flush_webhooks(20)
        (d,) = again.webhook_deliveries("churn")
        assert d["ok"] and d["attempts"] >= 1
        assert len(back.received) == 1
        assert json.loads(back.received[0][1])["event"] == "version.created"
    finally:
        back.close()


def test_webhooks_deliver_signed_events(backend: Backend, fast_retries: None) -> None:
    receiver = Receiver()
    try:
        ann, lead = backend.open("ann"), backend.open("lead")
        raw, _ = models.logistic_regression()
        ann.log_model(raw, "churn")
        hook = ann.add_webhook("churn", receiver.url, secret="s3cret")
        ann.log_model(raw, "churn")
        ann.set_policy("churn", "champion")
        request = ann.request_promotion("churn", "champion", 2)
        lead.approve(request)
        ann.set_alias("churn", "champion", 2)
        ann.log_model(raw, "churn")
        ann.archive_version("churn", 3)
        ann.record_check("churn", 2, "nightly", {"checks": [{"name": "valid", "passed": False}]})
        assert ann.flush_webhooks(10) and lead.flush_webhooks(10)
        events = [h["X-Pilothouse-Event"] for h, _ in receiver.received]
        assert sorted(events) == sorted(
            [
                "version.created",
                "approval.decided",
                "alias.moved",
                "version.created",
                "version.archived",
                "check.recorded",
            ]
        )
        checked = next(
            json.loads(b)
            for h, b in receiver.received
            if h["X-Pilothouse-Event"] == "check.recorded"
        )
        assert checked["data"]["suite"] == "nightly" and checked["data"]["passed"] is False
        for headers, body in receiver.received:
            expected = "sha256=" + hmac.new(b"s3cret", body, hashlib.sha256).hexdigest()
            assert hmac.compare_digest(headers["X-Pilothouse-Signature"], expected)
            payload = json.loads(body)
            assert (
                payload["model"] == "churn"
                and payload["delivery"] == headers["X-Pilothouse-Delivery"]
            )
        moved = next(
            json.loads(b) for h, b in receiver.received if h["X-Pilothouse-Event"] == "alias.moved"
        )
        assert moved["data"]["alias"] == "champion" and moved["data"]["version"]["version"] == 2
        deliveries = ann.webhook_deliveries("churn")
        assert len(deliveries) == 6 and all(
            d["ok"] and d["attempts"] == 1 and d["webhook_id"] == hook for d in deliveries
        )
    finally:
        receiver.close()


def test_a_dead_receiver_gets_retries_and_never_fails_the_call(
    backend: Backend, fast_retries: None
) -> None:
    registry = backend.open()
    raw, _ = models.logistic_regression()
    registry.log_model(raw, "churn")
    failing = Receiver(status=503)
    try:
        dead_url = "http://127.0.0.1:9/nobody-listens"
        registry.add_webhook("churn", dead_url, secret="x", events=["version.created"])
        registry.add_webhook("churn", failing.url, secret="y", events=["version.created"])
        started = time.perf_counter()
        version = registry.log_model(raw, "churn")
        elapsed = time.perf_counter() - started
        assert version.version == 2
        assert elapsed < 2.0, "the registry call waited for the receivers"
        assert registry.flush_webhooks(20)
        deliveries = registry.webhook_deliveries("churn")
        assert len(deliveries) == 2
        assert all(not d["ok"] and d["attempts"] == 3 for d in deliveries)
        assert {d["status_code"] for d in deliveries} == {None, 503}
        assert len(failing.received) == 3
    finally:
        failing.close()
    with pytest.raises(ph.ValidationError, match="webhook event"):
        registry.add_webhook("churn", "http://127.0.0.1:1/", "s", events=["version.exploded"])
    with pytest.raises(ph.ValidationError, match="webhook URL"):
        registry.add_webhook("churn", "ftp://x", "s")


WRITER = textwrap.dedent(
    """
    import sys
    import pilothouse as ph
    uri, path, count = sys.argv[1], sys.argv[2], int(sys.argv[3])
    registry = ph.Registry(uri, actor=sys.argv[4])
    data = open(path, "rb").read()
    for i in range(count):
        registry.log_model(data, "shared", tags={"writer": sys.argv[4], "i": i})
    print("done", flush=True)
    """
)


def test_four_processes_log_versions_of_one_model(backend: Backend, tmp_path: Path) -> None:
    raw, _ = models.logistic_regression()
    path = tmp_path / "m.onnx"
    path.write_bytes(raw)
    writers = [
        subprocess.Popen(
            [sys.executable, "-c", WRITER, backend.uri, str(path), "15", f"w{i}"],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for i in range(4)
    ]
    for w in writers:
        _, err = w.communicate(timeout=240)
        assert w.returncode == 0, err
    registry = backend.open()
    versions = registry.search_versions("name = 'shared'", order_by="version asc", limit=1000)
    assert [v.version for v in versions] == list(range(1, 61))
    per_writer = {
        f"w{i}": sorted(int(v.tags["i"]) for v in versions if v.tags["writer"] == f"w{i}")
        for i in range(4)
    }
    assert all(seen == list(range(15)) for seen in per_writer.values())
    assert registry.verify_audit_log() == 61


def test_writers_killed_mid_log_model_leave_a_consistent_registry(
    backend: Backend, tmp_path: Path
) -> None:
    raw, _ = models.logistic_regression()
    # a bigger artifact makes kills land during the artifact write too
    big = models.random_forest(n_estimators=60)[0]
    paths = []
    for name, data in (("small.onnx", raw), ("big.onnx", big)):
        (tmp_path / name).write_bytes(data)
        paths.append(tmp_path / name)
    rng = random.Random(7)
    for round_ in range(20):
        path = paths[round_ % 2]
        writer = subprocess.Popen(
            [sys.executable, "-c", WRITER, backend.uri, str(path), "100000", f"k{round_}"],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        time.sleep(rng.uniform(0.6, 1.2))  # past import, into the write loop
        os.kill(writer.pid, signal.SIGKILL)
        writer.wait(timeout=30)
        assert writer.returncode == -signal.SIGKILL
    registry = backend.open()
    versions = registry.search_versions("name = 'shared'", order_by="version asc", limit=100_000)
    assert versions, "no writer got to commit anything"
    assert [v.version for v in versions] == list(range(1, len(versions) + 1))
    for v in versions:
        model = registry.load_model(v.uri)  # every committed version loads, hash verified
        assert model.inputs
    assert registry.verify_audit_log() == len(versions) + 1
    # nothing half-written is visible: only complete, hash-named artifacts, no temp files
    stored = list(Path(registry.artifact_root, "sha256").rglob("*.onnx"))
    assert all(p.name == f"{hashlib.sha256(p.read_bytes()).hexdigest()}.onnx" for p in stored)


def test_a_full_disk_is_a_clear_error_and_loses_nothing(tmp_path: Path) -> None:
    assert os.geteuid() == 0, "mounting a small tmpfs to fill needs root (CI runs as root)"
    small = tmp_path / "small"
    small.mkdir()
    subprocess.run(["mount", "-t", "tmpfs", "-o", "size=512k", "tmpfs", str(small)], check=True)
    try:
        uri = f"sqlite://{small / 'registry.db'}"
        registry = ph.Registry(uri, actor="ann")
        stored = []
        with pytest.raises((ph.StoreUnavailableError, OSError)) as info:
            for i in range(500):
                stored.append(
                    registry.log_model(models.mlp(inputs=20, hidden=30 + i)[0], "big").version
                )
        assert "disk is full" in str(info.value), info.value
        assert stored, "the disk filled before anything was stored"
        reopened = ph.Registry(uri, actor="ann")
        versions = reopened.search_versions("name = 'big'", order_by="version asc", limit=1000)
        assert [v.version for v in versions] == stored
        for v in versions:
            assert reopened.load_model(v.uri).inputs[0].name == "x"
        assert reopened.verify_audit_log() == len(stored) + 1
    finally:
        subprocess.run(["umount", "--lazy", str(small)], check=True)  # files may still be open
