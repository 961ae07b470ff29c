"""Live monitoring: what served traffic looks like, read back from the registry.

This module owns :func:`monitor` and :class:`Monitor` (a deployment's stored monitoring
windows as pandas tables: input and prediction drift against each version's reference,
data quality, service health; the feedback received; the merged profile of a period; a
drift report), and
:func:`set_reference` / :func:`get_reference` (a version's reference profiles). Servers
write the windows (``rust/server/src/monitor``); every replica's windows of a period merge
exactly, so a notebook on the same registry sees what all replicas served.
"""

from __future__ import annotations

import datetime as dt
from typing import Any, Union

from pilothouse import _core, _html
from pilothouse._paths import version_uri
from pilothouse.drift import DriftReport, Profile, drift
from pilothouse.errors import NotFoundError, ValidationError
from pilothouse.feedback import read_feedback
from pilothouse.model import Model
from pilothouse.records import ModelVersion
from pilothouse.registry import Registry
from pilothouse.serving import _registry, _since, seconds_of

__all__ = ["Monitor", "get_reference", "monitor", "set_reference"]

When = Union[dt.datetime, dt.timedelta, str, None]
Length = Union[str, int, float, dt.timedelta, None]


def _frame(rows: list[dict[str, Any]], columns: list[str]) -> Any:
    import pandas as pd

    frame = pd.DataFrame(rows, columns=columns)
    if "window_start_us" in frame:
        frame.insert(0, "window_start", pd.to_datetime(frame.pop("window_start_us"), unit="us"))
        frame["window_start"] = frame["window_start"].dt.tz_localize("UTC")
    return frame


_DRIFT_COLUMNS = [
    "window_start_us",
    "version",
    "column",
    "method",
    "statistic",
    "p_value",
    "threshold",
    "drifted",
    "rows",
]


class Monitor:
    """A deployment's monitoring, read from the registry (``ph.monitor("churn")``).

    Every method takes a period, ``since`` (a span back from now such as ``"24h"``, a
    datetime or an ISO 8601 time; None for everything) and ``until`` (None for now), and
    most a ``window``: the length the stored windows merge into (``"1h"``; None for one row
    set over the whole period). ``version`` keeps one version's traffic.
    """

    def __init__(self, deployment: str, registry: Registry) -> None:
        self.deployment = deployment
        self._registry = registry

    def __repr__(self) -> str:
        return f"Monitor({self.deployment!r}, registry={self._registry.uri!r})"

    def _series(
        self,
        kind: str,
        since: When,
        until: When,
        window: Length,
        version: int | None,
        options: dict[str, Any] | None = None,
    ) -> dict[str, Any]:
        window_us = 0 if window is None else seconds_of(window, "window") * 1_000_000
        result: dict[str, Any] = _core.monitor_series(
            self._registry._core,
            kind,
            self.deployment,
            _since(since),
            _since(until),
            window_us,
            version,
            options,
        )
        return result

    def drift(
        self,
        since: When = "24h",
        until: When = None,
        window: Length = "1h",
        *,
        version: int | None = None,
        method: str = "auto",
        threshold: float | None = None,
    ) -> Any:
        """Input drift against the version's reference, one row per window and column:
        window_start, version, column, method, statistic, p_value, threshold, drifted and
        the rows the verdict rests on."""
        options = {"method": method, "threshold": threshold}
        data = self._series("drift", since, until, window, version, options)
        return _frame(data["columns"], _DRIFT_COLUMNS)

    def drift_share(self, since: When = "24h", until: When = None, window: Length = "1h") -> Any:
        """Per window and version, the share of input columns that drifted and the dataset
        verdict (at least half of them, by default)."""
        data = self._series("drift", since, until, window, None)
        columns = ["window_start_us", "version", "drifted_share", "dataset_drift"]
        return _frame(data["windows"], columns)

    def prediction_drift(
        self,
        since: When = "24h",
        until: When = None,
        window: Length = "1h",
        *,
        version: int | None = None,
    ) -> Any:
        """The model's outputs against its outputs on the reference data, as :meth:`drift`."""
        data = self._series("prediction_drift", since, until, window, version)
        return _frame(data["columns"], _DRIFT_COLUMNS)

    def quality(
        self,
        since: When = "1h",
        until: When = None,
        window: Length = "1m",
        *,
        version: int | None = None,
    ) -> Any:
        """Data-quality failures against the reference, one row per window, column and
        check (missing_column, extra_column, wrong_type, null, out_of_range,
        unseen_category) with its count and the rows checked."""
        data = self._series("quality", since, until, window, version)
        columns = ["window_start_us", "version", "column", "check", "count", "rows"]
        return _frame(data["rows"], columns)

    def health(
        self,
        since: When = "1h",
        until: When = None,
        window: Length = "1m",
        *,
        version: int | None = None,
    ) -> Any:
        """Service health per window and version: requests, errors, statuses, rows,
        throughput, latency, queue and inference quantiles (ms), mean batch rows, the CPU
        seconds the serving processes used and their resident memory, and whether the p99
        latency stands far above the windows before it."""
        data = self._series("health", since, until, window, version)
        columns = [
            "window_start_us",
            "version",
            "requests",
            "errors",
            "by_status",
            "rows",
            "throughput",
            "latency_p50_ms",
            "latency_p90_ms",
            "latency_p99_ms",
            "queue_p50_ms",
            "queue_p99_ms",
            "inference_p50_ms",
            "batch_rows_mean",
            "cpu_seconds",
            "rss_bytes",
            "latency_anomaly",
        ]
        return _frame(data["rows"], columns)

    def feedback(
        self,
        since: When = None,
        until: When = None,
        *,
        kind: str | None = None,
        good: bool | None = None,
    ) -> Any:
        """The labels and flags received in the period (``ph.log_feedback``), oldest first:
        ``kind="flag", good=False`` keeps the answers flagged bad."""
        return read_feedback(
            self.deployment,
            since=since,
            until=until,
            kind=kind,
            good=good,
            registry=self._registry,
        )

    def profile(
        self,
        since: When = None,
        until: When = None,
        *,
        version: int | None = None,
        outputs: bool = False,
    ) -> Profile | None:
        """The merged profile of the inputs (or outputs) served in the period, every
        replica's; None when nothing was served."""
        data = _core.monitor_profile(
            self._registry._core,
            self.deployment,
            "outputs" if outputs else "inputs",
            _since(since),
            _since(until),
            version,
        )
        return None if data is None else Profile(data)

    def report(
        self,
        since: When = "7d",
        until: When = None,
        *,
        version: int | None = None,
        reference: Profile | None = None,
    ) -> DriftReport:
        """The drift report of the period against the version's reference (or against
        ``reference``, e.g. another period's :meth:`profile`); ``.save_html(path)`` keeps it."""
        current = self.profile(since, until, version=version)
        if current is None:
            raise NotFoundError(
                f"deployment '{self.deployment}' has no monitoring windows in that period"
            )
        if reference is None:
            served = version if version is not None else self._latest_version(since, until)
            reference = get_reference(version_uri(self._model(), served), registry=self._registry)
            if reference is None:
                raise NotFoundError(
                    f"version {served} of '{self._model()}' has no reference; store one with "
                    "ph.set_reference(uri, data), or pass reference="
                )
        return drift(reference, current)

    def _model(self) -> str:
        return self._registry._core.deployment(self.deployment).model

    def _latest_version(self, since: When, until: When) -> int:
        health = self._series("health", since, until, None, None)["rows"]
        if not health:
            raise NotFoundError(f"deployment '{self.deployment}' served nothing in that period")
        return int(max(health, key=lambda r: (r["requests"], r["version"]))["version"])

    def _repr_html_(self) -> str:
        rows = self._series("health", "1h", None, None, None)["rows"]
        table = [
            [
                r["version"],
                f"{r['requests']:,}",
                f"{r['errors']:,}",
                "—" if r["latency_p99_ms"] is None else f"{r['latency_p99_ms']:.2f}",
            ]
            for r in rows
        ]
        return _html.box(
            f"monitor {self.deployment}",
            " (last hour)",
            _html.table(("version", "requests", "errors", "p99 ms"), table),
        )


