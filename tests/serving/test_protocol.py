"""tritonclient.http and plain HTTP against `pilothouse serve` started as a subprocess: the
Open Inference Protocol endpoints, every element type, several inputs and outputs."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import onnxruntime as ort
import pytest
import requests
import tritonclient.http as tc
from servers import CliServer, Store, infer_json, models

import pilothouse as ph


def ort_run(model: bytes, feeds: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    options = ort.SessionOptions()
    options.intra_op_num_threads = 1
    session = ort.InferenceSession(model, options, providers=["CPUExecutionProvider"])
    names = [o.name for o in session.get_outputs()]
    return dict(zip(names, session.run(None, feeds)))


@pytest.fixture
def served(store: Store, cli: object) -> tuple[CliServer, dict[str, tuple[bytes, object]]]:
    built = {
        "logreg": models.logistic_regression(zipmap=False),
        "forest": models.random_forest(),
        "multi_io": models.multi_io(),
        "mixed": models.mixed_pipeline(),
    }
    for name, (data, sample) in built.items():
        example = (
            sample.head(3)
            if hasattr(sample, "head")
            else ({k: v[:3] for k, v in sample.items()} if isinstance(sample, dict) else sample[:3])
        )
        v = store.registry.log_model(data, name, input_example=example)
        store.registry.set_alias(name, "champion", v.version)
        ph.deploy(name, alias="champion", registry=store.registry)
    server = cli()  # type: ignore[operator]
    return server, built


def client(server: CliServer) -> tc.InferenceServerClient:
    return tc.InferenceServerClient(server.url.removeprefix("http://"))


def test_server_and_model_metadata(served: tuple[CliServer, dict]) -> None:
    server, _ = served
    c = client(server)
    assert c.is_server_live() and c.is_server_ready()
    meta = c.get_server_metadata()
    assert meta["name"] == "pilothouse" and "binary_tensor_data" in meta["extensions"]
    m = c.get_model_metadata("multi_io")
    assert m["versions"] == ["1"] and m["platform"] == "onnxruntime_onnx"
    assert {i["name"]: i["datatype"] for i in m["inputs"]} == {
        "a": "FP32",
        "b": "INT64",
        "s": "BYTES",
        "d": "FP64",
        "i": "INT32",
        "flag": "BOOL",
    }
    assert {i["name"]: i["shape"] for i in m["inputs"]}["a"] == [-1, 3]
    assert c.is_model_ready("logreg") and c.is_model_ready("logreg", "1")
    assert not c.is_model_ready("logreg", "9") and not c.is_model_ready("nope")
    assert c.get_model_metadata("forest", "1")["versions"] == ["1"]


@pytest.mark.parametrize("binary", [True, False])
def test_tritonclient_infer_matches_onnxruntime(
    served: tuple[CliServer, dict], binary: bool
) -> None:
    server, built = served
    c = client(server)
    data, X = built["forest"]
    rows = X[:7]
    inp = tc.InferInput("X", list(rows.shape), "FP32")
    inp.set_data_from_numpy(rows, binary_data=binary)
    names = ("output_label", "output_probability")
    outs = [tc.InferRequestedOutput(n, binary_data=binary) for n in names]
    result = c.infer("forest", [inp], outputs=outs, request_id="req-7")
    want = ort_run(data, {"X": rows})
    np.testing.assert_array_equal(result.as_numpy("output_label"), want["output_label"])
    # the ZipMap output (a list of {class: probability}) is served as a [rows, classes] tensor
    matrix = models.zipmap_to_matrix(want["output_probability"], [0, 1, 2])
    np.testing.assert_allclose(result.as_numpy("output_probability"), matrix, rtol=1e-6)
    response = result.get_response()
    assert response["model_version"] == "1" and response["id"] == "req-7"
    # with no outputs named, tritonclient asks for every output in binary form
    result = c.infer("logreg", [inp])
    want = ort_run(built["logreg"][0], {"X": rows})
    np.testing.assert_allclose(result.as_numpy("probabilities"), want["probabilities"], rtol=1e-6)


def test_every_element_type_and_several_inputs_and_outputs(served: tuple[CliServer, dict]) -> None:
    server, built = served
    c = client(server)
    data, sample = built["multi_io"]
    inputs = []
    for name, values in sample.items():
        dtype = {"f": "FP32", "l": "INT64", "O": "BYTES", "d": "FP64", "i": "INT32", "?": "BOOL"}[
            values.dtype.char
        ]
        inp = tc.InferInput(name, list(values.shape), dtype)
        inp.set_data_from_numpy(values, binary_data=name != "d")  # mixed binary and JSON
        inputs.append(inp)
    result = c.infer("multi_io", inputs)
    want = ort_run(data, dict(sample))
    for name, expected in want.items():
        got = result.as_numpy(name)
        if expected.dtype == object:
            assert [g.decode() for g in got] == list(expected), name
        else:
            np.testing.assert_allclose(got, expected, rtol=1e-6, err_msg=name)
    # the same over plain JSON
    r = infer_json(server.url, "multi_io", dict(sample))
    assert r.status_code == 200, r.text
    outs = {o["name"]: o for o in r.json()["outputs"]}
    assert outs["s_same"]["data"] == list(sample["s"]) and outs["s_same"]["datatype"] == "BYTES"
    assert outs["flag_not"]["data"] == [not f for f in sample["flag"]]
    assert outs["b_doubled"]["data"] == (sample["b"] * 2).ravel().tolist()


def test_string_inputs_and_string_labels(served: tuple[CliServer, dict]) -> None:
    server, built = served
    data, frame = built["mixed"]
    feeds = {
        "age": frame["age"].to_numpy()[:4].reshape(-1, 1),
        "income": frame["income"].to_numpy()[:4].reshape(-1, 1),
        "city": frame["city"].to_numpy()[:4].reshape(-1, 1),
    }
    r = infer_json(server.url, "mixed", feeds)
    assert r.status_code == 200, r.text
    label = next(o for o in r.json()["outputs"] if o["name"] == "output_label")
    assert label["datatype"] == "BYTES"
    assert label["data"] == list(ort_run(data, feeds)["output_label"])


def test_ids_versions_and_versioned_endpoint(served: tuple[CliServer, dict]) -> None:
    server, built = served
    X = built["logreg"][1][:1]
    r = infer_json(server.url, "logreg", {"X": X}, headers={"X-Request-ID": "abc-123"})
    assert r.status_code == 200
    assert r.headers["x-request-id"] == "abc-123" and r.headers["x-model-version"] == "1"
    assert r.json()["model_version"] == "1" and r.headers["x-model-route"] == "@champion"
    generated = infer_json(server.url, "logreg", {"X": X}).headers["x-request-id"]
    assert len(generated) == 36  # a UUID when the client sends none
    body = {
        "inputs": [{"name": "X", "shape": [1, 4], "datatype": "FP32", "data": X.ravel().tolist()}],
        "outputs": [{"name": "label"}],
    }
    r = requests.post(f"{server.url}/v2/models/logreg/versions/1/infer", json=body, timeout=10)
    assert r.status_code == 200 and [o["name"] for o in r.json()["outputs"]] == ["label"]


def test_help_lists_every_option_and_toml_config(store: Store, cli: object, tmp_path: Path) -> None:
    command = shutil.which("pilothouse")  # the console script pip installed
    assert command is not None
    out = subprocess.run(
        [command, "serve", "--help"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    for flag in (
        "--registry",
        "--config",
        "--host",
        "--port",
        "--log-dir",
        "--max-body-bytes",
        "--poll-interval-ms",
        "--flush-interval-ms",
        "--log-format",
        "--log-level",
        "--http-threads",
        "--inference-threads",
        "--shutdown-timeout-s",
    ):
        assert flag in out, flag
    config = tmp_path / "pilothouse.toml"
    config.write_text('log_format = "json"\nmax_body_bytes = 4096\n')
    server = cli("--config", str(config))  # type: ignore[operator]
    assert requests.get(f"{server.url}/v2/health/live", timeout=5).json() == {"live": True}
    big = requests.post(f"{server.url}/v2/models/x/infer", data=b"x" * 5000, timeout=5)
    assert big.status_code in (404, 413)
    server.stop()
    events = [e for e in (_json(line) for line in server.lines) if e]
    assert any(e.get("event") == "server_started" for e in events), server.lines[:5]
    assert any(e.get("event") == "server_stopped" for e in events), server.lines[-5:]
    bad = tmp_path / "bad.toml"
    bad.write_text("prot = 1\n")
    run = subprocess.run(
        [
            sys.executable,
            "-m",
            "pilothouse.cli",
            "serve",
            "--registry",
            store.uri,
            "--config",
            str(bad),
        ],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert run.returncode == 1 and "prot" in run.stderr
    # deployments from the command line
    data, _ = models.logistic_regression(zipmap=False)
    store.registry.log_model(data, "cli-model")
    env = {**os.environ, "PILOTHOUSE_URI": store.uri}
    made = subprocess.run(
        [command, "deploy", "api", "--model", "cli-model", "--route", "1=1"],
        capture_output=True,
        text=True,
        env=env,
        check=True,
    )
    assert "deployed api (generation 1)" in made.stdout
    listed = subprocess.run(
        [command, "deployments"], capture_output=True, text=True, env=env, check=True
    )
    assert listed.stdout.startswith("api\tmodel=cli-model")


def _json(line: str) -> dict | None:
    try:
        value = json.loads(line)
    except ValueError:
        return None
    return value if isinstance(value, dict) else None
