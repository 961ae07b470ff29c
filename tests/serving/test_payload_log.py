"""The payload log: SIGTERM under load loses no acknowledged request; retention and redaction;
typed payload columns that DuckDB and polars read, and segments of the older JSON layout;
the in-process server from a notebook."""

from __future__ import annotations

import datetime as dt
import signal
import threading
import time
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import requests
from servers import CliServer, Store, infer_json, log_scale_versions, models, wait_version

import pilothouse as ph
from pilothouse import _core


def test_sigterm_under_load_keeps_every_acknowledged_request(store: Store, cli: object) -> None:
    log_scale_versions(store, "scale", (2.0,))
    ph.deploy("scale", version=1, registry=store.registry)
    server: CliServer = cli("--flush-interval-ms", "60000")  # only the shutdown flush writes
    acked: list[str] = []
    errors: list[str] = []
    stop = threading.Event()

    def client(seed: int) -> None:
        session = requests.Session()
        n = 0
        while not stop.is_set():
            n += 1
            rid = f"c{seed}-{n}"
            body = {
                "inputs": [
                    {"name": "x", "shape": [1, 4], "datatype": "FP32", "data": [n, seed, 0, 1]}
                ]
            }
            try:
                r = session.post(
                    f"{server.url}/v2/models/scale/infer",
                    json=body,
                    headers={"X-Request-ID": rid},
                    timeout=10,
                )
            except requests.RequestException as e:
                errors.append(type(e).__name__)
                time.sleep(0.01)
                continue
            if r.status_code == 200:
                assert r.headers["x-request-id"] == rid
                acked.append(rid)

    threads = [threading.Thread(target=client, args=(i,)) for i in range(4)]
    for t in threads:
        t.start()
    time.sleep(1.5)
    server.process.send_signal(signal.SIGTERM)
    assert server.process.wait(timeout=30) == 0
    stop.set()
    for t in threads:
        t.join()
    assert len(acked) > 100
    log = ph.inference_log("scale", since=None, registry=store.registry)
    missing = set(acked) - set(log.request_id)
    assert not missing, f"{len(missing)} acknowledged requests are not in the log"
    row = log.set_index("request_id").loc[acked[0]]
    assert row.status == 200 and row.version == 1 and row.route == "v1"
    assert row["output.y"] == [2 * v for v in row["input.x"]]
    assert any("SIGTERM" in line for line in server.lines)


def test_retention_deletes_old_hours_and_keeps_recent(store: Store, cli: object) -> None:
    log_scale_versions(store, "scale", (1.0,))
    ph.deploy("scale", version=1, retention_days=1, registry=store.registry)
    schema = _core.read_inference_log(str(store.log_dir), "none").schema
    now = dt.datetime.now(dt.timezone.utc)
    old = store.log_dir / "scale" / "2020-01-01" / "00"
    recent_at = now - dt.timedelta(hours=2)
    recent = store.log_dir / "scale" / recent_at.strftime("%Y-%m-%d") / recent_at.strftime("%H")
    for folder in (old, recent):
        folder.mkdir(parents=True)
        pq.write_table(pa.Table.from_pylist([], schema=schema), folder / "part-0-test-0.parquet")
    server: CliServer = cli()  # type: ignore[operator]
    # The hour folder goes first, then its emptied day folder: wait for both.
    server.wait_for(
        lambda: not old.parent.exists(), timeout=10, what="the 2020 folders to be deleted"
    )
    assert recent.exists() and not old.exists()
    assert infer_json(server.url, "scale", {"x": np.ones((1, 4), np.float32)}).status_code == 200


def test_redaction_and_payload_free_logging(store: Store, cli: object) -> None:
    data, sample = models.multi_io()
    store.registry.log_model(data, "io", input_example={k: v[:2] for k, v in sample.items()})
    ph.deploy("io", version=1, redact=["s"], hash_inputs=["a"], registry=store.registry)
    log_scale_versions(store, "quiet", (1.0,))
    ph.deploy("quiet", version=1, log_payloads=False, registry=store.registry)
    server: CliServer = cli()  # type: ignore[operator]
    for _ in range(2):
        assert infer_json(server.url, "io", dict(sample)).status_code == 200
    assert infer_json(server.url, "quiet", {"x": np.ones((1, 4), np.float32)}).status_code == 200
    assert server.stop() == 0
    log = ph.inference_log("io", registry=store.registry)
    assert len(log) == 2 and "input.s" not in log.columns
    assert log["input.a"].str.startswith("sha256:").all() and log["input.a"].nunique() == 1
    assert log["input.b"][0] == sample["b"].tolist() and "output.s_same" in log.columns
    quiet = ph.inference_log("quiet", registry=store.registry)
    assert len(quiet) == 1 and not [c for c in quiet.columns if c.startswith(("input.", "output."))]
    assert quiet.status[0] == 200 and quiet.latency_ms[0] > 0


