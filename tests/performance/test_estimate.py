"""ph.estimate_performance: CBPE on frames, against scikit-learn's realized metrics."""

from __future__ import annotations

import numpy as np
import pandas as pd
import polars as pl
import pyarrow as pa
import pytest
from sklearn.linear_model import LogisticRegression
from sklearn.metrics import (
    accuracy_score,
    f1_score,
    precision_score,
    recall_score,
    roc_auc_score,
)

import pilothouse as ph

METRICS = ["roc_auc", "f1", "precision", "recall", "specificity", "accuracy"]


def _world(
    n: int, seed: int, shift: float = 0.0, concept: bool = False
) -> tuple[np.ndarray, np.ndarray]:
    """Inputs and labels: labels follow a fixed logistic relation to the inputs (flipped in
    sign for ``concept``), inputs move by ``shift``."""
    rng = np.random.default_rng(seed)
    X = rng.normal(size=(n, 3)) + shift * np.array([1.0, -0.6, 0.3])
    z = X @ np.array([1.4, -1.0, 0.6]) - 0.2
    if concept:
        z = -z
    y = (rng.random(n) < 1 / (1 + np.exp(-z))).astype(np.int64)
    return X, y


@pytest.fixture(scope="module")
def model() -> LogisticRegression:
    X, y = _world(20_000, 0)
    return LogisticRegression().fit(X, y)


def _frame(model: LogisticRegression, X: np.ndarray, y: np.ndarray) -> pd.DataFrame:
    proba = model.predict_proba(X)[:, 1]
    return pd.DataFrame({"proba": proba, "pred": model.predict(X), "target": y})


def test_estimates_follow_performance_under_covariate_shift(model: LogisticRegression) -> None:
    reference = _frame(model, *_world(50_000, 1))
    # the inputs move further chunk by chunk; the relation to the labels does not
    parts = [_frame(model, *_world(5_000, 10 + i, shift=0.25 * i)) for i in range(12)]
    analysis = pd.concat(parts, ignore_index=True)
    est = ph.estimate_performance(
        reference,
        analysis.drop(columns="target"),
        y_pred="pred",
        y_pred_proba="proba",
        y_true="target",
        chunk_size=5_000,
        metrics=METRICS,
    )
    frame = est.to_pandas()
    assert len(frame) == 12 * len(METRICS)
    inside = 0
    for (chunk, metric), row in frame.set_index(["chunk", "metric"]).iterrows():
        part = parts[chunk]
        realized = {
            "roc_auc": roc_auc_score(part["target"], part["proba"]),
            "f1": f1_score(part["target"], part["pred"]),
            "precision": precision_score(part["target"], part["pred"]),
            "recall": recall_score(part["target"], part["pred"]),
            "specificity": recall_score(part["target"], part["pred"], pos_label=0),
            "accuracy": accuracy_score(part["target"], part["pred"]),
        }[metric]
        assert row["lower"] <= row["estimate"] <= row["upper"]
        inside += row["lower"] <= realized <= row["upper"]
    # the band holds the realized value in at least 90% of chunks and metrics
    assert inside >= 0.9 * len(frame), f"{inside} of {len(frame)}"
    # accuracy really moved with the shift (the rows move away from the boundary), and the
    # estimate moved with it
    accuracy = frame[frame["metric"] == "accuracy"]["estimate"].to_numpy()
    assert accuracy[-1] > accuracy[0] + 0.1, accuracy


def test_realized_values_are_scikit_learns_exactly(model: LogisticRegression) -> None:
    reference = _frame(model, *_world(20_000, 2))
    analysis = _frame(model, *_world(9_000, 3, shift=0.5))
    # labels known for part of the rows only
    known = analysis.copy()
    known.loc[known.index % 3 == 0, "target"] = np.nan
    est = ph.estimate_performance(
        reference,
        known,
        y_pred="pred",
        y_pred_proba="proba",
        y_true="target",
        chunk_number=3,
        metrics=METRICS,
    )
    frame = est.to_pandas()
    for chunk in range(3):
        rows = known.iloc[chunk * 3_000 : (chunk + 1) * 3_000].dropna()
        got = frame[frame["chunk"] == chunk].set_index("metric")
        assert (got["labelled"] == len(rows)).all()
        y = rows["target"].astype(int)
        assert got.loc["accuracy", "realized"] == pytest.approx(
            accuracy_score(y, rows["pred"]), abs=1e-12
        )
        assert got.loc["f1", "realized"] == pytest.approx(f1_score(y, rows["pred"]), abs=1e-12)
        assert got.loc["precision", "realized"] == pytest.approx(
            precision_score(y, rows["pred"]), abs=1e-12
        )
        assert got.loc["recall", "realized"] == pytest.approx(
            recall_score(y, rows["pred"]), abs=1e-12
        )
        assert got.loc["roc_auc", "realized"] == pytest.approx(
            roc_auc_score(y, rows["proba"]), abs=1e-12
        )


