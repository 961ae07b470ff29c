"""Drift reports: injected drift is found in exactly the right columns at the documented
defaults, data-quality checks, prediction drift on a real model's outputs, and the HTML
report opened in a real headless Chromium."""

from __future__ import annotations

import re
import subprocess
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

import pilothouse as ph

STABLE = ["income", "age", "tenure", "plan", "active", "visits"]
DRIFTED = ["mean_shift", "variance", "channel_mix", "new_country", "with_nulls"]


def _synthetic(n: int, seed: int, drift: bool) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    channels = ["web", "store", "phone", "partner"]
    mix = [0.1, 0.2, 0.3, 0.4] if drift else [0.4, 0.3, 0.2, 0.1]
    countries = ["fr", "de", "es", "it"]
    country = rng.choice(countries, n, p=[0.4, 0.3, 0.2, 0.1]).astype(object)
    if drift:
        country[rng.random(n) < 0.2] = "pt"  # a category the reference never had
    with_nulls = rng.gamma(2.0, 2.0, n)
    if drift:
        with_nulls[rng.random(n) < 0.25] = np.nan
    return pd.DataFrame(
        {
            "income": rng.lognormal(10, 0.5, n),
            "age": rng.integers(18, 90, n),
            "tenure": rng.exponential(3.0, n),
            "plan": rng.choice(["basic", "plus", "pro"], n, p=[0.6, 0.3, 0.1]),
            "active": rng.random(n) < 0.7,
            "visits": rng.poisson(3, n),
            "mean_shift": rng.normal(0.5 if drift else 0.0, 1.0, n),
            "variance": rng.normal(0.0, 2.0 if drift else 1.0, n),
            "channel_mix": rng.choice(channels, n, p=mix),
            "new_country": country,
            "with_nulls": with_nulls,
        }
    )


@pytest.fixture(scope="module")
def data() -> tuple[pd.DataFrame, pd.DataFrame]:
    return _synthetic(40_000, 1, drift=False), _synthetic(30_000, 2, drift=True)


@pytest.mark.parametrize("mode", ["exact", "profile"])
def test_injected_drift_is_found_in_exactly_those_columns(
    data: tuple[pd.DataFrame, pd.DataFrame], mode: str
) -> None:
    ref, cur = data
    report = ph.drift(ref, cur) if mode == "exact" else ph.drift(ph.profile(ref), ph.profile(cur))
    assert report.mode == mode
    assert sorted(report.drifted_columns) == sorted(DRIFTED), report.to_pandas()[
        ["column", "method", "statistic", "reasons"]
    ]
    assert not report.dataset_drift  # 5 of 11 columns: below the 50% share
    assert report.drifted_share == pytest.approx(5 / 11)
    table = report.to_pandas().set_index("column")
    assert table.loc["mean_shift", "method"] == "wasserstein"
    assert table.loc["channel_mix", "method"] == "jensenshannon"
    assert table.loc["visits", "kind"] == "categorical"  # small integers are categories
    assert table.loc["new_country", "unseen_categories"] == ["pt"]
    assert table.loc["new_country", "unseen_share"] == pytest.approx(0.2, abs=0.01)
    assert "missing values" in table.loc["with_nulls", "reasons"]
    assert table.loc["with_nulls", "current_missing"] == pytest.approx(0.25, abs=0.01)
    for column in STABLE:
        assert not table.loc[column, "drifted"], column


def test_no_drift_between_two_samples_of_one_distribution() -> None:
    report = ph.drift(_synthetic(20_000, 5, False), _synthetic(20_000, 6, False))
    assert report.drifted_columns == []


def test_small_samples_use_tests_and_p_values(data: tuple[pd.DataFrame, pd.DataFrame]) -> None:
    ref, cur = data
    report = ph.drift(ref.iloc[:800], cur.iloc[:600])
    table = report.to_pandas().set_index("column")
    assert table.loc["income", "method"] == "ks"
    assert table.loc["plan", "method"] == "chisquare"
    assert table.loc["income", "threshold"] == 0.05
    assert table.loc["mean_shift", "drifted"] and not table.loc["income", "drifted"]


def test_methods_and_thresholds_per_column(data: tuple[pd.DataFrame, pd.DataFrame]) -> None:
    ref, cur = data
    report = ph.drift(
        ref,
        cur,
        methods={"income": "psi", "plan": "hellinger", "mean_shift": "cramer_von_mises"},
        thresholds={"income": 0.5},
        columns=["income", "plan", "mean_shift"],
    )
    table = report.to_pandas().set_index("column")
    assert list(table["method"]) == ["psi", "hellinger", "cramer_von_mises"]
    assert table.loc["income", "threshold"] == 0.5
    assert table.loc["mean_shift", "p_value"] < 1e-6  # scipy's series stops near 1e-7
    with pytest.raises(ph.InputError, match=r"column 'plan'.*ks method needs numbers"):
        ph.drift(ref, cur, methods={"plan": "ks"})
    with pytest.raises(ph.InputError, match="'magic' is not a drift method"):
        ph.drift(ref, cur, method="magic")
    with pytest.raises(ph.InputError, match="column 'nope'"):
        ph.drift(ref, cur, methods={"nope": "ks"})


