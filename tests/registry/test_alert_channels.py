"""Alert channels against real receivers on 127.0.0.1, on SQLite and on PostgreSQL: a
signed webhook, Slack's incoming-webhook message and PagerDuty's Events API v2 (trigger and
resolve with one dedup key), routing by severity and labels, silenced alerts not sent, a
receiver that is down retried and recorded, and secrets never shown or audited."""

from __future__ import annotations

import hashlib
import hmac
import json
from typing import Any

import pytest
from alert_setup import MINUTE, deployed, window
from postgres import Backend
from receivers import Receiver

import pilothouse as ph


def _bodies(receiver: Receiver) -> list[dict[str, Any]]:
    return [json.loads(body) for _, body in receiver.received]


def test_each_channel_gets_its_own_wire_format(backend: Backend, fast_retries: None) -> None:
    reg = deployed(backend)
    hook, slack, pager, quiet = Receiver(), Receiver(), Receiver(), Receiver()
    try:
        ph.add_channel("pipeline", "webhook", url=hook.url, secret="s3cret", registry=reg)
        ph.add_channel("ml-team", "slack", url=slack.url + "/T0/B0/XXXX", registry=reg)
        ph.add_channel(
            "oncall",
            "pagerduty",
            url=pager.url,
            routing_key="R0UTING",
            severities=["critical"],
            registry=reg,
        )
        # routed by labels: only rules of team "search" go here
        ph.add_channel(
            "search-team",
            "webhook",
            url=quiet.url,
            secret="x",
            labels={"team": "search"},
            registry=reg,
        )
        ph.add_alert_rule(
            "churn",
            "slow",
            "latency_p99_ms > 50",
            severity="critical",
            labels={"team": "risk"},
            registry=reg,
        )
        ph.add_alert_rule(
            "churn",
            "drift",
            "drift_share > 0.3",
            severity="warning",
            actions=["retrain"],
            registry=reg,
        )
        window(reg, 1, latency_p99_ms=80.0, drift_share=0.1)
        window(reg, 2, latency_p99_ms=10.0, drift_share=0.1)
        window(reg, 3, latency_p99_ms=10.0, drift_share=0.5)  # a warning: not for oncall
        assert reg.flush_webhooks(10)

        # the webhook: signed JSON with the alert, as the registry's webhooks are
        events = [h["X-Pilothouse-Event"] for h, _ in hook.received]
        assert events == ["alert.fired", "alert.resolved", "alert.fired", "alert.retrain"]
        # the retraining request: the pipeline learns why and how to fetch labelled traffic
        retrain = _bodies(hook)[3]["data"]
        assert (retrain["deployment"], retrain["rule"]) == ("churn", "drift")
        assert retrain["series"] == {"drift_share": 0.5}
        assert retrain["window_us"] == 3 * MINUTE
        assert retrain["export"]["since_us"] == 3 * MINUTE - 30 * 86_400_000_000
        assert 'ph.monitor("churn").export("retrain.parquet"' in retrain["export"]["python"]
        for headers, body in hook.received:
            expected = "sha256=" + hmac.new(b"s3cret", body, hashlib.sha256).hexdigest()
            assert hmac.compare_digest(headers["X-Pilothouse-Signature"], expected)
        first = _bodies(hook)[0]
        assert first["data"]["alert"]["rule"] == "slow"
        assert first["data"]["alert"]["series"] == {"latency_p99_ms": 80.0}
        assert first["data"]["labels"] == {"team": "risk"}
        assert first["data"]["summary"].startswith("[FIRING critical] churn: slow")

        # Slack: an incoming-webhook message, without our headers
        texts = [b["text"] for b in _bodies(slack)]
        assert texts == [
            "[FIRING critical] churn: slow (latency_p99_ms > 50; latency_p99_ms=80)",
            "[RESOLVED critical] churn: slow (latency_p99_ms > 50; latency_p99_ms=10)",
            "[FIRING warning] churn: drift (drift_share > 0.3; drift_share=0.5000)",
        ]
        assert all("X-Pilothouse-Signature" not in h for h, _ in slack.received)
        assert all(b["blocks"][0]["text"]["text"] == b["text"] for b in _bodies(slack))

        # PagerDuty: trigger then resolve with the same dedup key; the warning not sent
        trigger, resolve = _bodies(pager)
        assert trigger["routing_key"] == "R0UTING" and trigger["event_action"] == "trigger"
        assert resolve == {
            "routing_key": "R0UTING",
            "event_action": "resolve",
            "dedup_key": trigger["dedup_key"],
        }
        assert trigger["payload"]["severity"] == "critical"
        assert trigger["payload"]["source"] == "pilothouse/churn"
        assert trigger["payload"]["group"] == "risk"
        assert trigger["payload"]["custom_details"]["series"] == {"latency_p99_ms": 80.0}

        assert quiet.received == []  # no rule carries team=search
        deliveries = ph.channel_deliveries("ml-team", registry=reg)
        assert [d["ok"] for d in deliveries] == [True, True, True]

        # listed and audited without secrets, and a URL without its path (Slack's token)
        listed = {c["name"]: c for c in ph.channels(registry=reg)}
        assert listed["ml-team"]["destination"] == slack.url.rsplit("/hook", 1)[0]
        assert listed["oncall"]["severities"] == ["critical"]
        audit = json.dumps([e.details for e in reg.audit_log()])
        for secret in ("s3cret", "R0UTING", "XXXX"):
            assert secret not in audit and secret not in json.dumps(listed, default=str)
    finally:
        for r in (hook, slack, pager, quiet):
            r.close()


