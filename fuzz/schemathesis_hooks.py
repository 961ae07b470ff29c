"""Schemathesis hooks for fuzzing `pilothouse serve` with the Open Inference Protocol spec.

Loaded by schemathesis through SCHEMATHESIS_HOOKS=schemathesis_hooks (with this folder on
PYTHONPATH); `run_schemathesis.py` does both. The spec's tensor schema is so loose that
schemathesis alone never builds a request ONNX Runtime would run, so:

* path parameters: MODEL_NAME is mostly the deployed name and MODEL_VERSION mostly the
  deployed version; otherwise the generated value is kept (unknown names, odd characters);
* POST .../infer bodies: with probability ~0.7 the generated body is replaced by a request
  for the deployed model (one input, its name, FP32, shape [n, features]) with generated
  rows and values; a fifth of those get one thing wrong on purpose (data length, datatype,
  input name, a dimension, or the values), some ask for binary outputs or classification.
  Otherwise the generated body is sent as it is, so malformed bodies are still tried.

One check is added, `scale_outputs`: a 200 from the deployed model (y = x * 2) must carry
2 * x for every value, in the input's shape, as JSON or as binary data.

In the fuzzing phase the choices are Hypothesis draws (reproducible with --seed, and shrunk
on failure). The coverage phase applies no strategy hooks, so there the same choices come
from a random generator seeded with the case's own content (still reproducible).

Every request and its answer is appended to the JSON-lines file named by
PILOTHOUSE_FUZZ_LOG (when set): the run script builds its summary from it.

Settings (environment): PILOTHOUSE_FUZZ_MODEL (default "scale"), PILOTHOUSE_FUZZ_VERSION
("1"), PILOTHOUSE_FUZZ_INPUT ("x"), PILOTHOUSE_FUZZ_FEATURES (4).
"""

from __future__ import annotations

import base64
import hashlib
import json
import math
import os
import random
import struct
import threading
from typing import Any, Protocol

import hypothesis
import schemathesis
from hypothesis import strategies as st

MODEL = os.environ.get("PILOTHOUSE_FUZZ_MODEL", "scale")
VERSION = os.environ.get("PILOTHOUSE_FUZZ_VERSION", "1")
INPUT = os.environ.get("PILOTHOUSE_FUZZ_INPUT", "x")
FEATURES = int(os.environ.get("PILOTHOUSE_FUZZ_FEATURES", "4"))
LOG = os.environ.get("PILOTHOUSE_FUZZ_LOG")

P_KNOWN_NAME = 0.85  # MODEL_NAME is the deployed model
P_KNOWN_VERSION = 0.85  # MODEL_VERSION is the deployed version
P_REWRITE = 0.7  # an inference body is replaced by a request for the deployed model
P_FLAW = 0.2  # ... which then gets exactly one thing wrong

# Values the decoder must survive beside ordinary floats: FP32's edges, values FP32 cannot
# hold, integers beyond 64 bits, the non-finite values written as text, and non-numbers.
SPECIAL_VALUES: list[Any] = [
    0,
    -0.0,
    1,
    -1,
    1e-45,
    1.1754943e-38,
    3.4028235e38,
    -3.4028235e38,
    3.5e38,
    1e308,
    -1e308,
    2**53 + 1,
    2**63,
    -(2**63) - 1,
    2**64,
    10**30,
    "NaN",
    "Infinity",
    "-Infinity",
    "inf",
    "1.5",
    "",
    True,
    None,
    [],
    {},
]
OTHER_DATATYPES = [
    "FP64",
    "FP16",
    "BF16",
    "INT64",
    "INT32",
    "INT8",
    "UINT8",
    "UINT64",
    "BOOL",
    "BYTES",
    "fp32",
    "FP33",
    "",
]
FLAWS = ["length", "datatype", "name", "dimension", "value"]

# Schemathesis asks Hypothesis to maximise a 0/1 "success rate" (hypothesis.target). Once
# these hooks make most cases succeed, Hypothesis' target phase hill-climbs on it for minutes
# on end (generation, hardly any requests: a GET with two path parameters took 90 s for 150
# requests instead of 2 s). Leaning towards accepted inputs is what the hooks do already.
hypothesis.target = lambda observation, *, label="": observation


