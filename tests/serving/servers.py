"""Helpers of the serving tests: models made with onnx.helper, `pilothouse serve` started as a
subprocess on 127.0.0.1 with a free port, and small HTTP and metrics utilities."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import requests

import models
import pilothouse as ph


def scale_model(k: float, features: int = 4) -> bytes:
    """y = x * k: every answer says which version computed it."""
    import onnx
    from onnx import TensorProto, helper

    graph = helper.make_graph(
        [helper.make_node("Mul", ["x", "k"], ["y"])],
        "scale",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [None, features])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [None, features])],
        [helper.make_tensor("k", TensorProto.FLOAT, [], [k])],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    onnx.checker.check_model(model)
    return model.SerializeToString()


@dataclass
class Store:
    uri: str
    home: Path
    registry: ph.Registry
    samples: dict[str, Any] = field(default_factory=dict)

    @property
    def log_dir(self) -> Path:
        return Path(self.registry.artifact_root).parent / "inference-log"


def log_scale_versions(
    store: Store, name: str = "scale", ks: tuple[float, ...] = (1.0, 2.0)
) -> None:
    x = np.arange(12, dtype=np.float32).reshape(3, 4)
    for k in ks:
        store.registry.log_model(scale_model(k), name, input_example=x)


@dataclass
class CliServer:
    process: subprocess.Popen[str]
    url: str
    lines: list[str]
    pump: threading.Thread

    def wait_for(self, predicate: Any, timeout: float = 10.0, what: str = "condition") -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if predicate():
                return
            time.sleep(0.02)
        raise AssertionError(
            f"timed out waiting for {what}; server log:\n" + "\n".join(self.lines[-30:])
        )

    def metric(self, name: str, **labels: str) -> float:
        """The server's /metrics value of `name` (summed over matching label sets)."""
        return metric(requests.get(f"{self.url}/metrics", timeout=5).text, name, **labels)

    def rss_kb(self) -> int:
        for line in Path(f"/proc/{self.process.pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
        raise AssertionError("no VmRSS")

    def stop(self, timeout: float = 30.0) -> int:
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
        code = self.process.wait(timeout=timeout)
        self.pump.join(timeout=5)
        return code


def start_cli(store: Store, *args: str, env: dict[str, str] | None = None) -> CliServer:
    cmd = [
        sys.executable,
        "-m",
        "pilothouse.cli",
        "serve",
        "--registry",
        store.uri,
        "--port",
        "0",
        "--poll-interval-ms",
        "50",
        *args,
    ]
    process = subprocess.Popen(
        cmd,
        stderr=subprocess.PIPE,
        stdout=subprocess.DEVNULL,
        text=True,
        env={**os.environ, **(env or {})},
    )
    lines: list[str] = []
    found: list[str] = []

    def pump() -> None:
        assert process.stderr is not None
        with process.stderr:
            for line in process.stderr:
                lines.append(line.rstrip())
                m = re.search(r"serving at (http://127\.0\.0\.1:\d+)", line)
                if m:
                    found.append(m.group(1))

    reader = threading.Thread(target=pump, daemon=True)
    reader.start()
    deadline = time.monotonic() + 60
    while not found:
        if process.poll() is not None or time.monotonic() > deadline:
            process.kill()
            raise AssertionError("pilothouse serve did not start:\n" + "\n".join(lines))
        time.sleep(0.02)
    return CliServer(process, found[0], lines, reader)


_DATATYPES = {
    "float32": "FP32",
    "float64": "FP64",
    "int64": "INT64",
    "int32": "INT32",
    "bool": "BOOL",
}


def datatype(a: np.ndarray) -> str:
    """The Open Inference Protocol's name for an array's element type."""
    return "BYTES" if a.dtype.kind in "OU" else _DATATYPES[a.dtype.name]


def infer_json(url: str, name: str, inputs: dict[str, np.ndarray], **kw: Any) -> requests.Response:
    body = {
        "inputs": [
            {"name": k, "shape": list(v.shape), "datatype": datatype(v), "data": v.tolist()}
            for k, v in inputs.items()
        ]
    }
    return requests.post(f"{url}/v2/models/{name}/infer", json=body, timeout=30, **kw)


def wait_version(url: str, name: str, version: int, timeout: float = 10.0) -> float:
    """Seconds until the deployment serves exactly `version` (its metadata lists only it)."""
    start = time.monotonic()
    while time.monotonic() - start < timeout:
        r = requests.get(f"{url}/v2/models/{name}", timeout=5)
        if r.status_code == 200 and r.json()["versions"] == [str(version)]:
            return time.monotonic() - start
        time.sleep(0.005)
    raise AssertionError(f"{name} did not move to version {version} within {timeout} s")


def metric(text: str, name: str, **labels: str) -> float:
    """The sum of the samples of `name` whose labels include `labels`."""
    total = 0.0
    for line in text.splitlines():
        if line.startswith("#"):
            continue
        m = re.match(r"^([a-zA-Z_:][a-zA-Z0-9_:]*)(\{[^}]*\})? (\S+)", line)
        if not m or m.group(1) != name:
            continue
        got = dict(re.findall(r'(\w+)="([^"]*)"', m.group(2) or ""))
        if all(got.get(k) == v for k, v in labels.items()):
            total += float(m.group(3))
    return total


__all__ = ["models"]