def test_silenced_alerts_are_not_sent_and_a_receiver_down_is_retried(
    backend: Backend, fast_retries: None
) -> None:
    reg = deployed(backend)
    down = Receiver(status=503)
    up = Receiver()
    try:
        ph.add_channel("flaky", "webhook", url=down.url, secret="k", registry=reg)
        ph.add_channel("team", "slack", url=up.url, registry=reg)
        ph.add_alert_rule("churn", "errors", "error_rate > 0.1", registry=reg)
        ph.silence("churn", rule="errors", for_="1h", reason="maintenance", registry=reg)
        (fired,) = window(reg, 1, error_rate=0.5)
        assert fired["alert"]["silenced"] is True
        window(reg, 2, error_rate=0.0)  # resolved, silently too
        assert reg.flush_webhooks(10)
        assert up.received == [] and down.received == []

        ph.add_alert_rule("churn", "slow", "latency_p99_ms > 50", registry=reg)
        window(reg, 3, latency_p99_ms=90.0)
        assert reg.flush_webhooks(10)
        assert len(up.received) == 1
        assert len(down.received) == 3  # PILOTHOUSE_WEBHOOK_ATTEMPTS=3, then given up
        (failed,) = ph.channel_deliveries("flaky", registry=reg)
        assert not failed["ok"] and failed["attempts"] == 3 and failed["status_code"] == 503
    finally:
        down.close()
        up.close()


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"kind": "email", "url": "http://x"}, "use one of webhook, slack, pagerduty"),
        ({"kind": "slack"}, "a slack channel needs its url"),
        ({"kind": "webhook", "url": "http://127.0.0.1:9/h"}, "needs a secret"),
        ({"kind": "pagerduty", "url": "http://127.0.0.1:9/h"}, "routing key"),
        ({"kind": "slack", "url": "ftp://x"}, "must start with http"),
        ({"kind": "slack", "url": "http://127.0.0.1:9/h", "severities": ["page"]}, "use info"),
    ],
)
def test_bad_channels_are_refused(
    backend: Backend, fast_retries: None, kwargs: dict[str, Any], message: str
) -> None:
    reg = deployed(backend)
    with pytest.raises(ph.ValidationError, match=message):
        ph.add_channel("c", registry=reg, **kwargs)
    assert ph.channels(registry=reg) == []
