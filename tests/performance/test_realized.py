"""Realized metrics computed by the monitor crate (what ``mon.performance()`` reports) equal
scikit-learn's on the same rows: binary and multiclass classification per group, log loss,
the binned calibration error of ``calibration_curve``, and regression errors."""

from __future__ import annotations

import numpy as np
import pytest
from sklearn.calibration import calibration_curve
from sklearn.metrics import (
    accuracy_score,
    f1_score,
    log_loss,
    mean_absolute_error,
    mean_absolute_percentage_error,
    precision_score,
    r2_score,
    recall_score,
    roc_auc_score,
    root_mean_squared_error,
)

from pilothouse import _core

UNKNOWN = np.uint32(2**32 - 1)


def _binary(n: int, seed: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    p = rng.beta(2, 2, size=n)
    # probabilities on the bins' edges too, as tree models give
    p[: n // 10] = rng.choice([0.1, 0.2, 0.5, 0.7, 1.0], size=n // 10)
    y = (rng.random(n) < p).astype(np.uint32)
    return (p >= 0.5).astype(np.uint32), y, p


def _ece(y: np.ndarray, p: np.ndarray) -> float:
    """The binned calibration error from calibration_curve's bins (edges i * 0.1)."""
    true, predicted = calibration_curve(y, p, n_bins=10)
    bins = np.searchsorted(np.linspace(0.0, 1.0, 11)[1:-1], p)
    counts = np.bincount(bins, minlength=10)
    weights = counts[counts > 0] / len(p)
    return float(np.sum(np.abs(true - predicted) * weights))


def test_binary_metrics_per_group_equal_sklearns() -> None:
    y_pred, y_true, p = _binary(6000, seed=1)
    y_true[::7] = UNKNOWN  # not labelled yet
    bounds = [(0, 2000), (2000, 4500), (4500, 6000)]
    got = _core.realized_classification(2, y_pred, y_true, p, bounds)
    for g, (lo, hi) in enumerate(bounds):
        known = y_true[lo:hi] != UNKNOWN
        t, yp, pp = y_true[lo:hi][known], y_pred[lo:hi][known], p[lo:hi][known]
        assert got["accuracy"][g] == accuracy_score(t, yp)
        assert got["precision"][g] == pytest.approx(precision_score(t, yp), rel=1e-12)
        assert got["recall"][g] == pytest.approx(recall_score(t, yp), rel=1e-12)
        assert got["f1"][g] == pytest.approx(f1_score(t, yp), rel=1e-12)
        assert got["specificity"][g] == pytest.approx(recall_score(t, yp, pos_label=0), rel=1e-12)
        assert got["roc_auc"][g] == pytest.approx(roc_auc_score(t, pp), rel=1e-12)
        assert got["log_loss"][g] == pytest.approx(log_loss(t, pp, labels=[0, 1]), rel=1e-9)
        assert got["calibration_error"][g] == pytest.approx(_ece(t, pp), rel=1e-9, abs=1e-12)
        matrix = np.asarray(got["confusion"][g]).reshape(2, 2)
        for i in range(2):
            for j in range(2):
                assert matrix[i, j] == int(((t == i) & (yp == j)).sum())


def test_multiclass_macro_metrics_equal_sklearns() -> None:
    rng = np.random.default_rng(2)
    n, k = 5000, 4
    logits = rng.normal(size=(n, k)) * 1.5
    proba = np.exp(logits) / np.exp(logits).sum(axis=1, keepdims=True)
    y_true = np.array([rng.choice(k, p=row) for row in proba], dtype=np.uint32)
    y_pred = proba.argmax(axis=1).astype(np.uint32)
    got = _core.realized_classification(k, y_pred, y_true, proba.ravel(), [(0, n)])
    assert got["accuracy"][0] == accuracy_score(y_true, y_pred)
    for name, fn in (("precision", precision_score), ("recall", recall_score), ("f1", f1_score)):
        assert got[name][0] == pytest.approx(fn(y_true, y_pred, average="macro"), rel=1e-12)
    assert got["roc_auc"][0] == pytest.approx(
        roc_auc_score(y_true, proba, multi_class="ovr", average="macro"), rel=1e-12
    )
    assert got["log_loss"][0] == pytest.approx(log_loss(y_true, proba), rel=1e-9)
    top = proba.max(axis=1)
    assert got["calibration_error"][0] == pytest.approx(
        _ece((y_pred == y_true).astype(int), top), rel=1e-9
    )


def test_regression_errors_equal_sklearns() -> None:
    rng = np.random.default_rng(3)
    y_true = rng.normal(10, 3, size=3000)
    y_pred = y_true + rng.normal(0, 1, size=3000)
    missing = y_true.copy()
    missing[::5] = np.nan  # not labelled yet
    got = _core.realized_regression(y_pred, missing, [(0, 1500), (1500, 3000)])
    for g, (lo, hi) in enumerate([(0, 1500), (1500, 3000)]):
        known = ~np.isnan(missing[lo:hi])
        t, p = y_true[lo:hi][known], y_pred[lo:hi][known]
        assert got["mae"][g] == pytest.approx(mean_absolute_error(t, p), rel=1e-12)
        assert got["rmse"][g] == pytest.approx(root_mean_squared_error(t, p), rel=1e-12)
        assert got["mape"][g] == pytest.approx(mean_absolute_percentage_error(t, p), rel=1e-12)
        assert got["r2"][g] == pytest.approx(r2_score(t, p), rel=1e-12)


def test_bad_groups_are_refused() -> None:
    y_pred, y_true, p = _binary(10, seed=4)
    with pytest.raises(Exception, match="do not lie within"):
        _core.realized_classification(2, y_pred, y_true, p, [(5, 11)])
    with pytest.raises(Exception, match="probabilities are numbers from 0 to 1"):
        _core.realized_classification(2, y_pred, y_true, p + 1.0, [(0, 10)])
