"""Data profiles and drift reports.

``profile`` summarises a dataset into a :class:`Profile` (a few kilobytes per column) that
merges with the profiles of other parts of the same data; ``drift`` compares a reference
with current data, from profiles (approximate within the histogram's bound) or from raw
data (exact, equal to scipy), and returns a :class:`DriftReport`.

Default methods and thresholds (``method="auto"``) follow Evidently's DataDriftPreset:

==================  ===========================  =====================================
column              reference non-null values    method, drift when
==================  ===========================  =====================================
numeric             at most 1000                 ``ks``: p-value < 0.05
numeric             more than 1000               ``wasserstein`` (normed by the
                                                 reference's std): distance >= 0.1
categorical         at most 1000                 ``chisquare``: p-value < 0.05
categorical         more than 1000               ``jensenshannon``: distance >= 0.1
datetime            any                          not tested (quality checks only)
==================  ===========================  =====================================

Where we differ from Evidently: binary categories get the chi-square test (Evidently uses a
Z-test); integer columns with at most 20 distinct small values in the reference are compared
as categories; PSI, KL, Hellinger and Jensen-Shannon on numbers use the reference's deciles
as bins (Evidently bins both sides together); a change of more than 0.05 in the share of
missing values flags a column too. Explicit methods: ``ks``, ``wasserstein``, ``psi``,
``jensenshannon``, ``hellinger``, ``kl_div``, ``chisquare``, ``cramer_von_mises``; tests
(ks, chisquare, cramer_von_mises) default to threshold 0.05 on the p-value, distances to 0.1.
The dataset drifts when at least half of the tested columns drift (``drift_share``).
"""

from __future__ import annotations

import copy
import glob
import os
import sys
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from pilothouse import _core
from pilothouse.errors import InputError

if TYPE_CHECKING:
    import pandas as pd
    import pyarrow as pa

__all__ = ["DriftReport", "Profile", "drift", "profile"]

_BATCH_ROWS = 1 << 18
# seconds of work before a progress bar appears
_PROGRESS_DELAY = 0.5


def _pyarrow() -> Any:
    try:
        import pyarrow
        import pyarrow.dataset
    except ImportError as e:  # pragma: no cover - pyarrow is a dependency
        raise ImportError(
            "profiles and drift read data through pyarrow: pip install pyarrow"
        ) from e
    return pyarrow


def _is_path(data: object) -> bool:
    if isinstance(data, (str, os.PathLike)):
        return True
    return (
        isinstance(data, (list, tuple))
        and len(data) > 0
        and all(isinstance(d, (str, os.PathLike)) for d in data)
    )


def _parquet_dataset(source: str | os.PathLike[str] | Sequence[str | os.PathLike[str]]) -> Any:
    pa = _pyarrow()
    sources: list[Any] = list(source) if isinstance(source, (list, tuple)) else [source]
    files: list[str] = []
    for s in sources:
        text = os.fspath(s)
        if any(ch in text for ch in "*?["):
            matched = sorted(glob.glob(text, recursive=True))
            if not matched:
                raise FileNotFoundError(f"no file matches {text!r}")
            files.extend(matched)
        elif not os.path.exists(text):
            raise FileNotFoundError(f"{text!r} does not exist")
        else:
            files.append(text)
    try:
        return pa.dataset.dataset(files if len(files) > 1 else files[0], format="parquet")
    except (OSError, pa.ArrowInvalid) as e:
        raise InputError(f"{source!r}: cannot be read as Parquet: {e}") from e


def _columns_of_matrix(array: Any, columns: Sequence[str] | None) -> dict[str, Any]:
    if array.ndim == 1:
        names = list(columns) if columns else ["value"]
        if len(names) != 1:
            raise InputError(f"a 1-D array is one column, but {len(names)} names were given")
        return {names[0]: array}
    if array.ndim != 2:
        raise InputError(f"an array of {array.ndim} dimensions cannot be profiled; pass 1-D or 2-D")
    names = list(columns) if columns else [f"x{j}" for j in range(array.shape[1])]
    if len(names) != array.shape[1]:
        raise InputError(
            f"the array has {array.shape[1]} columns but {len(names)} names were given"
        )
    return {n: array[:, j] for j, n in enumerate(names)}


def _columns_of_mapping(data: Mapping[str, Any]) -> dict[str, Any]:
    """Model outputs and dicts of arrays: 2-D arrays become one column per position."""
    import numpy as np

    out: dict[str, Any] = {}
    for key, value in data.items():
        if isinstance(value, np.ndarray) and value.ndim == 2:
            for j in range(value.shape[1]):
                out[f"{key}_{j}"] = value[:, j]
        else:
            out[str(key)] = value
    return out


