"""ph.drift on raw data (exact mode) against scipy and small numpy references, on many
random cases, through the public API: the report's statistics are the ones scipy gives."""

from __future__ import annotations

import math
import warnings

import numpy as np
import pandas as pd
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from scipy import stats
from scipy.spatial.distance import jensenshannon

import pilothouse as ph
from pilothouse import _core

finite = st.floats(min_value=-1e6, max_value=1e6, allow_nan=False, allow_infinity=False)
samples = st.lists(finite, min_size=2, max_size=300)
tied = st.lists(st.integers(min_value=-5, max_value=5).map(float), min_size=2, max_size=200)


def _report(a: list[float], b: list[float], method: str) -> dict:
    ref = pd.DataFrame({"x": np.asarray(a, dtype=np.float64)})
    cur = pd.DataFrame({"x": np.asarray(b, dtype=np.float64)})
    report = ph.drift(ref, cur, method=method)
    assert report.mode == "exact"
    return report.column("x")


def _close(actual: float, expected: float, rel: float, abs_: float = 1e-12) -> None:
    assert actual == pytest.approx(expected, rel=rel, abs=abs_), (actual, expected)


@settings(max_examples=150, deadline=None)
@given(a=st.one_of(samples, tied), b=st.one_of(samples, tied))
def test_ks_statistic_and_pvalue_match_ks_2samp(a: list[float], b: list[float]) -> None:
    with warnings.catch_warnings(), np.errstate(all="ignore"):
        warnings.simplefilter("ignore")
        expected = stats.ks_2samp(a, b)
    got = _report(a, b, "ks")
    assert abs(got["statistic"] - expected.statistic) <= 1e-9
    _close(got["p_value"], expected.pvalue, rel=1e-6, abs_=1e-300)


@settings(max_examples=150, deadline=None)
@given(a=st.one_of(samples, tied), b=st.one_of(samples, tied))
def test_wasserstein_matches_scipy_normed_by_the_reference_std(
    a: list[float], b: list[float]
) -> None:
    expected = stats.wasserstein_distance(a, b) / max(float(np.std(a)), 0.001)
    got = _report(a, b, "wasserstein")["statistic"]
    _close(got, expected, rel=1e-9, abs_=1e-9)


@settings(max_examples=120, deadline=None)
@given(a=st.one_of(samples, tied), b=st.one_of(samples, tied))
def test_cramer_von_mises_matches_scipy(a: list[float], b: list[float]) -> None:
    # method="auto": exact for samples of at most 20 values, asymptotic above
    expected = stats.cramervonmises_2samp(a, b)
    got = _report(a, b, "cramer_von_mises")
    _close(got["statistic"], expected.statistic, rel=1e-9, abs_=1e-9)
    _close(got["p_value"], expected.pvalue, rel=1e-6, abs_=1e-12)


def test_cramer_von_mises_on_large_samples() -> None:
    rng = np.random.default_rng(3)
    for shift in (0.0, 0.02, 0.1):
        a = rng.normal(size=30_000)
        b = rng.normal(shift, size=20_000)
        expected = stats.cramervonmises_2samp(a, b)
        t, p = _core._drift_cramer_von_mises(a.tolist(), b.tolist())
        _close(t, expected.statistic, rel=1e-7)
        _close(p, expected.pvalue, rel=1e-6, abs_=1e-12)


categories = st.lists(st.sampled_from(["a", "b", "c", "d", "e"]), min_size=1, max_size=300)


@settings(max_examples=150, deadline=None)
@given(a=categories, b=categories)
def test_chi_square_matches_chi2_contingency(a: list[str], b: list[str]) -> None:
    labels = sorted(set(a) | set(b))
    table = np.array([[a.count(k) for k in labels], [b.count(k) for k in labels]])
    got = ph.drift(pd.DataFrame({"c": a}), pd.DataFrame({"c": b}), method="chisquare").column("c")
    if len(labels) == 1:
        assert got["statistic"] == 0.0 and got["p_value"] == 1.0
        return
    expected = stats.chi2_contingency(table)
    _close(got["statistic"], expected.statistic, rel=1e-9, abs_=1e-9)
    _close(got["p_value"], expected.pvalue, rel=1e-6, abs_=1e-300)


def _decile_bins(a: np.ndarray, b: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The documented bins: reference deciles (numpy's linear quantiles), (e_i, e_i+1]."""
    edges = np.unique(np.quantile(a, np.arange(1, 10) / 10))
    sa, sb = np.sort(a), np.sort(b)

    def counts(s: np.ndarray) -> np.ndarray:
        at = np.searchsorted(s, edges, side="right")
        return np.diff(np.concatenate([[0], at, [len(s)]])).astype(float)

    return counts(sa), counts(sb)


def _psi(p: np.ndarray, q: np.ndarray) -> float:
    p, q = np.maximum(p / p.sum(), 1e-4), np.maximum(q / q.sum(), 1e-4)
    return float(np.sum((q - p) * np.log(q / p)))


def _hellinger(p: np.ndarray, q: np.ndarray) -> float:
    p, q = p / p.sum(), q / q.sum()
    return float(np.sqrt(np.sum((np.sqrt(p) - np.sqrt(q)) ** 2) / 2))


def _kl(p: np.ndarray, q: np.ndarray) -> float:
    return float(stats.entropy(p / p.sum(), q / q.sum()))


@settings(max_examples=100, deadline=None)
@given(a=st.one_of(samples, tied), b=st.one_of(samples, tied))
def test_binned_divergences_match_a_numpy_reference(a: list[float], b: list[float]) -> None:
    p, q = _decile_bins(np.asarray(a), np.asarray(b))
    with np.errstate(all="ignore"):
        expected = {
            "psi": _psi(p, q),
            "hellinger": _hellinger(p, q),
            "jensenshannon": float(jensenshannon(p / p.sum(), q / q.sum())),
            "kl_div": _kl(p, q),
        }
    for method, value in expected.items():
        got = _report(a, b, method)["statistic"]
        if math.isinf(value):
            assert math.isinf(got)
        else:
            _close(got, value, rel=1e-9, abs_=1e-12)


def test_large_samples_take_the_asymptotic_ks_path() -> None:
    rng = np.random.default_rng(7)
    a, b = rng.normal(size=50_000), rng.normal(0.01, size=40_000)
    got = _report(a.tolist(), b.tolist(), "ks")
    expected = stats.ks_2samp(a, b)
    assert abs(got["statistic"] - expected.statistic) <= 1e-12
    _close(got["p_value"], expected.pvalue, rel=1e-6)
