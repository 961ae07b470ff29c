"""What keeping each answered row for feedback costs a busy server.

One `pilothouse serve` process serves two deployments of the same logistic regression, one
keeping its predictions (the default) and one not (`monitoring={"predictions": False}`);
monitoring and the payload log are on for both. wrk sends single-row requests to each in
turn for `--duration` seconds, `--rounds` times, alternating. The server's CPU time is read
per thread from /proc, so the table shows what each thread spent per request and the
share of the server's CPU that keeping the rows took (the store thread writing batches,
and the payload-log thread building each row's JSON). Throughput is printed too, but on a
shared 2-core host it moves with the neighbours; CPU per request is the steadier measure.

    python benchmarks/keep_cost.py [--duration 6] [--rounds 3]
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

import pilothouse as ph

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))
from models import logistic_regression


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def thread_cpu(pid: int) -> dict[str, float]:
    """CPU seconds of each thread of `pid`, summed by thread name."""
    out: dict[str, float] = {}
    tick = os.sysconf("SC_CLK_TCK")
    for tid in os.listdir(f"/proc/{pid}/task"):
        try:
            stat = Path(f"/proc/{pid}/task/{tid}/stat").read_text()
        except OSError:
            continue
        name = stat[stat.index("(") + 1 : stat.rindex(")")]
        fields = stat[stat.rindex(")") + 2 :].split()
        out[name] = out.get(name, 0.0) + (int(fields[11]) + int(fields[12])) / tick
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--duration", type=int, default=6)
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    if shutil.which("wrk") is None:
        sys.exit("wrk is missing: apt-get install wrk (make bench does)")
    with tempfile.TemporaryDirectory(prefix="pilothouse-bench-keep-") as tmp:
        home = Path(tmp)
        uri = f"sqlite://{home / 'registry.db'}"
        registry = ph.Registry(uri, actor="bench")
        onnx, x = logistic_regression(zipmap=False)
        model = home / "logreg.onnx"
        model.write_bytes(onnx)
        x = x.astype(np.float32)
        registry.log_model(str(model), "logreg", input_example=x[:2], training_data=x)
        ph.deploy("keep", model="logreg", version=1, registry=registry)
        ph.deploy(
            "nokeep",
            model="logreg",
            version=1,
            monitoring={"predictions": False},
            registry=registry,
        )
        body = {
            "inputs": [
                {"name": "X", "shape": [1, x.shape[1]], "datatype": "FP32", "data": x[0].tolist()}
            ]
        }
        (home / "body.json").write_text(json.dumps(body))
        script = home / "post.lua"
        script.write_text(
            f'wrk.method="POST"\nwrk.body=io.open("{home / "body.json"}"):read("*a")\n'
            'wrk.headers["Content-Type"]="application/json"\n'
        )
        port = free_port()
        env = {**os.environ, "PILOTHOUSE_HOME": str(home)}
        server = subprocess.Popen(
            ["pilothouse", "serve", "--port", str(port), "--registry", uri],
            env=env,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        try:
            time.sleep(3)
            results: dict[str, list[tuple[float, float, dict[str, float]]]] = {
                "keep": [],
                "nokeep": [],
            }
            for r in range(args.rounds):
                order = ("keep", "nokeep") if r % 2 == 0 else ("nokeep", "keep")
                for name in order:
                    before = thread_cpu(server.pid)
                    out = subprocess.run(
                        [
                            "wrk",
                            "-t1",
                            "-c16",
                            f"-d{int(args.duration)}s",
                            "-s",
                            str(script),
                            f"http://127.0.0.1:{port}/v2/models/{name}/infer",
                        ],
                        capture_output=True,
                        text=True,
                        check=True,
                    ).stdout
                    time.sleep(2.5)  # the store thread writes what is pending
                    after = thread_cpu(server.pid)
                    line = next(line for line in out.splitlines() if "requests in" in line)
                    served = int(line.split()[0])
                    spent = {k: after.get(k, 0.0) - before.get(k, 0.0) for k in after}
                    total = sum(spent.values())
                    results[name].append((total / served * 1e6, served / args.duration, spent))
        finally:
            server.terminate()
            server.wait()
    print(
        f"\nkeeping predictions: single-row requests, wrk -c16, {args.rounds} rounds of "
        f"{args.duration:g} s per side, server CPU from /proc\n"
    )
    print(
        f"{'deployment':12} {'CPU µs/request':>15} {'requests/s':>11} {'store thread':>13} "
        f"{'payload-log thread':>19}"
    )
    medians = {}
    for name, runs in results.items():
        cpu = float(np.median([c for c, _, _ in runs]))
        rps = float(np.median([q for _, q, _ in runs]))
        shares = [
            (
                s.get("ph-monitor-stor", 0.0) / sum(s.values()),
                s.get("ph-payload-log", 0.0) / sum(s.values()),
            )
            for _, _, s in runs
        ]
        store = float(np.median([a for a, _ in shares]))
        paylog = float(np.median([b for _, b in shares]))
        medians[name] = (cpu, store, paylog)
        print(f"{name:12} {cpu:>15.1f} {rps:>11.0f} {store:>12.1%} {paylog:>18.1%}")
    keep, nokeep = medians["keep"], medians["nokeep"]
    print(
        f"\nCPU per request, kept vs not: {keep[0] / nokeep[0]:.3f}x; share of the server's "
        f"CPU the keeping took (store thread, plus the payload-log thread's growth): "
        f"{keep[1] + max(0.0, keep[2] - nokeep[2]):.1%}"
    )


if __name__ == "__main__":
    main()
