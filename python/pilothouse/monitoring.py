"""Live monitoring: what served traffic looks like, read back from the registry.

This module owns :func:`monitor` and :class:`Monitor` (a deployment's stored monitoring
windows as pandas tables: input and prediction drift against each version's reference,
data quality, service health; the feedback received; the merged profile of a period; a
drift report; the predictions kept, performance and the export for retraining, which
:mod:`pilothouse.realized` computes), and
:func:`set_reference` / :func:`get_reference` (a version's reference profiles). Servers
write the windows (``rust/server/src/monitor``); every replica's windows of a period merge
exactly, so a notebook on the same registry sees what all replicas served.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence
from pathlib import Path
from typing import Any, Union

from pilothouse import _core, _html, estimated, realized
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
        ``kind="flag", good=False`` keeps the answers flagged bad. Each row carries the
        outputs (``output.<name>``), version and route of the answer it names, where the
        deployment kept it, and its inputs (``input.<name>``) where the payload log kept
        them."""
        received = read_feedback(
            self.deployment,
            since=since,
            until=until,
            kind=kind,
            good=good,
            registry=self._registry,
        )
        if received.empty:
            return received
        answered = realized.predictions(self.deployment, None, None, registry=self._registry)
        answered = answered[~answered["shadow"]]
        keep = ["answer_id", "answered_at", "version", "route"] + [
            c for c in answered.columns if c.startswith("output.")
        ]
        answered = answered.assign(answer_id=answered["request_id"]).rename(
            columns={"time": "answered_at"}
        )
        by_id = answered.drop_duplicates("request_id").set_index("request_id")[keep]
        by_key = answered.dropna(subset=["key"]).drop_duplicates("key").set_index("key")[keep]
        joined = received.join(by_id, on="request_id")
        if len(by_key):
            joined = joined.fillna(received.join(by_key, on="key")[keep])
        if joined["answered_at"].notna().any():
            joined = realized.with_inputs(self.deployment, joined, self._registry)
        return joined

    def predictions(
        self,
        since: When = "1d",
        until: When = None,
        *,
        labelled: bool | None = None,
        version: int | None = None,
    ) -> Any:
        """The rows the deployment answered in the period, each with its latest label and
        flag (see :func:`pilothouse.realized.predictions`)."""
        return realized.predictions(
            self.deployment,
            since,
            until,
            registry=self._registry,
            labelled=labelled,
            version=version,
        )

    def performance(
        self,
        since: When = "30d",
        until: When = None,
        *,
        window: Length = "1d",
        by: str | None = None,
        version: int | None = None,
        metrics: Sequence[str] | None = None,
        label: str | None = None,
        proba: str | None = None,
        classes: Sequence[Any] | None = None,
        coverage: float = 0.5,
    ) -> Any:
        """Realized (and, before labels arrive, estimated) performance per window, version,
        route and segment (see :func:`pilothouse.realized.performance`)."""
        return realized.performance(
            self.deployment,
            since,
            until,
            registry=self._registry,
            window=window,
            by=by,
            version=version,
            metrics=metrics,
            label=label,
            proba=proba,
            classes=classes,
            coverage=coverage,
        )

    def confusion(
        self,
        since: When = "30d",
        until: When = None,
        *,
        window: Length = "1d",
        version: int | None = None,
        classes: Sequence[Any] | None = None,
    ) -> Any:
        """A classifier's confusion matrix per window, version and route (see
        :func:`pilothouse.realized.confusion`)."""
        return realized.confusion(
            self.deployment,
            since,
            until,
            registry=self._registry,
            window=window,
            version=version,
            classes=classes,
        )

    def staleness(
        self,
        since: When = "90d",
        until: When = None,
        *,
        age: Length = "1d",
        metrics: Sequence[str] | None = None,
        coverage: float = 0.5,
    ) -> Any:
        """Performance against model age across the versions served (see
        :func:`pilothouse.realized.staleness`)."""
        return realized.staleness(
            self.deployment,
            since,
            until,
            registry=self._registry,
            age=age,
            metrics=metrics,
            coverage=coverage,
        )

    def export(
        self,
        path: str | Path,
        since: When = "30d",
        until: When = None,
        *,
        labelled: bool = True,
        version: int | None = None,
    ) -> Any:
        """Writes the period's rows with inputs (where logged), outputs, targets and flags
        to a Parquet (or ``.csv``) file for retraining; returns the table."""
        return realized.export(
            self.deployment,
            path,
            since,
            until,
            registry=self._registry,
            labelled=labelled,
            version=version,
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
    targets: Any = None,
    registry: Registry | str | None = None,
) -> None:
    """Store (or replace) the reference monitoring compares a version's traffic with.

    ``data`` in any form ``predict`` takes is profiled as the model sees it, and the model
    is run on it for the reference of its outputs. A :class:`Profile` replaces the inputs'
    reference only (``outputs=`` sets the outputs' one); it must describe the columns the
    model sees (the feature names it was trained with).

    ``targets`` (a classifier's true labels of ``data``'s rows, held out from training)
    also stores the model's predictions and probabilities on ``data`` with them: the
    reference CBPE calibrates on to estimate the performance of served windows whose labels
    have not arrived (``ph.monitor(name).performance()``)."""
    reg = _registry(registry)
    mv = _version(ref, reg)
    if targets is not None:
        if data is None or isinstance(data, Profile):
            raise ValidationError(
                "targets= needs the reference data itself (the model is run on it), not a Profile"
            )
        model_for_labels: Model = mv.load()
        estimated.set_label_reference(
            reg, mv.model, mv.version, model_for_labels.predict(data), targets
        )
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