def test_in_process_server_from_a_notebook(store: Store, tmp_path: Path) -> None:
    log_scale_versions(store, "scale", (1.0, 2.0))
    store.registry.set_alias("scale", "champion", 1)
    with ph.serve(port=0, poll_interval_ms=50) as srv:
        assert srv.running and srv.url.startswith("http://127.0.0.1:")
        ph.deploy("scale", model="scale", alias="champion")  # after the server started
        wait_version(srv.url, "scale", 1)
        x = np.ones((1, 4), np.float32)
        assert infer_json(srv.url, "scale", {"x": x}).json()["outputs"][0]["data"] == [1.0] * 4
        ph.set_alias("scale", "champion", 2)
        wait_version(srv.url, "scale", 2)
        assert infer_json(srv.url, "scale", {"x": x}).json()["outputs"][0]["data"] == [2.0] * 4
        assert "pilothouse server" in srv._repr_html_()
        assert [d.name for d in ph.deployments()] == ["scale"]
    assert not srv.running
    log = ph.inference_log("scale", since="5m")
    assert set(log.version) == {1, 2}
    try:
        requests.get(f"{srv.url}/v2/health/live", timeout=2)
        raise AssertionError("the server still answers after stop()")
    except requests.ConnectionError:
        pass
    ph.undeploy("scale")
    assert ph.deployments() == []


def test_a_log_folder_that_cannot_be_written_loses_nothing(store: Store, cli: object) -> None:
    log_scale_versions(store, "scale", (1.0,))
    ph.deploy("scale", version=1, registry=store.registry)
    server: CliServer = cli("--flush-interval-ms", "100")  # type: ignore[operator]
    blocker = store.log_dir / "scale"
    blocker.write_text("a file where the deployment's folder should be")
    ids = [
        infer_json(server.url, "scale", {"x": np.ones((1, 4), np.float32)}).headers["x-request-id"]
        for _ in range(20)
    ]
    server.wait_for(
        lambda: server.metric("pilothouse_payload_log_errors_total") >= 1,
        what="a failed segment write",
    )
    assert any("cannot write a payload-log segment" in line for line in server.lines)
    blocker.unlink()  # the disk is writable again: the kept rows go out at the next flush
    server.wait_for(
        lambda: len(ph.inference_log("scale", since=None, registry=store.registry)) == 20,
        what="the kept rows to be written",
    )
    assert set(ph.inference_log("scale", since=None, registry=store.registry).request_id) == set(
        ids
    )
    assert server.metric("pilothouse_payload_log_dropped_total") == 0


def test_payloads_are_typed_columns_other_tools_read(store: Store, cli: object) -> None:
    log_scale_versions(store, "scale", (2.0,))
    ph.deploy("scale", version=1, registry=store.registry)
    server: CliServer = cli()  # type: ignore[operator]
    x = np.arange(8, dtype=np.float32).reshape(2, 4)
    assert infer_json(server.url, "scale", {"x": x}).status_code == 200
    assert infer_json(server.url, "scale", {"x": x[:1] + 10}).status_code == 200
    assert server.stop() == 0
    files = sorted((store.log_dir / "scale").rglob("part-*.parquet"))
    assert files

    import duckdb
    import polars as pl

    frame = pl.read_parquet(files).sort("time")
    assert frame.schema["input.x"] == pl.List(pl.List(pl.Float32))
    assert frame["input.x"].to_list() == [x.tolist(), [[10.0, 11.0, 12.0, 13.0]]]
    assert frame["output.y"].to_list()[0] == (2 * x).tolist()
    glob = str(store.log_dir / "scale" / "*" / "*" / "part-*.parquet")
    second = duckdb.sql(
        f"SELECT \"input.x\"[1][2] AS v FROM read_parquet('{glob}') ORDER BY time"
    ).fetchall()
    assert second == [(1.0,), (11.0,)]

    # a segment as builds before typed columns wrote it: payloads as JSON text
    folder = files[0].parent
    old = pa.table(
        {
            "request_id": ["old-1"],
            "time": pa.array([dt.datetime.now(dt.timezone.utc)], pa.timestamp("us", tz="UTC")),
            "deployment": ["scale"],
            "model": ["scale"],
            "version": pa.array([1], pa.int64()),
            "role": ["primary"],
            "route": ["v1"],
            "status": pa.array([200], pa.int32()),
            "latency_ms": [1.0],
            "queue_ms": [0.1],
            "inference_ms": [0.5],
            "batch_rows": pa.array([1], pa.int64()),
            "inputs": ['{"x":{"datatype":"FP32","shape":[1,4],"data":[5.0,6.0,7.0,8.0]}}'],
            "outputs": ['{"y":{"datatype":"FP32","shape":[1,4],"data":[10.0,12.0,14.0,16.0]}}'],
            "error": pa.array([None], pa.string()),
        }
    )
    pq.write_table(old, folder / "part-0-older-0.parquet")
    log = ph.inference_log("scale", since=None, registry=store.registry)
    assert len(log) == 3 and "inputs" not in log.columns
    by_id = log.set_index("request_id")
    assert by_id.loc["old-1", "input.x"] == [5.0, 6.0, 7.0, 8.0]
    assert by_id.loc["old-1", "output.y"] == [10.0, 12.0, 14.0, 16.0]
    typed = log[log.request_id != "old-1"]
    assert typed["input.x"].tolist() == [x.tolist(), [10.0, 11.0, 12.0, 13.0]]
