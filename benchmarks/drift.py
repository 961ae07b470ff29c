"""A full per-column drift report: pilothouse (profile mode and exact raw-data mode) vs
Evidently's DataDriftPreset vs a plain scipy loop, and the floor (numpy reading every
value once), on mixed numeric/categorical data with drift injected in known columns.

The threads column says how many cores each case computes on; pilothouse also runs on one
thread (RAYON_NUM_THREADS=1), beside the single-threaded alternatives. Each case runs in its
own process on the same Parquet files (read, and the case's
libraries imported, before the clock starts); cases under 5 s run three times and report
the median, longer ones run once. The table shows wall time, the peak memory the case added on top of the loaded
data (sampled from /proc), ratios, and whether each flags the same columns as the truth.
Evidently needs pandas < 3, so it runs from its own virtualenv
(``~/.cache/pilothouse/evidently-venv``, made by ``make bench``).

    python benchmarks/drift.py [--quick] [--skip-evidently]
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import threading
import time
import warnings
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve()
EVIDENTLY_PYTHON = Path.home() / ".cache/pilothouse/evidently-venv/bin/python"
CATEGORIES = [f"c{k}" for k in range(12)]


def make_data(rows: int, cols: int, folder: Path) -> list[str]:
    """Writes ref.parquet and cur.parquet; returns the columns with injected drift."""
    import numpy as np
    import pandas as pd

    rng = np.random.default_rng(42)
    n_cat = cols // 5
    n_num = cols - n_cat
    drifted: list[str] = []
    frames: dict[str, dict[str, Any]] = {"ref": {}, "cur": {}}
    for j in range(n_num):
        name = f"num{j}"
        shift = j % 10 == 3  # every tenth numeric column moves by half a std
        kind = j % 3
        for side, n in (("ref", rows), ("cur", rows)):
            loc = 0.5 if (shift and side == "cur") else 0.0
            if kind == 0:
                v = rng.normal(loc, 1.0, n)
            elif kind == 1:
                v = np.exp(rng.normal(loc * 0.6, 0.6, n))
            else:
                v = rng.exponential(1.0, n) + loc
            frames[side][name] = v
        if shift:
            drifted.append(name)
    base = np.linspace(1, 3, len(CATEGORIES))
    for j in range(n_cat):
        name = f"cat{j}"
        moved = j % 5 == 1
        for side, n in (("ref", rows), ("cur", rows)):
            p = base[::-1] if (moved and side == "cur") else base
            codes = rng.choice(len(CATEGORIES), n, p=p / p.sum()).astype(np.int8)
            frames[side][name] = pd.Categorical.from_codes(codes, CATEGORIES)
        if moved:
            drifted.append(name)
    for side in ("ref", "cur"):
        pd.DataFrame(frames[side]).to_parquet(folder / f"{side}.parquet", index=False)
    return drifted


class PeakRss:
    """Samples this process's resident memory every 2 ms while a case runs."""

    def __init__(self) -> None:
        self.base = self._rss()
        self.peak = self.base
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    @staticmethod
    def _rss() -> int:
        with open("/proc/self/statm") as f:
            return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")

    def _run(self) -> None:
        while not self._stop.is_set():
            self.peak = max(self.peak, self._rss())
            time.sleep(0.002)

    def __enter__(self) -> PeakRss:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()
        self.peak = max(self.peak, self._rss())


def case_pilothouse_profile(ref: Any, cur: Any) -> list[str]:
    import pilothouse as ph

    return ph.drift(
        ph.profile(ref, progress=False), ph.profile(cur, progress=False)
    ).drifted_columns


def case_pilothouse_exact(ref: Any, cur: Any) -> list[str]:
    import pilothouse as ph

    return ph.drift(ref, cur).drifted_columns


