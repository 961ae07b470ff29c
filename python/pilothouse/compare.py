"""Champion-challenger comparison on served traffic.

This module owns :func:`compare` and :class:`Comparison`: two sides of a deployment's
traffic (routes, versions or aliases) compared on a metric from the labels that arrived.
Where both answered the same requests (a shadow beside the primary) the comparison is
paired: the metric's difference on the same labelled requests, with a paired interval, and
the share of requests whose predicted class flips. Where they answered different requests
(weighted routes, an A/B test) the two samples are compared independently. The verdict says
whether the interval excludes no difference at the stated confidence. ``to_evidence()``
gives the summary ``request_promotion(..., evidence=...)`` keeps with a promotion request.
"""

from __future__ import annotations

import datetime as dt
import math
from dataclasses import dataclass, field
from statistics import NormalDist
from typing import Any, Union

import numpy as np

from pilothouse import _core, _html
from pilothouse.errors import ValidationError
from pilothouse.registry import Registry
from pilothouse.serving import _registry

__all__ = ["Comparison", "compare"]

When = Union[dt.datetime, dt.timedelta, str, None]
Side = Union[str, int]

# labelled answers each side needs, at least
MIN_LABELLED = 30
# metrics whose lower values are better
_LOWER_IS_BETTER = {"log_loss", "calibration_error", "mae", "rmse", "mape"}


@dataclass
class Comparison:
    """What :func:`compare` found: ``difference`` is challenger minus champion (positive is
    better for the challenger where higher is better)."""

    deployment: str
    metric: str
    champion: str
    challenger: str
    paired: bool
    requests: int
    labelled: int
    champion_value: float
    challenger_value: float
    difference: float
    lower: float
    upper: float
    confidence: float
    flip_rate: float
    verdict: str
    method: str
    details: dict[str, Any] = field(default_factory=dict)

    @property
    def significant(self) -> bool:
        """The interval excludes no difference."""
        return self.verdict != "no difference detected"

    def to_evidence(self) -> dict[str, Any]:
        """A JSON-ready summary, for ``request_promotion(..., evidence=...)``."""
        return {
            "kind": "champion_challenger",
            "deployment": self.deployment,
            "metric": self.metric,
            "champion": self.champion,
            "challenger": self.challenger,
            "paired": self.paired,
            "requests": self.requests,
            "labelled": self.labelled,
            "champion_value": _finite(self.champion_value),
            "challenger_value": _finite(self.challenger_value),
            "difference": _finite(self.difference),
            "interval": [_finite(self.lower), _finite(self.upper)],
            "confidence": self.confidence,
            "flip_rate": _finite(self.flip_rate),
            "verdict": self.verdict,
            "method": self.method,
        }

    def _repr_html_(self) -> str:
        rows = [
            ["metric", self.metric],
            [self.champion, f"{self.champion_value:.4f}"],
            [self.challenger, f"{self.challenger_value:.4f}"],
            [
                "difference",
                f"{self.difference:+.4f} [{self.lower:+.4f}, {self.upper:+.4f}] "
                f"at {self.confidence:.0%}",
            ],
            ["flip rate", "—" if math.isnan(self.flip_rate) else f"{self.flip_rate:.2%}"],
            ["requests (labelled)", f"{self.requests:,} ({self.labelled:,})"],
            ["comparison", ("paired, " if self.paired else "independent, ") + self.method],
        ]
        return _html.box(
            f"compare {self.deployment}",
            f": {self.verdict}",
            _html.table(("", ""), rows),
        )


def _finite(x: float) -> float | None:
    return None if math.isnan(x) else float(x)


def _rows_of(frame: Any, side: Side, deployment: str, registry: Registry) -> tuple[Any, str]:
    """The rows of one side: a route name, a version number, or an alias of the model."""
    if isinstance(side, (int, np.integer)) or (isinstance(side, str) and side.isdigit()):
        v = int(side)
        return frame[frame["version"] == v], f"version {v}"
    if isinstance(side, str):
        if side in set(frame["route"]):
            return frame[frame["route"] == side], f"route {side}"
        model = str(frame["model"].iloc[0]) if len(frame) else deployment
        try:
            v = registry.get_version(f"models:/{model}@{side}").version
        except Exception as e:
            routes = ", ".join(sorted(set(frame["route"])))
            raise ValidationError(
                f"{side!r} is not a route of '{deployment}' in that period ({routes}), a "
                f"version number or an alias of '{model}'"
            ) from e
        return frame[frame["version"] == v], f"{side} (version {v})"
    raise ValidationError(f"a side is a route name, a version number or an alias, not {side!r}")


