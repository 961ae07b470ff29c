"""The serving commands: ``serve``, ``deploy``, ``deployments`` and ``monitor``."""

from __future__ import annotations

import argparse
import sys
from typing import Any

from pilothouse import _core
from pilothouse._paths import default_artifacts, default_uri
from pilothouse._runtime import ensure_runtime
from pilothouse.cli._output import AddCommand, _common, _open, _print_json, _registry_uri, _table

# (flag, config key, type, help). The same keys work in the TOML file given by --config.
_SERVE_OPTIONS: list[tuple[str, str, type, str]] = [
    ("--host", "host", str, "address to listen on (default 127.0.0.1: this machine only)"),
    ("--port", "port", int, "port to listen on (default 8000; 0 picks a free one)"),
    (
        "--log-dir",
        "log_dir",
        str,
        "folder for the payload log's Parquet segments (default: inference-log beside the "
        "registry's artifact folder)",
    ),
    (
        "--max-body-bytes",
        "max_body_bytes",
        int,
        "requests with a larger body get 413 (default 16777216)",
    ),
    (
        "--poll-interval-ms",
        "poll_interval_ms",
        int,
        "how often the registry is read for deployment changes and alias moves (default 250)",
    ),
    (
        "--flush-interval-ms",
        "flush_interval_ms",
        int,
        "how often buffered payload-log rows are written to Parquet (default 1000)",
    ),
    (
        "--log-format",
        "log_format",
        str,
        "server log lines: 'text', or 'json' for one JSON object per event (default text)",
    ),
    ("--log-level", "log_level", str, "error, warn, info or debug (default info)"),
    (
        "--http-threads",
        "http_threads",
        int,
        "threads serving HTTP (default 0: one per core the process may use)",
    ),
    (
        "--inference-threads",
        "inference_threads",
        int,
        "inference threads and ONNX Runtime sessions per loaded version (default 0: one per core)",
    ),
    (
        "--shutdown-timeout-s",
        "shutdown_timeout_s",
        int,
        "how long a stop waits for requests in flight (default 30)",
    ),
    (
        "--max-connections",
        "max_connections",
        int,
        "connections served at once; more wait until one closes (default 1024)",
    ),
    (
        "--header-read-timeout-ms",
        "header_read_timeout_ms",
        int,
        "a client that has not sent a request's headers in this time is cut off (default 10000)",
    ),
    (
        "--body-read-timeout-ms",
        "body_read_timeout_ms",
        int,
        "a request whose body has not arrived in this time gets 408 (default 30000)",
    ),
    (
        "--write-timeout-ms",
        "write_timeout_ms",
        int,
        "a client that reads none of its answer for this long is disconnected (default 30000)",
    ),
    (
        "--max-inflight-bytes",
        "max_inflight_bytes",
        int,
        "request bytes held at once (read, queued, running); past it 503 + Retry-After "
        "(default 536870912)",
    ),
    (
        "--log-buffer-bytes",
        "log_buffer_bytes",
        int,
        "payload-log records waiting for the disk, in bytes, before log_overflow applies "
        "(default 268435456)",
    ),
    (
        "--log-overflow",
        "log_overflow",
        str,
        "when the payload log is behind: 'block' refuses new requests (503) so no answered "
        "request is missing from the log; 'drop' answers and drops records, counted in /metrics "
        "(default block)",
    ),
]


# -- serving commands ---------------------------------------------------------------------


def _serve(args: argparse.Namespace) -> int:
    ensure_runtime()
    settings = {key: getattr(args, key) for _, key, _, _ in _SERVE_OPTIONS}
    settings = {k: v for k, v in settings.items() if v is not None}
    settings["registry"] = _registry_uri(args) or default_uri()
    settings["artifacts"] = str(default_artifacts())
    server = _core.Server.start(settings, args.config, True)
    print(f"pilothouse serving at {server.url} (Ctrl-C or SIGTERM stops)", file=sys.stderr)
    server.wait()
    return 0


def _deploy(args: argparse.Namespace) -> int:
    from pilothouse.serving import deploy

    routes = []
    for item in args.route or ["champion=1"]:
        target, _, weight = item.partition("=")
        routes.append((target, float(weight or 1)))
    d = deploy(
        args.name,
        model=args.model,
        routes=routes,
        shadow=args.shadow,
        sticky_header=args.sticky_header,
        max_batch_size=args.max_batch_size,
        max_queue_delay_us=args.max_queue_delay_us,
        registry=_open(args),
    )
    print(f"deployed {d.name} (generation {d.generation}): {d.routes} -> {d.versions}")
    return 0