def case_scipy(ref: Any, cur: Any) -> list[str]:
    """What a team writes by hand: scipy per column, with Evidently's default verdicts."""
    import numpy as np
    import pandas as pd
    from scipy import stats
    from scipy.spatial.distance import jensenshannon

    flagged = []
    for name in ref.columns:
        a, b = ref[name], cur[name]
        if isinstance(a.dtype, pd.CategoricalDtype):
            labels = sorted(set(a.cat.categories) | set(b.cat.categories))
            ca = a.value_counts().reindex(labels, fill_value=0).to_numpy()
            cb = b.value_counts().reindex(labels, fill_value=0).to_numpy()
            stats.chi2_contingency(np.vstack([ca, cb]))
            if jensenshannon(ca / ca.sum(), cb / cb.sum()) >= 0.1:
                flagged.append(name)
        else:
            x, y = a.to_numpy(), b.to_numpy()
            stats.ks_2samp(x, y)
            if stats.wasserstein_distance(x, y) / max(np.std(x), 0.001) >= 0.1:
                flagged.append(name)
    return flagged


def case_floor(ref: Any, cur: Any) -> list[str]:
    """numpy reading every value once: a sum per numeric column, a bincount per category."""
    import numpy as np
    import pandas as pd

    for frame in (ref, cur):
        for name in frame.columns:
            col = frame[name]
            if isinstance(col.dtype, pd.CategoricalDtype):
                np.bincount(col.cat.codes.to_numpy(), minlength=len(col.cat.categories))
            else:
                col.to_numpy().sum()
    return []


def case_evidently(ref: Any, cur: Any) -> list[str]:
    warnings.simplefilter("ignore")
    from evidently import Report
    from evidently.presets import DataDriftPreset

    snapshot = Report([DataDriftPreset()]).run(current_data=cur, reference_data=ref)
    flagged = []
    for metric in snapshot.dict()["metrics"]:
        config = metric.get("config", {})
        if config.get("type", "").endswith("ValueDrift"):
            threshold = config.get("threshold")
            method = config.get("method", "")
            value = metric["value"]
            is_p = "p_value" in method or method in ("K-S p_value", "chi-square p_value")
            if (value < threshold) if is_p else (value >= threshold):
                flagged.append(config["column"])
    return flagged


CASES = {
    "pilothouse profile mode": case_pilothouse_profile,
    "pilothouse profile, 1 thread": case_pilothouse_profile,
    "pilothouse exact mode": case_pilothouse_exact,
    "pilothouse exact, 1 thread": case_pilothouse_exact,
    "Evidently DataDriftPreset": case_evidently,
    "scipy loop": case_scipy,
    "numpy read-once floor": case_floor,
}

# Threads each case computes on. pilothouse's rayon pool takes every core unless
# RAYON_NUM_THREADS says otherwise; the others run their statistics on one thread (numpy and
# scipy's per-column functions here do not spread over cores, and OpenBLAS is held to one).
ONE_THREAD = {"RAYON_NUM_THREADS": "1", "OPENBLAS_NUM_THREADS": "1", "OMP_NUM_THREADS": "1"}


def case_threads(name: str) -> int:
    if name.startswith("pilothouse") and "1 thread" not in name:
        return os.cpu_count() or 1
    return 1


CASE_IMPORTS = {
    "pilothouse profile mode": ["pilothouse"],
    "pilothouse profile, 1 thread": ["pilothouse"],
    "pilothouse exact mode": ["pilothouse"],
    "pilothouse exact, 1 thread": ["pilothouse"],
    "Evidently DataDriftPreset": ["evidently", "evidently.presets"],
    "scipy loop": ["scipy.stats", "scipy.spatial.distance"],
}