def monitor(deployment: str, *, registry: Registry | str | None = None) -> Monitor:
    """The monitoring of deployment ``deployment``, from any process on the same registry."""
    return Monitor(deployment, _registry(registry))


def _version(ref: ModelVersion | str, registry: Registry) -> ModelVersion:
    return ref if isinstance(ref, ModelVersion) else registry.get_version(ref)


def set_reference(
    ref: ModelVersion | str,
    data: Any = None,
    *,
    outputs: Profile | None = None,
    registry: Registry | str | None = None,
) -> None:
    """Store (or replace) the reference monitoring compares a version's traffic with.

    ``data`` in any form ``predict`` takes is profiled as the model sees it, and the model
    is run on it for the reference of its outputs. A :class:`Profile` replaces the inputs'
    reference only (``outputs=`` sets the outputs' one); it must describe the columns the
    model sees (the feature names it was trained with)."""
    reg = _registry(registry)
    mv = _version(ref, reg)
    if isinstance(data, Profile):
        _core.set_reference(
            reg._core,
            reg.actor,
            mv.model,
            mv.version,
            data._data,
            None if outputs is None else outputs._data,
            data.rows,
        )
        return
    if data is None:
        if outputs is None:
            raise ValidationError("give data (or a Profile) for the reference, or outputs=")
        _core.set_reference(reg._core, reg.actor, mv.model, mv.version, None, outputs._data, 0)
        return
    model: Model = mv.load()
    inputs, outs = model.reference_profiles(data)
    _core.set_reference(
        reg._core, reg.actor, mv.model, mv.version, inputs._data, outs._data, inputs.rows
    )


def get_reference(
    ref: ModelVersion | str, *, outputs: bool = False, registry: Registry | str | None = None
) -> Profile | None:
    """The stored reference of a version's inputs (or its outputs), or None."""
    reg = _registry(registry)
    mv = _version(ref, reg)
    record = _core.get_reference(reg._core, mv.model, mv.version)
    if record is None:
        return None
    data = record.outputs if outputs else record.inputs
    return None if data is None else Profile(data)


def _compact(now: dt.datetime | None = None, *, registry: Registry | str | None = None) -> None:
    """Rolls stored windows up and applies retention as servers do every minute (tests move
    the clock with ``now``)."""
    reg = _registry(registry)
    when = now or dt.datetime.now(dt.timezone.utc)
    _core.monitor_compact(reg._core, int(when.timestamp() * 1_000_000))