class Chooser(Protocol):
    def chance(self, p: float) -> bool: ...
    def integer(self, lo: int, hi: int) -> int: ...
    def pick(self, items: list[Any]) -> Any: ...
    def number(self) -> Any: ...


class DrawChooser:
    """Choices drawn by Hypothesis (fuzzing phase)."""

    def __init__(self, draw: Any) -> None:
        self.draw = draw

    def chance(self, p: float) -> bool:
        # Integer draws shrink towards 0: make 0 the likelier outcome, so a shrunk failure
        # keeps the common branches (known name, rewritten body, no flaw).
        n = self.draw(st.integers(0, 999))
        return bool(n < p * 1000) if p >= 0.5 else bool(n >= (1 - p) * 1000)

    def integer(self, lo: int, hi: int) -> int:
        return int(self.draw(st.integers(lo, hi)))

    def pick(self, items: list[Any]) -> Any:
        return self.draw(st.sampled_from(items))

    def number(self) -> Any:
        return self.draw(
            st.one_of(
                st.floats(width=32, allow_nan=False, allow_infinity=False),
                st.floats(allow_nan=False, allow_infinity=False),
                st.integers(-(2**70), 2**70),
                st.sampled_from(SPECIAL_VALUES),
            )
        )


class RandomChooser:
    """Choices from a generator seeded with the case's content (coverage phase)."""

    def __init__(self, seed: bytes) -> None:
        self.rng = random.Random(hashlib.sha256(seed).digest())

    def chance(self, p: float) -> bool:
        return self.rng.random() < p

    def integer(self, lo: int, hi: int) -> int:
        return self.rng.randint(lo, hi)

    def pick(self, items: list[Any]) -> Any:
        return self.rng.choice(items)

    def number(self) -> Any:
        kind = self.rng.randrange(4)
        if kind == 0:
            return self.rng.uniform(-1e3, 1e3)
        if kind == 1:
            return self.rng.randint(-(2**31), 2**31)
        if kind == 2:
            return self.rng.uniform(-3.4e38, 3.4e38)
        return self.rng.choice(SPECIAL_VALUES)


def is_infer(operation: Any) -> bool:
    return operation.method.upper() == "POST" and operation.path.rstrip("/").endswith("/infer")


def inference_body(generated: Any, c: Chooser) -> dict[str, Any]:
    """A request for the deployed model, with generated rows and values (sometimes one flaw)."""
    if c.chance(0.6):
        rows = c.integer(1, 4)
    elif c.chance(0.8):
        rows = c.integer(5, 200)
    else:
        rows = 0
    values = [
        c.number() if c.chance(0.1) else c.integer(-1000, 1000) / 8 for _ in range(rows * FEATURES)
    ]
    tensor: dict[str, Any] = {"name": INPUT, "shape": [rows, FEATURES], "datatype": "FP32"}
    flaw = c.pick(FLAWS) if c.chance(P_FLAW) else None
    if flaw == "length":
        if values and c.chance(0.5):
            values.pop(c.integer(0, len(values) - 1))
        else:
            values.append(1.0)
    elif flaw == "datatype":
        tensor["datatype"] = c.pick(OTHER_DATATYPES)
    elif flaw == "name":
        tensor["name"] = c.pick(["y", "X", "", "x ", "k", INPUT * 2])
    elif flaw == "dimension":
        shape = tensor["shape"]
        choice = c.integer(0, 4)
        if choice == 0:
            shape[1] = c.pick([0, 1, 3, 5, -4, 2**32 + 4])
        elif choice == 1:
            shape[0] = c.pick([-1, -rows, 2**31, 2**63 - 1, rows + 1])
        elif choice == 2:
            shape.append(1)
        elif choice == 3:
            tensor["shape"] = [rows * FEATURES]
        else:
            tensor["shape"] = []
    elif flaw == "value" and values:
        values[c.integer(0, len(values) - 1)] = c.pick(SPECIAL_VALUES)
    # data: flat (row-major) or nested per row, as the protocol allows both
    if c.chance(0.3) and len(values) == rows * FEATURES:
        tensor["data"] = [values[i * FEATURES : (i + 1) * FEATURES] for i in range(rows)]
    else:
        tensor["data"] = values
    body: dict[str, Any] = {"inputs": [tensor]}
    # keep some of the generated top-level fields, so id, parameters and outputs are fuzzed too
    if isinstance(generated, dict):
        for key in ("id", "parameters", "outputs"):
            if key in generated and c.chance(0.3):
                body[key] = generated[key]
    if c.chance(0.1):
        body["outputs"] = [{"name": c.pick(["y", "y", "x", "nope", ""])}]
    if c.chance(0.15):
        # the extensions beside the core protocol: binary outputs, classification, and a
        # binary input announced in a body that carries none
        ext = c.integer(0, 3)
        if ext == 0:
            body["parameters"] = {"binary_data_output": c.pick([True, False, 1, "true"])}
        elif ext == 1:
            body["outputs"] = [{"name": "y", "parameters": {"binary_data": c.pick([True, False])}}]
        elif ext == 2:
            k = c.pick([0, 1, 2, 4, 5, -1, 100001, 2**64, "2"])
            body["outputs"] = [{"name": "y", "parameters": {"classification": k}}]
        else:
            tensor["parameters"] = {"binary_data_size": c.pick([0, 4, rows * FEATURES * 4, -1])}
    return body


