"""Model tests: assertions for pytest suites and CI gates.

This module owns the assertions — :func:`assert_valid` (data against the schema a reference
profile implies), :func:`assert_no_drift`, :func:`assert_predictions_close` (a diff test of
two models), :func:`assert_better` (a metric's paired bootstrap interval) and
:func:`assert_reproducible` (training run twice) — and :class:`CheckResult`, what each
returns on success and carries in its :class:`CheckFailed` on failure. The pytest plugin
(:mod:`pilothouse.testing.plugin`) owns fixtures, the ``ph_model`` marker and reporting; it
collects every result of a test through :func:`_record`. Suites of these checks declared in
TOML, run by ``pilothouse check`` and recorded on a version, are :mod:`.suite`'s
(:func:`run_suite`, :class:`SuiteResult`).
"""

from __future__ import annotations

import contextvars
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Callable, Optional

import numpy as np

from pilothouse import _core
from pilothouse._paths import is_model_uri
from pilothouse.compare import _LOWER_IS_BETTER, resampled_classification
from pilothouse.drift import Profile, _to_table, drift, profile
from pilothouse.errors import InputError, ValidationError
from pilothouse.model import Model
from pilothouse.testing.suite import CheckOutcome, SuiteResult, load_suite, run_suite

__all__ = [
    "CheckFailed",
    "CheckOutcome",
    "CheckResult",
    "SuiteResult",
    "assert_better",
    "assert_no_drift",
    "assert_predictions_close",
    "assert_reproducible",
    "assert_valid",
    "load_suite",
    "run_suite",
]

# the results of the running test, when the pytest plugin collects them
_collector: contextvars.ContextVar[Optional[list[CheckResult]]] = contextvars.ContextVar(
    "pilothouse_checks", default=None
)

# rows of a failure table shown in a message, at most
_SHOWN = 10


@dataclass
class CheckResult:
    """One assertion's outcome: its name, whether it passed, a one-line summary, the rows
    of its table (one per column, output or metric examined) and its numbers."""

    check: str
    passed: bool
    summary: str
    rows: list[dict[str, Any]] = field(default_factory=list)
    details: dict[str, Any] = field(default_factory=dict)

    def __str__(self) -> str:
        lines = [f"{self.check}: {self.summary}"]
        if self.rows:
            keys = list(self.rows[0])
            cells = [[_cell(r.get(k)) for k in keys] for r in self.rows[:_SHOWN]]
            widths = [max(len(k), *(len(c[i]) for c in cells)) for i, k in enumerate(keys)]
            lines.append("  " + "  ".join(k.ljust(w) for k, w in zip(keys, widths)))
            for c in cells:
                lines.append("  " + "  ".join(v.ljust(w) for v, w in zip(c, widths)))
            if len(self.rows) > _SHOWN:
                lines.append(f"  ... and {len(self.rows) - _SHOWN} more")
        return "\n".join(lines)

    def to_dict(self) -> dict[str, Any]:
        return {
            "check": self.check,
            "passed": self.passed,
            "summary": self.summary,
            "rows": self.rows,
            "details": self.details,
        }


class CheckFailed(AssertionError):
    """A failed check; ``result`` holds what it found."""

    def __init__(self, result: CheckResult) -> None:
        super().__init__(str(result))
        self.result = result


def _cell(v: Any) -> str:
    if isinstance(v, float):
        return "nan" if math.isnan(v) else f"{v:.4g}"
    if isinstance(v, (list, tuple)):
        return "; ".join(str(x) for x in v)
    return "" if v is None else str(v)


def _record(result: CheckResult) -> CheckResult:
    """Hands the result to the running test's collector, then raises if it failed."""
    collected = _collector.get()
    if collected is not None:
        collected.append(result)
    if not result.passed:
        raise CheckFailed(result)
    return result


# -- data ------------------------------------------------------------------------------------