def test_multiclass_macro_metrics() -> None:
    rng = np.random.default_rng(5)
    n = 30_000
    X = rng.normal(size=(n, 3))
    y = np.argmax(X @ rng.normal(size=(3, 3)) + rng.gumbel(size=(n, 3)), axis=1)
    clf = LogisticRegression().fit(X[:10_000], y[:10_000])
    proba = clf.predict_proba(X)
    frame = pd.DataFrame({f"p{c}": proba[:, c] for c in range(3)})
    frame["pred"] = clf.predict(X)
    frame["target"] = y
    reference, analysis = frame.iloc[:15_000], frame.iloc[15_000:].reset_index(drop=True)
    est = ph.estimate_performance(
        reference,
        analysis,
        y_pred="pred",
        y_pred_proba={0: "p0", 1: "p1", 2: "p2"},
        y_true="target",
        chunk_size=5_000,
        metrics=["roc_auc", "f1", "accuracy"],
    )
    assert set(est.calibrated) == {0, 1, 2}
    got = est.to_pandas()
    for chunk in range(3):
        part = analysis.iloc[chunk * 5_000 : (chunk + 1) * 5_000]
        row = got[got["chunk"] == chunk].set_index("metric")
        assert row.loc["f1", "realized"] == pytest.approx(
            f1_score(part["target"], part["pred"], average="macro"), abs=1e-12
        )
        assert row.loc["roc_auc", "realized"] == pytest.approx(
            roc_auc_score(part["target"], part[["p0", "p1", "p2"]], multi_class="ovr"), abs=1e-12
        )
        for metric in ("roc_auc", "f1", "accuracy"):
            assert abs(row.loc[metric, "estimate"] - row.loc[metric, "realized"]) < 0.03


def test_concept_shift_is_out_of_scope_as_documented(model: LogisticRegression) -> None:
    """When the relation between inputs and labels changes, the probabilities do not move:
    the estimate stays where it was while the realized value collapses (the docs say so)."""
    reference = _frame(model, *_world(30_000, 6))
    before = _frame(model, *_world(5_000, 7))
    after = _frame(model, *_world(5_000, 8, concept=True))
    analysis = pd.concat([before, after], ignore_index=True)
    frame = ph.estimate_performance(
        reference,
        analysis,
        y_pred="pred",
        y_pred_proba="proba",
        y_true="target",
        chunk_size=5_000,
        metrics=["accuracy"],
    ).to_pandas()
    first, second = frame.iloc[0], frame.iloc[1]
    assert abs(first["estimate"] - first["realized"]) < 0.02
    assert second["realized"] < 0.5 < second["estimate"]
    assert not second["lower"] <= second["realized"] <= second["upper"]


def test_frames_of_every_kind_give_the_same_answer(model: LogisticRegression) -> None:
    reference = _frame(model, *_world(10_000, 9))
    analysis = _frame(model, *_world(6_000, 10, shift=0.4))
    kwargs = dict(y_pred="pred", y_pred_proba="proba", y_true="target", chunk_size=2_000)
    expected = ph.estimate_performance(reference, analysis, **kwargs).to_pandas()
    for convert in (
        pl.from_pandas,
        pa.Table.from_pandas,
        lambda f: {c: f[c].to_numpy() for c in f},
    ):
        got = ph.estimate_performance(convert(reference), convert(analysis), **kwargs).to_pandas()
        pd.testing.assert_frame_equal(got, expected)


