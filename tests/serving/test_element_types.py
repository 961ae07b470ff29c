"""Every element type of the Open Inference Protocol, in and out: FP16, BF16, the narrow and
unsigned integers, and BYTES that are not UTF-8. Each goes through a real ONNX model (made with
onnx.helper), in-process with numpy, over HTTP as JSON and as binary data with tritonclient,
and as plain JSON with requests. The values include each type's extremes."""

from __future__ import annotations

from typing import Any

import ml_dtypes
import numpy as np
import pytest
import requests
import tritonclient.http as tc
from onnx import TensorProto, helper
from servers import CliServer, Store, models

import pilothouse as ph

# protocol name -> (ONNX element type, numpy dtype, values with the type's extremes)
TYPES: dict[str, tuple[int, Any, list[Any]]] = {
    "FP16": (TensorProto.FLOAT16, np.float16, [0.5, -65504.0, 6.1e-5, 1000.0, -0.0, 3.0]),
    "BF16": (TensorProto.BFLOAT16, ml_dtypes.bfloat16, [1.5, -3.0e38, 0.1, 7.0, -2.0, 1.0e-30]),
    "INT8": (TensorProto.INT8, np.int8, [-128, 127, 0, -1, 5, 100]),
    "INT16": (TensorProto.INT16, np.int16, [-32768, 32767, 0, -1, 5, 1000]),
    "UINT8": (TensorProto.UINT8, np.uint8, [0, 255, 1, 128, 7, 200]),
    "UINT16": (TensorProto.UINT16, np.uint16, [0, 65535, 1, 32768, 7, 200]),
    "UINT32": (TensorProto.UINT32, np.uint32, [0, 2**32 - 1, 1, 2**31, 7, 200]),
    "UINT64": (TensorProto.UINT64, np.uint64, [0, 2**64 - 1, 1, 2**63, 7, 2**53 + 1]),
}