def run_case(name: str, folder: Path) -> None:
    import pandas as pd

    ref = pd.read_parquet(folder / "ref.parquet")
    cur = pd.read_parquet(folder / "cur.parquet")
    size = int(ref.memory_usage(deep=True).sum() + cur.memory_usage(deep=True).sum())
    fn = CASES[name]
    # hand freed pages (Parquet decoding buffers) back to the OS, so that the case's own
    # allocations show up as growth instead of reusing them unseen
    import ctypes

    ctypes.CDLL("libc.so.6").malloc_trim(0)
    # imports happen before the clock: a process pays them once, not per report
    for module in CASE_IMPORTS.get(name, []):
        __import__(module)
    times = []
    with PeakRss() as mem:
        while True:
            start = time.perf_counter()
            flagged = fn(ref, cur)
            times.append(time.perf_counter() - start)
            # short cases run three times and report the median; long ones run once
            if len(times) == 3 or times[0] > 5:
                break
    seconds = sorted(times)[len(times) // 2]
    print(
        json.dumps(
            {
                "seconds": seconds,
                "peak_bytes": mem.peak - mem.base,
                "input_bytes": size,
                "flagged": sorted(flagged),
            }
        )
    )


def spawn(name: str, folder: Path, timeout: float) -> dict[str, Any] | None:
    python = str(EVIDENTLY_PYTHON) if name.startswith("Evidently") else sys.executable
    env = dict(os.environ)
    if case_threads(name) == 1:
        env.update(ONE_THREAD)
    if name.startswith("Evidently"):
        env["PYTHONPATH"] = ""
    try:
        out = subprocess.run(
            [python, str(HERE), "--case", name, "--data", str(folder)],
            capture_output=True,
            text=True,
            timeout=timeout,
            env=env,
        )
    except subprocess.TimeoutExpired:
        return {"error": f"over {timeout:.0f} s"}
    if out.returncode != 0:
        return {"error": out.stderr.strip().splitlines()[-1] if out.stderr else "failed"}
    return json.loads(out.stdout.strip().splitlines()[-1])  # type: ignore[no-any-return]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--quick", action="store_true", help="only the 100k x 20 size")
    parser.add_argument("--skip-evidently", action="store_true")
    parser.add_argument("--case", help=argparse.SUPPRESS)
    parser.add_argument("--data", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.case:
        run_case(args.case, Path(args.data))
        return
    sizes = [(100_000, 20)] if args.quick else [(100_000, 20), (1_000_000, 50)]
    names = [n for n in CASES if not (args.skip_evidently and n.startswith("Evidently"))]
    if "Evidently DataDriftPreset" in names and not EVIDENTLY_PYTHON.exists():
        print(f"(Evidently skipped: {EVIDENTLY_PYTHON} is missing; run `make bench`)")
        names.remove("Evidently DataDriftPreset")
    lines = []
    for rows, cols in sizes:
        with tempfile.TemporaryDirectory() as tmp:
            folder = Path(tmp)
            truth = sorted(make_data(rows, cols, folder))
            results = {n: spawn(n, folder, timeout=3600) for n in names}
        base = results["pilothouse profile mode"]
        floor = results["numpy read-once floor"]
        print(
            f"\n{rows:,} rows x {cols} columns, reference and current; drift injected in {len(truth)}"
        )
        header = f"{'case':30} {'threads':>7} {'wall s':>9} {'peak MB':>9} {'x input':>8} {'vs profile':>11} {'vs floor':>9}  same verdicts"
        print(header)
        print("-" * len(header))
        for name in names:
            r = results[name]
            if r is None or "error" in r:
                print(
                    f"{name:30} {case_threads(name):>7} {'-':>9} {'-':>9} {'-':>8} {'-':>11} {'-':>9}  {r and r.get('error')}"
                )
                continue
            same = (
                "-"
                if name.startswith("numpy")
                else ("yes" if r["flagged"] == truth else f"no: {r['flagged']}")
            )
            peak = r["peak_bytes"] / 1e6
            line = (
                f"{name:30} {case_threads(name):>7} {r['seconds']:9.3f} {peak:9.1f} {r['peak_bytes'] / r['input_bytes']:8.2f} "
                f"{r['seconds'] / base['seconds']:10.1f}x {r['seconds'] / floor['seconds']:8.1f}x  {same}"
            )
            print(line)
            lines.append(line)
        print(f"input: {base['input_bytes'] / 1e6:.0f} MB in memory")


if __name__ == "__main__":
    main()