def _reference_profile(reference: Any, registry: Any = None) -> Profile:
    """A Profile from a Profile, a version (``models:/churn/3`` or a ModelVersion: its stored
    reference in ``registry``, the default one unless given) or data (profiled)."""
    if isinstance(reference, Profile):
        return reference
    from pilothouse.monitoring import get_reference
    from pilothouse.records import ModelVersion

    if isinstance(reference, ModelVersion) or (
        isinstance(reference, str) and is_model_uri(reference)
    ):
        stored = get_reference(reference, registry=registry)
        if stored is None:
            raise ValidationError(
                f"{reference}: the version has no stored reference; log the model with "
                "training_data= or call ph.set_reference"
            )
        return stored
    return profile(reference)


def _expected(summary: Mapping[str, Any], check: str) -> str:
    """What the reference says of a column, for the check that failed."""
    if check in ("out_of_range",):
        return f"range [{_cell(summary.get('min'))}, {_cell(summary.get('max'))}]"
    if check == "null":
        return "no missing values"
    if check == "wrong_type":
        return f"{summary.get('kind')} ({summary.get('dtype')})"
    if check == "unseen_category":
        top = [str(c[0]) for c in summary.get("top") or []]
        more = int(summary.get("distinct") or 0) > len(top)
        return f"categories {', '.join(top)}{', ...' if more else ''}"
    if check == "missing_column":
        return "present"
    if check == "extra_column":
        return "absent from the reference"
    return ""


def assert_valid(
    data: Any,
    reference: Any,
    *,
    max_failure_rate: float = 0.0,
    ignore: Sequence[str] = (),
    registry: Any = None,
) -> CheckResult:
    """Checks ``data`` against the schema its reference implies: every reference column
    present and no other, the same type (numbers or text), numbers within the reference's
    range, only categories the reference had, and no missing values where it had none.

    ``reference`` is a :class:`Profile`, a version (``"models:/churn/3"``: its stored
    reference in ``registry``, a Registry or URI, the default one unless given) or data to
    profile. A check fails when the share of rows failing it exceeds
    ``max_failure_rate`` (0: any row); ``ignore`` names columns to leave out. The checks are
    the server's own, run in Rust over Arrow batches.
    """
    if not 0.0 <= max_failure_rate <= 1.0:
        raise ValidationError(f"max_failure_rate must be from 0 to 1, not {max_failure_rate}")
    ref = _reference_profile(reference, registry)
    table = _to_table(data)
    if ignore:
        table = table.drop_columns([c for c in ignore if c in table.column_names])
    found = _core.check_quality(ref._data, table)
    rows = int(found["rows"])
    if rows == 0:
        # no rows to count failures by: the columns alone are checked
        names = set(table.column_names)
        issues: dict[str, dict[str, int]] = {}
        for c in ref.columns:
            if c not in names and c not in ignore:
                issues[c] = {"missing_column": 0}
        for c in names - set(ref.columns):
            issues[c] = {"extra_column": 0}
        found = {"rows": 0, "issues": issues}
    # what the reference says of each column, read only to explain a failure
    summaries = (
        {s["column"]: s for s in ref.summary(list(found["issues"]))} if found["issues"] else {}
    )
    failures: list[dict[str, Any]] = []
    for column, checks in found["issues"].items():
        if column in ignore:
            continue
        for check, n in checks.items():
            share = n / rows if rows else 1.0
            if share > max_failure_rate or (rows == 0 and check.endswith("_column")):
                failures.append(
                    {
                        "column": column,
                        "check": check,
                        "rows": int(n),
                        "share": share,
                        "reference": _expected(summaries.get(column, {}), check),
                    }
                )
    failures.sort(key=lambda f: (-f["rows"], f["column"], f["check"]))
    if failures:
        columns = sorted({f["column"] for f in failures})
        summary = (
            f"{len(failures)} check(s) failed on {len(columns)} column(s) over {rows:,} rows "
            f"(the reference has {len(ref.columns)}): {', '.join(columns[:_SHOWN])}"
        )
    else:
        summary = f"{rows:,} rows valid against {len(ref.columns)} reference column(s)"
    return _record(
        CheckResult(
            "assert_valid",
            not failures,
            summary,
            failures,
            {"rows": rows, "issues": found["issues"]},
        )
    )


