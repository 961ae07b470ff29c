"""Triton's protocol extensions and habits that tritonclient relies on, against a real
`pilothouse serve`: model configuration, statistics, classification, compressed bodies, NaN
and infinities, sequence parameters, per-model readiness and warm-up without invented values."""

from __future__ import annotations

import gzip
import json
import zlib

import numpy as np
import pytest
import requests
import tritonclient.http as tc
from servers import CliServer, Store, infer_json, log_scale_versions, models

import pilothouse as ph


def client(server: CliServer) -> tc.InferenceServerClient:
    return tc.InferenceServerClient(server.url.removeprefix("http://"))


@pytest.fixture
def served(store: Store, cli: object) -> CliServer:
    data, X = models.logistic_regression(zipmap=False)
    store.registry.log_model(data, "logreg", input_example=X[:3])
    ph.deploy(
        "logreg", version=1, max_batch_size=16, max_queue_delay_us=300, registry=store.registry
    )
    zipmapped, _ = models.logistic_regression(zipmap=True)
    store.registry.log_model(zipmapped, "labelled", input_example=X[:3])
    ph.deploy("labelled", version=1, registry=store.registry)
    log_scale_versions(store, "scale", (1.0,))
    ph.deploy("scale", version=1, max_batch_size=1, registry=store.registry)
    server: CliServer = cli()  # type: ignore[operator]
    return server


def test_metadata_lists_the_extensions_it_implements(served: CliServer) -> None:
    meta = client(served).get_server_metadata()
    assert set(meta["extensions"]) == {
        "binary_tensor_data",
        "classification",
        "model_configuration",
        "statistics",
        "parameters",
    }
    assert requests.get(f"{served.url}/v2/", timeout=5).json()["name"] == "pilothouse"


def test_model_configuration(served: CliServer) -> None:
    c = client(served)
    config = c.get_model_config("logreg")
    assert config["name"] == "logreg" and config["platform"] == "onnxruntime_onnx"
    assert config["max_batch_size"] == 16
    assert config["dynamic_batching"]["max_queue_delay_microseconds"] == 300
    (x,) = config["input"]
    assert x["name"] == "X" and x["data_type"] == "TYPE_FP32"
    assert x["dims"] == [models.N_FEATURES]  # the batch dimension is left out
    assert {o["name"] for o in config["output"]} == {"label", "probabilities"}
    assert config["instance_group"][0]["kind"] == "KIND_CPU"
    # Batching off: max_batch_size 0 and the full shape.
    off = c.get_model_config("scale", "1")
    assert off["max_batch_size"] == 0 and off["input"][0]["dims"] == [-1, 4]
    assert "dynamic_batching" not in off
    with pytest.raises(tc.InferenceServerException, match="no deployment named 'nope'"):
        c.get_model_config("nope")


def test_statistics_count_what_was_served(served: CliServer) -> None:
    c = client(served)
    before = c.get_inference_statistics("scale")["model_stats"][0]
    assert before["inference_count"] == 0 and before["version"] == "1"
    for rows in (1, 3, 3):
        r = infer_json(served.url, "scale", {"x": np.ones((rows, 4), np.float32)})
        assert r.status_code == 200
    bad = infer_json(served.url, "scale", {"x": np.ones((1, 3), np.float32)})
    assert bad.status_code == 400
    (stats,) = c.get_inference_statistics("scale", "1")["model_stats"]
    assert stats["inference_count"] == 7 and stats["execution_count"] == 3
    s = stats["inference_stats"]
    assert s["success"]["count"] == 3 and s["success"]["ns"] > 0
    assert s["fail"]["count"] == 1
    assert s["queue"]["count"] == 3 and s["compute_infer"]["count"] == 3
    assert {b["batch_size"]: b["compute_infer"]["count"] for b in stats["batch_stats"]} == {
        1: 1,
        3: 2,
    }
    assert stats["last_inference"] > 1_700_000_000_000  # milliseconds since the epoch
    everything = c.get_inference_statistics()["model_stats"]
    assert {m["name"] for m in everything} == {"logreg", "labelled", "scale"}


def test_classification_with_and_without_labels(served: CliServer) -> None:
    c = client(served)
    _, X = models.logistic_regression(zipmap=False)
    x = tc.InferInput("X", [2, models.N_FEATURES], "FP32")
    x.set_data_from_numpy(X[:2].astype(np.float32))
    for binary in (True, False):
        out = tc.InferRequestedOutput("probabilities", binary_data=binary, class_count=2)
        result = c.infer("logreg", [x], outputs=[out])
        classes = result.as_numpy("probabilities")
        assert classes.shape == (2, 2)
        raw = c.infer("logreg", [x]).as_numpy("probabilities")
        for row, probs in zip(classes, raw):
            parts = [
                (item.decode() if isinstance(item, bytes) else item).split(":") for item in row
            ]
            assert [int(p[1]) for p in parts] == list(np.argsort(-probs, kind="stable"))
            assert float(parts[0][0]) == pytest.approx(probs.max(), abs=1e-6)
            assert len(parts[0][0].split(".")[1]) == 6
    # A ZipMap classifier has labels: value:index:label.
    out = tc.InferRequestedOutput("output_probability", binary_data=False, class_count=1)
    result = c.infer("labelled", [x], outputs=[out])
    first = result.as_numpy("output_probability")[0][0]
    first = first.decode() if isinstance(first, bytes) else first
    value, index, label = first.split(":")
    assert 0.0 <= float(value) <= 1.0
    assert label in {"0", "1"} and int(index) in (0, 1)


