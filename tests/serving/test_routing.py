"""Traffic policies: weighted routes, sticky routing by a header, shadow traffic (and a stop
that waits for the shadow runs of answered requests)."""

from __future__ import annotations

import math
from collections import Counter

import numpy as np
import requests
from servers import CliServer, Store, infer_json, log_scale_versions, models

import pilothouse as ph


def send(
    server: CliServer, n: int, headers: dict[str, str] | None = None, name: str = "scale"
) -> list[requests.Response]:
    session = requests.Session()
    x = np.arange(4, dtype=np.float32).reshape(1, 4)
    body = {
        "inputs": [{"name": "x", "shape": [1, 4], "datatype": "FP32", "data": x.ravel().tolist()}]
    }
    return [
        session.post(f"{server.url}/v2/models/{name}/infer", json=body, headers=headers, timeout=10)
        for _ in range(n)
    ]


def test_weighted_routes_split_traffic(store: Store, cli: object) -> None:
    log_scale_versions(store, "scale", (1.0, 2.0))
    store.registry.set_alias("scale", "champion", 1)
    store.registry.set_alias("scale", "challenger", 2)
    d = ph.deploy("scale", routes=[("champion", 0.8), ("challenger", 0.2)], registry=store.registry)
    assert d.routes == [("@champion", 0.8), ("@challenger", 0.2)] and d.versions == {
        "@champion": 1,
        "@challenger": 2,
    }
    server: CliServer = cli()  # type: ignore[operator]
    answers = send(server, 2000)
    assert all(a.status_code == 200 for a in answers)
    by_version = Counter(a.headers["x-model-version"] for a in answers)
    routes = Counter(a.headers["x-model-route"] for a in answers)
    assert by_version["1"] == routes["@champion"] and by_version["2"] == routes["@challenger"]
    # each answer is the named version's: y = x * version
    for a in answers[:200]:
        k = float(a.headers["x-model-version"])
        assert a.json()["outputs"][0]["data"] == [i * k for i in range(4)]
    sd = math.sqrt(2000 * 0.2 * 0.8)
    assert abs(by_version["2"] - 400) < 4 * sd, by_version  # 4 standard deviations


def test_sticky_routing_holds_per_header_value(store: Store, cli: object) -> None:
    log_scale_versions(store, "scale", (1.0, 2.0))
    ph.deploy("scale", routes=[(1, 0.5), (2, 0.5)], sticky_header="X-User", registry=store.registry)
    server: CliServer = cli()  # type: ignore[operator]
    chosen = {}
    for user in range(40):
        versions = {
            a.headers["x-model-version"] for a in send(server, 10, {"X-User": f"user-{user}"})
        }
        assert len(versions) == 1, (user, versions)
        chosen[user] = versions.pop()
    assert set(chosen.values()) == {"1", "2"}  # users spread over both routes
    # without the header, requests are spread at random
    assert len({a.headers["x-model-version"] for a in send(server, 60)}) == 2


def test_shadow_gets_a_copy_and_is_logged_beside_the_primary(store: Store, cli: object) -> None:
    log_scale_versions(store, "scale", (1.0, 3.0))
    store.registry.set_alias("scale", "champion", 1)
    store.registry.set_alias("scale", "challenger", 2)
    ph.deploy("scale", alias="champion", shadow="challenger", registry=store.registry)
    server: CliServer = cli("--flush-interval-ms", "100")  # type: ignore[operator]
    answers = send(server, 30)
    assert {a.headers["x-model-version"] for a in answers} == {"1"}  # clients only see the primary
    ids = {a.headers["x-request-id"] for a in answers}
    server.stop()
    log = ph.inference_log("scale", since="10m", registry=store.registry)
    primary = log[log.role == "primary"].set_index("request_id")
    shadow = log[log.role == "shadow"].set_index("request_id")
    assert set(primary.index) == ids and set(shadow.index) == ids
    assert (shadow.version == 2).all() and (shadow.route == "@challenger").all()
    for rid in ids:
        assert shadow.loc[rid, "output.y"] == [3 * v for v in primary.loc[rid, "input.x"]]
        assert primary.loc[rid, "output.y"] == primary.loc[rid, "input.x"]


def test_a_stop_waits_for_the_shadow_runs_of_answered_requests(store: Store, cli: object) -> None:
    # the shadow (a version some 30 ms slower per request) is still working through copies
    # when the server is asked to stop: each is finished and logged, none is cancelled
    example = {"x": np.ones((1, 4), np.float32), "work": np.zeros((1, 1), np.float32)}
    store.registry.log_model(models.on_demand(), "loop", input_example=example)
    store.registry.log_model(models.on_demand(rounds=60), "loop", input_example=example)
    store.registry.set_alias("loop", "champion", 1)
    store.registry.set_alias("loop", "challenger", 2)
    ph.deploy("loop", alias="champion", shadow="challenger", registry=store.registry)
    server: CliServer = cli()  # type: ignore[operator]
    ids = set()
    for _ in range(8):
        answer = infer_json(server.url, "loop", example)
        assert answer.status_code == 200
        ids.add(answer.headers["x-request-id"])
    assert server.stop() == 0
    log = ph.inference_log("loop", since="10m", registry=store.registry)
    shadow = log[log.role == "shadow"]
    assert set(shadow.request_id) == ids, f"{len(shadow)} of {len(ids)} shadow runs logged"
    assert (shadow.status == 200).all() and (shadow.version == 2).all()
