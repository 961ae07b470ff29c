"""Every registry test runs on SQLite and on a real PostgreSQL server."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from postgres import Backend, new_database, server

import pilothouse as ph


@pytest.fixture(scope="session")
def pg_server() -> Iterator[tuple[Path, int]]:
    with server() as running:
        yield running


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
