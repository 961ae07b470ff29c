"""Fuzz a real `pilothouse serve` with Schemathesis and the Open Inference Protocol OpenAPI file.

    python3 fuzz/run_schemathesis.py [--max-examples 200] [--seed 1] [--out DIR]

1. a virtualenv with schemathesis (~/.cache/pilothouse/schemathesis-venv), made when missing;
2. a temporary registry (SQLite in a temporary PILOTHOUSE_HOME) holding one model, y = x * 2
   (input "x", FP32, [None, 4]), deployed as "scale" at version 1;
3. `python -m pilothouse.cli serve` on 127.0.0.1 with a free port;
4. `st run` on a copy of the spec whose `${...}` path placeholders are plain `{...}`, with the
   hooks in schemathesis_hooks.py, a fixed seed and a bounded run time;
5. a summary: operations, requests, status codes, failures by check, every 5xx with a curl
   command that replays it, whether the server is still alive and answers /v2/health/live.

Exits 1 when a request got a 5xx, a request failed at the network level (reset, timeout),
the server log mentions a panic, or the server died; schemathesis' other failures are listed but left to a person to judge.
Exits 2 when the run itself did not complete (schemathesis error, or the time limit).
Run from anywhere; needs the pilothouse package importable by this python.
"""

from __future__ import annotations

import argparse
import base64
import collections
import json
import os
import re
import shlex
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
SPEC = Path(
    os.environ.get(
        "OIP_SPEC",
        HERE.parent.parent / "shared/specs/open-inference-protocol/open_inference_rest.yaml",
    )
)
VENV = Path.home() / ".cache/pilothouse/schemathesis-venv"
SCHEMATHESIS = "schemathesis>=4.32,<5"
MODEL, VERSION, INPUT, FEATURES = "scale", 1, "x", 4
DEFAULT_CHECKS = ",".join(
    [
        "not_a_server_error",
        "status_code_conformance",
        "content_type_conformance",
        "response_headers_conformance",
        "response_schema_conformance",
        "negative_data_rejection",
        "unsupported_method",
        "allow_header_conformance",
        "scale_outputs",  # ours, in schemathesis_hooks.py: a 200 carries y = 2 * x
    ]
)


def log(message: str) -> None:
    print(f"[fuzz] {message}", file=sys.stderr, flush=True)


# -- 1. schemathesis ------------------------------------------------------------------------


def ensure_venv() -> Path:
    st = VENV / "bin" / "st"
    if not st.exists():
        log(f"creating {VENV} with {SCHEMATHESIS}")
        subprocess.run([sys.executable, "-m", "venv", str(VENV)], check=True)
        subprocess.run(
            [
                str(VENV / "bin/python"),
                "-m",
                "pip",
                "install",
                "--quiet",
                "--disable-pip-version-check",
                SCHEMATHESIS,
            ],
            check=True,
        )
    return st


# -- 2. registry and model ------------------------------------------------------------------


def scale_model(k: float) -> bytes:
    """y = x * k over FP32 rows of FEATURES values."""
    import onnx
    from onnx import TensorProto, helper

    graph = helper.make_graph(
        [helper.make_node("Mul", [INPUT, "k"], ["y"])],
        MODEL,
        [helper.make_tensor_value_info(INPUT, TensorProto.FLOAT, [None, FEATURES])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [None, FEATURES])],
        [helper.make_tensor("k", TensorProto.FLOAT, [], [k])],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    onnx.checker.check_model(model)
    return bytes(model.SerializeToString())


def make_registry(home: Path) -> str:
    import numpy as np

    import pilothouse as ph

    uri = f"sqlite://{home / 'registry.db'}"
    registry = ph.connect(uri)
    example = np.arange(12, dtype=np.float32).reshape(3, FEATURES)
    registry.log_model(scale_model(2.0), MODEL, input_example=example)
    ph.deploy(MODEL, version=VERSION, registry=registry)
    return uri


# -- 3. the server --------------------------------------------------------------------------