def compare(
    deployment: str,
    champion: Side,
    challenger: Side,
    since: When = "7d",
    until: When = None,
    *,
    metric: str = "accuracy",
    confidence: float = 0.95,
    resamples: int = 2000,
    seed: int = 0,
    registry: Registry | str | None = None,
) -> Comparison:
    """Compares two sides of ``deployment``'s traffic in the period on ``metric``.

    When one side is the shadow, the requests both answered are compared in pairs;
    otherwise each side on its own requests (at least 30 labelled each). Accuracy's
    interval is the paired (or two-sample) normal interval of the per-request differences,
    and a paired verdict also needs McNemar's exact test; other metrics use a bootstrap of
    ``resamples`` resamples of the requests (paired resamples where the comparison is
    paired). The verdict names the better side when the interval at ``confidence``
    excludes 0."""
    from pilothouse import realized

    if not 0.5 <= confidence < 1.0:
        raise ValidationError(f"confidence={confidence}: a level such as 0.95")
    if resamples < 100:
        raise ValidationError(f"resamples={resamples}: at least 100")
    reg = _registry(registry)
    frame = realized.predictions(deployment, since, until, registry=reg)
    if frame.empty:
        raise ValidationError(f"'{deployment}' answered nothing in that period")
    outputs = realized._Outputs(frame, None, None, None)
    if metric not in realized._metrics(None, outputs):
        realized._metrics([metric], outputs)  # raises, naming the metrics
    frame = realized._clean(frame, outputs)
    a, a_name = _rows_of(frame, champion, deployment, reg)
    b, b_name = _rows_of(frame, challenger, deployment, reg)
    if a.empty or b.empty:
        raise ValidationError(
            f"no answers of {a_name if a.empty else b_name} in that period to compare"
        )
    # paired: one side is the shadow, which ran a copy of each request the other answered
    shadowed = bool(a["shadow"].all() != b["shadow"].all())
    shared = sorted(set(a["request_id"]) & set(b["request_id"])) if shadowed else []
    paired = len(shared) > 0
    if paired:
        a = a.drop_duplicates("request_id").set_index("request_id").loc[shared].reset_index()
        b = b.drop_duplicates("request_id").set_index("request_id").loc[shared].reset_index()
        # a shadow's row carries no feedback of its own: the request's label is the same
        b["target"] = a["target"].to_numpy()
        flip = float(
            np.mean(
                [
                    realized._text(x) != realized._text(y)
                    for x, y in zip(
                        a["output." + str(outputs.value)], b["output." + str(outputs.value)]
                    )
                ]
            )
        )
    else:
        flip = float("nan")
    a_l, b_l = a[a["target"].notna()], b[b["target"].notna()]
    if paired:
        keep = a["target"].notna().to_numpy()
        a_l, b_l = a[keep], b[keep]
    if len(a_l) < MIN_LABELLED or len(b_l) < MIN_LABELLED:
        raise ValidationError(
            f"too few labelled answers to compare ({len(a_l)} of {a_name}, {len(b_l)} of "
            f"{b_name}; at least {MIN_LABELLED} each): log feedback first"
        )
    rng = np.random.default_rng(seed)
    alpha = 1.0 - confidence
    exact_p: float | None = None
    va, vb = _value(a_l, outputs, metric), _value(b_l, outputs, metric)
    if metric == "accuracy" and not outputs.regression:
        ca = _correct(a_l, outputs)
        cb = _correct(b_l, outputs)
        z = NormalDist().inv_cdf(1 - alpha / 2)
        if paired:
            d = cb - ca
            se = float(np.std(d, ddof=1) / math.sqrt(len(d)))
            method = "paired normal interval, McNemar's exact test"
            # the interval is Wald's, loose when few answers differ: the verdict also needs
            # McNemar's exact test on the requests only one side got right
            exact_p = _mcnemar(int((d > 0).sum()), int((d < 0).sum()))
        else:
            se = math.sqrt(np.var(ca, ddof=1) / len(ca) + np.var(cb, ddof=1) / len(cb))
            method = "two-sample normal interval"
        lo, hi = (vb - va) - z * se, (vb - va) + z * se
    else:
        diffs = _bootstrap(a_l, b_l, outputs, metric, paired, resamples, rng)
        undefined = float(np.isnan(diffs).mean())
        if undefined > 0.01:
            raise ValidationError(
                f"{metric} is not defined on {undefined:.0%} of the resamples (too few labelled "
                "answers of some class): compare on a longer period, or on accuracy"
            )
        lo, hi = (float(x) for x in np.nanquantile(diffs, [alpha / 2, 1 - alpha / 2]))
        method = f"{'paired ' if paired else ''}bootstrap of {resamples} resamples"
    better_high = metric not in _LOWER_IS_BETTER
    if exact_p is not None and exact_p >= alpha:
        verdict = "no difference detected"
    elif lo > 0:
        verdict = f"{'challenger' if better_high else 'champion'} better"
    elif hi < 0:
        verdict = f"{'champion' if better_high else 'challenger'} better"
    else:
        verdict = "no difference detected"
    return Comparison(
        deployment=deployment,
        metric=metric,
        champion=a_name,
        challenger=b_name,
        paired=paired,
        requests=len(shared) if paired else len(a) + len(b),
        labelled=len(a_l) if paired else len(a_l) + len(b_l),
        champion_value=va,
        challenger_value=vb,
        difference=vb - va,
        lower=lo,
        upper=hi,
        confidence=confidence,
        flip_rate=flip,
        verdict=verdict,
        method=method,
    )


