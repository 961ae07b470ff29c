"""The drift crate's raw-data statistics against scipy (KS statistic, Wasserstein,
chi-square) and small numpy references (PSI, Hellinger), on many random cases."""

from __future__ import annotations

import math
import warnings

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from scipy import stats
from scipy.spatial.distance import jensenshannon

import pilothouse as ph
from pilothouse import _core

samples = st.lists(
    st.floats(min_value=-1e6, max_value=1e6, allow_nan=False, allow_infinity=False),
    min_size=1,
    max_size=300,
)
# Values drawn from a small set make ties, the case that trips ECDF implementations.
tied = st.lists(st.integers(min_value=-5, max_value=5).map(float), min_size=1, max_size=200)


@settings(max_examples=300, deadline=None)
@given(a=st.one_of(samples, tied), b=st.one_of(samples, tied))
def test_ks_statistic_matches_scipy(a: list[float], b: list[float]) -> None:
    # the statistic does not depend on the p-value method; asymp avoids scipy's own warnings
    with warnings.catch_warnings(), np.errstate(all="ignore"):
        warnings.simplefilter("ignore")  # scipy's p-value code warns on tiny samples
        expected = stats.ks_2samp(a, b, method="asymp").statistic
    assert abs(_core._drift_ks_statistic(a, b) - expected) <= 1e-9


def _check_exact(a: list[float], b: list[float]) -> None:
    """Our exact p-value equals scipy's exact computation wherever scipy's succeeds, and is
    None (asymptotic territory) wherever scipy's gives up."""
    from scipy.stats._stats_py import _attempt_exact_2kssamp

    d = _core._drift_ks_statistic(a, b)
    n1, n2 = len(a), len(b)
    with warnings.catch_warnings(), np.errstate(all="ignore"):
        warnings.simplefilter("ignore")
        ok, _, expected = _attempt_exact_2kssamp(n1, n2, math.gcd(n1, n2), d, "two-sided")
    ours = _core._drift_ks_pvalue_exact(d, n1, n2)
    if not ok or max(n1, n2) > 10_000:
        assert ours is None, (ours, expected, d)
        return
    assert ours is not None
    assert math.isclose(ours, expected, rel_tol=1e-6, abs_tol=1e-300), (ours, expected, d)


@settings(max_examples=300, deadline=None)
@given(a=st.one_of(samples, tied), b=st.one_of(samples, tied))
def test_exact_ks_pvalue_matches_scipy(a: list[float], b: list[float]) -> None:
    _check_exact(a, b)


@pytest.mark.parametrize(
    ("n1", "n2", "shift"),
    [
        (1000, 1000, 0.1),
        (3000, 4999, 0.05),
        (10_000, 7, 1.0),
        (2500, 10_000, 0.02),
        (10_001, 5, 0.0),
    ],
)
def test_exact_ks_pvalue_on_larger_samples(n1: int, n2: int, shift: float) -> None:
    rng = np.random.default_rng(n1 + n2)
    _check_exact(rng.normal(size=n1).tolist(), (rng.normal(size=n2) + shift).tolist())


@settings(max_examples=300, deadline=None)
@given(a=st.one_of(samples, tied), b=st.one_of(samples, tied))
def test_wasserstein_matches_scipy(a: list[float], b: list[float]) -> None:
    ours = _core._drift_wasserstein(a, b)
    theirs = stats.wasserstein_distance(a, b)
    assert math.isclose(ours, theirs, rel_tol=1e-9, abs_tol=1e-9 * max(1.0, abs(theirs)))


counts = st.lists(st.integers(min_value=0, max_value=5000), min_size=2, max_size=30)


@settings(max_examples=300, deadline=None)
@given(data=st.data())
def test_chi_square_matches_scipy(data: st.DataObject) -> None:
    a = data.draw(counts)
    b = data.draw(
        st.lists(st.integers(min_value=0, max_value=5000), min_size=len(a), max_size=len(a))
    )
    table = np.array([a, b], dtype=float)
    kept = table[:, table.sum(axis=0) > 0]  # categories absent from both carry no information
    if kept.shape[1] == 0 or (kept.sum(axis=1) == 0).any():
        with pytest.raises(ph.InputError):
            _core._drift_chi_square([float(x) for x in a], [float(x) for x in b])
        return
    statistic, p, dof = _core._drift_chi_square([float(x) for x in a], [float(x) for x in b])
    if kept.shape[1] == 1:
        assert (statistic, p, dof) == (0.0, 1.0, 0)
        return
    expected = stats.chi2_contingency(kept)
    assert dof == expected.dof
    assert abs(statistic - expected.statistic) <= 1e-9 * max(1.0, expected.statistic)
    assert math.isclose(p, expected.pvalue, rel_tol=1e-6, abs_tol=1e-300)


histograms = st.lists(
    st.floats(min_value=0, max_value=1e4, allow_nan=False), min_size=1, max_size=40
)