class Server:
    def __init__(self, uri: str, env: dict[str, str], log_path: Path) -> None:
        cmd = [
            sys.executable,
            "-m",
            "pilothouse.cli",
            "serve",
            "--registry",
            uri,
            "--host",
            "127.0.0.1",
            "--port",
            "0",
        ]
        self.log_path = log_path
        self.process = subprocess.Popen(
            cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True, env=env
        )
        self.url: str | None = None
        self.pump = threading.Thread(target=self._pump, daemon=True)
        self.pump.start()
        deadline = time.monotonic() + 60
        while self.url is None:
            if self.process.poll() is not None or time.monotonic() > deadline:
                self.stop()
                raise SystemExit("pilothouse serve did not start:\n" + log_path.read_text())
            time.sleep(0.05)

    def _pump(self) -> None:
        assert self.process.stderr is not None
        with self.process.stderr, open(self.log_path, "w", encoding="utf-8") as out:
            for line in self.process.stderr:
                out.write(line)
                out.flush()
                m = re.search(r"serving at (http://127\.0\.0\.1:\d+)", line)
                if m and self.url is None:
                    self.url = m.group(1)

    def alive(self) -> bool:
        return self.process.poll() is None

    def stop(self) -> int | None:
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        self.pump.join(timeout=5)
        return self.process.returncode


def http(method: str, url: str, body: Any = None, timeout: float = 5) -> tuple[int, str]:
    data = json.dumps(body).encode() if body is not None else None
    request = urllib.request.Request(url, data=data, method=method)
    if data is not None:
        request.add_header("Content-Type", "application/json")
    try:
        with urllib.request.urlopen(request, timeout=timeout) as r:
            return r.status, r.read().decode("utf-8", "replace")
    except urllib.error.HTTPError as e:
        return e.code, e.read().decode("utf-8", "replace")


def wait_ready(url: str) -> None:
    """The deployment is loaded (the server polls the registry) and answers y = 2x."""
    deadline = time.monotonic() + 60
    while True:
        try:
            if http("GET", f"{url}/v2/models/{MODEL}/versions/{VERSION}/ready")[0] == 200:
                break
        except OSError:
            pass
        if time.monotonic() > deadline:
            raise SystemExit(f"{MODEL} version {VERSION} did not become ready")
        time.sleep(0.1)
    body = {
        "inputs": [
            {"name": INPUT, "shape": [1, FEATURES], "datatype": "FP32", "data": [1, 2, 3, 4]}
        ]
    }
    status, text = http("POST", f"{url}/v2/models/{MODEL}/versions/{VERSION}/infer", body)
    if status != 200 or json.loads(text)["outputs"][0]["data"] != [2, 4, 6, 8]:
        raise SystemExit(f"sanity inference failed: {status} {text}")


# -- 4. schemathesis run --------------------------------------------------------------------


def spec_copy(out: Path) -> Path:
    """The spec with `${MODEL_NAME}` written `{MODEL_NAME}` (only those `$`: `$ref` stays)."""
    text = SPEC.read_text(encoding="utf-8")
    path = out / "open_inference_rest.yaml"
    path.write_text(text.replace("${", "{"), encoding="utf-8")
    return path


def run_schemathesis(
    st: Path, spec: Path, url: str, args: argparse.Namespace, out: Path
) -> int | None:
    cmd = [
        str(st),
        "run",
        str(spec),
        "--url",
        url,
        "--checks",
        args.checks,
        "--max-examples",
        str(args.max_examples),
        "--seed",
        str(args.seed),
        "--workers",
        str(args.workers),
        "--generation-database",
        "none",
        "--request-timeout",
        str(args.request_timeout),
        "--suppress-health-check",
        "all",
        "--continue-on-failure",
        "--report",
        "json,ndjson",
        "--report-json-path",
        str(out / "report" / "report.json"),
        "--report-ndjson-path",
        str(out / "report" / "events.ndjson"),
        "--no-color",
        *args.extra,
    ]
    env = {
        **os.environ,
        "SCHEMATHESIS_HOOKS": "schemathesis_hooks",
        "PYTHONPATH": os.pathsep.join([str(HERE), os.environ.get("PYTHONPATH", "")]).rstrip(
            os.pathsep
        ),
        "PILOTHOUSE_FUZZ_LOG": str(out / "requests.jsonl"),
        "PILOTHOUSE_FUZZ_MODEL": MODEL,
        "PILOTHOUSE_FUZZ_VERSION": str(VERSION),
        "PILOTHOUSE_FUZZ_INPUT": INPUT,
        "PILOTHOUSE_FUZZ_FEATURES": str(FEATURES),
    }
    log(" ".join(shlex.quote(c) for c in cmd))
    with open(out / "schemathesis.txt", "w", encoding="utf-8") as transcript:
        process = subprocess.Popen(
            cmd,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
            env=env,
            cwd=out,
            start_new_session=True,
        )
        fired: list[bool] = []

        def stop() -> None:
            fired.append(True)
            os.killpg(process.pid, signal.SIGKILL)

        timer = threading.Timer(args.time_limit, stop)
        timer.start()
        assert process.stdout is not None
        for line in process.stdout:
            transcript.write(line)
            if args.verbose:
                sys.stdout.write(line)
        code = process.wait()
        timer.cancel()
    if fired:
        log(f"schemathesis stopped after the {args.time_limit:.0f} s time limit")
        return None
    return code