def test_timestamps_order_rows_and_make_calendar_chunks(model: LogisticRegression) -> None:
    reference = _frame(model, *_world(8_000, 11))
    reference["ts"] = pd.date_range("2026-01-01", periods=len(reference), freq="min")
    analysis = _frame(model, *_world(3 * 1_440, 12))
    analysis["ts"] = pd.date_range("2026-02-01", periods=len(analysis), freq="min")
    shuffled = analysis.sample(frac=1.0, random_state=0)
    est = ph.estimate_performance(
        reference,
        shuffled,
        y_pred="pred",
        y_pred_proba="proba",
        y_true="target",
        timestamp="ts",
        chunk_period="D",
        metrics=["accuracy"],
    )
    frame = est.to_pandas()
    assert list(frame["start_time"].dt.day) == [1, 2, 3]
    assert list(frame["rows"]) == [1_440] * 3
    day = analysis[analysis["ts"].dt.day == 2]
    assert frame.loc[1, "realized"] == pytest.approx(
        accuracy_score(day["target"], day["pred"]), abs=1e-12
    )
    both = est.to_pandas(reference=True)
    assert set(both["period"]) == {"reference", "analysis"}
    html = est._repr_html_()
    assert "CBPE" in html and "accuracy" in html


def test_bad_input_is_named(model: LogisticRegression) -> None:
    reference = _frame(model, *_world(5_000, 13))
    analysis = _frame(model, *_world(2_000, 14))
    kwargs = dict(y_pred="pred", y_pred_proba="proba", y_true="target")
    with pytest.raises(ph.ValidationError, match=r"no column 'probability'.*proba"):
        ph.estimate_performance(
            reference, analysis, y_pred="pred", y_pred_proba="probability", y_true="target"
        )
    with pytest.raises(ph.ValidationError, match=r"reference: no column 'y_true'"):
        ph.estimate_performance(reference, analysis, y_pred="pred", y_pred_proba="proba")
    with pytest.raises(ph.ValidationError, match="reference: no column 'label'"):
        ph.estimate_performance(
            reference, analysis, y_pred="pred", y_pred_proba="proba", y_true="label"
        )
    bad = analysis.copy()
    bad.loc[3, "pred"] = 7
    with pytest.raises(
        ph.ValidationError, match=r"analysis pred: values \[7\] are not among the classes"
    ):
        ph.estimate_performance(reference, bad, **kwargs)
    with pytest.raises(
        ph.ValidationError, match="one of chunk_size, chunk_number and chunk_period"
    ):
        ph.estimate_performance(reference, analysis, chunk_size=10, chunk_number=3, **kwargs)
    with pytest.raises(ph.ValidationError, match="chunk_period needs a timestamp"):
        ph.estimate_performance(reference, analysis, chunk_period="D", **kwargs)
    with pytest.raises(ph.ValidationError, match=r"unknown \['auc'\]"):
        ph.estimate_performance(reference, analysis, metrics=["auc"], **kwargs)
    nan = analysis.copy()
    nan.loc[5, "proba"] = np.nan
    with pytest.raises(
        ph.ValidationError,
        match="analysis: y_pred_proba: probabilities are numbers from 0 to 1; found NaN",
    ):
        ph.estimate_performance(reference, nan, **kwargs)
    unlabelled = reference.assign(target=np.nan)
    with pytest.raises(ph.ValidationError, match="no reference row has a label"):
        ph.estimate_performance(unlabelled, analysis, **kwargs)


def test_degenerate_references_and_scores_are_refused(model: LogisticRegression) -> None:
    reference = _frame(model, *_world(5_000, 15))
    analysis = _frame(model, *_world(2_000, 16))
    kwargs = dict(y_pred="pred", y_pred_proba="proba", y_true="target")
    with pytest.raises(ph.ValidationError, match="no reference row is labelled with class 0"):
        ph.estimate_performance(reference.assign(target=1), analysis, **kwargs)
    logits = analysis.assign(proba=np.log(analysis["proba"] / (1 - analysis["proba"])))
    with pytest.raises(ph.ValidationError, match="probabilities are numbers from 0 to 1"):
        ph.estimate_performance(reference, logits, **kwargs)
    with pytest.raises(ph.ValidationError, match="chunk_size must be a whole number"):
        ph.estimate_performance(reference, analysis, chunk_size=2.5, **kwargs)
    with pytest.raises(ph.ValidationError, match="chunk_number=7 chunks of 5 rows"):
        ph.estimate_performance(reference, analysis.iloc[:5], chunk_number=7, **kwargs)
    with pytest.raises(ph.ValidationError, match="chunk_period 'fortnight'"):
        ph.estimate_performance(
            reference.assign(ts=pd.Timestamp("2026-01-01")),
            analysis.assign(ts=pd.Timestamp("2026-01-02")),
            timestamp="ts",
            chunk_period="fortnight",
            **kwargs,
        )
    no_time = analysis.assign(ts=pd.date_range("2026-01-01", periods=len(analysis), freq="min"))
    no_time.loc[7, "ts"] = pd.NaT
    with pytest.raises(ph.ValidationError, match="analysis ts: 1 rows have no time"):
        ph.estimate_performance(
            reference.assign(ts=pd.Timestamp("2025-12-01")),
            no_time,
            timestamp="ts",
            chunk_period="D",
            **kwargs,
        )
    # exactly the chunks asked for
    frame = ph.estimate_performance(
        reference, analysis.iloc[:10], chunk_number=7, metrics="accuracy", **kwargs
    ).to_pandas()
    assert len(frame) == 7 and frame["rows"].sum() == 10


