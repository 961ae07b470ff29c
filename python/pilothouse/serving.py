"""Serving: deployments in the registry, the model server, and its payload log.

This module owns ``deploy``/``undeploy``/``deployments`` (writing and reading deployment specs
in the registry; the :class:`Deployment` record itself is ``records.py``'s), :class:`Server`
(the Rust server started in this process) and ``inference_log`` (reading the payload log back).

>>> srv = ph.serve(port=8000)                       # doctest: +SKIP
>>> ph.deploy("churn", model="churn", alias="champion")  # doctest: +SKIP
>>> ph.inference_log("churn", since="1h")           # doctest: +SKIP

``deploy`` writes to the registry, so every server replica reading the same registry follows
it; a running server picks up a deployment change or an alias move within its poll interval
(250 ms by default), loads and warms up the new version, then moves traffic to it.
"""

from __future__ import annotations

import datetime as dt
import json
import re
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any, Union

from pilothouse import _core, _html
from pilothouse._paths import alias_uri, default_artifacts, inference_log_dir, version_uri
from pilothouse._runtime import ensure_runtime
from pilothouse.errors import ValidationError
from pilothouse.records import Deployment, micros_of
from pilothouse.registry import Registry, default_registry

__all__ = [
    "Deployment",
    "Server",
    "deploy",
    "deployments",
    "inference_log",
    "serve",
    "undeploy",
]

Target = Union[str, int]


def _registry(registry: Registry | str | None) -> Registry:
    if registry is None:
        return default_registry()
    if isinstance(registry, str):
        return Registry(registry)
    return registry


class Server:
    """A model server running in the background of this process (see :func:`serve`).

    It runs on its own threads without the GIL; ``stop()`` drains requests in flight and
    flushes the payload log. Use it as a context manager to stop it on exit."""

    def __init__(self, core: _core.Server, registry: Registry) -> None:
        self._core = core
        self.registry = registry

    @property
    def url(self) -> str:
        """``http://host:port`` of the server."""
        return self._core.url

    @property
    def port(self) -> int:
        return int(self.url.rsplit(":", 1)[1])

    @property
    def log_dir(self) -> Path:
        """Where the payload log's Parquet segments are written."""
        return Path(self._core.log_dir)

    @property
    def running(self) -> bool:
        return self._core.running

    def flush(self) -> None:
        """Write the buffered payload-log rows now (they are also written every second)."""
        self._core.flush()

    def stop(self) -> None:
        """Stop gracefully: no new connections, requests in flight finish, log flushed."""
        self._core.stop()

    def wait(self) -> None:
        """Block until the server stops."""
        self._core.wait()

    def __enter__(self) -> Server:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def __repr__(self) -> str:
        state = "running" if self.running else "stopped"
        return f"Server(url={self.url!r}, {state}, registry={self.registry.uri!r})"

    def _repr_html_(self) -> str:
        state = "running" if self.running else "stopped"
        url = _html.escape(self.url)
        return _html.box(
            "pilothouse server",
            _html.Html(
                f" ({state}) at <a href='{url}/v2'>{url}</a>"
                f"<br>registry: {_html.escape(self.registry.uri)}"
                f"<br>metrics: <a href='{url}/metrics'>/metrics</a>"
                f"<br>payload log: {_html.escape(self.log_dir)}"
            ),
        )


def serve(
    port: int = 8000,
    host: str = "127.0.0.1",
    *,
    registry: Registry | str | None = None,
    config: str | Path | None = None,
    **options: Any,
) -> Server:
    """Start the model server in the background and return at once.

    ``port=0`` picks a free port (see ``Server.url``). ``options`` are the keys of the
    configuration file (``pilothouse serve --help`` lists them): ``log_dir``,
    ``max_body_bytes``, ``poll_interval_ms``, ``flush_interval_ms``, ``log_format``,
    ``log_level``, ``http_threads``, ``inference_threads``, ``shutdown_timeout_s``.
    """
    reg = _registry(registry)
    ensure_runtime()
    settings: dict[str, Any] = {
        "host": host,
        "port": port,
        "registry": reg._uri,
        "artifacts": str(default_artifacts()),
        "log_level": "warn",
    }
    settings.update({k: (str(v) if isinstance(v, Path) else v) for k, v in options.items()})
    core = _core.Server.start(settings, str(config) if config is not None else None, False)
    return Server(core, reg)


def _target(value: Target) -> dict[str, Any]:
    if isinstance(value, bool):
        raise ValidationError(f"a route target is an alias name or a version number, not {value!r}")
    if isinstance(value, int):
        return {"version": value}
    if isinstance(value, str):
        text = value.strip().lstrip("@")
        if re.fullmatch(r"v?\d+", text):
            return {"version": int(text.lstrip("v"))}
        return {"alias": text}
    raise ValidationError(
        f"a route target is an alias name or a version number, not {type(value).__name__}"
    )


