"""The ``pilothouse`` command. ``pilothouse serve`` runs the model server in the foreground
until SIGTERM or Ctrl-C, then stops gracefully (requests in flight finish, the payload log is
flushed)."""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Sequence

from pilothouse import _core
from pilothouse._runtime import ensure_runtime
from pilothouse.errors import PilothouseError
from pilothouse.registry import _home, default_uri

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
]


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="pilothouse",
        description="Register, serve and monitor machine-learning models.",
    )
    commands = parser.add_subparsers(dest="command", metavar="COMMAND")
    serve = commands.add_parser(
        "serve",
        help="run the model server (Open Inference Protocol v2 over HTTP)",
        description=(
            "Run the model server in the foreground. It serves every deployment in the "
            "registry (create them with ph.deploy or `pilothouse deploy`) at "
            "/v2/models/<deployment>/infer, follows deployment changes and alias moves, and "
            "exposes Prometheus metrics at /metrics. SIGTERM or Ctrl-C stops it gracefully. "
            "Settings come from --config (TOML, the keys named below), then from flags."
        ),
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    serve.add_argument(
        "--registry",
        default=None,
        help="registry URI: sqlite:///path/registry.db or postgresql://user:pw@host/db "
        "(default $PILOTHOUSE_URI, else the embedded registry in ~/.pilothouse)",
    )
    serve.add_argument("--config", default=None, help="a TOML file with the settings below")
    for flag, key, kind, text in _SERVE_OPTIONS:
        serve.add_argument(flag, dest=key, type=kind, default=None, help=f"{text} [{key}]")

    dep = commands.add_parser("deploy", help="create or replace a deployment in the registry")
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
    dep.add_argument("--max-batch-size", type=int, default=64, help="1 switches batching off")
    dep.add_argument("--max-queue-delay-us", type=int, default=0)
    dep.add_argument("--registry", default=None, help="registry URI (as for serve)")

    commands.add_parser("deployments", help="list deployments").add_argument(
        "--registry", default=None
    )
    return parser


def _serve(args: argparse.Namespace) -> int:
    ensure_runtime()
    settings = {key: getattr(args, key) for _, key, _, _ in _SERVE_OPTIONS}
    settings = {k: v for k, v in settings.items() if v is not None}
    settings["registry"] = args.registry or default_uri()
    settings["artifacts"] = str(_home() / "artifacts")
    server = _core.Server.start(json.dumps(settings), args.config, True)
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
        registry=args.registry,
    )
    print(f"deployed {d.name} (generation {d.generation}): {d.routes} -> {d.versions}")
    return 0


def _list(args: argparse.Namespace) -> int:
    from pilothouse.serving import deployments

    for d in deployments(registry=args.registry):
        print(f"{d.name}\tmodel={d.model}\troutes={d.routes}\tshadow={d.shadow}\t{d.versions}")
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    parser = _parser()
    args = parser.parse_args(argv)
    if args.command is None:
        parser.print_help()
        return 2
    try:
        return {"serve": _serve, "deploy": _deploy, "deployments": _list}[args.command](args)
    except PilothouseError as e:
        print(f"pilothouse: {e}", file=sys.stderr)
        return 1
    except OSError as e:
        print(f"pilothouse: {e}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