def assert_no_drift(
    reference: Any,
    current: Any,
    *,
    max_drift_share: float = 0.0,
    columns: Optional[Sequence[str]] = None,
    registry: Any = None,
    **options: Any,
) -> CheckResult:
    """Fails when more than ``max_drift_share`` of the compared columns drifted from the
    reference (0: any column). Both sides as :func:`pilothouse.drift` takes them (a
    version URI as the reference: its stored profile); ``options`` go to it (``method``,
    ``threshold``, ``categorical``...); ``registry`` is where a version URI is read."""
    if not 0.0 <= max_drift_share <= 1.0:
        raise ValidationError(f"max_drift_share must be from 0 to 1, not {max_drift_share}")
    if isinstance(reference, str) and is_model_uri(reference):
        reference = _reference_profile(reference, registry)
    report = drift(reference, current, columns=columns, **options)
    drifted = [c for c in report.columns if c.drifted]
    compared = len(report.columns)
    share = len(drifted) / compared if compared else 0.0
    rows = [
        {
            "column": c.column,
            "method": c.method,
            "statistic": c.statistic,
            "p_value": c.p_value,
            "threshold": c.threshold,
            "why": "; ".join(c.reasons),
        }
        for c in drifted
    ]
    passed = share <= max_drift_share
    summary = (
        f"{len(drifted)} of {compared} column(s) drifted ({share:.0%}, allowed "
        f"{max_drift_share:.0%})"
    )
    if drifted:
        summary += f": {', '.join(c.column for c in drifted[:_SHOWN])}"
    return _record(
        CheckResult(
            "assert_no_drift",
            passed,
            summary,
            rows,
            {"drift_share": share, "drifted": [c.column for c in drifted]},
        )
    )


# -- models ----------------------------------------------------------------------------------


def _model(m: Any, registry: Any = None) -> Any:
    """A model, or the version a URI names loaded from ``registry`` (default: the default)."""
    if not isinstance(m, str):
        return m
    from pilothouse.serving import _registry

    return _registry(registry).load_model(m)


def _outputs(model: Any, X: Any, registry: Any = None) -> dict[str, np.ndarray]:
    """Every output of a pilothouse Model, or a scikit-learn-like estimator's ``label`` and
    (where it has them) ``probabilities``."""
    model = _model(model, registry)
    if isinstance(model, Model):
        return {k: np.asarray(v) for k, v in model.predict(X).items()}
    if hasattr(model, "predict"):
        out = {"label": np.asarray(model.predict(X))}
        if hasattr(model, "predict_proba"):
            out["probabilities"] = np.asarray(model.predict_proba(X))
        return out
    raise InputError(
        f"expected a pilothouse Model, a model URI or an object with predict(), "
        f"not {type(model).__name__}"
    )


def _is_float(a: np.ndarray) -> bool:
    return a.dtype.kind == "f"


def _row_examples(mask: np.ndarray, a: np.ndarray, b: np.ndarray) -> list[str]:
    """The first rows that differ: "row 12: 0.31 vs 0.29"."""
    return [f"row {i}: {_short(a[i])} vs {_short(b[i])}" for i in np.flatnonzero(mask)[:3]]


def _short(v: Any) -> str:
    values = np.asarray(v).reshape(-1).tolist()
    text = ", ".join(f"{x:.4g}" if isinstance(x, float) else str(x) for x in values[:4])
    return text if len(values) == 1 else f"[{text}{', ...' if len(values) > 4 else ''}]"


def _plain(v: Any) -> Any:
    v = np.asarray(v)
    return v.tolist() if v.ndim else v.item()


def _differ(x: np.ndarray, y: np.ndarray, atol: float, rtol: float) -> tuple[np.ndarray, float]:
    """Where two float arrays differ beyond ``atol + rtol * |y|`` (a NaN against a number
    does, NaN against NaN and equal infinities do not), and the largest difference (inf
    where a NaN meets a number)."""
    a, b = x.astype(np.float64), y.astype(np.float64)
    with np.errstate(invalid="ignore"):
        same = (a == b) | (np.isnan(a) & np.isnan(b))
        diff = np.where(same, 0.0, np.abs(a - b))
    diff = np.where(np.isnan(diff), np.inf, diff)
    bad = diff > atol + rtol * np.abs(np.nan_to_num(b))
    return bad, float(diff.max()) if diff.size else 0.0


