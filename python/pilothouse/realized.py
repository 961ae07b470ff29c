"""Served predictions joined with their feedback, and the performance realized on them.

This module owns :func:`predictions` (what a deployment answered, kept by its servers even
when the payload log keeps no content, each row with its latest label and flag),
:func:`performance` (realized metrics per window, version, route and segment, with label
coverage, the flagged-bad rate and the drift of the labels; CBPE estimates where labels are
missing, from :mod:`pilothouse.estimated`), :func:`confusion` (a classifier's confusion matrix per window),
:func:`staleness` (the same against the model's age, across versions) and :func:`export` (labelled rows with their
inputs, outputs, targets and flags, for retraining). ``ph.monitor(name)`` reads the same
through its methods. The join runs in the registry crate
(``rust/registry/src/registry/predictions.rs``) and the metrics in the monitor crate
(``rust/monitor/src/performance``); this module reads outputs, finds the classes and groups.
"""

from __future__ import annotations

import datetime as dt
import json
import math
import os
import tempfile
import warnings
from collections import Counter
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, Optional, Union

import numpy as np

from pilothouse import _core, estimated
from pilothouse.errors import NotFoundError, ValidationError
from pilothouse.registry import Registry
from pilothouse.serving import _since, inference_log, seconds_of

__all__ = ["confusion", "export", "performance", "predictions", "staleness"]

When = Union[dt.datetime, dt.timedelta, str, None]
Length = Union[str, int, float, dt.timedelta, None]

_UNKNOWN = np.uint32(2**32 - 1)
CLASSIFICATION_METRICS = (
    "accuracy",
    "precision",
    "recall",
    "f1",
    "specificity",
    "roc_auc",
    "log_loss",
    "calibration_error",
)
# single-label multiclass: micro-averaged precision, recall and F1 all equal accuracy
MICRO_METRICS = ("precision_micro", "recall_micro", "f1_micro")
REGRESSION_METRICS = ("mae", "rmse", "mape", "r2")
# the columns of a performance table after those naming its group
_VALUES = (
    "metric",
    "value",
    "kind",
    "lower",
    "upper",
    "realized",
    "estimated",
    "label_coverage",
    "predictions",
    "labelled",
    "alert",
)


def predictions(
    deployment: str,
    since: When = None,
    until: When = None,
    *,
    registry: Registry,
    labelled: bool | None = None,
    version: int | None = None,
) -> Any:
    """The rows ``deployment`` answered in the period, oldest first, as a pandas DataFrame:
    ``request_id`` (``<id>/<i>`` for row i of a request of several rows), ``key`` (its
    correlation key), ``time``, ``model``, ``version``, ``route``, ``shadow``, ``replica``,
    one ``output.<name>`` column per output, ``segment.<feature>`` per segment feature,
    ``target`` and ``labelled_time`` (the latest label), ``good``, ``comment`` and ``user``
    (the latest flag). ``labelled=True`` keeps rows with a label, ``False`` those without."""
    import pandas as pd

    data = _core.labelled(registry._core, deployment, _since(since), _since(until))
    n = len(data["request_id"])
    frame = pd.DataFrame(
        {
            "request_id": data["request_id"],
            "key": data["key"],
            "time": pd.to_datetime(pd.Series(data["time_us"], dtype="int64"), unit="us", utc=True),
            "model": data["model"],
            "version": pd.Series(data["version"], dtype="int64"),
            "route": data["route"],
            "shadow": pd.Series(data["shadow"], dtype=bool),
            "replica": data["replica"],
        }
    )
    outputs = [json.loads(o) for o in data["outputs"]]
    for name in _names(outputs):
        frame["output." + name] = [o.get(name) for o in outputs]
    segments = [json.loads(s) if s else {} for s in data["segments"]]
    for name in _names(segments):
        frame["segment." + name] = [s.get(name) for s in segments]
    frame["target"] = pd.Series(
        [t if t is not None else x for t, x in zip(data["target_text"], data["target_number"])],
        dtype=object,
    )
    frame["labelled_time"] = pd.to_datetime(
        pd.Series(data["labelled_us"], dtype="Int64"), unit="us", utc=True
    )
    frame["good"] = pd.Series(data["good"], dtype="boolean")
    frame["comment"] = pd.Series(data["comment"], dtype=object)
    frame["user"] = pd.Series(data["user"], dtype=object)
    if n and version is not None:
        frame = frame[frame["version"] == version]
    if labelled is not None:
        frame = frame[frame["target"].notna() == labelled]
    return frame.reset_index(drop=True)


