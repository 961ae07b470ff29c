"""Alerts: rules on a deployment's monitored series, evaluated window by window, and the
alerts they fire and resolve, with silences and acknowledgements.

This module owns :func:`add_alert_rule`, :func:`alert_rules`, :func:`delete_alert_rule`,
:func:`alerts`, :func:`silence`, :func:`silences`, :func:`ack` and :func:`evaluate_alerts`,
the channels alerts go to (:func:`add_channel`, :func:`channels`, :func:`delete_channel`,
:func:`channel_deliveries`: a signed webhook, Slack, PagerDuty),
and the names of the series a rule may read (:func:`window_series`: one window's numbers,
from the monitoring the servers store). A rule's condition compares series with numbers or
with each other (``drift_share > 0.3``, ``estimated.roc_auc < realized.roc_auc``);
the monitor crate parses it and steps the rule's state; the registry keeps the state, the
alerts and the audit trail, and records each window's outcome once however many replicas
evaluate it.

Series of a window: ``requests``, ``errors``, ``error_rate``, ``throughput``,
``latency_p50_ms``, ``latency_p90_ms``, ``latency_p99_ms``, ``queue_p99_ms``,
``rss_bytes``, ``drift_share``, ``drift.<column>.statistic``, ``drift.<column>.p_value``,
``quality_failure_rate``, ``quality.<column>.<check>_rate``, and where labels or a
reference with labels exist ``realized.<metric>``, ``estimated.<metric>`` (with
``.lower`` and ``.upper``, and ``.alert``: 1 when the metric left the band the reference
period implies, else 0) and ``label_coverage``. Quote a column name with spaces in
backticks: ``drift.`monthly charges`.p_value``.
"""

from __future__ import annotations

import datetime as dt
import math
from collections import defaultdict
from collections.abc import Mapping, Sequence
from typing import Any

from pilothouse import _core
from pilothouse.errors import NotFoundError, ValidationError
from pilothouse.records import delivery_dict
from pilothouse.registry import Registry
from pilothouse.serving import _registry, _since, seconds_of

__all__ = [
    "ack",
    "add_alert_rule",
    "add_channel",
    "alert_rules",
    "alerts",
    "channel_deliveries",
    "channels",
    "delete_alert_rule",
    "delete_channel",
    "evaluate_alerts",
    "silence",
    "silences",
    "window_series",
]


def _time(us: Any) -> dt.datetime | None:
    if us is None:
        return None
    return dt.datetime.fromtimestamp(int(us) / 1e6, tz=dt.timezone.utc)


def add_alert_rule(
    deployment: str,
    name: str,
    when: str,
    *,
    for_windows: int = 1,
    resolve_when: str | None = None,
    only_if: str | None = None,
    severity: str = "warning",
    labels: Mapping[str, str] | None = None,
    actions: Sequence[str] = (),
    registry: Registry | str | None = None,
) -> dict[str, Any]:
    """Adds a rule to a deployment (or replaces the rule of that name, whose state starts
    over): it fires when ``when`` (gated by ``only_if``) holds for ``for_windows`` windows
    in a row, and resolves when ``resolve_when`` holds (without one, when ``when`` stops
    holding). ``severity`` is info, warning or critical; ``labels`` (team, ...) route it;
    ``actions`` may ask for ``retrain`` or ``rollback``."""
    if isinstance(actions, str):
        actions = [actions]
    reg = _registry(registry)
    rule: dict[str, Any] = _core.add_alert_rule(
        reg._core,
        reg.actor,
        deployment,
        name,
        when,
        int(for_windows),
        resolve_when,
        only_if,
        severity,
        dict(labels or {}),
        list(actions),
    )
    return _rule(rule)


def _rule(r: dict[str, Any]) -> dict[str, Any]:
    r = dict(r)
    r["created_at"] = _time(r.get("created_at"))
    r["window_start"] = _time(r.pop("window_us", 0) or None)
    return r


def alert_rules(deployment: str | None = None, *, registry: Registry | str | None = None) -> Any:
    """The rules of a deployment (of every deployment with None) and where each stands, as
    a pandas table."""
    import pandas as pd

    rules = [_rule(r) for r in _core.alert_rules(_registry(registry)._core, deployment)]
    columns = [
        "deployment",
        "name",
        "when",
        "for_windows",
        "resolve_when",
        "only_if",
        "severity",
        "labels",
        "actions",
        "state",
        "held",
        "window_start",
        "created_at",
        "created_by",
    ]
    return pd.DataFrame(rules, columns=columns)


