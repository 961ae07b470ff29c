"""What every ``pilothouse`` command shares: tables and JSON on stdout, the registry named by
``--registry``, usage errors."""

from __future__ import annotations

import argparse
import datetime as dt
import json
import re
import sys
from collections.abc import Callable, Mapping, Sequence
from typing import Any, NoReturn

from pilothouse._json import jsonable
from pilothouse._paths import has_password
from pilothouse.errors import NotFoundError
from pilothouse.records import ModelVersion
from pilothouse.registry import Registry

# adds one subcommand: (name, help, description) -> its parser
AddCommand = Callable[..., argparse.ArgumentParser]

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


def _print_json(document: Any) -> None:
    sys.stdout.write(json.dumps(jsonable(document), indent=2, ensure_ascii=False) + "\n")


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


def _common(parser: argparse.ArgumentParser, json_output: bool = True) -> None:
    # SUPPRESS: when the flag is not given here, `pilothouse --registry URI COMMAND` holds
    parser.add_argument("--registry", metavar="URI", default=argparse.SUPPRESS, help=_REGISTRY_HELP)
    if json_output:
        parser.add_argument(
            "--json", action="store_true", help="print one JSON document instead of a table"
        )


def _usage(message: str) -> NoReturn:
    print(f"error: {message}", file=sys.stderr)
    raise SystemExit(2)


def _one_line(error: BaseException) -> str:
    return " ".join(str(error).split()) or type(error).__name__
