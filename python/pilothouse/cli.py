"""The ``pilothouse`` command.

``pilothouse serve`` runs the model server in the foreground until SIGTERM or Ctrl-C, then
stops gracefully (requests in flight finish, the payload log is flushed). The registry
commands (``models``, ``versions``, ``search``, ``aliases``, ``alias``, ``approvals``,
``request-promotion``, ``approve``, ``reject``, ``audit``, ``lineage``) print a table for a
person, or one JSON document on stdout with ``--json``. Errors print one ``error: ...`` line
on stderr and exit with status 1.
"""

from __future__ import annotations

import argparse
import dataclasses
import datetime as dt
import json
import math
import os
import re
import sys
from collections.abc import Mapping, Sequence
from typing import Any, NoReturn

from pilothouse import __version__, _core
from pilothouse._paths import default_artifacts, default_uri, has_password
from pilothouse._runtime import ensure_runtime
from pilothouse.errors import IntegrityError, NotFoundError, PilothouseError
from pilothouse.lineage import Lineage
from pilothouse.records import Approval, ModelVersion, time_of
from pilothouse.registry import Registry

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


_REGISTRY_HELP = (
    "registry URI: sqlite:///path/to/registry.db, or postgresql://user@host:5432/db with the "
    "password in $PGPASSWORD or ~/.pgpass, never on the command line (default $PILOTHOUSE_URI, "
    "else the embedded registry in $PILOTHOUSE_HOME or ~/.pilothouse)"
)
_EMPTY = "—"
_SHA256 = re.compile(r"(?<![0-9a-f])[0-9a-f]{64}(?![0-9a-f])")
_ALL_VERSIONS = 1_000_000  # the search limit that means "every version of one model"


# -- output ------------------------------------------------------------------------------


def _cell(value: Any) -> str:
    """One table cell: times as YYYY-MM-DD HH:MM (UTC), nothing as an em dash."""
    if value is None:
        return _EMPTY
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, dt.datetime):
        return f"{value.astimezone(dt.timezone.utc):%Y-%m-%d %H:%M}"
    if isinstance(value, float):
        return f"{value:.4g}"
    if isinstance(value, Mapping):
        text = ", ".join(f"{k}={_inner(v)}" for k, v in value.items())
    elif isinstance(value, (list, tuple)):
        text = ", ".join(_inner(v) for v in value)
    else:
        text = " ".join(str(value).split())  # a newline or a tab would break the columns
        text = _SHA256.sub(lambda m: m.group(0)[:12] + "…", text)  # the whole is in --json
    return text or _EMPTY


def _inner(value: Any) -> str:
    """A value inside a mapping or a list: nested ones in brackets, to stay unambiguous."""
    if isinstance(value, Mapping):
        return "{" + (_cell(value) if value else "") + "}"
    if isinstance(value, (list, tuple)):
        return "[" + (_cell(value) if value else "") + "]"
    return _cell(value)


def _clip(text: str, width: int) -> str:
    return text if len(text) <= width else text[: width - 1] + "…"


