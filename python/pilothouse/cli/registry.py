"""The registry commands: ``models``, ``versions``, ``search``, ``aliases``, ``alias``,
``approvals``, ``request-promotion``, ``approve``, ``reject``, ``audit`` and ``lineage``."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Mapping, Sequence
from typing import Any

from pilothouse.cli._output import (
    AddCommand,
    _cell,
    _clip,
    _common,
    _metrics,
    _model,
    _one_line,
    _open,
    _print_json,
    _show,
    _table,
    _usage,
    _versions_of,
)
from pilothouse.errors import IntegrityError
from pilothouse.lineage import Lineage
from pilothouse.records import Approval, ModelVersion, time_of
from pilothouse.registry import Registry

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
    required = registry.required_checks(args.model)
    aliases = []
    for alias in sorted(set(pointers) | guarded):
        moves = registry.alias_history(args.model, alias) if alias in pointers else []
        last = moves[-1] if moves else None
        aliases.append(
            {
                "alias": alias,
                "version": pointers.get(alias),
                "guarded": alias in guarded,
                "requires_check": required.get(alias),
                "moved_at": last.at if last else None,
                "moved_by": last.actor if last else None,
                "approval_id": last.approval_id if last else None,
            }
        )
    if args.json:
        _print_json(aliases)
        return 0
    rows = [
        [
            a["alias"],
            a["version"],
            a["guarded"],
            a["requires_check"],
            a["moved_at"],
            a["moved_by"],
            a["approval_id"],
        ]
        for a in aliases
    ]
    _show(
        ["ALIAS", "VERSION", "GUARDED", "REQUIRES CHECK", "MOVED", "MOVED BY", "APPROVAL"],
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
    "CHECKS",
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
            _checks_cell(a),
            a.decided_at,
            a.decided_by,
        ]
        for a in found
    ]
    what = "pending promotion requests" if args.pending else "promotion requests"
    _show(_APPROVAL_HEADERS, rows, f"no {what}" + (f" for {args.model}" if args.model else ""))
    return 0


def _checks_cell(a: Approval) -> str | None:
    """The version's newest check of each suite: ``suite passed`` or ``suite FAILED``."""
    if not a.checks:
        return None
    return ", ".join(f"{c.suite} {'passed' if c.passed else 'FAILED'}" for c in a.checks)


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


def add_commands(command: AddCommand) -> None:
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