def _names(dicts: list[dict[str, Any]]) -> list[str]:
    seen: dict[str, None] = {}
    for d in dicts:
        for k in d:
            seen.setdefault(k, None)
    return list(seen)


def _text(value: Any) -> Optional[str]:
    """A class label as text, so that a predicted 1, a label 1.0 and a label "1" agree."""
    if value is None:
        return None
    if isinstance(value, float):
        if value != value:
            return None
        if value.is_integer():
            return str(int(value))
    if isinstance(value, list) and len(value) == 1:
        return _text(value[0])
    return str(value)


class _Outputs:
    """Which outputs hold the predicted label and the probabilities (or, for a regressor,
    the predicted value), and the classes in the order of the probabilities."""

    def __init__(
        self,
        frame: Any,
        label: str | None,
        proba: str | None,
        classes: Sequence[Any] | None,
    ) -> None:
        columns = [c[len("output.") :] for c in frame.columns if c.startswith("output.")]
        if not columns:
            raise ValidationError("the deployment kept no outputs in that period")
        sample = frame.head(1000)

        def kind(name: str) -> str:
            values = [v for v in sample["output." + name] if v is not None]
            if not values:
                return "empty"
            v = values[0]
            if isinstance(v, list):
                return "vector" if all(isinstance(x, (int, float)) for x in v) else "other"
            if isinstance(v, (bool, str, int)):
                return "label"
            if isinstance(v, float):
                return "number"
            return "other"

        kinds = {c: kind(c) for c in columns}
        for given, what in ((label, "label"), (proba, "proba")):
            if given is not None and given not in kinds:
                raise ValidationError(
                    f"{what}={given!r}: the deployment's outputs are {', '.join(columns)}"
                )
        self.label = label or next((c for c in columns if kinds[c] == "label"), None)
        self.proba = proba or next(
            (c for c in columns if kinds[c] in ("vector", "number") and c != self.label), None
        )
        self.regression = self.label is None
        if self.regression:
            if self.proba is None:
                raise ValidationError(
                    f"no output holds a predicted label or value (outputs: {', '.join(columns)}); "
                    "name them with label= and proba="
                )
            self.value = self.proba
            self.classes: list[str] = []
            return
        self.value = self.label
        self.classes = self._classes(frame, classes)

    def _classes(self, frame: Any, given: Sequence[Any] | None) -> list[str]:
        if given is not None:
            classes = [_text(c) or "" for c in given]
            if len(set(classes)) != len(classes) or len(classes) < 2:
                raise ValidationError(f"classes={list(given)!r}: at least two distinct classes")
            return classes
        labels = [_text(v) for v in frame["output." + str(self.label)]]
        predicted = sorted({x for x in labels if x is not None}, key=_sort_key)
        unclear = ValidationError(
            "cannot tell which class each probability column is from the answers kept (the "
            f"model predicted {predicted[:10]}); pass classes= in the probabilities' order, or "
            "store a reference with labels (ph.set_reference(..., targets=))"
        )
        if self.proba is None:
            # the classes the model answers: labels outside them are not known to it
            return predicted if len(predicted) >= 2 else [*predicted, "(other)"]
        width = 0
        by_column: dict[int, Counter[str]] = {}
        for label, p in zip(labels, frame["output." + self.proba]):
            if label is None or not _probabilities(p):
                continue
            row = p if isinstance(p, list) else [p]
            width = max(width, len(row))
            if len(row) > 1:
                by_column.setdefault(int(np.argmax(row)), Counter())[label] += 1
        if width <= 1:
            # one probability, of the positive (the greater) class
            if len(predicted) == 2:
                return predicted
            if set(predicted) <= {"0", "1"}:
                return ["0", "1"]
            raise unclear
        # each predicted label is the column of the highest probability, so the labels seen
        # at each column name it; an order is taken only when the answers settle it
        named = {}
        for column, votes in by_column.items():
            label, n = votes.most_common(1)[0]
            if n < 0.99 * sum(votes.values()):
                raise unclear  # labels are not the argmax (a tuned threshold?)
            named[column] = label
        if len(set(named.values())) != len(named):
            raise unclear
        if len(named) == width:
            return [named[i] for i in range(width)]
        integers = [str(i) for i in range(width)]
        if all(named[c] == integers[c] for c in named) and set(predicted) <= set(integers):
            # integer classes 0..k-1 (scikit-learn's encoded labels), some never predicted yet
            return integers
        raise unclear