def _pandas_to_table(frame: pd.DataFrame) -> Any:
    """A pandas frame as Arrow without copying numbers: numpy-backed numeric columns and
    categoricals are wrapped as they are (NaN stays NaN, which profiles count as missing
    anyway); other columns go through pyarrow's own conversion. pyarrow's from_pandas
    scans every float for NaN, which costs more than profiling it."""
    import numpy as np
    import pandas as pd

    pa = _pyarrow()
    names = [str(c) for c in frame.columns]
    if len(set(names)) != len(names):
        raise InputError(f"the frame has duplicate column names: {names}")
    arrays = []
    for i in range(frame.shape[1]):
        col = frame.iloc[:, i]
        dtype = col.dtype
        if isinstance(dtype, np.dtype) and dtype.kind in "fiub":
            arrays.append(pa.array(col.to_numpy(), from_pandas=False))
        elif isinstance(dtype, pd.CategoricalDtype):
            codes = np.asarray(col.array.codes)
            mask = codes < 0
            indices = pa.array(codes, mask=mask if mask.any() else None)
            arrays.append(pa.DictionaryArray.from_arrays(indices, pa.array(dtype.categories)))
        else:
            arrays.append(pa.Array.from_pandas(col))
    return pa.Table.from_arrays(arrays, names=names)


def _to_table(data: Any, columns: Sequence[str] | None = None) -> Any:
    """Anything tabular as a pyarrow Table (zero-copy where the source allows)."""
    pa = _pyarrow()
    if isinstance(data, (pa.Table, pa.RecordBatch)):
        return data if isinstance(data, pa.Table) else pa.Table.from_batches([data])
    module = type(data).__module__.split(".")[0]
    if module == "pandas":
        import pandas as pd

        if isinstance(data, pd.Series):
            data = data.to_frame(name=data.name if data.name is not None else "value")
        return _pandas_to_table(data)
    if module == "numpy":
        return pa.table(_columns_of_matrix(data, columns))
    if isinstance(data, Mapping):
        return pa.table(_columns_of_mapping(data))
    if hasattr(data, "__arrow_c_stream__"):
        return pa.RecordBatchReader.from_stream(data).read_all()
    if hasattr(data, "__arrow_c_array__"):
        return pa.Table.from_batches([pa.record_batch(data)])
    raise InputError(
        f"cannot profile a {type(data).__name__}: pass a pandas, polars or pyarrow table, a "
        "numpy array (with columns=), a dict of arrays, or a Parquet path, directory or glob"
    )


def _progress(total: int | None, enabled: bool | None) -> Any:
    """A tqdm bar that appears only after a moment, and only for a person to see."""
    if enabled is None:
        enabled = sys.stderr.isatty() or "ipykernel" in sys.modules
    if not enabled:
        return None
    try:
        from tqdm.auto import tqdm  # type: ignore[import-untyped]
    except ImportError:  # pragma: no cover - tqdm is a dependency
        return None
    return tqdm(total=total, unit="rows", unit_scale=True, desc="profiling", delay=_PROGRESS_DELAY)


def _batches(data: Any, columns: Sequence[str] | None) -> tuple[Iterable[Any], int | None]:
    if _is_path(data):
        dataset = _parquet_dataset(data)
        wanted = list(columns) if columns else None
        return dataset.to_batches(columns=wanted, batch_size=_BATCH_ROWS), dataset.count_rows()
    table = _to_table(data, columns)
    if columns is not None and not _is_numpy(data):
        table = _select(table, columns, "the data")
    return table.to_batches(max_chunksize=_BATCH_ROWS * 4), table.num_rows


