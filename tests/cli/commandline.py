"""Run `python -m pilothouse.cli` as a subprocess against a temporary registry, and read the
tables it prints."""

from __future__ import annotations

import datetime as dt
import json
import os
import re
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pilothouse as ph

TIME = re.compile(r"\d{4}-\d{2}-\d{2} \d{2}:\d{2}")
_CELL = re.compile(r"\S+(?: \S+)*")  # cells are at least two spaces apart


@dataclass
class Cli:
    home: Path

    @property
    def uri(self) -> str:
        return f"sqlite://{self.home / 'registry.db'}"

    def registry(self, actor: str = "ann") -> ph.Registry:
        return ph.Registry(f"{self.uri}?artifacts={self.home / 'artifacts'}", actor=actor)

    def env(self, actor: str = "ann") -> dict[str, str]:
        env = {k: v for k, v in os.environ.items() if not k.startswith("PILOTHOUSE_")}
        env.update(PILOTHOUSE_HOME=str(self.home), PILOTHOUSE_ACTOR=actor, COLUMNS="200")
        return env

    def run(self, *args: str, actor: str = "ann") -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [sys.executable, "-m", "pilothouse.cli", *args],
            capture_output=True,
            text=True,
            env=self.env(actor),
            timeout=120,
        )

    def ok(self, *args: str, actor: str = "ann") -> str:
        """stdout of a command that must succeed quietly."""
        done = self.run(*args, actor=actor)
        assert done.returncode == 0, (args, done.stdout, done.stderr)
        assert done.stderr == "", done.stderr
        return done.stdout

    def json(self, *args: str, actor: str = "ann") -> Any:
        return json.loads(self.ok(*args, "--json", actor=actor))

    def fails(self, *args: str, actor: str = "ann", code: int = 1) -> str:
        """The one `error: ...` line of a command that must fail, with nothing on stdout."""
        done = self.run(*args, actor=actor)
        assert done.returncode == code, (args, done.stdout, done.stderr)
        assert done.stdout == ""
        assert "Traceback" not in done.stderr
        lines = done.stderr.splitlines()
        assert len(lines) == 1 and lines[0].startswith("error: "), done.stderr
        return lines[0]


def table(text: str) -> list[dict[str, str]]:
    """The rows of a printed table as dicts by header, checking that the columns line up:
    text starts under its header's first letter, numbers end under its last."""
    lines = text.rstrip("\n").splitlines()
    assert lines, "no table printed"
    head = list(_CELL.finditer(lines[0]))
    assert all(h.group().isupper() for h in head), lines[0]
    rows = []
    for line in lines[1:]:
        cells = list(_CELL.finditer(line))
        assert len(cells) == len(head), f"{len(cells)} cells under {len(head)} headers: {line!r}"
        for h, c in zip(head, cells):
            if c.group().isdigit():
                assert c.end() == h.end(), f"{c.group()!r} not right-aligned under {h.group()}"
            elif c.group() != "—":
                assert c.start() == h.start(), f"{c.group()!r} not aligned under {h.group()}"
        rows.append({h.group(): c.group() for h, c in zip(head, cells)})
    return rows


def minute(when: str | dt.datetime | None) -> str:
    """An ISO time (as --json prints) or a datetime as the tables print it."""
    assert when is not None
    moment = dt.datetime.fromisoformat(when) if isinstance(when, str) else when
    return f"{moment.astimezone(dt.timezone.utc):%Y-%m-%d %H:%M}"