# -- 5. summary -----------------------------------------------------------------------------


def curl(entry: dict[str, Any], out: Path, index: int) -> str:
    parts = ["curl", "-sS", "-i", "-X", entry["method"], entry["url"]]
    for name, value in entry["headers"].items():
        if name.lower() in ("content-type", "content-encoding", "accept", "accept-encoding"):
            parts += ["-H", f"{name}: {value}"]
    if entry.get("body_b64"):
        body = base64.b64decode(entry["body_b64"])
        if len(body) <= 600 and body.isascii() and b"\n" not in body:
            parts += ["--data-binary", body.decode()]
        else:
            path = out / f"body-{index}.bin"
            path.write_bytes(body)
            parts += ["--data-binary", f"@{path}"]
    return " ".join(shlex.quote(p) for p in parts)


def printable(data: bytes) -> str:
    """Text with control characters escaped (answers may carry binary tensors)."""
    text = data.decode("utf-8", "replace")
    return "".join(ch if ch.isprintable() else ascii(ch)[1:-1] for ch in text)


def check_failures(path: Path) -> dict[tuple[str, str, str], list[tuple[str, Any, str]]]:
    """(check, title, first message line) -> [(request line, status, response text)]."""
    groups: dict[tuple[str, str, str], list[tuple[str, Any, str]]] = collections.defaultdict(list)
    if not path.exists():
        return groups
    with open(path, encoding="utf-8") as events:
        for line in events:
            event = json.loads(line).get("ScenarioFinished")
            if not event:
                continue
            recorder = event["recorder"]
            interactions = recorder.get("interactions", {})
            for case_id, checks in recorder.get("checks", {}).items():
                for check in checks:
                    if check.get("status") != "failure":
                        continue
                    failure = check["failure_info"]["failure"]
                    first = (failure.get("message") or "").strip().splitlines()[:1]
                    key = (check["name"], failure.get("title", ""), first[0] if first else "")
                    interaction = interactions.get(case_id) or {}
                    request = interaction.get("request") or {}
                    response = interaction.get("response") or {}
                    body = (response.get("content") or {}).get("$base64")
                    text = printable(base64.b64decode(body)) if body else ""
                    groups[key].append(
                        (
                            f"{request.get('method')} {request.get('uri')}",
                            response.get("status_code"),
                            text.strip(),
                        )
                    )
    return groups


def summarize(out: Path, st_code: int | None, alive: bool, live: str, server_log: Path) -> bool:
    requests_log = out / "requests.jsonl"
    entries = (
        [json.loads(line) for line in requests_log.read_text().splitlines()]
        if requests_log.exists()
        else []
    )
    report_path = out / "report" / "report.json"
    report = json.loads(report_path.read_text()) if report_path.exists() else {}

    print("\n==== schemathesis against pilothouse serve ====")
    ops = report.get("operations") or {}
    print(
        f"operations: {ops.get('tested', '?')} tested of {ops.get('total', '?')} in the spec"
        f" (errored {ops.get('errored', '?')})"
    )
    cases = report.get("test_cases") or {}
    print(
        f"test cases: {cases.get('generated', '?')} generated, "
        f"{cases.get('with_failures', '?')} with failures, "
        f"{cases.get('unique_failures', '?')} unique failures"
    )
    print(f"requests sent: {len(entries)}")
    by_op: dict[str, collections.Counter[str]] = collections.defaultdict(collections.Counter)
    for e in entries:
        by_op[e["operation"]][str(e["status"]) if e["status"] is not None else "network error"] += 1
    for op, counts in sorted(by_op.items()):
        detail = ", ".join(f"{k}: {v}" for k, v in sorted(counts.items()))
        print(f"  {op}: {sum(counts.values())} ({detail})")

    print("failures by check (failing test cases; grouped by title and first message line):")
    groups = check_failures(out / "report" / "events.ndjson")
    if not groups:
        print("  none")
    by_check: collections.Counter[str] = collections.Counter()
    for (check, _, _), found in groups.items():
        by_check[check] += len(found)
    for check, count in by_check.most_common():
        print(f"  {check}: {count}")
        for (name, title, first), found in sorted(groups.items(), key=lambda g: -len(g[1])):
            if name != check:
                continue
            request, status, answer = found[0]
            print(f"    {len(found)}x {title}: {first}")
            print(f"       e.g. {request} -> {status} {answer[:160]}")
    for e in report.get("errors") or []:
        print(f"  schemathesis error: {e['title']} ({e['count']}x)")

    server_errors = [e for e in entries if e["status"] is not None and e["status"] >= 500]
    network = [e for e in entries if e["status"] is None]
    print(f"5xx responses: {len(server_errors)}")
    seen: set[tuple[str, str]] = set()
    for i, e in enumerate(server_errors):
        key = (e["operation"], str(e.get("response", ""))[:200])
        if key in seen:
            continue
        seen.add(key)
        print(
            f"  {e['status']} on {e['operation']}: {printable(e.get('response', '').encode())[:300]}"
        )
        print(f"    {curl(e, out, i)}")
    print(f"network errors: {len(network)}")
    for i, e in enumerate(network[:5]):
        print(f"    {curl(e, out, 10_000 + i)}")

    panics = [
        line
        for line in server_log.read_text(errors="replace").splitlines()
        if "panic" in line.lower()
    ]
    if panics:
        print(f"server log lines mentioning panic: {len(panics)}")
        for line in panics[:5]:
            print(f"  {line}")
    print(f"schemathesis exit code: {st_code if st_code is not None else 'killed at time limit'}")
    print(f"server alive: {'yes' if alive else 'no'}; /v2/health/live: {live}")
    print(f"artifacts: {out} (requests.jsonl, report/, schemathesis.txt, server.log)")
    return bool(server_errors or network or panics or not alive)


