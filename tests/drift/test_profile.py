"""Profiles: every input form and column type, merging, the byte and JSON formats and
their corruption errors, Parquet streaming, and the histogram's error bound."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import polars as pl
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

import pilothouse as ph


def _frame(n: int, seed: int) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    city = rng.choice(["paris", "lyon", "nice", "lille"], n, p=[0.4, 0.3, 0.2, 0.1])
    ints = rng.integers(-50, 5000, n)
    return pd.DataFrame(
        {
            "amount": rng.lognormal(3, 1, n),
            "score": rng.normal(100, 15, n),
            "count": ints,
            "flag": rng.random(n) < 0.3,
            "city": city,
            "segment": pd.Categorical(rng.choice(["a", "b", "c"], n)),
            "when": pd.Timestamp("2026-01-01")
            + pd.to_timedelta(rng.integers(0, 86400 * 30, n), "s"),
            "maybe": np.where(rng.random(n) < 0.2, np.nan, rng.normal(size=n)),
            "nullable": pd.array(np.where(rng.random(n) < 0.1, None, ints), dtype="Int64"),
        }
    )


def _by_column(p: ph.Profile) -> dict[str, dict]:
    return {c["column"]: c for c in p.summary()}


def test_every_column_type_is_profiled() -> None:
    df = _frame(20_000, 1)
    cols = _by_column(ph.profile(df))
    assert {c: cols[c]["kind"] for c in cols} == {
        "amount": "float",
        "score": "float",
        "count": "integer",
        "flag": "boolean",
        "city": "categorical",
        "segment": "categorical",
        "when": "datetime",
        "maybe": "float",
        "nullable": "integer",
    }
    assert cols["score"]["mean"] == pytest.approx(df["score"].mean(), rel=1e-12)
    assert cols["score"]["std"] == pytest.approx(df["score"].std(ddof=0), rel=1e-10)
    assert cols["amount"]["min"] == df["amount"].min()
    assert cols["amount"]["max"] == df["amount"].max()
    assert cols["maybe"]["missing_rate"] == pytest.approx(df["maybe"].isna().mean())
    assert cols["nullable"]["nulls"] == df["nullable"].isna().sum()
    counts = df["city"].value_counts()
    assert dict(cols["city"]["top"]) == {k: int(v) for k, v in counts.items()}
    assert cols["city"]["distinct"] == 4 and cols["city"]["exact"]
    assert dict(cols["flag"]["top"]) == {
        "true": int(df["flag"].sum()),
        "false": int((~df["flag"]).sum()),
    }
    when = (df["when"] - pd.Timestamp(0)).dt.total_seconds()
    assert cols["when"]["min"] == pytest.approx(when.min())


def test_quantiles_are_within_the_documented_bound() -> None:
    rng = np.random.default_rng(2)
    x = np.concatenate([rng.normal(size=200_000), rng.lognormal(5, 2, 50_000)])
    p = ph.profile(pd.DataFrame({"x": x}))
    bound = _by_column(p)["x"]["rank_error"]
    assert 0 < bound < 2e-3
    qs = [0.001, 0.01, 0.1, 0.25, 0.5, 0.75, 0.9, 0.99, 0.999]
    s = np.sort(x)
    for q, got in zip(qs, p.quantiles("x", qs)):
        # the estimate's rank is within the bound of q
        rank = np.searchsorted(s, got) / len(s)
        assert abs(rank - q) <= bound + 1e-6, (q, got, rank)
        # and its value within a bucket's width (2^-10 relative) of the true quantile
        assert got == pytest.approx(np.quantile(x, q), rel=2e-3, abs=1e-3)


def test_merge_equals_the_profile_of_the_union() -> None:
    df = _frame(30_000, 3)
    parts = [df.iloc[:7_000], df.iloc[7_000:19_000], df.iloc[19_000:]]
    merged = ph.Profile.merge(ph.profile(p) for p in parts)
    whole = ph.profile(df)
    a, b = _by_column(merged), _by_column(whole)
    for name, col in b.items():
        for key, value in col.items():
            if key in ("mean", "std") and value is not None:
                assert a[name][key] == pytest.approx(value, rel=1e-12), (name, key)
            else:
                # counts, min/max, frequencies, quantiles and bounds: exactly equal
                assert a[name][key] == value, (name, key)
    assert merged.rows == whole.rows == 30_000
    # the histograms are equal bucket for bucket, so every quantile agrees
    assert merged.quantiles("amount", [0.1, 0.5, 0.9]) == whole.quantiles("amount", [0.1, 0.5, 0.9])


def test_merge_refuses_profiles_of_different_data() -> None:
    a = ph.profile(pd.DataFrame({"x": [1.0, 2.0]}))
    b = ph.profile(pd.DataFrame({"y": [1.0, 2.0]}))
    with pytest.raises(ph.InputError, match="different columns"):
        ph.Profile.merge([a, b])
    c = ph.profile(pd.DataFrame({"x": ["a", "b"]}))
    with pytest.raises(ph.InputError, match=r"column 'x'.*float.*categorical"):
        ph.Profile.merge([a, c])
    with pytest.raises(ph.InputError, match="none to merge"):
        ph.Profile.merge([])


def test_high_cardinality_keeps_heavy_hitters_and_estimates_distinct() -> None:
    rng = np.random.default_rng(4)
    ids = np.array([f"user{i}" for i in rng.integers(0, 40_000, 150_000)])
    ids[:30_000] = "bot"
    p = ph.profile(pd.DataFrame({"id": ids}))
    col = _by_column(p)["id"]
    assert not col["exact"]
    assert col["top"][0][0] == "bot"
    truth = len(set(ids.tolist()))
    assert abs(col["distinct"] - truth) / truth < 0.05


def test_bytes_and_json_round_trip() -> None:
    p = ph.profile(_frame(5_000, 5))
    blob = p.to_bytes()
    assert blob[:6] == b"PHPROF"
    assert ph.Profile.from_bytes(blob) == p
    text = p.to_json()
    doc = json.loads(text)
    assert doc["format"] == "pilothouse.profile" and doc["version"] == 1
    assert ph.Profile.from_json(text) == p
    import pickle

    assert pickle.loads(pickle.dumps(p)) == p


def test_corrupt_or_foreign_blobs_are_named() -> None:
    blob = bytearray(ph.profile(_frame(2_000, 6)).to_bytes())
    flipped = bytearray(blob)
    flipped[len(flipped) // 2] ^= 0x40
    with pytest.raises(ph.ProfileFormatError, match=r"corrupt.*checksum"):
        ph.Profile.from_bytes(bytes(flipped))
    with pytest.raises(ph.ProfileFormatError, match="corrupt"):
        ph.Profile.from_bytes(bytes(blob[:-10]))
    newer = bytearray(blob)
    newer[6:8] = (2).to_bytes(2, "little")
    with pytest.raises(ph.ProfileFormatError, match=r"version 2, newer.*upgrade"):
        ph.Profile.from_bytes(bytes(newer))
    with pytest.raises(ph.ProfileFormatError, match="not a pilothouse profile"):
        ph.Profile.from_bytes(b"PK\x03\x04 a zip file")
    with pytest.raises(ph.InputError):  # ProfileFormatError is an InputError
        ph.Profile.from_bytes(b"")
    doc = json.loads(ph.profile(_frame(100, 7)).to_json())
    doc["version"] = 9
    with pytest.raises(ph.ProfileFormatError, match="version 9"):
        ph.Profile.from_json(json.dumps(doc))
    with pytest.raises(ph.ProfileFormatError, match="malformed"):
        ph.Profile.from_json("{not json")


def test_input_forms_agree() -> None:
    df = _frame(3_000, 8)[["amount", "score", "city"]]
    expected = ph.profile(df)
    assert ph.profile(pa.Table.from_pandas(df)) == expected
    # polars sends strings as Utf8View: the same profile apart from the recorded type
    from_polars = _by_column(ph.profile(pl.from_pandas(df)))
    assert from_polars["city"].pop("dtype") == "Utf8View"
    assert from_polars == {
        k: {f: v for f, v in c.items() if k != "city" or f != "dtype"}
        for k, c in _by_column(expected).items()
    }
    numeric = df[["amount", "score"]]
    assert ph.profile(numeric.to_numpy(), columns=["amount", "score"]) == ph.profile(numeric)
    assert ph.profile({"amount": df["amount"].to_numpy()}) == ph.profile(df[["amount"]])
    assert ph.profile(df, columns=["city"]).columns == ["city"]


def test_parquet_directory_streams_in_batches(tmp_path: Path) -> None:
    df = _frame(700_000, 9).drop(columns=["nullable"])
    table = pa.Table.from_pandas(df, preserve_index=False)
    folder = tmp_path / "data"
    folder.mkdir()
    for i, start in enumerate(range(0, len(df), 250_000)):
        pq.write_table(
            table.slice(start, 250_000), folder / f"part-{i}.parquet", row_group_size=50_000
        )
    from_dir = ph.profile(folder, progress=False)
    from_glob = ph.profile(str(folder / "*.parquet"), progress=False)
    in_memory = ph.profile(df)
    assert from_dir.rows == 700_000
    a, b = _by_column(from_dir), _by_column(in_memory)
    for name in b:
        assert (
            a[name]["top" if "top" in b[name] else "p50"]
            == b[name]["top" if "top" in b[name] else "p50"]
        )
        assert a[name]["missing_rate"] == b[name]["missing_rate"]
    assert _by_column(from_glob) == a
    with pytest.raises(FileNotFoundError, match="no file matches"):
        ph.profile(str(tmp_path / "nothing-*.parquet"))
    (tmp_path / "junk.parquet").write_bytes(b"not parquet at all")
    with pytest.raises(ph.InputError, match="cannot be read as Parquet"):
        ph.profile(tmp_path / "junk.parquet")


def test_progress_bar_shows_rows_only_when_asked(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    import importlib

    # the module, not the function ph.drift that shares its name
    drift_module = importlib.import_module("pilothouse.drift")
    pq.write_table(pa.table({"x": np.arange(300_000.0)}), tmp_path / "x.parquet")
    monkeypatch.setattr(drift_module, "_PROGRESS_DELAY", 0)
    ph.profile(tmp_path / "x.parquet", progress=True)
    err = capsys.readouterr().err
    assert "profiling" in err and "300k/300k" in err
    ph.profile(tmp_path / "x.parquet")  # not a terminal here, so no bar by default
    assert capsys.readouterr().err == ""


def test_edge_cases() -> None:
    nulls = pd.DataFrame({"x": pd.array([None] * 50, dtype="Float64"), "s": [None] * 50})
    cols = _by_column(ph.profile(nulls))
    assert cols["x"]["missing_rate"] == 1.0 and cols["x"]["mean"] is None
    assert cols["s"]["missing_rate"] == 1.0
    one = _by_column(ph.profile(pd.DataFrame({"v": [7.5] * 1000})))["v"]
    assert one["min"] == one["max"] == one["p50"] == 7.5 and one["rank_error"] == 0
    with pytest.raises(ph.InputError, match="no rows"):
        ph.profile(pd.DataFrame({"x": pd.Series([], dtype=float)}))
    nested = pa.table({"l": pa.array([[1, 2], [3]])})
    with pytest.raises(ph.InputError, match=r"column 'l'.*List"):
        ph.profile(nested)
    with pytest.raises(ph.InputError, match="cannot profile a set"):
        ph.profile({1, 2})
    inf = _by_column(ph.profile(pd.DataFrame({"x": [1.0, np.inf, -np.inf, 2.0]})))["x"]
    assert inf["inf"] == 2 and inf["max"] == 2.0
    # NaN first, then numbers; and a column of NaN only (numpy floats, no null bitmap)
    mixed = np.concatenate([[np.nan, np.nan], np.arange(10_000.0), [np.nan]])
    col = _by_column(ph.profile(pd.DataFrame({"x": mixed, "only_nan": np.nan})))
    assert col["x"]["nan"] == 3 and col["x"]["min"] == 0.0 and col["x"]["max"] == 9999.0
    assert col["x"]["mean"] == pytest.approx(4999.5, rel=1e-12)
    assert col["only_nan"]["missing_rate"] == 1.0 and col["only_nan"]["mean"] is None


def test_profile_mode_ks_is_within_its_bound_of_the_exact_statistic() -> None:
    rng = np.random.default_rng(10)
    ref = pd.DataFrame({"x": rng.normal(size=100_000), "y": rng.exponential(size=100_000)})
    cur = pd.DataFrame({"x": rng.normal(0.02, size=80_000), "y": rng.exponential(1.1, size=80_000)})
    exact = ph.drift(ref, cur, method="ks")
    approx = ph.drift(ph.profile(ref), ph.profile(cur), method="ks")
    assert approx.mode == "profile" and exact.mode == "exact"
    for name in ("x", "y"):
        e, a = exact.column(name), approx.column(name)
        assert a["statistic"] <= e["statistic"] + 1e-12
        assert e["statistic"] - a["statistic"] <= a["statistic_error"]
        assert a["statistic_error"] < 0.005
    w_exact = ph.drift(ref, cur, method="wasserstein").column("y")["statistic"]
    w_approx = ph.drift(ph.profile(ref), ph.profile(cur), method="wasserstein").column("y")[
        "statistic"
    ]
    assert w_approx == pytest.approx(w_exact, rel=0.01)
