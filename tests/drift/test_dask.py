"""Profiles computed per partition on a real dask.distributed LocalCluster (worker
processes) and merged equal the single-process profile."""

from __future__ import annotations

import dask
import dask.dataframe as dd
import distributed
import numpy as np
import pandas as pd
import pytest

import pilothouse as ph


def _profile_bytes(part: pd.DataFrame) -> bytes:
    return ph.profile(part, progress=False).to_bytes()


def test_partition_profiles_merge_to_the_whole() -> None:
    rng = np.random.default_rng(11)
    n = 120_000
    df = pd.DataFrame(
        {
            "x": rng.normal(size=n),
            "k": rng.integers(0, 1000, n),
            "c": rng.choice(["a", "b", "c", "d"], n),
        }
    )
    ddf = dd.from_pandas(df, npartitions=6)
    with (
        distributed.LocalCluster(
            n_workers=2, threads_per_worker=1, processes=True, dashboard_address=None
        ) as cluster,
        distributed.Client(cluster) as client,
    ):
        futures = client.compute([dask.delayed(_profile_bytes)(p) for p in ddf.to_delayed()])
        blobs = client.gather(futures)
        pids = client.run(lambda: __import__("os").getpid())
    assert len(blobs) == 6 and len(set(pids.values())) == 2
    merged = ph.Profile.merge(ph.Profile.from_bytes(b) for b in blobs)
    whole = ph.profile(df)
    a = {c["column"]: c for c in merged.summary()}
    b = {c["column"]: c for c in whole.summary()}
    for name in b:
        for key, value in b[name].items():
            if key in ("mean", "std"):
                assert a[name][key] == pytest.approx(value, rel=1e-12)
            else:
                assert a[name][key] == value, (name, key)
    assert ph.drift(merged, whole).drifted_columns == []