def deploy(
    name: str,
    model: str | None = None,
    alias: str | None = None,
    *,
    version: int | None = None,
    routes: Sequence[tuple[Target, float]] | None = None,
    shadow: Target | None = None,
    sticky_header: str | None = None,
    max_batch_size: int = 64,
    max_queue_delay_us: int = 0,
    queue_capacity: int = 1024,
    timeout_ms: int = 30_000,
    log_payloads: bool = True,
    retention_days: int | None = 30,
    redact: Iterable[str] = (),
    hash_inputs: Iterable[str] = (),
    monitoring: Mapping[str, Any] | bool | None = None,
    registry: Registry | str | None = None,
) -> Deployment:
    """Create or replace the deployment ``name`` in the registry; servers follow it.

    Serve one alias (``alias="champion"``, followed as it moves) or one version
    (``version=3``), or split traffic by weight (``routes=[("champion", 0.9),
    ("challenger", 0.1)]``). ``shadow`` gets a copy of every request off the response path;
    its outputs are logged beside the primary's. ``sticky_header`` pins requests with the
    same header value to the same route. ``max_batch_size=1`` switches batching off.
    ``redact`` drops the named inputs from the payload log, ``hash_inputs`` stores a SHA-256
    instead of their values, ``log_payloads=False`` keeps no inputs or outputs at all.

    ``monitoring`` (on by default) profiles the traffic in time windows and compares it with
    each version's reference: ``{"window": "1m", "validation": "observe"}``, where
    ``validation`` is ``"observe"`` (count data-quality failures), ``"flag"`` (also name them
    in the response's ``quality`` parameter) or ``"reject"`` (answer 400 naming the column
    and the check); ``"feature_metrics": True`` also exports each column's drift of the
    latest window as Prometheus gauges (off by default: a series per column);
    ``monitoring=False`` switches it off. Monitoring keeps aggregates only, so it works with
    ``log_payloads=False``; besides them, each answered row's id, correlation key, time,
    version, route and outputs (not its inputs) are kept in the registry for the log's
    retention, so that feedback joins them (``"predictions": False`` keeps none), with the
    values of the input features named in ``"segments"`` (for performance per segment).
    """
    reg = _registry(registry)
    model = model or name
    if routes is not None and (alias is not None or version is not None):
        raise ValidationError("give routes=[...] or alias=/version=, not both")
    if routes is None:
        if alias is not None and version is not None:
            raise ValidationError("give alias= or version=, not both")
        single: Target = (
            alias if alias is not None else version if version is not None else "champion"
        )
        routes = [(single, 1.0)]
    spec: dict[str, Any] = {
        "model": model,
        "routes": [{"target": _target(t), "weight": float(w)} for t, w in routes],
        "shadow": _target(shadow) if shadow is not None else None,
        "sticky_header": sticky_header,
        "batching": {
            "max_batch_size": max_batch_size,
            "max_queue_delay_us": max_queue_delay_us,
            "queue_capacity": queue_capacity,
        },
        "timeout_ms": timeout_ms,
        "log": {
            "payloads": log_payloads,
            "retention_days": retention_days,
            "drop": list(redact),
            "hash": list(hash_inputs),
        },
        "monitoring": _monitoring_spec(monitoring),
    }
    normalized = _core.normalize_deployment(spec)
    # Every target must resolve now: a typo fails here, not in a server's log.
    for r in [*spec["routes"], *([{"target": spec["shadow"]}] if spec["shadow"] else [])]:
        t = r["target"]
        ref = alias_uri(model, t["alias"]) if "alias" in t else version_uri(model, t["version"])
        reg._core.resolve(ref, None)
    return Deployment._from(reg._core.set_deployment(reg.actor, name, model, normalized))


def _monitoring_spec(monitoring: Mapping[str, Any] | bool | None) -> dict[str, Any]:
    if monitoring is None or monitoring is True:
        return {}
    if monitoring is False:
        return {"enabled": False}
    keys = {"window", "validation", "enabled", "feature_metrics", "predictions", "segments"}
    unknown = set(monitoring) - keys
    if unknown:
        raise ValidationError(
            f"monitoring: unknown keys {sorted(unknown)}; use window (e.g. '1m'), validation "
            "('observe', 'flag' or 'reject'), feature_metrics, predictions (keep each answered "
            "row for feedback), segments (input features kept with it) and enabled"
        )
    spec: dict[str, Any] = {}
    for flag in ("enabled", "feature_metrics", "predictions"):
        if flag in monitoring:
            spec[flag] = bool(monitoring[flag])
    if "validation" in monitoring:
        spec["validation"] = str(monitoring["validation"])
    if "segments" in monitoring:
        segments = monitoring["segments"]
        if isinstance(segments, str) or not all(isinstance(f, str) for f in segments):
            raise ValidationError(
                f"monitoring segments: a list of input feature names, got {segments!r}"
            )
        spec["segments"] = list(segments)
    if "window" in monitoring:
        spec["window_s"] = seconds_of(monitoring["window"], "monitoring window")
    return spec


