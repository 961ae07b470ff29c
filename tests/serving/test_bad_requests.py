"""Bad requests get a 4xx with {"error": ...} naming the problem; a full queue gets 503 with
Retry-After; nothing wedges the server."""

from __future__ import annotations

import concurrent.futures as cf
import socket

import numpy as np
import pytest
import requests
from servers import CliServer, Store, infer_json, log_scale_versions, metric, models

import pilothouse as ph


@pytest.fixture
def server(store: Store, cli: object) -> CliServer:
    log_scale_versions(store, "scale", (1.0,))
    ph.deploy("scale", version=1, registry=store.registry)
    return cli("--max-body-bytes", "65536")  # type: ignore[operator, no-any-return]


def post(server: CliServer, path: str, **kw: object) -> requests.Response:
    return requests.post(f"{server.url}{path}", timeout=10, **kw)  # type: ignore[arg-type]


def body(
    name: str = "x", shape: list[int] | None = None, datatype: str = "FP32", data: object = None
) -> dict:
    shape = shape or [1, 4]
    return {
        "inputs": [
            {
                "name": name,
                "shape": shape,
                "datatype": datatype,
                "data": data if data is not None else [1.0] * int(np.prod(shape)),
            }
        ]
    }


CASES = [
    ("/v2/models/nope/infer", {"json": body()}, 404, "no deployment named 'nope'"),
    (
        "/v2/models/scale/versions/7/infer",
        {"json": body()},
        404,
        "version 7 of 'scale' is not deployed",
    ),
    ("/v2/models/scale/versions/x/infer", {"json": body()}, 400, "not a number"),
    (
        "/v2/models/scale/infer",
        {"json": body(name="X")},
        400,
        "no input of that name; its inputs are [x]",
    ),
    (
        "/v2/models/scale/infer",
        {"json": body(datatype="INT64", data=[1, 2, 3, 4])},
        400,
        "datatype INT64 does not match the model's FP32",
    ),
    (
        "/v2/models/scale/infer",
        {"json": body(shape=[1, 3])},
        400,
        "shape [1, 3] does not match the model's [?, 4]",
    ),
    (
        "/v2/models/scale/infer",
        {"json": body(shape=[1, 4], data=[1.0, 2.0])},
        400,
        "holds 4 elements but the data has 2",
    ),
    (
        "/v2/models/scale/infer",
        {"json": body(data=[1, "a", 2, 3])},
        400,
        'element 1 is "a", not a number',
    ),
    (
        "/v2/models/scale/infer",
        {"json": body(datatype="FP8")},
        400,
        'datatype "FP8" is not supported',
    ),
    ("/v2/models/scale/infer", {"data": b"{not json"}, 400, "not a valid inference request"),
    ("/v2/models/scale/infer", {"json": {"inputs": []}}, 400, "no inputs"),
    ("/v2/models/scale/infer", {"json": {"inputs": [{"name": "x"}]}}, 400, "missing field"),
    ("/v2/models/scale/infer", {"json": {**body(), "outputs": [{"name": "z"}]}}, 400, "output 'z'"),
    ("/v2/models/scale/infer", {"json": {**body(), "outputs": []}}, 400, "empty list"),
    ("/v2/models/scale/infer", {"json": body(shape=[0, 4], data=[])}, 400, "empty"),
    (
        "/v2/models/scale/infer",
        {"data": b"x" * 70000},
        413,
        "over the server's limit of 65536 bytes",
    ),
    (
        "/v2/models/scale/infer",
        {"data": b"{}", "headers": {"Inference-Header-Content-Length": "99"}},
        400,
        "Inference-Header-Content-Length is 99",
    ),
    ("/v2/nothing", {}, 404, "no such endpoint"),
]


@pytest.mark.parametrize(("path", "kw", "status", "message"), CASES, ids=[c[3][:30] for c in CASES])
def test_bad_request(server: CliServer, path: str, kw: dict, status: int, message: str) -> None:
    r = post(server, path, **kw)
    assert r.status_code == status, r.text
    assert r.headers["content-type"] == "application/json"
    assert message in r.json()["error"], r.json()
    # the server keeps serving
    assert infer_json(server.url, "scale", {"x": np.ones((1, 4), np.float32)}).status_code == 200


def test_wrong_method_and_broken_connections(server: CliServer) -> None:
    r = requests.get(f"{server.url}/v2/models/scale/infer", timeout=5)
    assert r.status_code == 405 and "GET is not allowed" in r.json()["error"]
    # a client that sends half a request and disappears, and one that sends garbage
    host, port = server.url.removeprefix("http://").split(":")
    for payload in (
        b'POST /v2/models/scale/infer HTTP/1.1\r\nContent-Length: 1000\r\n\r\n{"in',
        b"\x00\x01garbage\r\n\r\n",
    ):
        with socket.create_connection((host, int(port))) as s:
            s.sendall(payload)
    assert requests.get(f"{server.url}/v2/health/live", timeout=5).status_code == 200
    assert (
        infer_json(server.url, "scale", {"x": np.ones((2, 4), np.float32)}).json()["outputs"][0][
            "data"
        ]
        == [1.0] * 8
    )


def test_full_queue_answers_503_and_timeouts_504(store: Store, cli: object) -> None:
    data, X = models.random_forest(n_estimators=100)
    store.registry.log_model(data, "slow", input_example=X[:2])
    ph.deploy("slow", version=1, max_batch_size=1, queue_capacity=2, registry=store.registry)
    server = cli("--inference-threads", "1")  # type: ignore[operator]
    big = np.repeat(X, 40, axis=0)[:8000]  # ~10 ms per request on one thread

    def send(_: int) -> requests.Response:
        return infer_json(server.url, "slow", {"X": big})

    with cf.ThreadPoolExecutor(24) as pool:
        answers = list(pool.map(send, range(48)))
    codes = [a.status_code for a in answers]
    assert codes.count(200) >= 2 and codes.count(503) >= 1, codes
    full = next(a for a in answers if a.status_code == 503)
    assert full.headers["retry-after"] == "1" and "at capacity" in full.json()["error"]
    assert set(codes) <= {200, 503}
    text = requests.get(f"{server.url}/metrics", timeout=5).text
    assert metric(
        text, "pilothouse_requests_total", deployment="slow", status="503"
    ) == codes.count(503)
    # a per-request timeout (parameters.timeout, in microseconds) below the run time
    body = {
        "parameters": {"timeout": 1},
        "inputs": [
            {
                "name": "X",
                "shape": list(big.shape),
                "datatype": "FP32",
                "data": big.ravel().tolist(),
            }
        ],
    }
    with cf.ThreadPoolExecutor(4) as pool:
        answers = list(
            pool.map(
                lambda _: requests.post(
                    f"{server.url}/v2/models/slow/infer", json=body, timeout=30
                ),
                range(4),
            )
        )
    assert any(a.status_code == 504 and "no answer within" in a.json()["error"] for a in answers), [
        a.text[:80] for a in answers
    ]
