"""The ``pilothouse`` command: its parser and ``main``; each group of commands lives in its own
module (``registry``, ``serving``, ``check``, ``alerts``) and adds its subcommands here.

``pilothouse serve`` runs the model server in the foreground until SIGTERM or Ctrl-C, then
stops gracefully (requests in flight finish, the payload log is flushed). The registry
commands (``models``, ``versions``, ``search``, ``aliases``, ``alias``, ``approvals``,
``request-promotion``, ``approve``, ``reject``, ``audit``, ``lineage``) print a table for a
person, or one JSON document on stdout with ``--json``. ``pilothouse check`` runs a suite of
model checks, records the result on the version and exits with status 1 when one fails;
``checks`` lists what was recorded and ``policy`` makes an approval require it; ``alerts``
lists alerts, rules and channels, silences and acknowledges. Errors print one ``error: ...`` line on
stderr and exit with status 1.
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Sequence

from pilothouse import __version__
from pilothouse.cli import alerts, check, registry, serving
from pilothouse.cli._output import _REGISTRY_HELP, _one_line
from pilothouse.errors import PilothouseError

__all__ = ["main"]


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="pilothouse",
        description="Register, serve, monitor and check machine-learning models.",
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

    registry.add_commands(command)
    serving.add_commands(command)
    check.add_commands(command)
    alerts.add_commands(command)
    return parser


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