# -- main -----------------------------------------------------------------------------------


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--max-examples", type=int, default=200, help="test cases per operation (default 200)"
    )
    parser.add_argument("--seed", type=int, default=1, help="schemathesis seed (default 1)")
    parser.add_argument("--workers", default="1", help="schemathesis workers (default 1)")
    parser.add_argument("--checks", default=DEFAULT_CHECKS, help="schemathesis checks")
    parser.add_argument(
        "--time-limit",
        type=float,
        default=900,
        help="seconds before schemathesis is stopped (default 900)",
    )
    parser.add_argument(
        "--request-timeout", type=float, default=30, help="seconds per request (default 30)"
    )
    parser.add_argument(
        "--out",
        type=Path,
        default=None,
        help="folder for the reports (default: a new temporary folder, kept)",
    )
    parser.add_argument(
        "--keep-home", action="store_true", help="keep the temporary registry and payload log"
    )
    parser.add_argument(
        "-v", "--verbose", action="store_true", help="print schemathesis' output as it runs"
    )
    parser.add_argument("extra", nargs="*", help="more `st run` arguments, after --")
    args = parser.parse_args()

    st = ensure_venv()
    out = (args.out or Path(tempfile.mkdtemp(prefix="pilothouse-schemathesis-"))).resolve()
    out.mkdir(parents=True, exist_ok=True)
    for stale in ("requests.jsonl", "report"):
        target = out / stale
        if target.is_dir():
            shutil.rmtree(target)
        elif target.exists():
            target.unlink()
    home = Path(tempfile.mkdtemp(prefix="pilothouse-fuzz-home-"))
    os.environ["PILOTHOUSE_HOME"] = str(home)  # read by pilothouse when it opens the registry
    server: Server | None = None
    try:
        uri = make_registry(home)
        server = Server(uri, {**os.environ, "PILOTHOUSE_HOME": str(home)}, out / "server.log")
        assert server.url is not None
        log(f"server at {server.url} (pid {server.process.pid}); waiting for {MODEL} v{VERSION}")
        wait_ready(server.url)
        started = time.monotonic()
        code = run_schemathesis(st, spec_copy(out), server.url, args, out)
        log(f"schemathesis finished in {time.monotonic() - started:.0f} s")
        alive = server.alive()
        try:
            status, text = http("GET", f"{server.url}/v2/health/live")
            live = f"{status} {text.strip()[:80]}"
            alive = alive and status == 200
        except OSError as e:
            live = f"no answer ({e})"
            alive = False
        if not server.alive():
            live += f" (server exited with {server.process.returncode})"
        bad = summarize(out, code, alive, live, out / "server.log")
        if bad:
            return 1
        if code not in (0, 1):  # 1: checks failed, judged above; None: time limit; 2: error
            log("the schemathesis run did not complete; see schemathesis.txt")
            return 2
        return 0
    finally:
        if server is not None:
            server.stop()
        if args.keep_home:
            log(f"registry kept in {home}")
        else:
            shutil.rmtree(home, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