def rewrite(case: Any, c: Chooser) -> Any:
    params = case.path_parameters
    if params is not None:
        if "MODEL_NAME" in params and c.chance(P_KNOWN_NAME):
            params["MODEL_NAME"] = MODEL
        if "MODEL_VERSION" in params and c.chance(P_KNOWN_VERSION):
            params["MODEL_VERSION"] = VERSION
    if is_infer(case.operation) and c.chance(P_REWRITE):
        case.body = inference_body(case.body, c)
        case.media_type = "application/json"
    return case


@st.composite
def _rewritten(draw: Any, case: Any) -> Any:
    return rewrite(case, DrawChooser(draw))


@schemathesis.hook
def flatmap_case(context: schemathesis.HookContext, case: schemathesis.Case) -> Any:
    return _rewritten(case)


@schemathesis.hook
def map_case(context: schemathesis.HookContext, case: schemathesis.Case) -> schemathesis.Case:
    meta = case.meta
    if meta is None or meta.phase.name != "coverage":
        return case  # the fuzzing and examples phases go through flatmap_case
    seed = repr((case.method, case.path, case.path_parameters, case.query, case.body)).encode()
    return rewrite(case, RandomChooser(seed))


# -- an oracle: the deployed model computes y = x * 2 ----------------------------------------

_NONFINITE = {
    "nan": math.nan,
    "+nan": math.nan,
    "-nan": math.nan,
    "inf": math.inf,
    "+inf": math.inf,
    "infinity": math.inf,
    "+infinity": math.inf,
    "-inf": -math.inf,
    "-infinity": -math.inf,
}


def _f32(value: Any) -> float:
    """`value` as the FP32 the server should have stored (ValueError when not a number)."""
    if isinstance(value, bool) or value is None:
        raise ValueError(f"{value!r} is not a number")
    if isinstance(value, str):
        if value.strip().lower() in _NONFINITE:
            return _NONFINITE[value.strip().lower()]
        value = float(value)
    try:
        return float(struct.unpack("<f", struct.pack("<f", float(value)))[0])
    except OverflowError:
        return math.copysign(math.inf, float(value))


def _flatten(data: Any) -> list[Any]:
    if isinstance(data, list):
        return [v for item in data for v in _flatten(item)]
    return [data]


def _same(got: float, want: float) -> bool:
    return (math.isnan(got) and math.isnan(want)) or got == want


def _answer(response: Any) -> tuple[dict[str, Any], bytes]:
    """The JSON part of an inference answer and the binary part after it (Triton's binary
    extension: Inference-Header-Content-Length says where the JSON ends)."""
    header = response.headers.get("inference-header-content-length")
    if header:
        n = int(header[0] if isinstance(header, list) else header)
        return json.loads(response.content[:n]), response.content[n:]
    return json.loads(response.content), b""


