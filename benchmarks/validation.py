"""Data validation: ``pilothouse.testing.assert_valid`` against pandera, on the same frame,
in one run.

A pandas frame of 1,000,000 rows x 50 columns (40 numbers, 10 text columns of five
categories) is checked against the schema its reference implies (the clean frame is the
reference's rows shuffled). pandera gets the same
checks written as a schema: every column present and no other (``strict``), its type,
numbers within the reference's minimum and maximum, text among the reference's categories,
no missing values. pilothouse reads them from the reference profile (made once, outside the
timing, as pandera's schema is). Both are timed on a clean frame (every check passes) and on
a frame with a few bad values in ten columns (both find every failure: pandera with
``lazy=True``). pandera's pandas checks run on one thread and cannot use more; pilothouse
checks the columns on rayon's threads, so it is timed twice: in a child process held to
one thread (``RAYON_NUM_THREADS=1``: the same threads as pandera) and with every core, as
users run it. Best of three.

    python benchmarks/validation.py [--rows 1000000]
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from typing import Any, Callable

import numpy as np
import pandas as pd

CATEGORIES = ["paris", "rome", "oslo", "lima", "kyiv"]


def frame(rows: int, seed: int) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    columns: dict[str, Any] = {f"x{i}": rng.normal(size=rows) for i in range(40)}
    names = np.array(CATEGORIES, dtype=object)
    for i in range(10):
        columns[f"c{i}"] = names[rng.integers(0, len(names), rows)]
    return pd.DataFrame(columns)


def spoiled(clean: pd.DataFrame) -> pd.DataFrame:
    """Out-of-range numbers in five columns, unseen categories in three, missing values in
    two: 50 bad cells in all."""
    bad = clean.copy()
    for i in range(5):
        bad.loc[bad.index[:5], f"x{i}"] = 1e6
    for i in range(3):
        bad.loc[bad.index[10:15], f"c{i}"] = "tokyo"
    for i in range(5, 7):
        bad.loc[bad.index[20:25], f"x{i}"] = np.nan
    return bad


def best(run: Callable[[], Any], rounds: int) -> float:
    times = []
    for _ in range(rounds):
        started = time.perf_counter()
        run()
        times.append(time.perf_counter() - started)
    return min(times)


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--ours-only", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.ours_only:
        print(json.dumps(ours_timings(args.rows, args.rounds)))
        return
    one_thread = json.loads(
        subprocess.run(
            [
                sys.executable,
                __file__,
                "--ours-only",
                "--rows",
                str(args.rows),
                "--rounds",
                str(args.rounds),
            ],
            env={**os.environ, "RAYON_NUM_THREADS": "1"},
            capture_output=True,
            text=True,
            check=True,
        ).stdout
    )

    import pandera.pandas as pa
    from pandera.errors import SchemaErrors

    import pilothouse.testing as pht

    reference, clean, bad, profile = inputs(args.rows)
    schema = pa.DataFrameSchema(
        {
            **{
                f"x{i}": pa.Column(
                    float,
                    pa.Check.in_range(reference[f"x{i}"].min(), reference[f"x{i}"].max()),
                    nullable=False,
                )
                for i in range(40)
            },
            **{
                f"c{i}": pa.Column(str, pa.Check.isin(CATEGORIES), nullable=False)
                for i in range(10)
            },
        },
        strict=True,
    )

    def ours_clean() -> None:
        pht.assert_valid(clean, profile)

    def theirs_clean() -> None:
        schema.validate(clean, lazy=True)

    found: dict[str, int] = {}

    def ours_bad() -> None:
        try:
            pht.assert_valid(bad, profile)
        except pht.CheckFailed as e:
            found["pilothouse"] = sum(r["rows"] for r in e.result.rows)
        else:
            raise SystemExit("pilothouse found nothing wrong in the spoiled frame")

    def theirs_bad() -> None:
        try:
            schema.validate(bad, lazy=True)
        except SchemaErrors as e:
            found["pandera"] = len(e.failure_cases)
        else:
            raise SystemExit("pandera found nothing wrong in the spoiled frame")

    rows = []
    cores = len(os.sched_getaffinity(0))
    for case, ours, theirs in (
        ("clean frame", ours_clean, theirs_clean),
        ("50 bad cells", ours_bad, theirs_bad),
    ):
        a, b = best(ours, args.rounds), best(theirs, args.rounds)
        rows.append((case, "1 thread", one_thread[case], b))
        rows.append((case, f"{cores} threads", a, b))
    print()
    print(
        f"assert_valid vs pandera: {args.rows:,} rows x 50 columns (40 numbers, 10 texts), "
        f"best of {args.rounds}; pandera on one thread throughout"
    )
    print(
        f"{'frame':14} {'pilothouse on':14} {'pilothouse s':>13} {'pandera s':>10} {'speed-up':>9}"
    )
    for case, threads, a, b in rows:
        print(f"{case:14} {threads:14} {a:>13.3f} {b:>10.3f} {b / a:>8.1f}x")
    print(f"bad cells found: pilothouse {found.get('pilothouse')}, pandera {found.get('pandera')}")


def inputs(rows: int) -> tuple[pd.DataFrame, pd.DataFrame, pd.DataFrame, Any]:
    """The reference frame, served rows like it (its own rows, shuffled: every check
    passes), the same spoiled, and the reference's profile."""
    import pilothouse as ph

    reference = frame(rows, 1)
    clean = reference.sample(frac=1.0, random_state=2).reset_index(drop=True)
    return reference, clean, spoiled(clean), ph.profile(reference)


def ours_timings(rows: int, rounds: int) -> dict[str, float]:
    """pilothouse alone on the same frames (for the one-thread child process)."""
    import pilothouse.testing as pht

    _, clean, bad, profile = inputs(rows)

    def ours_bad() -> None:
        try:
            pht.assert_valid(bad, profile)
        except pht.CheckFailed:
            return
        raise SystemExit("pilothouse found nothing wrong in the spoiled frame")

    return {
        "clean frame": best(lambda: pht.assert_valid(clean, profile), rounds),
        "50 bad cells": best(ours_bad, rounds),
    }


if __name__ == "__main__":
    main()
