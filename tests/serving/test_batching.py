"""Dynamic batching: concurrent requests are coalesced (batch sizes above 1 in /metrics), and
every request gets its own rows back."""

from __future__ import annotations

import concurrent.futures as cf

import numpy as np
import requests
from servers import CliServer, Store, log_scale_versions, metric

import pilothouse as ph


def test_concurrent_requests_are_batched_and_split_back(store: Store, cli: object) -> None:
    log_scale_versions(store, "scale", (2.0,))
    ph.deploy(
        "scale", version=1, max_batch_size=32, max_queue_delay_us=2000, registry=store.registry
    )
    server: CliServer = cli("--inference-threads", "1")  # type: ignore[operator]

    def one(i: int) -> tuple[int, requests.Response]:
        rows = 1 + i % 3  # requests of 1, 2 and 3 rows share batches
        x = np.arange(rows * 4, dtype=np.float32).reshape(rows, 4) + 100 * i
        body = {
            "inputs": [
                {"name": "x", "shape": [rows, 4], "datatype": "FP32", "data": x.ravel().tolist()}
            ]
        }
        return i, requests.post(f"{server.url}/v2/models/scale/infer", json=body, timeout=30)

    with cf.ThreadPoolExecutor(16) as pool:
        results = list(pool.map(one, range(400)))
    for i, r in results:
        assert r.status_code == 200, r.text
        rows = 1 + i % 3
        want = ((np.arange(rows * 4, dtype=np.float32) + 100 * i) * 2).tolist()
        out = r.json()["outputs"][0]
        assert out["shape"] == [rows, 4] and out["data"] == want, i
    text = requests.get(f"{server.url}/metrics", timeout=5).text
    runs = metric(text, "pilothouse_batch_size_count", deployment="scale")
    requests_in_batches = metric(text, "pilothouse_batch_size_sum", deployment="scale")
    # warm-up runs are not counted: they happen before the batcher starts
    assert requests_in_batches == 400
    assert requests_in_batches / runs > 1.5, (requests_in_batches, runs)
    assert metric(text, "pilothouse_batch_size_bucket", deployment="scale", le="1.0") < runs


def test_batching_off_runs_one_request_per_call(store: Store, cli: object) -> None:
    log_scale_versions(store, "scale", (2.0,))
    ph.deploy("scale", version=1, max_batch_size=1, registry=store.registry)
    server: CliServer = cli()  # type: ignore[operator]
    body = {"inputs": [{"name": "x", "shape": [1, 4], "datatype": "FP32", "data": [1, 2, 3, 4]}]}
    with cf.ThreadPoolExecutor(8) as pool:
        codes = list(
            pool.map(
                lambda _: (
                    requests.post(
                        f"{server.url}/v2/models/scale/infer", json=body, timeout=30
                    ).status_code
                ),
                range(100),
            )
        )
    assert codes == [200] * 100
    text = requests.get(f"{server.url}/metrics", timeout=5).text
    assert metric(text, "pilothouse_batch_size_count", deployment="scale") == 100
    assert metric(text, "pilothouse_batch_size_sum", deployment="scale") == 100