class Profile:
    """A dataset's profile: per column, counts, missing values, min/max, mean and variance,
    a histogram on a fixed log-linear grid (quantiles within 0.1% of value; the rank error
    is reported per column), category frequencies (exact up to 10,000 categories, then the
    most frequent ones and the remaining mass) and a distinct-count estimate.

    Profiles of parts merge into the profile of the whole: counts, frequencies and
    histograms exactly, moments to rounding.
    """

    __slots__ = ("_data",)

    def __init__(self, data: _core.ProfileData) -> None:
        self._data = data

    @property
    def rows(self) -> int:
        return self._data.rows

    @property
    def columns(self) -> list[str]:
        return self._data.columns

    @staticmethod
    def merge(profiles: Iterable[Profile]) -> Profile:
        """The profile of the union of the data behind ``profiles``."""
        parts = [p._data for p in profiles]
        return Profile(_core.ProfileData.merge(parts))

    def to_bytes(self) -> bytes:
        """A compact, versioned, checksummed encoding (see :meth:`from_bytes`)."""
        return self._data.to_bytes()

    @staticmethod
    def from_bytes(data: bytes) -> Profile:
        """Reads :meth:`to_bytes` output; ``ProfileFormatError`` if corrupt or newer."""
        return Profile(_core.ProfileData.from_bytes(bytes(data)))

    def to_json(self) -> str:
        """The same content as JSON, with ``format`` and ``version`` fields."""
        return self._data.to_json()

    @staticmethod
    def from_json(text: str) -> Profile:
        return Profile(_core.ProfileData.from_json(text))

    def quantiles(self, column: str, q: Sequence[float]) -> list[float | None]:
        """Quantiles of a numeric column, read from its histogram."""
        return self._data.quantiles(column, list(q))

    def summary(self, columns: Sequence[str] | None = None) -> list[dict[str, Any]]:
        """One dict per column (of ``columns``, when given): kind, counts, missing rate,
        moments, quantiles, top values."""
        wanted = None if columns is None else list(columns)
        found: list[dict[str, Any]] = self._data.summary(wanted)["columns"]
        return found

    def to_pandas(self) -> pd.DataFrame:
        import pandas as pd

        return pd.DataFrame(self.summary()).set_index("column")

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Profile) and self._data == other._data

    __hash__ = None  # type: ignore[assignment]

    def __reduce__(self) -> tuple[Any, tuple[bytes]]:
        return (Profile.from_bytes, (self.to_bytes(),))

    def __repr__(self) -> str:
        return f"<Profile {self.rows} rows x {len(self.columns)} columns>"

    def _repr_html_(self) -> str:
        from pilothouse._report_html import profile_table

        return profile_table(self.rows, self.summary())


def profile(
    data: Any,
    *,
    columns: Sequence[str] | None = None,
    progress: bool | None = None,
) -> Profile:
    """Profiles a dataset.

    ``data``: a pandas DataFrame or Series, a polars DataFrame, a pyarrow Table or
    RecordBatch, anything with the Arrow PyCapsule interface, a dict of arrays (model
    outputs: 2-D arrays become ``name_0``, ``name_1``, ...), a numpy array (``columns``
    names its columns), or a Parquet file, directory, glob or list of them, which is read
    batch by batch so data larger than memory works. ``columns`` selects columns of tables
    and Parquet data. A progress bar appears on long work when a person is watching
    (``progress=False`` turns it off).
    """
    batches, total = _batches(data, columns)
    builder = _core.ProfileBuilder()
    bar = _progress(total, progress)
    seen = 0
    try:
        for batch in batches:
            rows = builder.update(batch)
            if bar is not None:
                bar.update(rows - seen)
            seen = rows
    finally:
        if bar is not None:
            bar.close()
    if seen == 0 and total == 0:
        raise InputError("the data has no rows to profile")
    return Profile(builder.finish())


@dataclass(frozen=True)
class ColumnDrift:
    """One column's verdict; see :meth:`DriftReport.to_pandas` for every field."""

    column: str
    kind: str
    method: str | None
    statistic: float | None
    p_value: float | None
    threshold: float | None
    drifted: bool
    reasons: tuple[str, ...]


class DriftReport:
    """Per-column drift verdicts, data-quality checks and the dataset-level verdict."""

    def __init__(self, data: dict[str, Any]) -> None:
        for c in data["columns"]:
            if isinstance(c["statistic"], str):  # an infinity may come as text ("inf")
                c["statistic"] = float(c["statistic"])
        self._data = data

    @property
    def mode(self) -> str:
        """``"exact"`` (raw data, equal to scipy) or ``"profile"`` (within the bound)."""
        return str(self._data["mode"])

    @property
    def dataset_drift(self) -> bool:
        return bool(self._data["dataset_drift"])

    @property
    def drifted_share(self) -> float:
        return float(self._data["drifted_share"])

    @property
    def drifted_columns(self) -> list[str]:
        return [c["column"] for c in self._data["columns"] if c["drifted"]]

    @property
    def missing_columns(self) -> list[str]:
        """Reference columns the current data lacks."""
        return list(self._data["missing_columns"])

    @property
    def extra_columns(self) -> list[str]:
        """Current columns the reference lacks."""
        return list(self._data["extra_columns"])

    @property
    def columns(self) -> list[ColumnDrift]:
        return [
            ColumnDrift(
                column=c["column"],
                kind=c["kind"],
                method=c["method"],
                statistic=c["statistic"],
                p_value=c["p_value"],
                threshold=c["threshold"],
                drifted=c["drifted"],
                reasons=tuple(c["reasons"]),
            )
            for c in self._data["columns"]
        ]

    def column(self, name: str) -> dict[str, Any]:
        """Everything computed for one column, charts included."""
        for c in self._data["columns"]:
            if c["column"] == name:
                return dict(c)
        raise KeyError(f"the report has no column {name!r}")

    def to_dict(self) -> dict[str, Any]:
        return copy.deepcopy(self._data)

    def to_pandas(self) -> pd.DataFrame:
        """One row per column: column, kind, method, statistic, p_value, threshold,
        drifted, reasons, missing rates, moments, ranges, distinct counts, unseen
        categories, out-of-range share, constant and type-mismatch flags."""
        import pandas as pd

        rows = []
        for c in self._data["columns"]:
            row = {k: v for k, v in c.items() if k != "chart"}
            row["reasons"] = "; ".join(c["reasons"])
            rows.append(row)
        return pd.DataFrame(rows)

    def to_html(self, title: str = "Drift report") -> str:
        from pilothouse._report_html import report_page

        return report_page(self._data, title)

    def save_html(self, path: str | os.PathLike[str], title: str = "Drift report") -> Path:
        """Writes one self-contained HTML file (no network needed) and returns its path."""
        target = Path(path)
        target.write_text(self.to_html(title), encoding="utf-8")
        return target

    def _repr_html_(self) -> str:
        from pilothouse._report_html import report_fragment

        return report_fragment(self._data)

    def __repr__(self) -> str:
        verdict = "drift" if self.dataset_drift else "no dataset drift"
        cols = self.drifted_columns
        shown = ", ".join(cols[:8]) + (", ..." if len(cols) > 8 else "")
        return (
            f"<DriftReport {self.mode}: {verdict}; {len(cols)} of {len(self._data['columns'])}"
            f" columns drifted{': ' + shown if cols else ''}>"
        )


