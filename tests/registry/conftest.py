"""Every registry test runs on SQLite and on a real PostgreSQL server."""

from __future__ import annotations

import sqlite3
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from postgres import new_database, psql, server

import pilothouse as ph


@pytest.fixture(scope="session")
def pg_server() -> Iterator[tuple[Path, int]]:
    with server() as running:
        yield running


@dataclass
class Backend:
    kind: str
    uri: str
    artifacts: Path
    pg: tuple[Path, int] | None = None

    def open(self, actor: str = "ann") -> ph.Registry:
        return ph.Registry(self.uri, actor=actor)

    def sql(self, statement: str) -> str:
        """Run SQL directly against the store, as an attacker with database access could."""
        if self.kind == "sqlite":
            db = self.uri.removeprefix("sqlite://").split("?")[0]
            with sqlite3.connect(db) as conn:
                rows = (
                    conn.executescript(statement)
                    if ";" in statement.strip()[:-1]
                    else conn.execute(statement)
                )
                return "\n".join("|".join(map(str, r)) for r in rows.fetchall())
        assert self.pg is not None
        return psql(self.pg[0], self.uri.split("?")[0], statement)


@pytest.fixture(params=["sqlite", "postgresql"])
def backend(request: pytest.FixtureRequest, tmp_path: Path) -> Backend:
    artifacts = tmp_path / "artifacts"
    if request.param == "sqlite":
        return Backend(
            "sqlite", f"sqlite://{tmp_path / 'registry.db'}?artifacts={artifacts}", artifacts
        )
    pg = request.getfixturevalue("pg_server")
    uri = new_database(*pg)
    return Backend("postgresql", f"{uri}?artifacts={artifacts}", artifacts, pg)


@pytest.fixture
def registry(backend: Backend) -> ph.Registry:
    return backend.open()