def seconds_of(length: str | int | float | dt.timedelta, what: str) -> int:
    """A length of time ("90s", "1m", "1h", "1d", seconds, a timedelta) in whole seconds."""
    if isinstance(length, dt.timedelta):
        seconds = length.total_seconds()
    elif isinstance(length, int | float) and not isinstance(length, bool):
        seconds = float(length)
    else:
        m = _DURATION.match(str(length))
        if not m:
            raise ValidationError(
                f"{what} {length!r}: give a length such as '30s', '1m', '1h' or '1d', or seconds"
            )
        seconds = float(m.group(1)) * _UNIT[m.group(2)]
    if seconds < 1 or seconds != int(seconds):
        raise ValidationError(f"{what} {length!r}: use a whole number of seconds, at least 1")
    return int(seconds)


def undeploy(name: str, *, registry: Registry | str | None = None) -> None:
    """Remove a deployment; servers stop serving it within their poll interval."""
    reg = _registry(registry)
    reg._core.delete_deployment(reg.actor, name)


def deployments(*, registry: Registry | str | None = None) -> list[Deployment]:
    """Every deployment in the registry, with the versions its aliases point at now."""
    reg = _registry(registry)
    return [Deployment._from(r) for r in reg._core.deployments()]


_DURATION = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*(s|m|h|d|w)\s*$")
_UNIT = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800}


def _since(when: dt.datetime | dt.timedelta | str | None) -> int | None:
    """A duration back from now ("15m", a timedelta), a datetime or an ISO 8601 string as a
    registry time."""
    now = dt.datetime.now(dt.timezone.utc)
    if isinstance(when, dt.timedelta):
        return int((now - when).timestamp() * 1e6)
    m = _DURATION.match(when) if isinstance(when, str) else None
    if m:
        return int((now.timestamp() - float(m.group(1)) * _UNIT[m.group(2)]) * 1e6)
    return micros_of(when)


def _unwrap(tensor: Mapping[str, Any]) -> Any:
    data = tensor["data"]
    shape = tensor["shape"]
    if isinstance(data, str):  # hashed by the log's redaction policy
        return data
    import numpy as np

    if any(isinstance(v, dict) and "b64" in v for v in data):
        # BYTES that are not UTF-8 are logged as {"b64": ...}: the tensor comes back as bytes.
        import base64

        data = [
            base64.b64decode(v["b64"]) if isinstance(v, dict) else str(v).encode() for v in data
        ]
        values = np.empty(len(data), dtype=object)
        values[:] = data
        values = values.reshape(shape) if shape else values
    else:
        values = np.asarray(data).reshape(shape) if shape else np.asarray(data)
    if values.ndim >= 1 and values.shape[0] == 1:
        values = values[0]
    return values.tolist() if isinstance(values, np.ndarray | np.generic) else values


def inference_log(
    name: str,
    since: dt.datetime | dt.timedelta | str | None = "1h",
    until: dt.datetime | dt.timedelta | str | None = None,
    *,
    registry: Registry | str | None = None,
    log_dir: str | Path | None = None,
    decode: bool = True,
) -> Any:
    """The logged requests of deployment ``name`` as a pandas DataFrame, oldest first.

    ``since``/``until`` take a duration back from now ("15m", "1h", "7d"), a datetime or an
    ISO 8601 string; ``since=None`` reads everything. One row per request and role
    (``primary``, or ``shadow`` for the shadow's run of the same request id).

    Each tensor is its own typed column, ``input.<name>`` and ``output.<name>``: the
    request's rows, each the list of its values (the Parquet segments hold the same
    columns, for DuckDB, polars or Spark to read directly). With ``decode`` the values
    become Python lists, a single-row request's unwrapped to that row; segments written by
    older builds (payloads as JSON text) read into the same columns. ``decode=False``
    gives the table as stored."""
    if log_dir is None:
        reg = _registry(registry)
        log_dir = inference_log_dir(reg.artifact_root)
    table = _core.read_inference_log(str(log_dir), name, _since(since), _since(until))
    frame = table.to_pandas()
    frame = frame.sort_values(["time", "role"], kind="stable").reset_index(drop=True)
    if not decode or frame.empty:
        return frame
    for column in [c for c in frame.columns if c.startswith(("input.", "output."))]:
        frame[column] = [_typed(v) for v in frame[column]]
    for column, prefix in (("inputs", "input."), ("outputs", "output.")):
        if column not in frame.columns:
            continue
        parsed = [json.loads(v) if isinstance(v, str) else {} for v in frame[column]]
        for key in sorted({k for p in parsed for k in p}):
            old = [_unwrap(p[key]) if key in p else None for p in parsed]
            if prefix + key in frame.columns:
                typed = frame[prefix + key]
                frame[prefix + key] = [o if t is None else t for t, o in zip(typed, old)]
            else:
                frame[prefix + key] = old
        frame = frame.drop(columns=[column])
    return frame


def _typed(value: Any) -> Any:
    """A typed payload cell as Python values: the request's rows, unwrapped when it has one
    (a hashed tensor's digest stays text)."""
    import numpy as np

    def plain(x: Any) -> Any:
        if isinstance(x, np.ndarray):
            return [plain(e) for e in x] if x.dtype == object else x.tolist()
        return x.item() if isinstance(x, np.generic) else x

    if value is None or isinstance(value, str):
        return value
    rows = plain(value)
    return rows[0] if isinstance(rows, list) and len(rows) == 1 else rows
