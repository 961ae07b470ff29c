"""A classifier's performance without labels: confidence-based performance estimation.

This module owns :func:`estimate_performance` and :class:`PerformanceEstimate`: the
offline estimator for batch pipelines (reference and analysis frames in, a table of
estimates per chunk out), the same one the monitor uses on served traffic. The work runs in
Rust (``rust/monitor/src/performance``); this module turns frames into class codes,
probabilities and chunk bounds, and the answer into pandas.

CBPE assumes that what the model learned still holds: the relation between inputs and
labels (the probability of a label given the inputs) is the reference's. Under covariate
shift (the inputs move, the relation stays) the estimate follows the real performance; under
concept shift (the relation changes) the model's probabilities do not move, and neither does
the estimate. The probabilities must also be calibrated or calibratable: they are calibrated
on the reference (isotonic regression) when that helps.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any, Optional, Union

import numpy as np

from pilothouse import _core, _html
from pilothouse.errors import ValidationError

__all__ = ["PerformanceEstimate", "estimate_performance"]

METRICS = ("roc_auc", "f1", "precision", "recall", "specificity", "accuracy")
_UNKNOWN = np.uint32(2**32 - 1)

Proba = Union[str, Mapping[Any, str]]


def _column(frame: Any, name: str, what: str) -> np.ndarray:
    """A column of a pandas or polars DataFrame, a pyarrow Table or a dict of arrays."""
    try:
        column = frame[name]
    except (KeyError, IndexError, TypeError, ValueError) as e:
        columns = getattr(frame, "column_names", None)
        if columns is None:
            columns = frame.keys() if isinstance(frame, Mapping) else getattr(frame, "columns", [])
        raise ValidationError(
            f"{what}: no column {name!r} in the frame (columns: {', '.join(map(str, list(columns)))})"
        ) from e
    if hasattr(column, "to_numpy"):
        return np.asarray(column.to_numpy())
    return np.asarray(column)


def _missing(values: np.ndarray) -> np.ndarray:
    if values.dtype.kind == "f":
        return np.asarray(np.isnan(values))
    if values.dtype.kind == "O":
        # None, NaN and pandas' NA
        return np.array([v is None or str(v) in ("<NA>", "nan", "NaT") for v in values], bool)
    return np.zeros(len(values), bool)


def _codes(values: np.ndarray, classes: Sequence[Any], what: str, labels: bool) -> np.ndarray:
    """Class indices of ``values`` (``classes`` in order); unknown where a label is missing
    (``labels``: true labels may be missing, predictions may not)."""
    if values.dtype.kind == "b" and list(classes) == [0, 1]:
        return values.astype(np.uint32)
    small = all(isinstance(c, (int, np.integer)) and 0 <= c < 1024 for c in classes)
    if values.dtype.kind in "iu" and small and len(values):
        # small integer classes: a lookup table from value to code
        lo, hi = int(values.min()), int(values.max())
        if lo >= 0 and hi < 1024:
            table = np.full(1024, _UNKNOWN, dtype=np.uint32)
            table[np.asarray(list(classes), dtype=np.int64)] = np.arange(
                len(classes), dtype=np.uint32
            )
            codes: np.ndarray = table[values]
            if (codes == _UNKNOWN).any():
                unknown = np.unique(values[codes == _UNKNOWN])[:5]
                raise ValidationError(
                    f"{what}: values {unknown.tolist()} are not among the classes {list(classes)}"
                )
            return codes
    missing = _missing(values)
    if missing.any() and not labels:
        raise ValidationError(f"{what}: {int(missing.sum())} rows have no prediction")
    known = ~missing
    codes = np.full(len(values), _UNKNOWN, dtype=np.uint32)
    cls = np.asarray(list(classes))
    if values.dtype.kind in "biuf" and cls.dtype.kind in "biuf":
        order = np.argsort(cls, kind="stable")
        ordered = cls[order]
        v = values[known]
        at = np.clip(np.searchsorted(ordered, v), 0, len(ordered) - 1)
        found = ordered[at] == v
        if not found.all():
            unknown = np.unique(v[~found])[:5]
            raise ValidationError(
                f"{what}: values {unknown.tolist()} are not among the classes {cls.tolist()}"
            )
        codes[known] = order[at].astype(np.uint32)
        return codes
    index = {c: i for i, c in enumerate(classes)}
    out = [index.get(v, -1) for v in values[known].tolist()]
    if -1 in out:
        names = sorted({str(v) for v in values[known].tolist() if v not in index})[:5]
        raise ValidationError(f"{what}: values {names} are not among the classes {list(classes)}")
    codes[known] = np.asarray(out, dtype=np.uint32)
    return codes


def _chunks(
    n: int,
    times: Optional[np.ndarray],
    chunk_size: Optional[int],
    chunk_number: Optional[int],
    chunk_period: Optional[str],
) -> list[tuple[int, int]]:
    """Chunk bounds over ``n`` rows (sorted by ``times`` when given): by size (the last
    chunk may be smaller), by number, or by calendar period of the timestamps."""
    if n == 0:
        raise ValidationError("the frame has no rows")
    given = [x is not None for x in (chunk_size, chunk_number, chunk_period)]
    if sum(given) > 1:
        raise ValidationError("give one of chunk_size, chunk_number and chunk_period")
    if chunk_period is not None:
        if times is None:
            raise ValidationError("chunk_period needs a timestamp column (timestamp=...)")
        import pandas as pd

        index = pd.DatetimeIndex(times)
        try:
            # fixed lengths ("5min", "2D") from the epoch; calendar periods ("W", "M") by name
            try:
                labels: np.ndarray = np.asarray(index.floor(chunk_period).asi8)
            except ValueError:
                labels = np.asarray(index.to_period(chunk_period).asi8)
        except (ValueError, TypeError) as e:
            raise ValidationError(
                f"chunk_period {chunk_period!r}: give a pandas frequency such as '1h', '1D', "
                f"'W' or 'M' ({e})"
            ) from e
        cuts = np.flatnonzero(labels[1:] != labels[:-1]) + 1
        bounds = [0, *cuts.tolist(), n]
        return list(zip(bounds[:-1], bounds[1:]))
    for name, value in (("chunk_size", chunk_size), ("chunk_number", chunk_number)):
        if value is not None and (
            not isinstance(value, (int, np.integer)) or isinstance(value, bool) or value < 1
        ):
            raise ValidationError(f"{name} must be a whole number of at least 1, not {value!r}")
    if chunk_size is None:
        number = 10 if chunk_number is None else int(chunk_number)
        if number > n:
            raise ValidationError(f"chunk_number={number} chunks of {n} rows: at most {n}")
        # exactly `number` chunks, their sizes differing by one row at most
        edges = [round(i * n / number) for i in range(number + 1)]
        return list(zip(edges[:-1], edges[1:]))
    return [(s, min(s + int(chunk_size), n)) for s in range(0, n, int(chunk_size))]


class _Prepared:
    """One frame as the estimator takes it: sorted by time, as codes and probabilities."""

    def __init__(
        self,
        frame: Any,
        what: str,
        classes: Sequence[Any],
        y_pred: str,
        y_pred_proba: Proba,
        y_true: Optional[str],
        timestamp: Optional[str],
        need_labels: bool,
    ) -> None:
        self.times: Optional[np.ndarray] = None
        order: Optional[np.ndarray] = None
        if timestamp is not None:
            import pandas as pd

            raw = _column(frame, timestamp, what)
            try:
                # every time in UTC, as naive datetime64 (zone-aware or not, pandas or polars)
                stamps = pd.to_datetime(pd.Series(raw), utc=True)
            except (ValueError, TypeError) as e:
                raise ValidationError(f"{what} {timestamp}: not times ({e})") from e
            if stamps.isna().any():
                raise ValidationError(
                    f"{what} {timestamp}: {int(stamps.isna().sum())} rows have no time"
                )
            times = stamps.dt.tz_convert(None).to_numpy()
            order = np.argsort(times, kind="stable")
            self.times = times[order]

        def take(values: np.ndarray) -> np.ndarray:
            return values if order is None else values[order]

        self.y_pred = _codes(take(_column(frame, y_pred, what)), classes, f"{what} {y_pred}", False)
        self.y_true: Optional[np.ndarray] = None
        if y_true is not None:
            try:
                labels = _column(frame, y_true, what)
            except ValidationError:
                if need_labels:
                    raise
            else:
                self.y_true = _codes(take(labels), classes, f"{what} {y_true}", True)
        if isinstance(y_pred_proba, str):
            proba = take(_column(frame, y_pred_proba, what)).astype(np.float64, copy=False)
        else:
            proba = np.column_stack(
                [
                    take(_column(frame, column, what)).astype(np.float64, copy=False)
                    for column in y_pred_proba.values()
                ]
            ).reshape(-1)
        self.proba = np.ascontiguousarray(proba, dtype=np.float64)
        self.rows = len(self.y_pred)


class PerformanceEstimate:
    """Estimated (and, where labels exist, realized) performance per chunk.

    ``to_pandas()`` gives one row per chunk and metric: ``chunk``, ``start`` and ``end``
    (row positions, in time order when a timestamp was given), ``start_time`` and
    ``end_time`` (with a timestamp), ``rows``, ``labelled``, ``metric``, ``estimate``,
    ``sampling_error``, ``lower`` and ``upper`` (the estimate ± 3 sampling errors, clipped
    to [0, 1]),
    ``lower_threshold`` and ``upper_threshold`` (the reference chunks' realized values, mean
    ± 3 standard deviations), ``alert`` (the estimate is outside them) and ``realized``.
    """

    def __init__(
        self,
        result: dict[str, Any],
        metrics: list[str],
        classes: list[Any],
        times: dict[str, Optional[np.ndarray]],
    ) -> None:
        self._result = result
        self.metrics = metrics
        self.classes = classes
        calibrated = list(result["calibrated"])
        #: Whether the probabilities were calibrated on the reference (per class when the
        #: problem has more than two).
        self.calibrated: Union[bool, dict[Any, bool]] = (
            calibrated[0] if len(classes) == 2 else dict(zip(classes, calibrated))
        )
        self._times = times

    def to_pandas(self, *, reference: bool = False) -> Any:
        """The estimates as a pandas DataFrame (with ``reference=True``, the reference
        chunks too, first, and a ``period`` column)."""
        import pandas as pd

        frame = pd.DataFrame({k: v for k, v in self._result.items() if k != "calibrated"})
        frame.insert(frame.columns.get_loc("labelled"), "rows", frame["end"] - frame["start"])
        for column in ("lower_threshold", "upper_threshold"):
            frame[column] = frame[column].astype("float64")
        for period, times in self._times.items():
            if times is None:
                continue
            rows = frame["period"] == period
            starts = frame.loc[rows, "start"].to_numpy()
            ends = frame.loc[rows, "end"].to_numpy() - 1
            frame.loc[rows, "start_time"] = pd.to_datetime(times[starts])
            frame.loc[rows, "end_time"] = pd.to_datetime(times[ends])
        if not reference:
            frame = (
                frame[frame["period"] == "analysis"].drop(columns="period").reset_index(drop=True)
            )
        return frame

    def alerts(self) -> Any:
        """The analysis chunks and metrics whose estimate is outside the thresholds."""
        frame = self.to_pandas()
        return frame[frame["alert"]].reset_index(drop=True)

    def __repr__(self) -> str:
        chunks = len(
            {c for c, p in zip(self._result["chunk"], self._result["period"]) if p == "analysis"}
        )
        alerts = sum(
            a for a, p in zip(self._result["alert"], self._result["period"]) if p == "analysis"
        )
        return f"<PerformanceEstimate {', '.join(self.metrics)}: {chunks} chunks, {alerts} alerts>"

    def _repr_html_(self) -> str:
        r = self._result
        rows = []
        for i, period in enumerate(r["period"]):
            if period != "analysis":
                continue

            def f(x: Optional[float]) -> str:
                return "—" if x is None or x != x else f"{x:.4f}"

            rows.append(
                [
                    r["chunk"][i],
                    f"{r['start'][i]:,}-{r['end'][i]:,}",
                    r["metric"][i],
                    f(r["estimate"][i]),
                    f"{f(r['lower'][i])} - {f(r['upper'][i])}",
                    f"{f(r['lower_threshold'][i])} - {f(r['upper_threshold'][i])}",
                    _html.Html("<b style='color:#b00'>alert</b>") if r["alert"][i] else "",
                    f(r["realized"][i]),
                ]
            )
        shown = rows[:60]
        more = (
            f" (first {len(shown)} of {len(rows)} rows; to_pandas() has all)"
            if len(rows) > len(shown)
            else ""
        )
        return _html.box(
            "performance estimate (CBPE)",
            f" calibrated: {self.calibrated}{more}",
            _html.table(
                ("chunk", "rows", "metric", "estimate", "band", "thresholds", "", "realized"),
                shown,
            ),
        )


def estimate_performance(
    reference: Any,
    analysis: Any,
    *,
    y_pred: str,
    y_pred_proba: Proba,
    y_true: str = "y_true",
    timestamp: Optional[str] = None,
    chunk_size: Optional[int] = None,
    chunk_number: Optional[int] = None,
    chunk_period: Optional[str] = None,
    metrics: Optional[Sequence[str]] = None,
    classes: Optional[Sequence[Any]] = None,
) -> PerformanceEstimate:
    """Estimates a classifier's performance on ``analysis`` rows without their labels.

    ``reference`` and ``analysis`` are pandas or polars DataFrames, pyarrow Tables or dicts
    of arrays. ``y_pred`` names the predicted class column; ``y_pred_proba`` the positive
    class's probability column (binary: classes 0 and 1, or False and True) or maps each
    class to its probability column (multiclass); ``y_true`` the labels, needed in the
    reference, used in the analysis where present (missing values: not known yet) for the
    realized values. ``timestamp`` orders the rows and gives each chunk its times; chunks
    are ``chunk_size`` rows, ``chunk_number`` equal parts (10 by default) or calendar
    periods (``chunk_period="W"``, pandas period names). ``metrics`` picks among roc_auc,
    f1, precision, recall, specificity and accuracy (all by default); multiclass metrics
    are macro averages. ``classes`` names a binary problem's two class values, negative
    first (default ``[0, 1]``; booleans count as 0 and 1): ``y_pred_proba`` is the
    probability of the second. Times are taken in UTC (zone-aware ones converted).

    The reference chunks set the alert thresholds (their realized values, mean ± 3 standard
    deviations). See the module's notes for the assumptions.
    """
    chosen = list(
        METRICS if metrics is None else [metrics] if isinstance(metrics, str) else metrics
    )
    unknown = [m for m in chosen if m not in METRICS]
    if unknown:
        raise ValidationError(f"metrics: unknown {unknown}; known: {', '.join(METRICS)}")
    if isinstance(y_pred_proba, str):
        class_list: list[Any] = [0, 1] if classes is None else list(classes)
        if len(class_list) != 2:
            raise ValidationError(
                "y_pred_proba names one column, which is the probability of the positive class "
                "of a binary problem; map each class to its column for more classes"
            )
    else:
        class_list = list(y_pred_proba.keys())
        if classes is not None and list(classes) != class_list:
            raise ValidationError("classes must be the keys of y_pred_proba, in the same order")
        if len(class_list) < 3:
            raise ValidationError(
                "y_pred_proba maps classes to columns for three or more classes; give a "
                "binary problem's positive-class column by name"
            )
    ref = _Prepared(
        reference, "reference", class_list, y_pred, y_pred_proba, y_true, timestamp, True
    )
    ana = _Prepared(
        analysis, "analysis", class_list, y_pred, y_pred_proba, y_true, timestamp, False
    )
    if ref.y_true is None:
        raise ValidationError(f"reference: no label column {y_true!r}")
    result = _core.estimate_performance(
        len(class_list),
        (ref.y_pred, ref.y_true, ref.proba),
        _chunks(ref.rows, ref.times, chunk_size, chunk_number, chunk_period),
        (ana.y_pred, ana.y_true, ana.proba),
        _chunks(ana.rows, ana.times, chunk_size, chunk_number, chunk_period),
        chosen,
    )
    return PerformanceEstimate(
        result, chosen, class_list, {"reference": ref.times, "analysis": ana.times}
    )