def _probabilities(p: Any) -> bool:
    """A row's probabilities: a number or a list of numbers, each from 0 to 1."""
    row = p if isinstance(p, list) else [p]
    return bool(row) and all(
        isinstance(x, (int, float)) and not isinstance(x, bool) and 0.0 <= x <= 1.0 for x in row
    )


def _clean(frame: Any, outputs: _Outputs) -> Any:
    """The rows whose outputs can be scored: a predicted class among the classes and
    probabilities of the right width (a classifier's), or a number (a regressor's). The
    others are left out, with a warning naming how many."""
    if outputs.regression:
        keep = [
            isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v)
            for v in (_unlist(v) for v in frame["output." + outputs.value])
        ]
    else:
        classes = set(outputs.classes)
        width = 1 if len(outputs.classes) == 2 else len(outputs.classes)
        labels = [_text(v) in classes for v in frame["output." + str(outputs.label)]]
        if outputs.proba is None:
            keep = labels
        else:
            keep = [
                ok
                and _probabilities(p)
                and (len(p) if isinstance(p, list) else 1) in {width, len(outputs.classes)}
                for ok, p in zip(labels, frame["output." + outputs.proba])
            ]
    dropped = len(keep) - sum(keep)
    if dropped:
        warnings.warn(
            f"{dropped} of {len(keep)} answers have outputs that cannot be scored (a class "
            f"outside {outputs.classes[:10] or 'numbers'}, or missing or invalid "
            "probabilities): left out",
            stacklevel=3,
        )
        return frame[keep].reset_index(drop=True)
    return frame


def _unlist(v: Any) -> Any:
    return v[0] if isinstance(v, list) and len(v) == 1 else v


def _sort_key(x: str) -> tuple[int, float, str]:
    try:
        return (0, float(x), x)
    except ValueError:
        return (1, 0.0, x)


def performance(
    deployment: str,
    since: When = "30d",
    until: When = None,
    *,
    registry: Registry,
    window: Length = "1d",
    by: str | None = None,
    version: int | None = None,
    metrics: Sequence[str] | None = None,
    label: str | None = None,
    proba: str | None = None,
    classes: Sequence[Any] | None = None,
    coverage: float = 0.5,
) -> Any:
    """Realized performance per window (by prediction time), version and route (and
    segment, ``by=<feature>``, one of the deployment's ``monitoring.segments``): a long
    pandas table of ``window_start, version, route, [segment,] metric, value, kind, lower,
    upper, realized, estimated, label_coverage, predictions, labelled, alert``.

    Classifiers: accuracy, precision, recall, F1, specificity, ROC AUC (binary: the second
    class is positive; multiclass: macro, plus micro precision, recall and F1), log loss,
    calibration error; regressors: MAE, RMSE, MAPE, R². Every window also has ``flagged``
    (answers flagged) and ``flagged_bad_rate``, and ``label_drift`` (the p-value of the
    labels' distribution against the first window's; ``alert`` when it drifted).

    Where the version has a reference with targets (``ph.set_reference(..., targets=)``),
    classifier windows also carry a CBPE estimate: ``kind`` is ``"estimated"`` and
    ``value`` the estimate until the window's label coverage reaches ``coverage``, then
    ``"realized"``; both values stay in their columns."""
    import pandas as pd

    if not 0.0 <= coverage <= 1.0:
        raise ValidationError(f"coverage={coverage}: a share of the rows, from 0 to 1")
    frame = predictions(deployment, since, until, registry=registry, version=version)
    columns = ["window_start", "version", "route", *(["segment"] if by else []), *_VALUES]
    if frame.empty:
        return pd.DataFrame(columns=columns)
    if classes is None:
        classes = estimated.label_reference_classes(registry, frame)
    outputs = _Outputs(frame, label, proba, classes)
    frame = _clean(frame, outputs)
    wanted = _metrics(metrics, outputs)
    if by is not None and "segment." + by not in frame.columns:
        raise ValidationError(
            f"by={by!r}: predictions keep no segment of that name; list the feature in the "
            "deployment's monitoring.segments (kept from then on)"
        )
    frame["window_start_us"] = _window_starts(frame, window)
    frame["segment_key"] = frame["segment." + by].map(_text) if by else None
    keys = ["window_start_us", "version", "route"] + (["segment_key"] if by else [])

    def head(key: tuple[Any, ...]) -> dict[str, Any]:
        return {
            "window_start": pd.Timestamp(int(key[0]), unit="us", tz="UTC"),
            "version": int(key[1]),
            "route": key[2],
            **({"segment": key[3]} if by else {}),
        }

    rows = _table(frame, keys, head, outputs, wanted, registry, coverage)
    return pd.DataFrame(rows, columns=columns)