def _mcnemar(better: int, worse: int) -> float:
    """McNemar's exact two-sided p-value: of the requests only one side got right, the
    chance of a split at least this uneven if each were a fair coin."""
    n = better + worse
    if n == 0:
        return 1.0
    low = min(better, worse)
    log_half = n * math.log(0.5)
    tail = sum(
        math.exp(math.lgamma(n + 1) - math.lgamma(i + 1) - math.lgamma(n - i + 1) + log_half)
        for i in range(low + 1)
    )
    return min(1.0, 2.0 * tail)


def _correct(frame: Any, outputs: Any) -> np.ndarray:
    from pilothouse import realized

    y_pred, y_true, _ = realized._classified(frame, outputs)
    correct: np.ndarray = (y_pred == y_true).astype(np.float64)
    return correct


def _value(frame: Any, outputs: Any, metric: str) -> float:
    from pilothouse import realized

    codes = None if outputs.regression else realized._classified(frame, outputs)
    return float(realized._realized(frame, outputs, codes, [(0, len(frame))])[metric][0])


def _bootstrap(
    a: Any, b: Any, outputs: Any, metric: str, paired: bool, resamples: int, rng: Any
) -> np.ndarray:
    """The metric's difference (b minus a) on ``resamples`` resamples of the rows, computed
    a batch of resamples at a time by the monitor crate."""
    from pilothouse import realized

    def arrays(frame: Any) -> tuple[Any, ...]:
        if outputs.regression:
            return (
                np.array([realized._number(v) for v in frame["output." + outputs.value]]),
                np.array([realized._number(t) for t in frame["target"]]),
            )
        return realized._classified(frame, outputs)

    xa, xb = arrays(a), arrays(b)
    na, nb = len(a), len(b)
    out: list[np.ndarray] = []
    width = 1 if outputs.regression or len(outputs.classes) == 2 else len(outputs.classes)
    batch = max(1, 2_000_000 // (max(na, nb) * width))
    done = 0
    while done < resamples:
        m = min(batch, resamples - done)
        ia = rng.integers(0, na, size=(m, na))
        ib = ia if paired else rng.integers(0, nb, size=(m, nb))
        va = _metric_of(xa, ia, outputs, metric)
        vb = _metric_of(xb, ib, outputs, metric)
        out.append(vb - va)
        done += m
    return np.concatenate(out)


def _metric_of(x: tuple[Any, ...], idx: np.ndarray, outputs: Any, metric: str) -> np.ndarray:
    m, n = idx.shape
    flat = idx.reshape(-1)
    bounds = [(i * n, (i + 1) * n) for i in range(m)]
    if outputs.regression:
        values = _core.realized_regression(
            np.ascontiguousarray(x[0][flat]), np.ascontiguousarray(x[1][flat]), bounds
        )
        return np.asarray(values[metric])
    y_pred, y_true, proba = x
    values = resampled_classification(len(outputs.classes), y_pred, y_true, proba, idx)
    if metric in ("precision_micro", "recall_micro", "f1_micro"):
        metric = "accuracy"
    return np.asarray(values[metric])


def resampled_classification(
    k: int, y_pred: np.ndarray, y_true: np.ndarray, proba: np.ndarray, idx: np.ndarray
) -> dict[str, Any]:
    """Every classification metric of each resample (a row of indices ``idx`` into the
    rows of class codes and probabilities; binary: one per row), computed in one call by
    the monitor crate: metric name -> one value per resample."""
    m, n = idx.shape
    flat = idx.reshape(-1)
    width = 1 if k == 2 else k
    values: dict[str, Any] = _core.realized_classification(
        k,
        np.ascontiguousarray(y_pred[flat]),
        np.ascontiguousarray(y_true[flat]),
        np.ascontiguousarray(proba.reshape(-1, width)[flat].reshape(-1)),
        [(i * n, (i + 1) * n) for i in range(m)],
    )
    return values