def delete_alert_rule(
    deployment: str, name: str, *, registry: Registry | str | None = None
) -> None:
    """Removes a rule; an alert it left firing is resolved with it."""
    reg = _registry(registry)
    _core.delete_alert_rule(reg._core, reg.actor, deployment, name)


def _alert(a: dict[str, Any]) -> dict[str, Any]:
    a = dict(a)
    for key in ("fired_at", "resolved_at", "acked_at"):
        a[key] = _time(a.get(key))
    a["fired_window"] = _time(a.pop("fired_window_us", None))
    a["resolved_window"] = _time(a.pop("resolved_window_us", None))
    return a


def alerts(
    deployment: str | None = None,
    *,
    state: str | None = None,
    limit: int = 1000,
    registry: Registry | str | None = None,
) -> Any:
    """Alerts, newest first, as a pandas table: ``state="firing"`` keeps the open ones."""
    import pandas as pd

    found = _core.alerts(_registry(registry)._core, deployment, state, int(limit))
    columns = [
        "id",
        "deployment",
        "rule",
        "severity",
        "state",
        "fired_at",
        "fired_window",
        "resolved_at",
        "resolved_window",
        "series",
        "silenced",
        "acked_by",
        "acked_at",
    ]
    return pd.DataFrame([_alert(a) for a in found], columns=columns)


def ack(alert_id: int, *, registry: Registry | str | None = None) -> dict[str, Any]:
    """Acknowledges an alert (someone is on it)."""
    reg = _registry(registry)
    return _alert(_core.ack_alert(reg._core, reg.actor, int(alert_id)))


def silence(
    deployment: str,
    *,
    reason: str,
    rule: str | None = None,
    for_: str | float | dt.timedelta = "1h",
    registry: Registry | str | None = None,
) -> dict[str, Any]:
    """Silences a deployment's alerts (of one ``rule``, or all) for a while: they are still
    recorded, marked silenced, and not sent."""
    reg = _registry(registry)
    seconds = seconds_of(for_, "for_")
    until = dt.datetime.now(dt.timezone.utc) + dt.timedelta(seconds=seconds)
    made: dict[str, Any] = _core.silence(
        reg._core, reg.actor, deployment, rule, int(until.timestamp() * 1e6), reason
    )
    made["until"] = _time(made.pop("until_us"))
    made["created_at"] = _time(made.get("created_at"))
    return made


def silences(
    deployment: str | None = None, *, registry: Registry | str | None = None
) -> list[dict[str, Any]]:
    """The silences in force."""
    found = _core.silences(_registry(registry)._core, deployment)
    for s in found:
        s["until"] = _time(s.pop("until_us"))
        s["created_at"] = _time(s.get("created_at"))
    return list(found)


def add_channel(
    name: str,
    kind: str,
    *,
    url: str | None = None,
    secret: str | None = None,
    routing_key: str | None = None,
    severities: Sequence[str] = (),
    labels: Mapping[str, str] | None = None,
    registry: Registry | str | None = None,
) -> dict[str, Any]:
    """Adds (or replaces, by name) a channel that fired and resolved alerts go to:
    ``kind="webhook"`` (JSON signed with ``secret``, HMAC-SHA256 in
    ``X-Pilothouse-Signature``, as the registry's webhooks), ``"slack"`` (an incoming
    webhook ``url``) or ``"pagerduty"`` (the Events API v2 with a service's
    ``routing_key``: trigger on fire, resolve on resolve, one dedup key per alert).
    ``severities`` (default all) and ``labels`` (each must be on the rule) route alerts to
    it. Deliveries go through the registry's durable outbox, retried with backoff; a
    silenced alert is not sent. The secret is stored, never shown or audited."""
    if kind == "pagerduty":
        if secret is not None:
            raise ValidationError("a pagerduty channel takes routing_key=, not secret=")
        key = routing_key or ""
    else:
        if routing_key is not None:
            raise ValidationError("routing_key= goes with kind='pagerduty'")
        key = secret or ""
    if isinstance(severities, str):
        severities = [severities]
    reg = _registry(registry)
    made: dict[str, Any] = _core.add_channel(
        reg._core, reg.actor, name, kind, url, key, list(severities), dict(labels or {})
    )
    made["created_at"] = _time(made.get("created_at"))
    return made


def channels(*, registry: Registry | str | None = None) -> list[dict[str, Any]]:
    """The channels, without their secrets (a URL shows its scheme and host only)."""
    found = _core.channels(_registry(registry)._core)
    for c in found:
        c["created_at"] = _time(c.get("created_at"))
    return list(found)