@pytest.mark.parametrize("algorithm", ["gzip", "deflate"])
def test_compressed_requests_and_answers(served: CliServer, algorithm: str) -> None:
    c = client(served)
    x = tc.InferInput("x", [2, 4], "FP32")
    x.set_data_from_numpy(np.arange(8, dtype=np.float32).reshape(2, 4))
    result = c.infer(
        "scale",
        [x],
        request_compression_algorithm=algorithm,
        response_compression_algorithm=algorithm,
    )
    assert result.as_numpy("y").tolist() == np.arange(8, dtype=np.float32).reshape(2, 4).tolist()
    # The same over plain HTTP: the server really answers compressed.
    body = json.dumps(
        {"inputs": [{"name": "x", "shape": [1, 4], "datatype": "FP32", "data": [1, 2, 3, 4]}]}
    ).encode()
    packed = gzip.compress(body) if algorithm == "gzip" else zlib.compress(body)
    r = requests.post(
        f"{served.url}/v2/models/scale/infer",
        data=packed,
        headers={"Content-Encoding": algorithm, "Accept-Encoding": algorithm},
        timeout=10,
        stream=True,
    )
    assert r.headers["content-encoding"] == algorithm
    raw = r.raw.read()
    text = gzip.decompress(raw) if algorithm == "gzip" else zlib.decompress(raw)
    assert json.loads(text)["outputs"][0]["data"] == [1.0, 2.0, 3.0, 4.0]


def test_a_compressed_bomb_stops_at_the_limit(store: Store, cli: object) -> None:
    log_scale_versions(store, "scale", (1.0,))
    ph.deploy("scale", version=1, registry=store.registry)
    server: CliServer = cli("--max-body-bytes", "65536")  # type: ignore[operator]
    bomb = gzip.compress(b" " * 50_000_000)
    r = requests.post(
        f"{server.url}/v2/models/scale/infer",
        data=bomb,
        headers={"Content-Encoding": "gzip"},
        timeout=30,
    )
    assert r.status_code == 413 and "decompressed" in r.json()["error"]
    r = requests.post(
        f"{server.url}/v2/models/scale/infer",
        data=b"x",
        headers={"Content-Encoding": "br"},
        timeout=10,
    )
    assert r.status_code == 415 and "'br' is not supported" in r.json()["error"]
    assert infer_json(server.url, "scale", {"x": np.ones((1, 4), np.float32)}).status_code == 200


def test_nan_and_infinity_round_trip_through_tritonclient(served: CliServer) -> None:
    c = client(served)
    values = np.array([[np.nan, np.inf, -np.inf, 1.5]], np.float32)
    x = tc.InferInput("x", [1, 4], "FP32")
    x.set_data_from_numpy(values, binary_data=False)  # rapidjson writes bare NaN tokens
    out = tc.InferRequestedOutput("y", binary_data=False)
    y = c.infer("scale", [x], outputs=[out]).as_numpy("y")
    assert y.dtype == np.float32
    assert np.isnan(y[0, 0]) and y[0, 1] == np.inf and y[0, 2] == -np.inf and y[0, 3] == 1.5
    # Plain JSON answers carry them as strings every JSON parser reads.
    body = {
        "inputs": [
            {
                "name": "x",
                "shape": [1, 4],
                "datatype": "FP32",
                "data": ["NaN", "Infinity", "-Infinity", 1.5],
            }
        ]
    }
    r = requests.post(f"{served.url}/v2/models/scale/infer", json=body, timeout=10)
    assert r.json()["outputs"][0]["data"] == ["NaN", "Infinity", "-Infinity", 1.5]
    # A number FP32 cannot hold is refused, not turned into infinity.
    body = {
        "inputs": [{"name": "x", "shape": [1, 4], "datatype": "FP32", "data": [1, 1e308, 0, 0]}]
    }
    r = requests.post(f"{served.url}/v2/models/scale/infer", json=body, timeout=10)
    assert r.status_code == 400 and "element 1 is 1e+308" in r.json()["error"]


def test_sequence_parameters_are_refused_by_name(served: CliServer) -> None:
    c = client(served)
    x = tc.InferInput("x", [1, 4], "FP32")
    x.set_data_from_numpy(np.ones((1, 4), np.float32))
    with pytest.raises(tc.InferenceServerException, match="parameter 'sequence_id'"):
        c.infer("scale", [x], sequence_id=42, sequence_start=True)
    # Other custom parameters still pass.
    assert c.infer("scale", [x], parameters={"tenant": "a"}).as_numpy("y").shape == (1, 4)