def _is_number(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _table(headers: Sequence[str], rows: Sequence[Sequence[Any]]) -> str:
    """Aligned columns, two spaces apart; whole-number columns aligned right."""
    cells = [[_cell(v) for v in row] for row in rows]
    right = [
        any(_is_number(row[i]) for row in rows)
        and all(_is_number(row[i]) or row[i] is None for row in rows)
        for i in range(len(headers))
    ]
    widths = [max([len(h)] + [len(row[i]) for row in cells]) for i, h in enumerate(headers)]

    def line(values: Sequence[str]) -> str:
        padded = (v.rjust(w) if r else v.ljust(w) for v, w, r in zip(values, widths, right))
        return "  ".join(padded).rstrip()

    return "\n".join([line(headers), *(line(row) for row in cells)])


def _show(headers: Sequence[str], rows: Sequence[Sequence[Any]], empty: str) -> None:
    print(_table(headers, rows) if rows else empty)


def _jsonable(value: Any) -> Any:
    if isinstance(value, dt.datetime):
        return value.astimezone(dt.timezone.utc).isoformat()
    if isinstance(value, float) and not math.isfinite(value):
        return None  # JSON has no NaN or infinity
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return {
            f.name: _jsonable(getattr(value, f.name))
            for f in dataclasses.fields(value)
            if not f.name.startswith("_")
        }
    if isinstance(value, Mapping):
        return {str(k): _jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_jsonable(v) for v in value]
    return value


def _print_json(document: Any) -> None:
    sys.stdout.write(json.dumps(_jsonable(document), indent=2, ensure_ascii=False) + "\n")


def _metrics(values: Mapping[str, float], width: int = 48) -> str:
    return _clip(", ".join(f"{k}={_cell(v)}" for k, v in sorted(values.items())), width)


# -- registry access ----------------------------------------------------------------------


def _registry_uri(args: argparse.Namespace) -> str | None:
    uri: str | None = args.registry
    if uri and has_password(uri):
        print(
            "warning: a password in --registry is visible to every user of this machine (ps, "
            "shell history); put it in $PGPASSWORD or ~/.pgpass instead",
            file=sys.stderr,
        )
    return uri


def _open(args: argparse.Namespace) -> Registry:
    return Registry(_registry_uri(args))


def _quote(text: str) -> str:
    """A value for the search filter language: single quotes, doubled inside."""
    return "'" + text.replace("'", "''") + "'"


def _model(registry: Registry, name: str) -> dict[str, Any]:
    for record in registry.list_models():
        if record["name"] == name:
            return record
    raise NotFoundError(f"model not found: {name}")


def _versions_of(registry: Registry, name: str) -> list[ModelVersion]:
    """Every version of `name`, archived ones included, newest first."""
    found = registry.search_versions(
        f"name = {_quote(name)} and status IN ('active', 'archived')",
        order_by="version desc",
        limit=_ALL_VERSIONS,
    )
    return list(found)


# -- registry commands --------------------------------------------------------------------


def _models(args: argparse.Namespace) -> int:
    registry = _open(args)
    models = []
    for record in sorted(registry.list_models(), key=lambda r: r["name"]):
        versions = _versions_of(registry, record["name"])
        active = [v.version for v in versions if v.status == "active"]
        models.append(
            {
                "name": record["name"],
                "versions": len(versions),
                "archived": len(versions) - len(active),
                "latest_version": max(active) if active else None,
                "aliases": dict(sorted(record.get("aliases", {}).items())),
                "description": record.get("description") or "",
                "created_at": time_of(record.get("created_at")),
                "created_by": record.get("created_by") or "",
            }
        )
    if args.json:
        _print_json(models)
        return 0
    rows = [
        [
            m["name"],
            m["versions"],
            m["latest_version"],
            m["aliases"],
            m["created_at"],
            m["created_by"],
        ]
        for m in models
    ]
    _show(
        ["MODEL", "VERSIONS", "LATEST", "ALIASES", "CREATED", "CREATED BY"],
        rows,
        f"no models in {registry.uri}",
    )
    return 0


def _version_rows(versions: Sequence[ModelVersion], with_model: bool) -> list[list[Any]]:
    return [
        [
            *([v.model] if with_model else []),
            v.version,
            v.status,
            v.aliases,
            v.created_at,
            v.created_by,
            _metrics(v.metrics),
        ]
        for v in versions
    ]


_VERSION_HEADERS = ["VERSION", "STATUS", "ALIASES", "CREATED", "CREATED BY", "METRICS"]


def _versions(args: argparse.Namespace) -> int:
    registry = _open(args)
    _model(registry, args.model)
    versions = _versions_of(registry, args.model)
    if args.json:
        _print_json(versions)
        return 0
    _show(_VERSION_HEADERS, _version_rows(versions, False), f"no versions of {args.model}")
    return 0


def _search(args: argparse.Namespace) -> int:
    registry = _open(args)
    versions = list(registry.search_versions(args.filter, args.order_by, args.limit))
    if args.json:
        _print_json(versions)
        return 0
    _show(
        ["MODEL", *_VERSION_HEADERS],
        _version_rows(versions, True),
        f"no versions match {args.filter!r}" if args.filter else f"no versions in {registry.uri}",
    )
    return 0


def _aliases(args: argparse.Namespace) -> int:
    registry = _open(args)
    pointers: dict[str, int] = _model(registry, args.model).get("aliases", {})
    guarded = set(registry.policies(args.model))
    aliases = []
    for alias in sorted(set(pointers) | guarded):
        moves = registry.alias_history(args.model, alias) if alias in pointers else []
        last = moves[-1] if moves else None
        aliases.append(
            {
                "alias": alias,
                "version": pointers.get(alias),
                "guarded": alias in guarded,
                "moved_at": last.at if last else None,
                "moved_by": last.actor if last else None,
                "approval_id": last.approval_id if last else None,
            }
        )
    if args.json:
        _print_json(aliases)
        return 0
    rows = [
        [a["alias"], a["version"], a["guarded"], a["moved_at"], a["moved_by"], a["approval_id"]]
        for a in aliases
    ]
    _show(
        ["ALIAS", "VERSION", "GUARDED", "MOVED", "MOVED BY", "APPROVAL"],
        rows,
        f"{args.model} has no aliases",
    )
    return 0


def _alias_set(args: argparse.Namespace) -> int:
    registry = _open(args)
    version = registry.set_alias(args.model, args.alias, args.version)
    if args.json:
        _print_json(version)
    else:
        print(f"{args.model}@{args.alias} -> version {version.version} ({version.uri})")
    return 0


def _alias_delete(args: argparse.Namespace) -> int:
    registry = _open(args)
    registry.delete_alias(args.model, args.alias)
    if args.json:
        _print_json({"model": args.model, "alias": args.alias, "deleted": True})
    else:
        print(f"deleted {args.model}@{args.alias}")
    return 0


_APPROVAL_HEADERS = [
    "ID",
    "MODEL",
    "ALIAS",
    "VERSION",
    "STATUS",
    "REQUESTED",
    "REQUESTED BY",
    "REASON",
    "DECIDED",
    "DECIDED BY",
]


def _approvals(args: argparse.Namespace) -> int:
    registry = _open(args)
    names = [_model(registry, args.model)["name"]] if args.model else None
    if names is None:
        names = [m["name"] for m in registry.list_models()]
    found = [a for name in names for a in registry.approvals(name)]
    if args.pending:
        found = [a for a in found if a.status == "pending"]
    found.sort(key=lambda a: a.id)
    if args.json:
        _print_json(found)
        return 0
    rows = [
        [
            a.id,
            a.model,
            a.alias,
            a.version,
            a.status,
            a.requested_at,
            a.requested_by,
            _clip(_cell(a.reason), 40),
            a.decided_at,
            a.decided_by,
        ]
        for a in found
    ]
    what = "pending promotion requests" if args.pending else "promotion requests"
    _show(_APPROVAL_HEADERS, rows, f"no {what}" + (f" for {args.model}" if args.model else ""))
    return 0


def _describe(a: Approval) -> str:
    return f"{a.model}@{a.alias} -> version {a.version}, requested by {a.requested_by}"


def _request(args: argparse.Namespace) -> int:
    registry = _open(args)
    request = registry.request_promotion(args.model, args.alias, args.version, args.reason)
    if args.json:
        _print_json(request)
    else:
        print(
            f"request {request.id} ({_describe(request)}): {request.status}; another person "
            f"approves it with `pilothouse approve {request.id}`"
        )
    return 0


def _decide(args: argparse.Namespace) -> int:
    registry = _open(args)
    if args.command == "approve":
        decided = registry.approve(args.id, args.reason)
    else:
        decided = registry.reject(args.id, args.reason)
    if args.json:
        _print_json(decided)
    elif decided.status == "approved":
        print(
            f"approved request {decided.id} ({_describe(decided)}); move the alias with "
            f"`pilothouse alias set {decided.model} {decided.alias} {decided.version}`"
        )
    else:
        print(f"{decided.status} request {decided.id} ({_describe(decided)})")
    return 0


def _details(details: Mapping[str, Any]) -> str:
    return _clip(_cell({k: v for k, v in details.items() if v is not None}), 60)


def _audit(args: argparse.Namespace) -> int:
    if args.action and (args.model is not None or args.limit is not None):
        _usage(
            f"`pilothouse audit {args.action}` is about the whole chain; "
            "--model and --limit do not apply"
        )
    if args.anchor is not None and args.action != "verify":
        _usage("--anchor goes with `pilothouse audit verify`")
    registry = _open(args)
    if args.action == "verify":
        return _audit_verify(registry, args.anchor, args.json)
    if args.action == "head":
        head = registry.audit_head()
        if args.json:
            _print_json({"seq": head.seq, "hash": head.hash, "at": head.at, "anchor": str(head)})
        else:
            print(head)
        return 0
    if args.model:
        _model(registry, args.model)
    events = registry.audit_log(args.model, args.limit or 50)
    if args.json:
        _print_json(events)
        return 0
    rows = [[e.seq, e.at, e.actor, e.action, e.model, _details(e.details)] for e in events]
    _show(
        ["SEQ", "TIME", "ACTOR", "ACTION", "MODEL", "DETAILS"],
        rows,
        "no audit events" + (f" for {args.model}" if args.model else ""),
    )
    return 0


def _audit_verify(registry: Registry, anchor: str | None, as_json: bool) -> int:
    try:
        count = registry.verify_audit_log(anchor)
    except ValueError as e:  # an anchor that is not seq:hash
        raise SystemExit(f"error: {_one_line(e)}") from None
    except IntegrityError as e:
        message = _one_line(e)
        if as_json:
            _print_json({"ok": False, "events": None, "error": message})
        print(f"error: the audit log does not verify: {message}", file=sys.stderr)
        return 1
    if as_json:
        _print_json({"ok": True, "events": count, "error": None})
    else:
        matched = f", anchor {anchor.split(':')[0]} matches" if anchor else ""
        print(f"audit log intact: {count} events, hash chain verified{matched}")
    return 0


def _lineage(args: argparse.Namespace) -> int:
    registry = _open(args)
    lineage: Lineage = registry.lineage(args.model, args.version)
    edges = [{"source": s, "target": t, "relation": r} for s, t, r in lineage.edges]
    if args.json:
        _print_json({"uri": lineage.version["uri"], "nodes": lineage.nodes, "edges": edges})
        return 0
    print(f"Lineage of {lineage.version['uri']}")
    run = next((n for n in lineage.nodes if n["kind"] == "run"), None)
    if run is not None:
        print(f"run:     {lineage.details(run)}")
        print(f"params:  {_cell(dict(sorted(run['params'].items())))}")
        print(f"metrics: {_cell(dict(sorted(run['metrics'].items())))}")
    print()
    nodes = [[n["id"], n["kind"], n["details"]] for n in lineage.summary()]
    print(_table(["NODE", "KIND", "DETAILS"], nodes))
    if edges:
        print()
        rows = [[e["source"], e["relation"], e["target"]] for e in edges]
        print(_table(["FROM", "RELATION", "TO"], rows))
    return 0


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


# -- the parser ---------------------------------------------------------------------------


def _common(parser: argparse.ArgumentParser, json_output: bool = True) -> None:
    # SUPPRESS: when the flag is not given here, `pilothouse --registry URI COMMAND` holds
    parser.add_argument("--registry", metavar="URI", default=argparse.SUPPRESS, help=_REGISTRY_HELP)
    if json_output:
        parser.add_argument(
            "--json", action="store_true", help="print one JSON document instead of a table"
        )


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="pilothouse",
        description="Register, serve and monitor machine-learning models.",
        epilog=(
            "Registry commands print a table (times in UTC, — for nothing) or, with --json, "
            "one JSON document. `pilothouse COMMAND --help` describes each command."
        ),
    )
    parser.add_argument("--version", action="version", version=f"pilothouse {__version__}")
    parser.add_argument(
        "--registry", metavar="URI", default=None, help=_REGISTRY_HELP + "; also after COMMAND"
    )
    commands = parser.add_subparsers(dest="command", metavar="COMMAND")

    def command(name: str, text: str, description: str = "") -> argparse.ArgumentParser:
        return commands.add_parser(name, help=text, description=description or text)

    p = command("models", "list models: version count, latest version, aliases")
    _common(p)
    p.set_defaults(run=_models)

    p = command(
        "versions",
        "list a model's versions: status, aliases, created, by whom, metrics",
        description="List every version of a model, archived ones included, newest first.",
    )
    p.add_argument("model", metavar="MODEL")
    _common(p)
    p.set_defaults(run=_versions)

    p = command(
        "search",
        "search versions with a filter, e.g. \"metrics.auc > 0.8 and tags.team = 'risk'\"",
        description=(
            "Search versions of every model. The filter joins clauses `field op value` with "
            "`and`: fields name, version, status, description, created_by, created_at, run_id, "
            "dataset, sha256, metrics.<key>, tags.<key>, params.<key>; operators = != < <= > "
            ">= LIKE ILIKE IN (...). Archived versions show only when the filter names status."
        ),
    )
    p.add_argument(
        "filter",
        metavar="FILTER",
        nargs="?",
        default="",
        help="a search filter (default: every active version)",
    )
    p.add_argument("--order-by", default="", metavar="FIELD", help="e.g. 'metrics.auc desc'")
    p.add_argument("--limit", type=int, default=100, help="at most this many (default 100)")
    _common(p)
    p.set_defaults(run=_search)

    p = command("aliases", "list a model's aliases: version, guarded, last moved by whom")
    p.add_argument("model", metavar="MODEL")
    _common(p)
    p.set_defaults(run=_aliases)

    alias = command("alias", "set or delete an alias")
    actions = alias.add_subparsers(dest="alias_command", metavar="ACTION", required=True)
    p = actions.add_parser(
        "set",
        help="point ALIAS at VERSION (a guarded alias needs an approved request)",
        description="Point ALIAS at VERSION, atomically. A guarded alias needs an approved "
        "promotion request for that version (see request-promotion).",
    )
    p.add_argument("model", metavar="MODEL")
    p.add_argument("alias", metavar="ALIAS")
    p.add_argument("version", metavar="VERSION", type=int)
    _common(p)
    p.set_defaults(run=_alias_set)
    p = actions.add_parser("delete", help="remove ALIAS", description="Remove ALIAS.")
    p.add_argument("model", metavar="MODEL")
    p.add_argument("alias", metavar="ALIAS")
    _common(p)
    p.set_defaults(run=_alias_delete)

    p = command("approvals", "list promotion requests and their decisions")
    p.add_argument("--model", default=None, help="only this model's (default: every model's)")
    p.add_argument("--pending", action="store_true", help="only requests not yet decided")
    _common(p)
    p.set_defaults(run=_approvals)

    p = command(
        "request-promotion",
        "ask for a guarded alias to move to a version",
        description="Ask for ALIAS of MODEL to move to VERSION. Another person approves or "
        "rejects the request; once approved, `pilothouse alias set` moves the alias.",
    )
    p.add_argument("model", metavar="MODEL")
    p.add_argument("alias", metavar="ALIAS")
    p.add_argument("version", metavar="VERSION", type=int)
    p.add_argument("--reason", default="", help="why (shown to the approver)")
    _common(p)
    p.set_defaults(run=_request)

    p = command("approve", "approve a promotion request (not your own)")
    p.add_argument("id", metavar="ID", type=int)
    p.add_argument("--reason", default="", help="recorded with the decision")
    _common(p)
    p.set_defaults(run=_decide)

    p = command("reject", "reject a promotion request")
    p.add_argument("id", metavar="ID", type=int)
    p.add_argument("--reason", required=True, help="why (recorded with the decision)")
    _common(p)
    p.set_defaults(run=_decide)

    p = command(
        "audit",
        "show the newest audit events, or `audit verify` the hash chain",
        description=(
            "Show the newest audit events, oldest of them first. `pilothouse audit verify` "
            "checks the whole hash chain and exits with status 1 when an event was edited, "
            "deleted or reordered. `pilothouse audit head` prints the newest event as an "
            "anchor (SEQ:HASH) to keep outside the registry; `audit verify --anchor SEQ:HASH` "
            "then also detects deleted newest events and a chain recomputed from scratch."
        ),
    )
    p.add_argument(
        "action",
        metavar="verify|head",
        nargs="?",
        choices=["verify", "head"],
        help="check the hash chain, or print the newest event as an anchor",
    )
    p.add_argument("--anchor", default=None, metavar="SEQ:HASH", help="for verify: an anchor")
    p.add_argument("--model", default=None, help="only this model's events (default: all)")
    p.add_argument("--limit", type=int, default=None, help="how many events (default 50)")
    _common(p)
    p.set_defaults(run=_audit)

    p = command(
        "lineage",
        "where a version came from: run, code commit, dataset, parents, deployments",
    )
    p.add_argument("model", metavar="MODEL")
    p.add_argument("version", metavar="VERSION", help="a number, an alias, or latest")
    _common(p)
    p.set_defaults(run=_lineage)

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
    return parser


def _usage(message: str) -> NoReturn:
    print(f"error: {message}", file=sys.stderr)
    raise SystemExit(2)


def _one_line(error: BaseException) -> str:
    return " ".join(str(error).split()) or type(error).__name__


def main(argv: Sequence[str] | None = None) -> int:
    parser = _parser()
    args = parser.parse_args(argv)
    if args.command is None:
        parser.print_help()
        return 2
    try:
        code: int = args.run(args)
        sys.stdout.flush()
        return code
    except BrokenPipeError:
        # the reader went away (`pilothouse audit | head`): stop quietly
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        return 1
    except (PilothouseError, OSError) as e:
        print(f"error: {_one_line(e)}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