@schemathesis.check
def scale_outputs(ctx: Any, response: Any, case: schemathesis.Case) -> bool | None:
    """A 200 from the deployed model's infer carries y = 2 * x, with x's batch shape."""
    if response.status_code != 200 or not is_infer(case.operation):
        return None
    request = response.request
    if not request.url.rstrip("/").endswith(f"/v2/models/{MODEL}/versions/{VERSION}/infer"):
        return None
    body = request.body.decode() if isinstance(request.body, bytes) else request.body
    sent = json.loads(body)
    tensor = next(
        (t for t in sent.get("inputs", []) if isinstance(t, dict) and t.get("name") == INPUT),
        None,
    )
    if tensor is None:
        raise AssertionError(f"200 for a request without input {INPUT!r}")
    answer, binary = _answer(response)
    if answer.get("model_name") != MODEL or str(answer.get("model_version")) != VERSION:
        raise AssertionError(
            f"answered for {answer.get('model_name')!r} version "
            f"{answer.get('model_version')!r}, not {MODEL!r} {VERSION!r}"
        )
    if "id" in sent and answer.get("id") != sent["id"]:
        raise AssertionError(f"id {sent['id']!r} came back as {answer.get('id')!r}")
    requested = sent.get("outputs")
    outputs = {o["name"]: o for o in answer.get("outputs", [])}
    if requested is not None and not any(
        isinstance(r, dict) and r.get("name") == "y" for r in requested
    ):
        if requested == [] and not outputs:
            raise AssertionError(
                '"outputs": [] answered with no outputs at all (the protocol: '
                "when outputs are not specified, all are returned)"
            )
        return None
    if "y" not in outputs:
        raise AssertionError(f"no output 'y' in {sorted(outputs)}")
    y = outputs["y"]
    params = next((r.get("parameters") or {} for r in requested or [] if r.get("name") == "y"), {})
    if "classification" in params:
        return None  # top-k strings; the check here is only that nothing broke
    if y.get("datatype") != "FP32" or list(y.get("shape", [])) != list(tensor["shape"]):
        raise AssertionError(
            f"output y is {y.get('datatype')} {y.get('shape')}, expected FP32 {tensor['shape']}"
        )
    if "data" in y:
        ys = [_f32(v) for v in _flatten(y["data"])]
    else:
        size = (y.get("parameters") or {}).get("binary_data_size")
        if size is None or size != len(binary) or size % 4:
            raise AssertionError(
                f"output y has no data and binary_data_size {size!r} "
                f"for {len(binary)} bytes after the JSON"
            )
        ys = [float(v) for v in struct.unpack(f"<{size // 4}f", binary)]
    try:
        xs = [_f32(v) for v in _flatten(tensor["data"])]
    except ValueError as e:
        raise AssertionError(f"200 although the input data holds a non-number: {e}") from e
    if len(xs) != len(ys):
        raise AssertionError(f"{len(ys)} output values for {len(xs)} inputs")
    for i, (x, got) in enumerate(zip(xs, ys)):
        want = _f32(x * 2)
        if not _same(got, want):
            raise AssertionError(f"y[{i}] = {got!r}, expected 2 * {x!r} = {want!r}")
    return True


# -- the request log ------------------------------------------------------------------------

_lock = threading.Lock()


def _record(entry: dict[str, Any]) -> None:
    if not LOG:
        return
    line = json.dumps(entry, default=str)
    with _lock, open(LOG, "a", encoding="utf-8") as f:
        f.write(line + "\n")


def _request_fields(request: Any) -> dict[str, Any]:
    body = request.body
    if isinstance(body, str):
        body = body.encode()
    return {
        "method": request.method,
        "url": request.url,
        "headers": {k: v for k, v in request.headers.items()},
        "body_b64": base64.b64encode(body).decode() if body else None,
    }


def _operation(case: Any) -> str:
    return f"{case.operation.method.upper()} {case.operation.path}"


@schemathesis.hook
def after_call(context: schemathesis.HookContext, case: schemathesis.Case, response: Any) -> None:
    meta = case.meta
    entry: dict[str, Any] = {
        "operation": _operation(case),
        "phase": str(meta.phase.name) if meta else None,
        "mode": str(meta.generation.mode.value) if meta else None,
        "status": response.status_code,
        "elapsed": response.elapsed,
        "content_type": response.headers.get("content-type"),
        **_request_fields(response.request),
    }
    entry["response"] = response.content[:2000].decode("utf-8", "replace")
    _record(entry)


@schemathesis.hook
def after_network_error(
    context: schemathesis.HookContext, case: schemathesis.Case, request: Any
) -> None:
    _record(
        {
            "operation": _operation(case),
            "status": None,
            "network_error": True,
            **_request_fields(request),
        }
    )