def test_nullable_labels_count_as_not_known_yet(model: LogisticRegression) -> None:
    reference = _frame(model, *_world(5_000, 19))
    analysis = _frame(model, *_world(3_000, 20))
    nullable = analysis.assign(target=analysis["target"].astype("boolean"))
    nullable.loc[nullable.index % 2 == 0, "target"] = pd.NA
    frame = ph.estimate_performance(
        reference,
        nullable,
        y_pred="pred",
        y_pred_proba="proba",
        y_true="target",
        chunk_number=1,
        metrics=["accuracy"],
    ).to_pandas()
    known = analysis[analysis.index % 2 == 1]
    assert frame.loc[0, "labelled"] == len(known)
    assert frame.loc[0, "realized"] == pytest.approx(
        accuracy_score(known["target"], known["pred"]), abs=1e-12
    )


def test_a_class_never_predicted_does_not_alert_every_chunk() -> None:
    rng = np.random.default_rng(17)
    n = 40_000
    proba = rng.dirichlet([3, 3, 1], size=n)
    # the model never predicts the third class
    pred = proba[:, :2].argmax(axis=1)
    target = np.array([rng.choice(3, p=p) for p in proba])
    frame = pd.DataFrame({f"p{c}": proba[:, c] for c in range(3)}).assign(pred=pred, target=target)
    est = ph.estimate_performance(
        frame.iloc[:20_000],
        frame.iloc[20_000:].reset_index(drop=True),
        y_pred="pred",
        y_pred_proba={0: "p0", 1: "p1", 2: "p2"},
        y_true="target",
        chunk_size=5_000,
        metrics=["precision", "recall", "f1", "accuracy"],
    )
    got = est.to_pandas()
    assert not got["alert"].any(), got[got["alert"]]
    assert (abs(got["estimate"] - got["realized"]) < 0.03).all(), got
    for chunk in range(4):
        part = frame.iloc[20_000 + chunk * 5_000 : 20_000 + (chunk + 1) * 5_000]
        row = got[got["chunk"] == chunk].set_index("metric")
        assert row.loc["precision", "realized"] == pytest.approx(
            precision_score(part["target"], part["pred"], average="macro", zero_division=0),
            abs=1e-12,
        )


def test_bands_hold_the_realized_value_as_often_as_they_say() -> None:
    """Over many chunks of a calibrated model, (realized - estimate) / sampling error has a
    spread near one for every metric: the bands are neither too narrow nor far too wide."""
    rng = np.random.default_rng(18)
    n = 400_000
    z = rng.normal(0, 1.6, n)
    proba = 1 / (1 + np.exp(-z))
    frame = pd.DataFrame(
        {
            "proba": proba,
            "pred": (proba > 0.5).astype(int),
            "target": (rng.random(n) < proba).astype(int),
        }
    )
    got = ph.estimate_performance(
        frame.iloc[:100_000],
        frame.iloc[100_000:].reset_index(drop=True),
        y_pred="pred",
        y_pred_proba="proba",
        y_true="target",
        chunk_size=2_000,
        metrics=METRICS,
    ).to_pandas()
    for metric, rows in got.groupby("metric"):
        spread = ((rows["realized"] - rows["estimate"]) / rows["sampling_error"]).std()
        assert 0.6 < spread < 1.25, (metric, spread)