def _options(
    method: str,
    methods: Mapping[str, str] | None,
    threshold: float | None,
    thresholds: Mapping[str, float] | None,
    categorical: Sequence[str] | None,
    drift_share: float,
    missing_rate_change: float,
) -> dict[str, Any]:
    return {
        "method": method,
        # column names as the report has them (a DataFrame's column 0 is "0")
        "column_methods": {str(k): v for k, v in (methods or {}).items()},
        "threshold": threshold,
        "column_thresholds": {str(k): v for k, v in (thresholds or {}).items()},
        "categorical": [str(c) for c in categorical or []],
        "drift_share": drift_share,
        "missing_rate_change": missing_rate_change,
    }


def drift(
    reference: Any,
    current: Any,
    *,
    method: str = "auto",
    methods: Mapping[str, str] | None = None,
    threshold: float | None = None,
    thresholds: Mapping[str, float] | None = None,
    categorical: Sequence[str] | None = None,
    columns: Sequence[str] | None = None,
    drift_share: float = 0.5,
    missing_rate_change: float = 0.05,
) -> DriftReport:
    """Compares current data with a reference, column by column.

    Both sides are :class:`Profile` objects (profile mode: approximate within the
    histogram's reported bound) or raw data in any form :func:`profile` takes (exact mode:
    KS, Wasserstein, Cramer-von Mises and chi-square equal scipy's). Parquet paths are
    profiled first, so they use profile mode. A profile on one side and raw data on the
    other profiles the raw side.

    ``method`` applies to every column (``"auto"`` picks per column, see the module doc),
    ``methods`` per column; ``threshold``/``thresholds`` likewise; ``categorical`` names
    numeric columns to compare as categories; ``columns`` restricts the comparison.
    Model outputs work the same way (prediction drift): pass ``model.predict(...)`` dicts;
    probability matrices become one numeric column per class.
    """
    options = _options(
        method, methods, threshold, thresholds, categorical, drift_share, missing_rate_change
    )
    raw = not isinstance(reference, Profile) and not isinstance(current, Profile)
    if raw and not _is_path(reference) and not _is_path(current):
        ref_table = _to_table(reference, columns if _is_numpy(reference) else None)
        cur_table = _to_table(current, columns if _is_numpy(current) else None)
        if columns is not None and not _is_numpy(reference):
            ref_table = _select(ref_table, columns, "the reference data")
            cur_table = _select(cur_table, columns, "the current data")
        for side, table in (("reference", ref_table), ("current", cur_table)):
            if table.num_rows == 0:
                raise InputError(f"the {side} data has no rows")
        return DriftReport(_core.drift_exact(ref_table, cur_table, options))
    ref = reference if isinstance(reference, Profile) else profile(reference, columns=columns)
    cur = current if isinstance(current, Profile) else profile(current, columns=columns)
    return DriftReport(_core.drift_profiles(ref._data, cur._data, options))


def _is_numpy(data: object) -> bool:
    return type(data).__module__.split(".")[0] == "numpy"


def _select(table: pa.Table, columns: Sequence[str], where: str) -> pa.Table:
    missing = [c for c in columns if c not in table.column_names]
    if missing:
        raise InputError(f"columns {missing} are not in {where} ({table.column_names})")
    return table.select(list(columns))
