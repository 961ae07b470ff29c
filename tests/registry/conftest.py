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


@pytest.fixture
def fast_retries(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PILOTHOUSE_WEBHOOK_ATTEMPTS", "3")
    monkeypatch.setenv("PILOTHOUSE_WEBHOOK_BACKOFF_MS", "50")
    monkeypatch.setenv("PILOTHOUSE_WEBHOOK_TIMEOUT_MS", "1000")
    # The receivers listen on 127.0.0.1, which webhooks refuse unless allowed.
    monkeypatch.setenv("PILOTHOUSE_WEBHOOK_ALLOW_PRIVATE", "1")