def _deployments(args: argparse.Namespace) -> int:
    from pilothouse.serving import deployments

    found = deployments(registry=_open(args))
    if args.json:
        _print_json(found)
        return 0
    for d in found:
        print(f"{d.name}\tmodel={d.model}\troutes={d.routes}\tshadow={d.shadow}\t{d.versions}")
    return 0


def _monitor(args: argparse.Namespace) -> int:
    from pilothouse.monitoring import monitor

    mon = monitor(args.deployment, registry=_open(args))
    window = args.window
    health = mon.health(since=args.since, window=window)
    drift = mon.drift(since=args.since, window=window)
    quality = mon.quality(since=args.since, window=window)
    if args.json:
        _print_json(
            {
                "health": health.to_dict("records"),
                "drift": drift.to_dict("records"),
                "quality": quality.to_dict("records"),
            }
        )
        return 0

    def ms(v: Any) -> str:
        return "—" if v is None or v != v else f"{v:.2f}"

    def when(t: Any) -> str:
        return f"{t:%Y-%m-%d %H:%M:%S}"

    print(f"health of {args.deployment} since {args.since} (times in UTC)")
    print(
        _table(
            ("window", "version", "requests", "errors", "p50 ms", "p99 ms", "anomaly"),
            [
                (
                    when(r.window_start),
                    r.version,
                    r.requests,
                    r.errors,
                    ms(r.latency_p50_ms),
                    ms(r.latency_p99_ms),
                    "yes" if r.latency_anomaly else "",
                )
                for r in health.itertuples()
            ],
        )
    )
    drifted = drift[drift.drifted]
    print(f"\ndrifted columns ({len(drifted)} of {len(drift)} column-windows)")
    print(
        _table(
            ("window", "version", "column", "method", "statistic", "p-value"),
            [
                (
                    when(r.window_start),
                    r.version,
                    r.column,
                    r.method,
                    ms(r.statistic),
                    ms(r.p_value),
                )
                for r in drifted.itertuples()
            ],
        )
    )
    print("\ndata quality")
    print(
        _table(
            ("window", "version", "column", "check", "count", "rows"),
            [
                (when(r.window_start), r.version, r.column, r.check, r.count, r.rows)
                for r in quality.itertuples()
            ],
        )
    )
    return 0


def add_commands(command: AddCommand) -> None:
    serve = command(
        "serve",
        "run the model server (Open Inference Protocol v2 over HTTP)",
        description=(
            "Run the model server in the foreground. It serves every deployment in the "
            "registry (create them with ph.deploy or `pilothouse deploy`) at "
            "/v2/models/<deployment>/infer, follows deployment changes and alias moves, and "
            "exposes Prometheus metrics at /metrics. SIGTERM or Ctrl-C stops it gracefully. "
            "Settings come from --config (TOML, the keys named below), then from flags."
        ),
    )
    _common(serve, json_output=False)
    serve.add_argument("--config", default=None, help="a TOML file with the settings below")
    for flag, key, kind, text in _SERVE_OPTIONS:
        serve.add_argument(flag, dest=key, type=kind, default=None, help=f"{text} [{key}]")
    serve.set_defaults(run=_serve)

    dep = command("deploy", "create or replace a deployment in the registry")
    dep.add_argument("name", help="the deployment's name (the model name clients use)")
    dep.add_argument("--model", default=None, help="registered model (default: the name)")
    dep.add_argument(
        "--route",
        action="append",
        default=None,
        metavar="TARGET=WEIGHT",
        help="alias or version with a weight, e.g. champion=0.9 (repeat for A/B or canary; "
        "default champion=1)",
    )
    dep.add_argument("--shadow", default=None, help="alias or version to shadow")
    dep.add_argument("--sticky-header", default=None, help="route by this header's value")
    dep.add_argument(
        "--max-batch-size", type=int, default=64, help="1 switches batching off (default 64)"
    )
    dep.add_argument(
        "--max-queue-delay-us",
        type=int,
        default=0,
        help="how long the first request of a batch waits for more, in microseconds "
        "(default 0: only what is already queued)",
    )
    _common(dep, json_output=False)
    dep.set_defaults(run=_deploy)

    p = command("deployments", "list deployments")
    _common(p)
    p.set_defaults(run=_deployments)

    p = command(
        "monitor",
        "a deployment's monitoring: health, drifted columns and data quality per window",
        description=(
            "Read a deployment's monitoring windows from the registry (every replica's): "
            "service health, the columns that drifted from the version's reference, and "
            "data-quality failures, per window."
        ),
    )
    p.add_argument("deployment", metavar="DEPLOYMENT")
    p.add_argument(
        "--since", default="1h", help="a span back from now (15m, 1h, 7d) or an ISO time"
    )
    p.add_argument("--window", default="5m", help="the length rows are merged into (default 5m)")
    _common(p)
    p.set_defaults(run=_monitor)