def echo_model(elem: int) -> bytes:
    """`y` is the input unchanged (same type); `f` is it cast to FP32."""
    graph = helper.make_graph(
        [
            helper.make_node("Identity", ["x"], ["y"]),
            helper.make_node("Cast", ["x"], ["f"], to=TensorProto.FLOAT),
        ],
        "echo",
        [helper.make_tensor_value_info("x", elem, [None, 3])],
        [
            helper.make_tensor_value_info("y", elem, [None, 3]),
            helper.make_tensor_value_info("f", TensorProto.FLOAT, [None, 3]),
        ],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    return model.SerializeToString()


def array(protocol: str) -> np.ndarray:
    _, dtype, values = TYPES[protocol]
    return np.array(values, dtype=dtype).reshape(2, 3)


def same(got: np.ndarray, want: np.ndarray) -> None:
    assert got.dtype == want.dtype, (got.dtype, want.dtype)
    assert got.shape == want.shape
    # Compared as bits: -0.0 and exact float values, not approximately.
    assert got.tobytes() == want.tobytes(), (got, want)


@pytest.fixture(scope="module")
def typed_store(tmp_path_factory: pytest.TempPathFactory) -> Store:
    home = tmp_path_factory.mktemp("types") / "home"
    uri = f"sqlite://{home / 'registry.db'}"
    registry = ph.connect(uri)
    for protocol, (elem, _, _) in TYPES.items():
        name = f"echo-{protocol.lower()}"
        registry.log_model(echo_model(elem), name, input_example=array(protocol))
        ph.deploy(name, version=1, max_batch_size=8, max_queue_delay_us=200, registry=registry)
    registry.log_model(models.string_identity(), "bytes", input_example=np.array(["a"], object))
    ph.deploy("bytes", version=1, max_batch_size=8, max_queue_delay_us=200, registry=registry)
    # The same model with a long batching window, so that concurrent requests share batches.
    ph.deploy(
        "bytes-batched",
        "bytes",
        version=1,
        max_batch_size=16,
        max_queue_delay_us=20_000,
        registry=registry,
    )
    return Store(uri, home, registry)


@pytest.fixture(scope="module")
def server(typed_store: Store) -> Any:
    from servers import start_cli

    s = start_cli(typed_store, env={"PILOTHOUSE_HOME": str(typed_store.home)})
    yield s
    s.stop()


def client(server: CliServer) -> tc.InferenceServerClient:
    return tc.InferenceServerClient(server.url.removeprefix("http://"))


@pytest.mark.parametrize("protocol", list(TYPES))
def test_in_process_predict_keeps_the_type(typed_store: Store, protocol: str) -> None:
    x = array(protocol)
    model = typed_store.registry.load_model(f"models:/echo-{protocol.lower()}/1")
    assert model.inputs[0].dtype == np.dtype(TYPES[protocol][1]).name
    out = model.predict(x)
    same(out["y"], x)
    np.testing.assert_array_equal(out["f"], x.astype(np.float32))
    # A wider integer array is narrowed when every value fits, and refused by value when not.
    if np.dtype(TYPES[protocol][1]).kind in "iu" and protocol != "UINT64":
        same(model.predict(x.astype(np.int64))["y"], x)
        info = np.iinfo(TYPES[protocol][1])
        bad = x.astype(np.int64)
        bad[1, 2] = int(info.max) + 1
        with pytest.raises(ph.InputError, match=rf"value {int(info.max) + 1} at flat index 5"):
            model.predict(bad)


def test_in_process_refuses_floats_beyond_a_narrow_type_and_keeps_nan(typed_store: Store) -> None:
    fp16 = typed_store.registry.load_model("models:/echo-fp16/1")
    with pytest.raises(
        ph.InputError, match=r"value 70000 at flat index 4 does not fit the model's float16"
    ):
        fp16.predict(np.array([[1, 2, 3], [4, 70000, 6]], dtype=np.float32))
    special = np.array([[np.nan, np.inf, -np.inf], [0.5, -0.0, 1e-7]], dtype=np.float32)
    y = fp16.predict(special)["y"]
    same(y, special.astype(np.float16))
    bf16 = typed_store.registry.load_model("models:/echo-bf16/1")
    with pytest.raises(ph.InputError, match="does not fit the model's bfloat16"):
        bf16.predict(np.array([[1e39, 0, 0]], dtype=np.float64))


def test_unaligned_and_strided_arrays_are_read_correctly(typed_store: Store) -> None:
    model = typed_store.registry.load_model("models:/echo-uint16/1")
    want = np.arange(6, dtype=np.uint16).reshape(2, 3) * 1000
    # A view at an odd byte offset (unaligned, C-contiguous).
    buffer = bytearray(1 + want.nbytes)
    buffer[1:] = want.tobytes()
    odd = np.frombuffer(bytes(buffer), dtype=np.uint16, offset=1).reshape(2, 3)
    same(model.predict(odd)["y"], want)
    # A field of a packed record (stride 3 bytes: not a whole number of elements).
    packed = np.zeros(6, dtype=np.dtype([("p", "u1"), ("x", "<u2")]))
    packed["x"] = want.ravel()
    same(model.predict(packed["x"].reshape(2, 3))["y"], want)
    # A big-endian array is converted, not misread.
    same(model.predict(want.astype(">u2"))["y"], want)


@pytest.mark.parametrize("protocol", ["FP16", "BF16"])
def test_nan_and_infinities_round_trip_in_binary(server: CliServer, protocol: str) -> None:
    x = np.array([[np.nan, np.inf, -np.inf], [-0.0, 1.0, -2.5]], dtype=TYPES[protocol][1])
    inp = tc.InferInput("x", list(x.shape), protocol)
    inp.set_data_from_numpy(x, binary_data=True)
    out = client(server).infer(f"echo-{protocol.lower()}", [inp]).as_numpy("y")
    same(out, x)


# tritonclient sends BF16 only as binary data (plain JSON covers it below).
TRITON_CASES = [(p, binary) for p in TYPES for binary in (True, False) if binary or p != "BF16"]


@pytest.mark.parametrize(("protocol", "binary"), TRITON_CASES)
def test_tritonclient_round_trip(server: CliServer, protocol: str, binary: bool) -> None:
    x = array(protocol)
    inp = tc.InferInput("x", list(x.shape), protocol)
    inp.set_data_from_numpy(x, binary_data=binary)
    outs = [tc.InferRequestedOutput(n, binary_data=binary) for n in ("y", "f")]
    result = client(server).infer(f"echo-{protocol.lower()}", [inp], outputs=outs)
    assert result.get_output("y")["datatype"] == protocol
    same(result.as_numpy("y"), x)
    np.testing.assert_array_equal(result.as_numpy("f"), x.astype(np.float32))


@pytest.mark.parametrize("protocol", list(TYPES))
def test_plain_json_round_trip(server: CliServer, protocol: str) -> None:
    x = array(protocol)
    values = [float(v) for v in x.ravel()] if x.dtype.kind in "fV" else x.ravel().tolist()
    body = {"inputs": [{"name": "x", "shape": [2, 3], "datatype": protocol, "data": values}]}
    r = requests.post(
        f"{server.url}/v2/models/echo-{protocol.lower()}/infer", json=body, timeout=10
    )
    assert r.status_code == 200, r.text
    y = next(o for o in r.json()["outputs"] if o["name"] == "y")
    assert y["datatype"] == protocol and y["shape"] == [2, 3]
    # JSON text, read back into the type, gives the same bits (UINT64's 2**64-1 included).
    same(
        np.array(y["data"], dtype=np.float64 if x.dtype.kind in "fV" else x.dtype)
        .astype(x.dtype)
        .reshape(2, 3),
        x,
    )


@pytest.mark.parametrize(
    ("protocol", "value"),
    [
        ("INT8", 128),
        ("UINT8", -1),
        ("UINT16", 65536),
        ("UINT32", 2**32),
        ("UINT64", -1),
        ("INT16", 1.5),
        ("FP16", 70000.0),
        ("BF16", 1e39),
    ],
)
def test_values_that_do_not_fit_are_a_400_naming_the_input(
    server: CliServer, protocol: str, value: Any
) -> None:
    body = {"inputs": [{"name": "x", "shape": [1, 3], "datatype": protocol, "data": [1, 2, value]}]}
    r = requests.post(
        f"{server.url}/v2/models/echo-{protocol.lower()}/infer", json=body, timeout=10
    )
    assert r.status_code == 400, r.text
    assert "input 'x'" in r.json()["error"] and "element 2" in r.json()["error"], r.text


def test_metadata_and_config_name_the_types(server: CliServer) -> None:
    for protocol in TYPES:
        name = f"echo-{protocol.lower()}"
        meta = requests.get(f"{server.url}/v2/models/{name}", timeout=10).json()
        assert meta["inputs"][0]["datatype"] == protocol
        config = requests.get(f"{server.url}/v2/models/{name}/config", timeout=10).json()
        assert config["input"][0]["data_type"] == f"TYPE_{protocol}"


RAW = [b"\xff\xfe", b"ok", b"\x00\x80\x81", b"", "é".encode("latin-1")]


def test_bytes_that_are_not_utf8_round_trip(server: CliServer, typed_store: Store) -> None:
    c = client(server)
    s = tc.InferInput("s", [len(RAW)], "BYTES")
    s.set_data_from_numpy(np.array(RAW, dtype=object), binary_data=True)
    for binary in (True, False):
        # Asked for JSON, the output still comes back exactly: as binary data, since JSON
        # strings cannot hold these bytes.
        out = c.infer("bytes", [s], outputs=[tc.InferRequestedOutput("t", binary_data=binary)])
        assert [bytes(v) for v in out.as_numpy("t")] == RAW
    # Text stays text in JSON.
    r = requests.post(
        f"{server.url}/v2/models/bytes/infer",
        json={"inputs": [{"name": "s", "shape": [2], "datatype": "BYTES", "data": ["a", "é"]}]},
        timeout=10,
    )
    assert r.status_code == 200 and r.json()["outputs"][0]["data"] == ["a", "é"], r.text
    # In-process: bytes in, bytes out; text in, text out.
    model = typed_store.registry.load_model("models:/bytes/1")
    got = model.predict(np.array(RAW, dtype=object))["t"]
    assert [type(v) for v in got] == [bytes] * len(RAW) and list(got) == RAW
    assert list(model.predict(np.array(["a", "é"], dtype=object))["t"]) == ["a", "é"]
    # A fixed-width numpy bytes array ('S') is bytes too.
    fixed = np.array([b"\xff", b"z"], dtype="S1")
    assert list(model.predict(fixed)["t"]) == [b"\xff", b"z"]


def test_bytes_batched_with_text_keep_both(server: CliServer) -> None:
    # Concurrent requests share batches (a 20 ms window): binary requests holding non-UTF-8
    # bytes and plain JSON requests holding text. Each gets its own elements back, and the
    # JSON requests get JSON answers, not binary data their neighbours' bytes would need.
    import concurrent.futures as cf

    def binary(i: int) -> int:
        values = [b"\xff" + bytes([i])]
        s = tc.InferInput("s", [1], "BYTES")
        s.set_data_from_numpy(np.array(values, dtype=object), binary_data=True)
        out = client(server).infer(
            "bytes-batched", [s], outputs=[tc.InferRequestedOutput("t", binary_data=True)]
        )
        assert [bytes(v) for v in out.as_numpy("t")] == values
        return 0

    def text(i: int) -> int:
        body = {"inputs": [{"name": "s", "shape": [1], "datatype": "BYTES", "data": [f"t{i}"]}]}
        r = requests.post(f"{server.url}/v2/models/bytes-batched/infer", json=body, timeout=10)
        assert r.status_code == 200 and r.headers["content-type"] == "application/json", r.headers
        assert r.json()["outputs"][0]["data"] == [f"t{i}"]
        return 0

    before = server.metric("pilothouse_batch_size_count", deployment="bytes-batched")
    with cf.ThreadPoolExecutor(16) as pool:
        jobs = [pool.submit(binary if i % 2 else text, i) for i in range(96)]
        assert [j.result() for j in jobs] == [0] * 96
    batches = server.metric("pilothouse_batch_size_count", deployment="bytes-batched") - before
    assert 0 < batches < 96, f"{batches} batches for 96 requests: nothing was batched"


def test_the_payload_log_keeps_non_utf8_bytes(typed_store: Store, server: CliServer) -> None:
    # Last in this module: it stops the shared server so that the log is written.
    c = client(server)
    s = tc.InferInput("s", [2], "BYTES")
    s.set_data_from_numpy(np.array([b"\xfa\xfb", b"plain"], dtype=object), binary_data=True)
    c.infer("bytes", [s])
    assert server.stop() == 0
    log = ph.inference_log("bytes", since=None, registry=typed_store.registry)
    rows = log[log["input.s"].map(lambda v: isinstance(v, list) and b"plain" in v)]
    assert len(rows) == 1, log["input.s"].tolist()
    row = rows.iloc[0]
    assert row["input.s"] == [b"\xfa\xfb", b"plain"]
    assert row["output.t"] == [b"\xfa\xfb", b"plain"]
