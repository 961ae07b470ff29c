"""The commands of model checks and the gate they make: ``check`` (run a TOML suite against a
version, print a table, write JUnit XML, record the result on the version, exit 1 when a
check fails), ``checks`` (what was recorded) and ``policy`` (guard an alias, and require a
passing check before a promotion to it is approved)."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from pilothouse.cli._output import (
    AddCommand,
    _common,
    _one_line,
    _open,
    _print_json,
    _show,
    _usage,
)
from pilothouse.errors import PilothouseError, ValidationError
from pilothouse.testing.suite import CheckOutcome, SuiteResult, load_suite, run_suite


def _check(args: argparse.Namespace) -> int:
    """0 when every check passed, 1 when one failed or could not run, 2 when the suite, the
    command or the registry stopped the checks from running at all."""
    try:
        return _run_checks(args)
    except (PilothouseError, OSError) as e:
        print(f"error: {_one_line(e)}", file=sys.stderr)
        return 2


def _run_checks(args: argparse.Namespace) -> int:
    suite = load_suite(args.suite)  # every mistake in the file is named before a check runs
    if args.junit and not Path(args.junit).resolve().parent.is_dir():
        raise ValidationError(f"--junit {args.junit}: its folder does not exist")
    registry = _open(args)
    show_progress = not args.json and sys.stderr.isatty()

    def progress(o: CheckOutcome) -> None:
        if show_progress:
            print(f"  {o.verdict:<6} {o.name} ({o.seconds:.2f} s)", file=sys.stderr)

    result: SuiteResult = run_suite(
        suite,
        args.model,
        args.candidate,
        baseline=args.baseline,
        registry=registry,
        record=False,  # below, once the table and the JUnit file are out
        progress=progress,
    )
    if args.junit:
        result.to_junit(args.junit)
    if not args.json:
        print(result)
        sys.stdout.flush()
    if not args.no_record:
        result.record = registry.record_check(result.model, result.version, result.suite, result)
        if args.junit:  # again, with the record's id among its properties
            result.to_junit(args.junit)
    if args.json:
        document = result.to_record()
        document["passed"] = result.passed
        document["record"] = None if result.record is None else result.record.id
        _print_json(document)
    elif result.record is not None:
        print(
            f"\nrecorded as check {result.record.id} on {result.candidate} "
            f"(see `pilothouse checks {args.model}`)"
        )
    return 0 if result.passed else 1


def _checks(args: argparse.Namespace) -> int:
    records = _open(args).checks(args.model, args.version)
    if args.json:
        _print_json(records)
        return 0
    rows = [
        [
            c.id,
            c.version,
            c.suite,
            "passed" if c.passed else "FAILED",
            ", ".join(c.failed) or None,
            c.recorded_at,
            c.recorded_by,
        ]
        for c in records
    ]
    what = f"version {args.version} of {args.model}" if args.version else args.model
    _show(
        ["ID", "VERSION", "SUITE", "VERDICT", "FAILED", "RECORDED", "RECORDED BY"],
        rows,
        f"no checks recorded on {what}",
    )
    return 0


def _policy(args: argparse.Namespace) -> int:
    if args.off and (args.require_check or args.no_check):
        _usage("--off removes the policy; --require-check and --no-check do not go with it")
    if args.require_check and args.no_check:
        _usage("--require-check and --no-check contradict each other")
    registry = _open(args)
    registry.set_policy(
        args.model,
        args.alias,
        require_approval=not args.off,
        require_check="" if args.no_check else args.require_check,
    )
    if args.off:
        print(f"{args.model}@{args.alias} is no longer guarded")
        return 0
    required = registry.required_checks(args.model).get(args.alias)
    if required:
        suite = "every suite" if required == "*" else f"suite {required}"
        print(
            f"{args.model}@{args.alias} is guarded: a promotion needs an approval, and the "
            f"version's newest check of {suite} must have passed"
        )
    else:
        print(f"{args.model}@{args.alias} is guarded: a promotion needs an approval")
    return 0


def add_commands(command: AddCommand) -> None:
    p = command(
        "check",
        "run a suite of model checks on a version; exit 1 when one fails",
        description=(
            "Run the checks a TOML suite declares (valid, no_drift, predictions_close, better, "
            "reproducible: pilothouse.testing's assertions by name) against version CANDIDATE "
            "of MODEL, print a table, and record the result on the version, where approvals "
            "and the audit log show it and a policy (`pilothouse policy --require-check`) may "
            "require it before a promotion is approved. Exits with status 1 when a check "
            "fails or cannot run, 2 when the suite or the command is wrong (nothing is then "
            "recorded). docs/testing.md describes the suite file."
        ),
    )
    p.add_argument("model", metavar="MODEL")
    p.add_argument("--suite", required=True, metavar="FILE", help="the suite (TOML)")
    p.add_argument(
        "--candidate",
        default="latest",
        metavar="VERSION",
        help="the version to check: a number, an alias or latest (default latest)",
    )
    p.add_argument(
        "--baseline",
        default=None,
        metavar="VERSION",
        help="what diff tests compare with: a number or an alias (default: the suite's)",
    )
    p.add_argument("--junit", default=None, metavar="FILE", help="also write JUnit XML here")
    p.add_argument(
        "--no-record", action="store_true", help="do not record the result on the version"
    )
    _common(p)
    p.set_defaults(run=_check)

    p = command("checks", "list the checks recorded on a model's versions, newest first")
    p.add_argument("model", metavar="MODEL")
    p.add_argument("--version", type=int, default=None, help="only this version's")
    _common(p)
    p.set_defaults(run=_checks)

    p = command(
        "policy",
        "guard an alias: promotions need an approval (and, if asked, a passing check)",
        description=(
            "Guard ALIAS of MODEL: it then moves only with an approved promotion request. "
            "With --require-check SUITE, a request is approved, and the alias moves with it, "
            "only while the version's newest check of that suite (recorded by `pilothouse "
            "check`) passed; with *, every suite's newest check must pass. Without "
            "--require-check the requirement the policy had is kept; --no-check drops it, "
            "--off removes the guard."
        ),
    )
    p.add_argument("model", metavar="MODEL")
    p.add_argument("alias", metavar="ALIAS")
    p.add_argument(
        "--require-check",
        default=None,
        metavar="SUITE",
        help="approvals need the version's newest check of SUITE passing (* for every suite)",
    )
    p.add_argument(
        "--no-check", action="store_true", help="drop the check requirement (the guard stays)"
    )
    p.add_argument("--off", action="store_true", help="stop guarding the alias")
    _common(p, json_output=False)
    p.set_defaults(run=_policy)
