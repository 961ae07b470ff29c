"""Serving fixtures: a registry (SQLite, in a temporary PILOTHOUSE_HOME) and `pilothouse serve`
subprocesses that are killed after the test if it left them running."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from servers import CliServer, Store, start_cli

import pilothouse as ph


@pytest.fixture
def store(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Store:
    home = tmp_path / "home"
    monkeypatch.setenv("PILOTHOUSE_HOME", str(home))
    uri = f"sqlite://{home / 'registry.db'}"
    registry = ph.connect(uri)
    return Store(uri, home, registry)


@pytest.fixture
def cli(store: Store) -> Iterator[Any]:
    started: list[CliServer] = []

    def start(*args: str, **kw: Any) -> CliServer:
        s = start_cli(store, *args, **kw)
        started.append(s)
        return s

    yield start
    for s in started:
        if s.process.poll() is None:
            s.process.kill()
            s.process.wait()
        s.pump.join(timeout=5)