def confusion(
    deployment: str,
    since: When = "30d",
    until: When = None,
    *,
    registry: Registry,
    window: Length = "1d",
    version: int | None = None,
    label: str | None = None,
    classes: Sequence[Any] | None = None,
) -> Any:
    """A classifier's confusion matrix per window, version and route, from the labelled
    rows: a long table of ``window_start, version, route, true, predicted, count``."""
    import pandas as pd

    columns = ["window_start", "version", "route", "true", "predicted", "count"]
    frame = predictions(deployment, since, until, registry=registry, version=version, labelled=True)
    if frame.empty:
        return pd.DataFrame(columns=columns)
    outputs = _Outputs(frame, label, None, classes)
    frame = _clean(frame, outputs)
    if outputs.regression:
        raise ValidationError("a confusion matrix is a classifier's; this model predicts numbers")
    frame["window_start_us"] = _window_starts(frame, window)
    keys = ["window_start_us", "version", "route"]
    frame = frame.sort_values(keys, kind="stable").reset_index(drop=True)
    groups = frame.groupby(keys, sort=False).indices
    bounds = [(int(ix[0]), int(ix[-1]) + 1) for ix in groups.values()]
    y_pred, y_true, proba = _classified(frame, outputs)
    k = len(outputs.classes)
    matrices = _core.realized_classification(k, y_pred, y_true, proba, bounds)["confusion"]
    rows = []
    for (start, v, route), matrix in zip(groups.keys(), matrices):
        for t in range(k):
            for p in range(k):
                rows.append(
                    {
                        "window_start": pd.Timestamp(int(start), unit="us", tz="UTC"),
                        "version": int(v),
                        "route": route,
                        "true": outputs.classes[t],
                        "predicted": outputs.classes[p],
                        "count": int(matrix[t * k + p]),
                    }
                )
    return pd.DataFrame(rows, columns=columns)


def _window_starts(frame: Any, window: Length) -> Any:
    """Each row's window start in microseconds (one window, from the first row, for None)."""
    import pandas as pd

    time_us = (frame["time"] - pd.Timestamp(0, tz="UTC")) // pd.Timedelta(1, "us")
    if window is None:
        return int(time_us.min())
    length_us = seconds_of(window, "window") * 1_000_000
    return time_us - time_us % length_us