def delete_channel(name: str, *, registry: Registry | str | None = None) -> None:
    reg = _registry(registry)
    _core.delete_channel(reg._core, reg.actor, name)


def channel_deliveries(
    name: str, *, registry: Registry | str | None = None
) -> list[dict[str, Any]]:
    """What was delivered to a channel, or finally failed, oldest first (``ok``,
    ``attempts``, ``status_code``, ``error``)."""
    return [delivery_dict(r) for r in _core.channel_deliveries(_registry(registry)._core, name)]


def _performance_series(
    deployment: str, since: Any, until: Any, window: Any, registry: Registry
) -> dict[int, dict[str, float]]:
    """Realized and estimated performance per window as series (of the version with the
    most predictions in the window), where labels or a reference with labels exist."""
    from pilothouse.monitoring import monitor

    try:
        table = monitor(deployment, registry=registry).performance(
            since=since, until=until, window=window
        )
    except (ValidationError, NotFoundError):
        return {}  # no predictions kept, no labels and no reference with labels yet
    out: dict[int, dict[str, float]] = defaultdict(dict)
    if table is None or not len(table):
        return {}
    busiest: dict[int, tuple[float, Any]] = {}
    for r in table.itertuples():
        w = int(r.window_start.timestamp() * 1_000_000)
        n = float(getattr(r, "predictions", 0) or 0)
        if n > busiest.get(w, (-1.0, None))[0]:
            busiest[w] = (n, r.version)
    for r in table.itertuples():
        w = int(r.window_start.timestamp() * 1_000_000)
        if busiest[w][1] != r.version:
            continue
        base = f"{r.kind}.{r.metric}"
        for name, value in (
            (base, r.value),
            (f"{base}.lower", getattr(r, "lower", None)),
            (f"{base}.upper", getattr(r, "upper", None)),
            ("label_coverage", getattr(r, "label_coverage", None)),
        ):
            if isinstance(value, (int, float)) and not math.isnan(value):
                out[w][name] = float(value)
        flagged = getattr(r, "alert", None)
        if isinstance(flagged, (bool, int, float)) and not (
            isinstance(flagged, float) and math.isnan(flagged)
        ):
            out[w][f"{base}.alert"] = float(bool(flagged))
    return dict(out)


def window_series(
    deployment: str,
    since: Any = "1h",
    until: Any = None,
    window: Any = "1m",
    *,
    registry: Registry | str | None = None,
) -> dict[int, dict[str, float]]:
    """The series rules read, per window (its start in microseconds since the epoch): the
    numbers of every version's traffic in it together (quantiles, drift and performance of
    the version that served the most). Health, drift and quality come from the stored
    windows as the server reads them; performance from the predictions kept and labels."""
    reg = _registry(registry)
    length_us = seconds_of(window, "window") * 1_000_000
    found: dict[int, dict[str, float]] = _core.alert_window_series(
        reg._core, deployment, _since(since), _since(until), length_us
    )
    for w, values in _performance_series(deployment, since, until, window, reg).items():
        found.setdefault(w, {}).update(values)
    return found


def evaluate_alerts(
    deployment: str,
    *,
    since: Any = "1h",
    until: Any = None,
    window: Any = "1m",
    registry: Registry | str | None = None,
) -> list[dict[str, Any]]:
    """Evaluates every rule of the deployment on each closed window of the period, oldest
    first, and answers what changed (rule, transition, state, alert, window_start). A
    window a rule has already been evaluated on (here, by a server as its windows close, or
    by another process on the same registry) changes nothing, so each alert fires once. A
    server evaluates health, drift and quality rules by itself; rules on performance
    (``realized.*``, ``estimated.*``) are evaluated here, where it is computed."""
    reg = _registry(registry)
    length_us = seconds_of(window, "window") * 1_000_000
    now_us = int(dt.datetime.now(dt.timezone.utc).timestamp() * 1_000_000)
    if until is not None:
        now_us = min(now_us, _since(until) or now_us)
    extra = _performance_series(deployment, since, until, window, reg)
    changes: list[dict[str, Any]] = _core.evaluate_alert_windows(
        reg._core, reg.actor, deployment, _since(since), _since(until), length_us, now_us, extra
    )
    for change in changes:
        change["window_start"] = _time(change.pop("window_start_us"))
        if change.get("alert"):
            change["alert"] = _alert(change["alert"])
    return changes