def _numpy_psi(p: np.ndarray, q: np.ndarray) -> float:
    p, q = np.maximum(p / p.sum(), 1e-4), np.maximum(q / q.sum(), 1e-4)
    return float(np.sum((q - p) * np.log(q / p)))


def _numpy_hellinger(p: np.ndarray, q: np.ndarray) -> float:
    p, q = p / p.sum(), q / q.sum()
    return float(np.sqrt(0.5 * np.sum((np.sqrt(p) - np.sqrt(q)) ** 2)))


@settings(max_examples=300, deadline=None)
@given(data=st.data())
def test_divergences_match_references(data: st.DataObject) -> None:
    p = data.draw(histograms)
    q = data.draw(
        st.lists(
            st.floats(min_value=0, max_value=1e4, allow_nan=False), min_size=len(p), max_size=len(p)
        )
    )
    if sum(p) <= 0 or sum(q) <= 0:
        with pytest.raises(ph.InputError, match="empty"):
            _core._drift_divergences(p, q)
        return
    ours = _core._drift_divergences(p, q)
    pa, qa = np.array(p), np.array(q)
    assert math.isclose(ours["psi"], _numpy_psi(pa, qa), rel_tol=1e-9, abs_tol=1e-12)
    assert math.isclose(ours["hellinger"], _numpy_hellinger(pa, qa), rel_tol=1e-9, abs_tol=1e-12)
    assert math.isclose(ours["js"], float(jensenshannon(pa, qa)), rel_tol=1e-7, abs_tol=1e-7)
    kl = float(stats.entropy(pa, qa))
    assert (math.isinf(ours["kl"]) and math.isinf(kl)) or math.isclose(
        ours["kl"], kl, rel_tol=1e-9, abs_tol=1e-12
    )


def test_bad_input_names_the_sample() -> None:
    with pytest.raises(ph.InputError, match="reference: the sample is empty"):
        _core._drift_ks_statistic([], [1.0])
    with pytest.raises(ph.InputError, match="current: the sample holds NaN"):
        _core._drift_wasserstein([1.0], [float("nan")])
    with pytest.raises(ph.InputError, match="2 reference categories but 3 current"):
        _core._drift_chi_square([1.0, 2.0], [1.0, 2.0, 3.0])


KOLMOGOROV_N = [1, 2, 5, 17, 60, 140, 141, 400, 2_000, 12_345, 99_999, 100_001, 500_000]


@pytest.mark.parametrize("n", KOLMOGOROV_N)
def test_kolmogorov_sf_matches_scipy_in_every_region(n: int) -> None:
    """kstwo.sf over x values crossing every algorithm's region for this n."""
    xs = set()
    for nx2 in (0.01, 0.3, 0.75, 0.76, 1.5, 2.1, 2.3, 3.9, 4.1, 10.0, 17.0, 100.0, 369.0, 371.0):
        xs.add(math.sqrt(nx2 / n))
    for t in (0.4, 0.6, 0.9, 1.0, n - 1.5, n - 0.5):  # t = n x near the closed-form edges
        xs.add(t / n)
    xs.update({0.3, 0.5, 0.7, 0.99})
    for x in sorted(v for v in xs if 0 < v < 1):
        expected = float(stats.kstwo.sf(x, n))
        ours = _core._drift_kolmogorov_sf(n, x)
        assert math.isclose(ours, expected, rel_tol=1e-6, abs_tol=1e-15), (n, x, ours, expected)


@pytest.mark.parametrize(
    ("n1", "n2", "shift"),
    [
        (20_000, 20_000, 0.0),
        (20_000, 20_000, 0.03),
        (50_000, 12_000, 0.01),
        (100_000, 3, 0.5),
        (15_000, 140, 0.2),
        (30_000, 10_001, 0.0),
    ],
)
def test_ks_pvalue_past_the_exact_range_matches_scipy(n1: int, n2: int, shift: float) -> None:
    rng = np.random.default_rng(n1 * 7 + n2)
    a = rng.normal(size=n1)
    b = rng.normal(size=n2) + shift
    expected = stats.ks_2samp(a, b)
    d = _core._drift_ks_statistic(a.tolist(), b.tolist())
    assert abs(d - expected.statistic) <= 1e-12
    ours = _core._drift_ks_pvalue(d, n1, n2)
    assert math.isclose(ours, float(expected.pvalue), rel_tol=1e-6, abs_tol=1e-15), (
        ours,
        expected.pvalue,
    )


@settings(max_examples=200, deadline=None)
@given(a=st.one_of(samples, tied), b=st.one_of(samples, tied))
def test_ks_pvalue_matches_scipy_auto(a: list[float], b: list[float]) -> None:
    with warnings.catch_warnings(), np.errstate(all="ignore"):
        warnings.simplefilter("ignore")
        expected = stats.ks_2samp(a, b)
    ours = _core._drift_ks_pvalue(_core._drift_ks_statistic(a, b), len(a), len(b))
    assert math.isclose(ours, float(expected.pvalue), rel_tol=1e-6, abs_tol=1e-15), (
        ours,
        expected.pvalue,
    )