def test_unknown_models_do_not_reveal_the_others(served: CliServer) -> None:
    r = infer_json(served.url, "nope", {"x": np.ones((1, 4), np.float32)})
    assert r.status_code == 404
    message = r.json()["error"]
    assert "nope" in message and "logreg" not in message and "scale" not in message


def string_cast_model() -> bytes:
    """y = float(s): a model that refuses an empty string, as warm-up used to invent."""
    from onnx import TensorProto, helper

    graph = helper.make_graph(
        [helper.make_node("Cast", ["s"], ["y"], to=TensorProto.FLOAT)],
        "cast",
        [helper.make_tensor_value_info("s", TensorProto.STRING, [None, 1])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [None, 1])],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    return model.SerializeToString()


def test_warm_up_never_invents_values_and_one_failure_leaves_others_ready(
    store: Store, cli: object
) -> None:
    store.registry.log_model(string_cast_model(), "parse")  # no example, no training data
    ph.deploy("parse", version=1, registry=store.registry)
    data, frame = models.mixed_pipeline()
    store.registry.log_model(data, "mixed", training_data=frame)  # warmed up from the profile
    ph.deploy("mixed", version=1, registry=store.registry)
    log_scale_versions(store, "broken", (1.0,))
    ph.deploy("broken", version=1, registry=store.registry)
    # Corrupt the third deployment's artifact: it can never load.
    v = store.registry.get_version("broken", 1)
    artifact = next(p for p in (store.home / "artifacts").rglob("*.onnx") if v.sha256 in p.name)
    artifact.write_bytes(b"not onnx")
    server: CliServer = cli()  # type: ignore[operator]
    c = client(server)
    assert c.is_server_ready()
    assert (
        requests.get(f"{server.url}/v2/health/ready", timeout=5).json()["deployments_not_ready"]
        == 1
    )
    assert c.is_model_ready("parse") and c.is_model_ready("mixed")
    assert not c.is_model_ready("broken")
    r = requests.get(f"{server.url}/v2/models/broken/ready", timeout=5)
    assert r.status_code == 503 and "not ready: cannot load version 1" in r.json()["error"]
    assert any("warm_up_skipped" in line or "not warmed up" in line for line in server.lines)
    body = {"inputs": [{"name": "s", "shape": [1, 1], "datatype": "BYTES", "data": ["2.5"]}]}
    r = requests.post(f"{server.url}/v2/models/parse/infer", json=body, timeout=10)
    assert r.status_code == 200 and r.json()["outputs"][0]["data"] == [2.5]
    out = store.registry.load_model("models:/mixed/1").predict(frame.head(2))
    r = infer_json(
        server.url,
        "mixed",
        {
            "age": frame["age"].to_numpy()[:2, None],
            "income": frame["income"].to_numpy()[:2, None],
            "city": frame["city"].to_numpy()[:2, None],
        },
    )
    assert r.status_code == 200, r.text
    got = {o["name"]: o["data"] for o in r.json()["outputs"]}
    assert got["output_label"] == list(out["output_label"])
    # Classes of a string output make no sense: refused by name.
    body = {
        "inputs": [
            {"name": "age", "shape": [1, 1], "datatype": "FP32", "data": [30.0]},
            {"name": "income", "shape": [1, 1], "datatype": "FP32", "data": [1.0]},
            {"name": "city", "shape": [1, 1], "datatype": "BYTES", "data": ["oslo"]},
        ],
        "outputs": [{"name": "output_label", "parameters": {"classification": 2}}],
    }
    r = requests.post(f"{server.url}/v2/models/mixed/infer", json=body, timeout=10)
    assert r.status_code == 400 and "classification needs numbers" in r.json()["error"]


def test_a_zero_byte_in_a_string_round_trips(store: Store, cli: object) -> None:
    store.registry.log_model(
        models.string_identity(), "echo", input_example=np.array(["a"], object)
    )
    ph.deploy("echo", version=1, registry=store.registry)
    server: CliServer = cli()  # type: ignore[operator]
    texts = ["a\x00b", "\x00", "", "plain", "é\x00ü"]
    body = {"inputs": [{"name": "s", "shape": [len(texts)], "datatype": "BYTES", "data": texts}]}
    r = requests.post(f"{server.url}/v2/models/echo/infer", json=body, timeout=10)
    assert r.status_code == 200, r.text
    assert r.json()["outputs"][0]["data"] == texts
    c = client(server)
    s = tc.InferInput("s", [len(texts)], "BYTES")
    s.set_data_from_numpy(np.array([t.encode() for t in texts], dtype=object), binary_data=True)
    out = c.infer("echo", [s]).as_numpy("t")
    assert [bytes(v) for v in out] == [t.encode() for t in texts]
    # In-process too.
    model = store.registry.load_model("models:/echo/1")
    assert list(model.predict(np.array(texts, dtype=object))["t"]) == texts