def assert_predictions_close(
    candidate: Any,
    baseline: Any,
    X: Any,
    *,
    atol: float = 1e-6,
    rtol: float = 0.0,
    max_flip_rate: float = 0.0,
    outputs: Optional[Sequence[str]] = None,
    registry: Any = None,
) -> CheckResult:
    """A diff test of two models on the same rows: numeric outputs (probabilities, scores)
    within ``atol + rtol * |baseline|`` everywhere, and class outputs (labels) different
    on at most ``max_flip_rate`` of the rows. Models are pilothouse Models, model URIs, or
    objects with ``predict`` (and ``predict_proba``); ``outputs`` restricts the outputs
    compared; ``registry`` is where URIs are read."""
    a, b = _outputs(candidate, X, registry), _outputs(baseline, X, registry)
    names = [n for n in a if n in b] if outputs is None else list(outputs)
    missing = [n for n in names if n not in a or n not in b]
    if missing or not names:
        raise ValidationError(
            f"outputs {missing or names} are not given by both models "
            f"(candidate: {sorted(a)}, baseline: {sorted(b)})"
        )
    rows: list[dict[str, Any]] = []
    failed = False
    for name in names:
        x, y = a[name], b[name]
        if x.shape != y.shape:
            raise ValidationError(
                f"output {name!r}: the candidate's shape {x.shape} is not the baseline's {y.shape}"
            )
        n = x.shape[0] if x.ndim else 1
        if n == 0:
            raise ValidationError("X has no rows to compare the models on")
        if _is_float(x) and _is_float(y):
            bad, worst = _differ(x, y, atol, rtol)
            per_row = np.asarray(bad.reshape(n, -1).any(axis=1) if x.ndim else bad.reshape(1))
            count = int(per_row.sum())
            failed |= count > 0
            rows.append(
                {
                    "output": name,
                    "test": f"|diff| <= {atol:g} + {rtol:g}*|baseline|",
                    "rows_differing": count,
                    "share": count / n if n else 0.0,
                    "max_abs_diff": worst,
                    "examples": _row_examples(per_row, x.reshape(n, -1), y.reshape(n, -1)),
                }
            )
        else:
            flips: np.ndarray = (
                (x != y).reshape(n, -1).any(axis=1) if x.ndim else np.array([x != y])
            )
            count = int(flips.sum())
            rate = count / n if n else 0.0
            failed |= rate > max_flip_rate
            rows.append(
                {
                    "output": name,
                    "test": f"flip rate <= {max_flip_rate:g}",
                    "rows_differing": count,
                    "share": rate,
                    "max_abs_diff": None,
                    "examples": _row_examples(flips, x, y),
                }
            )
    bad_outputs = [
        r["output"]
        for r in rows
        if (r["max_abs_diff"] is not None and r["rows_differing"])
        or (r["max_abs_diff"] is None and r["share"] > max_flip_rate)
    ]
    summary = (
        f"outputs {', '.join(bad_outputs)} differ beyond tolerance"
        if failed
        else f"{len(names)} output(s) agree"
    )
    return _record(
        CheckResult("assert_predictions_close", not failed, summary, rows, {"outputs": names})
    )


