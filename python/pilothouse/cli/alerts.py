"""The ``alerts`` command: list alerts, rules and channels, silence a deployment's alerts and
acknowledge one (``pilothouse alerts list|rules|channels|silence|ack``)."""

from __future__ import annotations

import argparse
from typing import Any

from pilothouse.cli._output import AddCommand, _common, _open, _print_json, _show


def _list(args: argparse.Namespace) -> int:
    from pilothouse.alerts import alerts

    table = alerts(args.deployment, state=args.state, limit=args.limit, registry=_open(args))
    found: list[dict[str, Any]] = table.to_dict("records")
    if args.json:
        _print_json(found)
        return 0
    rows = [
        [
            a["id"],
            a["deployment"],
            a["rule"],
            a["severity"],
            a["state"],
            a["fired_window"],
            a["resolved_window"],
            "yes" if a["silenced"] else None,
            a["acked_by"],
        ]
        for a in found
    ]
    _show(
        [
            "ID",
            "DEPLOYMENT",
            "RULE",
            "SEVERITY",
            "STATE",
            "FIRED",
            "RESOLVED",
            "SILENCED",
            "ACKED BY",
        ],
        rows,
        "no alerts" + (f" for {args.deployment}" if args.deployment else ""),
    )
    return 0


def _rules(args: argparse.Namespace) -> int:
    from pilothouse.alerts import alert_rules

    found: list[dict[str, Any]] = alert_rules(args.deployment, registry=_open(args)).to_dict(
        "records"
    )
    if args.json:
        _print_json(found)
        return 0
    rows = [
        [
            r["deployment"],
            r["name"],
            r["when"],
            r["for_windows"],
            r["resolve_when"],
            r["only_if"],
            r["severity"],
            r["state"],
            r["window_start"],
        ]
        for r in found
    ]
    _show(
        [
            "DEPLOYMENT",
            "RULE",
            "WHEN",
            "FOR",
            "RESOLVE WHEN",
            "ONLY IF",
            "SEVERITY",
            "STATE",
            "LAST WINDOW",
        ],
        rows,
        "no alert rules" + (f" on {args.deployment}" if args.deployment else ""),
    )
    return 0


def _channels(args: argparse.Namespace) -> int:
    from pilothouse.alerts import channels

    found = channels(registry=_open(args))
    if args.json:
        _print_json(found)
        return 0
    rows = [
        [c["name"], c["kind"], c["destination"], c["severities"], c["labels"] or None]
        for c in found
    ]
    _show(["CHANNEL", "KIND", "DESTINATION", "SEVERITIES", "LABELS"], rows, "no channels")
    return 0


def _silence(args: argparse.Namespace) -> int:
    from pilothouse.alerts import silence

    made = silence(
        args.deployment,
        rule=args.rule,
        for_=args.for_,
        reason=args.reason,
        registry=_open(args),
    )
    if args.json:
        _print_json(made)
        return 0
    what = (
        f"rule {args.rule} of {args.deployment}"
        if args.rule
        else f"every rule of {args.deployment}"
    )
    print(f"silenced {what} until {made['until']:%Y-%m-%d %H:%M} UTC (silence {made['id']})")
    return 0


def _ack(args: argparse.Namespace) -> int:
    from pilothouse.alerts import ack

    alert = ack(args.id, registry=_open(args))
    if args.json:
        _print_json(alert)
        return 0
    print(f"acknowledged alert {alert['id']} ({alert['deployment']}: {alert['rule']})")
    return 0


def add_commands(command: AddCommand) -> None:
    alerts = command(
        "alerts",
        "alerts, alert rules and channels; silence or acknowledge",
        description=(
            "List alerts (`pilothouse alerts list churn --state firing`), rules and "
            "channels; silence a deployment's alerts for a while (`pilothouse alerts "
            "silence churn --for 2h --reason 'load test'`); acknowledge one (`pilothouse "
            "alerts ack 12`). Rules and channels are added from Python (ph.add_alert_rule, "
            "ph.add_channel); see docs/alerts.md."
        ),
    )
    actions = alerts.add_subparsers(dest="alerts_command", metavar="ACTION", required=True)
    p = actions.add_parser("list", help="alerts, newest first", description="Alerts, newest first.")
    p.add_argument("deployment", metavar="DEPLOYMENT", nargs="?", default=None)
    p.add_argument("--state", choices=["firing", "resolved"], default=None)
    p.add_argument("--limit", type=int, default=100, help="at most this many (default 100)")
    _common(p)
    p.set_defaults(run=_list)

    p = actions.add_parser("rules", help="alert rules and where each stands")
    p.add_argument("deployment", metavar="DEPLOYMENT", nargs="?", default=None)
    _common(p)
    p.set_defaults(run=_rules)

    p = actions.add_parser("channels", help="where alerts are sent (no secrets shown)")
    _common(p)
    p.set_defaults(run=_channels)

    p = actions.add_parser(
        "silence",
        help="silence a deployment's alerts (of one rule, or all) for a while",
        description="Alerts that fire while silenced are recorded, marked silenced, and not sent.",
    )
    p.add_argument("deployment", metavar="DEPLOYMENT")
    p.add_argument("--rule", default=None, help="only this rule's alerts (default: all)")
    p.add_argument("--for", dest="for_", default="1h", help="how long: 30m, 2h, 1d (default 1h)")
    p.add_argument("--reason", required=True, help="why (shown with the silenced alerts)")
    _common(p)
    p.set_defaults(run=_silence)

    p = actions.add_parser("ack", help="acknowledge an alert (someone is on it)")
    p.add_argument("id", metavar="ID", type=int)
    _common(p)
    p.set_defaults(run=_ack)