def _table(
    frame: Any,
    keys: list[str],
    head: Callable[[tuple[Any, ...]], dict[str, Any]],
    outputs: _Outputs,
    wanted: list[str],
    registry: Registry,
    coverage: float,
) -> list[dict[str, Any]]:
    """The rows of a performance table: per group of ``keys`` (``head`` names it), each
    metric realized (and estimated where a reference with labels allows), the flags, and
    the labels' drift."""
    frame = frame.sort_values(keys, kind="stable").reset_index(drop=True)
    groups = frame.groupby(keys, sort=False, dropna=False).indices
    bounds = [(int(ix[0]), int(ix[-1]) + 1) for ix in groups.values()]
    codes = None if outputs.regression else _classified(frame, outputs)
    values = _realized(frame, outputs, codes, bounds)
    estimates = (
        {}
        if codes is None or outputs.proba is None
        else estimated.estimate_windows(frame, outputs.classes, codes, bounds, wanted, registry)
    )
    drift = _label_drift(frame, outputs, bounds)
    if codes is None:
        known = np.array([math.isfinite(_number(t)) for t in frame["target"]], dtype=bool)
    else:
        known = codes[1] != _UNKNOWN
    nan = float("nan")
    rows = []
    for g, (key, (lo, hi)) in enumerate(zip(groups.keys(), bounds)):
        part = frame.iloc[lo:hi]
        labelled = int(known[lo:hi].sum())
        n = hi - lo
        share = labelled / n if n else 0.0
        flagged = int(part["good"].notna().sum())
        bad = int((part["good"] == False).sum())  # noqa: E712 (pandas' nullable booleans)
        first = {**head(key if isinstance(key, tuple) else (key,))}
        tail = {"label_coverage": share, "predictions": n, "labelled": labelled}

        def row(
            metric: str,
            value: float,
            kind: str = "realized",
            first: dict[str, Any] = first,
            tail: dict[str, Any] = tail,
            **more: Any,
        ) -> dict[str, Any]:
            return {
                **first,
                "metric": metric,
                "value": value,
                "kind": kind,
                "lower": more.get("lower", nan),
                "upper": more.get("upper", nan),
                "realized": more.get("realized", value),
                "estimated": more.get("estimated", nan),
                **tail,
                "alert": more.get("alert", False),
            }

        for metric in wanted:
            realized = values[metric][g] if labelled else nan
            estimate = estimates.get(metric, {}).get(g)
            if estimate is None:
                rows.append(row(metric, realized))
                continue
            shown = share < coverage or labelled == 0
            rows.append(
                row(
                    metric,
                    estimate["estimate"] if shown else realized,
                    "estimated" if shown else "realized",
                    lower=estimate["lower"],
                    upper=estimate["upper"],
                    realized=realized,
                    estimated=estimate["estimate"],
                    alert=bool(estimate["alert"]) if shown else False,
                )
            )
        rows.append(row("flagged", float(flagged)))
        rows.append(row("flagged_bad_rate", bad / flagged if flagged else nan))
        p_value, drifted = drift[g]
        rows.append(row("label_drift", p_value, alert=drifted))
    return rows


def staleness(
    deployment: str,
    since: When = "90d",
    until: When = None,
    *,
    registry: Registry,
    age: Length = "1d",
    metrics: Sequence[str] | None = None,
    coverage: float = 0.5,
) -> Any:
    """Performance against the model's age across the versions the deployment served: per
    version and age bucket (time from the version's registration to the answer, in buckets
    of ``age``), the same metrics as :func:`performance` with ``age_days`` in place of the
    window: the age-against-quality curve a retraining schedule needs."""
    import pandas as pd

    frame = predictions(deployment, since, until, registry=registry)
    frame = frame[~frame["shadow"]].reset_index(drop=True)
    columns = ["version", "age_days", *_VALUES]
    if frame.empty:
        return pd.DataFrame(columns=columns)
    outputs = _Outputs(frame, None, None, estimated.label_reference_classes(registry, frame))
    frame = _clean(frame, outputs)
    wanted = _metrics(metrics, outputs)
    bucket_us = seconds_of(age or "1d", "age") * 1_000_000
    born: dict[int, int] = {}
    for model, v in frame[["model", "version"]].drop_duplicates().itertuples(index=False):
        created = registry.get_version(f"models:/{model}/{int(v)}").created_at
        if created is None:
            raise ValidationError(f"version {v} of '{model}' has no registration time")
        born[int(v)] = int(created.timestamp() * 1_000_000)
    time_us = (frame["time"] - pd.Timestamp(0, tz="UTC")) // pd.Timedelta(1, "us")
    age_us = (time_us - frame["version"].map(born)).clip(lower=0)
    frame["age_bucket"] = age_us - age_us % bucket_us
    frame["route"] = ""  # every route of a version ages alike

    def head(key: tuple[Any, ...]) -> dict[str, Any]:
        return {"version": int(key[0]), "age_days": int(key[1]) / 86_400e6}

    rows = _table(frame, ["version", "age_bucket"], head, outputs, wanted, registry, coverage)
    return pd.DataFrame(rows, columns=columns)