def _classified(
    model: Any, X: Any, codes_of: dict[Any, int], positive: int, registry: Any
) -> tuple[np.ndarray, np.ndarray]:
    """A model's predicted class codes (by ``codes_of``) and probabilities (binary: of the
    column ``positive``; the columns are the classes in sorted order)."""
    classes = sorted(codes_of, key=_class_order)
    out = _outputs(model, X, registry)
    labels = out.get("label")
    if labels is None or labels.ndim != 1:
        labels = next((v for v in out.values() if v.ndim == 1 and not _is_float(v)), None)
    proba = next((v for v in out.values() if v.ndim == 2 and _is_float(v)), None)
    if labels is None or proba is None:
        raise ValidationError(
            f"assert_better needs a classifier's labels and probabilities; the model gives "
            f"{ {k: (v.dtype.str, v.shape) for k, v in out.items()} }"
        )
    if proba.shape[1] != len(classes):
        raise ValidationError(
            f"the model scores {proba.shape[1]} classes per row but y holds {len(classes)} "
            f"({classes}): y must hold every class the model knows (the probability columns "
            "are taken in the classes' sorted order, as scikit-learn's classes_)"
        )
    try:
        codes = np.array([codes_of[_plain(v)] for v in labels], dtype=np.uint32)
    except KeyError as e:
        raise ValidationError(f"the model predicted class {e.args[0]!r}, not among y") from None
    p = proba[:, positive] if len(classes) == 2 else proba
    return codes, np.ascontiguousarray(p, dtype=np.float64).reshape(-1)


def _class_order(v: Any) -> tuple[str, Any]:
    """Classes sort by value within a type (scikit-learn's classes_ order)."""
    return (str(type(v)), v)


def _metric(
    k: int, codes: np.ndarray, truth: np.ndarray, proba: np.ndarray, idx: np.ndarray, metric: str
) -> np.ndarray:
    """The metric on each row of resample indices ``idx`` (one resample per row)."""
    values = resampled_classification(k, codes, truth, proba, idx)
    if metric not in values:
        known = ", ".join(sorted(k for k in values if k != "confusion"))
        raise ValidationError(f"metric {metric!r} is not known; known: {known}")
    return np.asarray(values[metric], dtype=np.float64)