def test_schema_and_type_changes_are_reported() -> None:
    ref = pd.DataFrame({"a": [1.0, 2.0, 3.0] * 100, "b": ["x", "y", "z"] * 100, "gone": 1.0})
    cur = pd.DataFrame({"a": ["1", "2", "3"] * 100, "b": ["x", "y", "z"] * 100, "new": 2.0})
    report = ph.drift(ref, cur)
    assert report.missing_columns == ["gone"]
    assert report.extra_columns == ["new"]
    a = report.column("a")
    assert a["type_mismatch"] and a["drifted"]
    assert "type changed from float" in a["reasons"][0]
    assert not report.column("b")["drifted"]


def test_constant_and_out_of_range_checks() -> None:
    ref = pd.DataFrame({"c": [5.0] * 2000, "r": np.linspace(0, 1, 2000)})
    cur = pd.DataFrame({"c": [5.0] * 2000, "r": np.linspace(0.5, 1.5, 2000)})
    report = ph.drift(ref, cur)
    assert report.column("c")["reference_constant"]
    assert report.column("r")["out_of_range_share"] == pytest.approx(0.5, abs=0.001)


def test_empty_current_data_is_an_error() -> None:
    with pytest.raises(ph.InputError, match="current data has no rows"):
        ph.drift(pd.DataFrame({"x": [1.0]}), pd.DataFrame({"x": pd.Series([], dtype=float)}))


def test_prediction_drift_on_model_outputs(logreg_nozipmap: tuple[Path, np.ndarray]) -> None:
    path, x = logreg_nozipmap
    model = ph.load_model(path)
    rng = np.random.default_rng(0)
    base = np.repeat(x, 500, axis=0)[:4000].astype(np.float32)
    ref_out = model.predict(base + rng.normal(0, 0.05, base.shape).astype(np.float32))
    same_out = model.predict(base + rng.normal(0, 0.05, base.shape).astype(np.float32))
    moved_out = model.predict(base * 1.8 + 1.0)
    assert set(ref_out) == {"label", "probabilities"}
    quiet = ph.drift(ref_out, same_out)
    assert quiet.drifted_columns == []
    loud = ph.drift(ref_out, moved_out)
    kinds = {c.column: c.kind for c in loud.columns}
    assert kinds["label"] == "categorical"  # class labels compare as categories
    assert kinds["probabilities_0"] == "numeric"  # probabilities as numbers
    assert "probabilities_0" in loud.drifted_columns
    # profiles of outputs work the same way
    assert ph.drift(ph.profile(ref_out), ph.profile(moved_out)).dataset_drift == loud.dataset_drift


def _wide(n: int, seed: int, drift: bool) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    cols = {}
    for j in range(40):
        cols[f"num{j}"] = rng.normal(0.3 if drift and j < 5 else 0.0, 1.0, n)
    for j in range(10):
        cols[f"cat{j}"] = rng.choice([f"v{k}" for k in range(30)], n)
    return pd.DataFrame(cols)


def test_html_report_is_small_self_contained_and_sortable(tmp_path: Path) -> None:
    ref, cur = _wide(200_000, 1, False), _wide(200_000, 2, True)
    report = ph.drift(ph.profile(ref), ph.profile(cur))
    path = report.save_html(tmp_path / "drift.html")
    text = path.read_text()
    # summaries only: the size does not depend on the number of rows
    assert len(text.encode()) < 2_000_000
    assert "http://" not in text.replace('xmlns="http://www.w3.org/2000/svg"', "")
    assert "https://" not in text and "<link" not in text
    assert text.count("<svg") == 50
    fragment = report._repr_html_()
    assert fragment.count("<tr class=") == 50 and "<script>" in fragment
    assert "dataset drift" in fragment or "no dataset drift" in fragment


def test_saved_report_renders_in_headless_chromium(tmp_path: Path) -> None:
    ref, cur = _wide(20_000, 3, False), _wide(20_000, 4, True)
    path = ph.drift(ref, cur).save_html(tmp_path / "report.html")
    profile_dir = tmp_path / "chromium-profile"
    run = subprocess.run(
        [
            "chromium",
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--disable-dev-shm-usage",
            f"--user-data-dir={profile_dir}",
            "--virtual-time-budget=2000",
            "--dump-dom",
            path.as_uri(),
        ],
        capture_output=True,
        text=True,
        timeout=120,
    )
    dom = run.stdout
    assert run.returncode == 0, run.stderr[-2000:]
    # the script ran (it marks the table) and the table and charts are in the DOM
    assert 'data-sortable="ready"' in dom
    rows = re.findall(r'<tr class="ph-(drifted|ok)"', dom)
    assert len(rows) == 50
    assert rows.count("drifted") == 5
    assert dom.count("<svg") == 50
    assert len(re.findall(r'<rect data-side="current"', dom)) > 500
    screenshot = tmp_path / "report.png"
    shot = subprocess.run(
        [
            "chromium",
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--disable-dev-shm-usage",
            f"--user-data-dir={profile_dir}",
            "--window-size=1400,900",
            f"--screenshot={screenshot}",
            path.as_uri(),
        ],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert shot.returncode == 0, shot.stderr[-2000:]
    assert screenshot.stat().st_size > 20_000  # a rendered page, not a blank one