def _metrics(metrics: Sequence[str] | None, outputs: _Outputs) -> list[str]:
    if outputs.regression:
        known: tuple[str, ...] = REGRESSION_METRICS
    elif len(outputs.classes) > 2:
        known = CLASSIFICATION_METRICS + MICRO_METRICS
    else:
        known = CLASSIFICATION_METRICS
    if metrics is None:
        return list(known)
    unknown = [m for m in metrics if m not in known]
    if unknown:
        raise ValidationError(
            f"metrics {unknown}: this {'regressor' if outputs.regression else 'classifier'}'s "
            f"metrics are {', '.join(known)}"
        )
    return list(metrics)


def _classified(frame: Any, outputs: _Outputs) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Class codes of the predictions and labels (unknown where there is no label), and
    the probabilities laid out as the monitor crate reads them."""
    index = {c: np.uint32(i) for i, c in enumerate(outputs.classes)}
    k = len(outputs.classes)

    unmatched: list[Any] = []

    def code(v: Any, what: str, label: bool) -> np.uint32:
        t = _text(v)
        if t in index:
            return index[t]
        if label:
            if t is not None:
                unmatched.append(v)
            return _UNKNOWN
        raise ValidationError(
            f"{what} {v!r} is not one of the classes {outputs.classes}; pass classes="
        )

    y_pred = np.array(
        [code(v, "predicted label", False) for v in frame["output." + str(outputs.label)]],
        dtype=np.uint32,
    )
    y_true = np.array([code(v, "label", True) for v in frame["target"]], dtype=np.uint32)
    if unmatched:
        warnings.warn(
            f"{len(unmatched)} labels are not among the classes {outputs.classes[:10]} (e.g. "
            f"{unmatched[:3]!r}): counted as not labelled",
            stacklevel=3,
        )
    width = 1 if k == 2 else k
    proba = np.zeros(len(frame) * width)
    if outputs.proba is not None:
        for i, p in enumerate(frame["output." + outputs.proba]):
            row = p if isinstance(p, list) else [p]
            if k == 2:
                proba[i] = float(row[1] if len(row) == 2 else row[0])  # width checked by _clean
            else:
                if len(row) != k:
                    raise ValidationError(
                        f"row {i}: {len(row)} probabilities for {k} classes {outputs.classes}"
                    )
                proba[i * k : (i + 1) * k] = row
    else:
        # no probabilities: the predicted class is certain (ROC AUC of hard labels)
        for i, c in enumerate(y_pred):
            if k == 2:
                proba[i] = float(c)
            else:
                proba[i * k + int(c)] = 1.0
    return y_pred, y_true, np.clip(proba, 0.0, 1.0)


def _realized(
    frame: Any,
    outputs: _Outputs,
    codes: tuple[np.ndarray, np.ndarray, np.ndarray] | None,
    bounds: list[tuple[int, int]],
) -> dict[str, list[float]]:
    if codes is None:
        predicted = np.array(
            [_number(v) for v in frame["output." + outputs.value]], dtype=np.float64
        )
        actual = np.array([_number(t) for t in frame["target"]], dtype=np.float64)
        out: dict[str, list[float]] = _core.realized_regression(predicted, actual, bounds)
        return out
    y_pred, y_true, proba = codes
    values: dict[str, list[float]] = _core.realized_classification(
        len(outputs.classes), y_pred, y_true, proba, bounds
    )
    for micro in MICRO_METRICS:
        values[micro] = list(values["accuracy"])
    return values


def _number(v: Any) -> float:
    if isinstance(v, list) and len(v) == 1:
        v = v[0]
    if isinstance(v, bool) or not isinstance(v, (int, float, str)):
        return float("nan")
    try:
        return float(v)  # a label that is not a number is not known (NaN)
    except ValueError:
        return float("nan")


def _label_drift(
    frame: Any, outputs: _Outputs, bounds: list[tuple[int, int]]
) -> list[tuple[float, bool]]:
    """Per group, the p-value of its labels' distribution against the first labelled
    window's (the period's first window of the same version, route and segment), and
    whether it drifted."""
    import pandas as pd

    from pilothouse.drift import drift

    labels = frame["target"]
    out: list[tuple[float, bool]] = []
    baselines: dict[tuple[Any, Any, Any], Any] = {}
    for lo, hi in bounds:
        part = labels.iloc[lo:hi].dropna()
        segment = frame["segment_key"].iloc[lo] if "segment_key" in frame.columns else None
        key = (frame["version"].iloc[lo], frame["route"].iloc[lo], segment)
        values = (
            part.map(_number) if outputs.regression else part.map(lambda v: _text(v) or "")
        ).reset_index(drop=True)
        if len(values) == 0:
            out.append((float("nan"), False))
            continue
        base = baselines.setdefault(key, values)
        report = drift(
            pd.DataFrame({"label": base}),
            pd.DataFrame({"label": values}),
            categorical=None if outputs.regression else ["label"],
        )
        column = report.columns[0]
        p = column.p_value
        out.append((float("nan") if p is None else float(p), bool(column.drifted)))
    return out


def export(
    deployment: str,
    path: str | Path,
    since: When = "30d",
    until: When = None,
    *,
    registry: Registry,
    labelled: bool = True,
    version: int | None = None,
) -> Any:
    """Writes the period's answers (not a shadow's runs) with their inputs (where the
    payload log kept them), outputs, targets and flags to ``path`` (Parquet, or CSV for a
    ``.csv`` name; owner-only), ready to retrain on; ``labelled`` keeps the rows with a
    label. Returns the table written."""
    frame = predictions(
        deployment, since, until, registry=registry, labelled=labelled or None, version=version
    )
    # the answers clients got (a shadow's run of the same request is not one)
    frame = frame[~frame["shadow"]].reset_index(drop=True)
    frame = with_inputs(deployment, frame, registry)
    if len({type(t) for t in frame["target"].dropna()}) > 1:
        # numbers and texts mixed: one column of text, as the labels were compared
        frame["target"] = frame["target"].map(_text)
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    # written to an owner-only temporary file beside it, then moved into place
    fd, temporary = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as out:
            if path.suffix.lower() == ".csv":
                frame.to_csv(out, index=False)
            else:
                frame.to_parquet(out, index=False)
        os.replace(temporary, path)
    except BaseException:
        Path(temporary).unlink(missing_ok=True)
        raise
    return frame


def with_inputs(deployment: str, frame: Any, registry: Registry) -> Any:
    """``frame`` with an ``input.<name>`` column per input the payload log kept (row i of a
    request of several rows from its ``<id>/<i>``), found by its ``answer_id`` (or
    ``request_id``); its ``answered_at`` (or ``time``) column bounds the log read."""
    if frame.empty:
        return frame
    times = frame["answered_at"] if "answered_at" in frame.columns else frame["time"]
    since = times.min() - dt.timedelta(seconds=1)
    until = times.max() + dt.timedelta(seconds=1)
    try:
        log = inference_log(
            deployment, since.to_pydatetime(), until.to_pydatetime(), registry=registry
        )
    except (NotFoundError, OSError):  # no log on this machine: outputs and labels only
        return frame
    if log.empty:
        return frame
    log = log[log["role"] == "primary"] if "role" in log.columns else log
    names = [c for c in log.columns if c.startswith("input.")]
    by_id = {rid: i for i, rid in enumerate(log["request_id"])}
    columns: dict[str, list[Any]] = {n: [] for n in names}
    ids = frame["answer_id"] if "answer_id" in frame.columns else frame["request_id"]
    for rid in ids:
        if not isinstance(rid, str):
            rid = ""
        row, part = by_id.get(rid), None
        if row is None and "/" in rid:
            base, _, i = rid.rpartition("/")
            if i.isdigit() and base in by_id:
                row, part = by_id[base], int(i)
        for n in names:
            v = None if row is None else log[n].iloc[row]
            if part is not None and isinstance(v, list) and part < len(v):
                v = v[part]
            if isinstance(v, list) and len(v) == 1:
                v = v[0]  # a feature of shape [rows, 1]: its value
            columns[n].append(v)
    for n in names:
        frame[n] = columns[n]
    return frame