def assert_better(
    candidate: Any,
    baseline: Any,
    X: Any,
    y: Any,
    *,
    metric: str = "roc_auc",
    min_absolute_change: float = 0.0,
    confidence: float = 0.95,
    resamples: int = 1000,
    seed: int = 0,
    pos_label: Any = None,
    registry: Any = None,
) -> CheckResult:
    """Passes when the candidate beats the baseline on ``metric`` (roc_auc, accuracy, f1,
    precision, recall, specificity, log_loss, calibration_error) by at least
    ``min_absolute_change``, judged by the paired bootstrap interval of the difference
    (candidate minus baseline, ``resamples`` resamples of the same rows for both) at
    ``confidence``: its lower end must exceed the change (for metrics where lower is
    better, its upper end must be below minus the change), so two equal models do not
    pass. Like MLflow's ``MetricThreshold`` with an interval instead of one value.

    The models' probability columns are taken in the sorted order of ``y``'s classes (as
    scikit-learn's ``classes_``); a binary problem's positive class (for precision,
    recall, F1 and specificity) is ``pos_label``, by default the second of them."""
    if not 0.0 < confidence < 1.0:
        raise ValidationError(f"confidence must be between 0 and 1, not {confidence}")
    if resamples < 100:
        raise ValidationError(f"resamples must be at least 100, not {resamples}")
    truth_values = np.asarray(y)
    n = len(truth_values)
    if n < 2:
        raise ValidationError("assert_better needs at least two labelled rows")
    classes = sorted({_plain(v) for v in truth_values}, key=_class_order)
    k = len(classes)
    if k < 2:
        raise ValidationError(
            f"y holds one class only ({classes}); assert_better compares classifiers"
        )
    if pos_label is not None and pos_label not in classes:
        raise ValidationError(f"pos_label {pos_label!r} is not among y's classes {classes}")
    positive = 1 if pos_label is None or k > 2 else classes.index(pos_label)
    # class codes: the sorted order, but a binary problem's positive class is code 1
    order = classes if positive == 1 or k > 2 else [classes[1], classes[0]]
    codes_of = {c: i for i, c in enumerate(order)}
    a_codes, a_proba = _classified(candidate, X, codes_of, positive, registry)
    b_codes, b_proba = _classified(baseline, X, codes_of, positive, registry)
    truth = np.array([codes_of[_plain(v)] for v in truth_values], dtype=np.uint32)
    everything = np.arange(n)[None, :]
    a_value = float(_metric(k, a_codes, truth, a_proba, everything, metric)[0])
    b_value = float(_metric(k, b_codes, truth, b_proba, everything, metric)[0])
    rng = np.random.default_rng(seed)
    diffs: list[np.ndarray] = []
    batch = max(1, 2_000_000 // (n * (1 if k == 2 else k)))
    done = 0
    while done < resamples:
        m = min(batch, resamples - done)
        idx = rng.integers(0, n, size=(m, n))
        diffs.append(
            _metric(k, a_codes, truth, a_proba, idx, metric)
            - _metric(k, b_codes, truth, b_proba, idx, metric)
        )
        done += m
    d = np.concatenate(diffs)
    d = d[~np.isnan(d)]
    if d.size == 0:
        raise ValidationError(
            f"{metric} is not defined on these rows (one class in every resample?)"
        )
    alpha = 1.0 - confidence
    lower, upper = (float(v) for v in np.quantile(d, [alpha / 2, 1 - alpha / 2]))
    lower_is_better = metric in _LOWER_IS_BETTER
    if lower_is_better:
        passed = upper < -min_absolute_change
        bound = f"upper end {upper:+.4g} < {-min_absolute_change:+.4g}"
    else:
        passed = lower > min_absolute_change
        bound = f"lower end {lower:+.4g} > {min_absolute_change:+.4g}"
    difference = a_value - b_value
    verdict = "clears" if passed else "does not clear"
    summary = (
        f"{metric}: candidate {a_value:.4f}, baseline {b_value:.4f}, difference "
        f"{difference:+.4f}, {confidence:.0%} interval [{lower:+.4f}, {upper:+.4f}] "
        f"{verdict} the required change ({bound})"
    )
    rows = [
        {
            "metric": metric,
            "candidate": a_value,
            "baseline": b_value,
            "difference": difference,
            "lower": lower,
            "upper": upper,
            "required": min_absolute_change,
        }
    ]
    details = {"rows": n, "resamples": int(d.size), "confidence": confidence}
    return _record(CheckResult("assert_better", passed, summary, rows, details))


def assert_reproducible(
    train: Callable[[Any], Any],
    *,
    data: Any,
    runs: int = 2,
    atol: float = 1e-6,
    predict_on: Any = None,
) -> CheckResult:
    """Trains ``runs`` times with ``train(data)`` and checks that every model answers as the
    first did on ``predict_on`` (``data`` by default) within ``atol``: training is
    deterministic (its seeds are fixed, its data order stable). ``train`` returns a
    pilothouse Model or a scikit-learn-like estimator."""
    if runs < 2:
        raise ValidationError(f"runs must be at least 2, not {runs}")
    X = data if predict_on is None else predict_on
    first = _outputs(train(data), X)
    if first and all(v.ndim and v.shape[0] == 0 for v in first.values()):
        raise ValidationError("the rows to predict on are empty")
    rows: list[dict[str, Any]] = []
    for run in range(2, runs + 1):
        other = _outputs(train(data), X)
        for name, x in first.items():
            y = other.get(name)
            if y is None or y.shape != x.shape:
                rows.append(
                    {"run": run, "output": name, "rows_differing": None, "max_abs_diff": None}
                )
                continue
            n = x.shape[0] if x.ndim else 1
            if _is_float(x):
                differ, worst_diff = _differ(x, y, atol, 0.0)
                bad = differ.reshape(n, -1).any(axis=1)
                worst: Optional[float] = worst_diff
            else:
                bad = (x != y).reshape(n, -1).any(axis=1)
                worst = None
            if bad.any():
                rows.append(
                    {
                        "run": run,
                        "output": name,
                        "rows_differing": int(bad.sum()),
                        "max_abs_diff": worst,
                    }
                )
    passed = not rows
    summary = (
        f"{runs} training runs answer alike within {atol:g}"
        if passed
        else f"training is not reproducible: {len(rows)} output(s) of later runs differ from "
        f"the first"
    )
    return _record(CheckResult("assert_reproducible", passed, summary, rows, {"runs": runs}))
