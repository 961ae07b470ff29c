"""How the registry connects to PostgreSQL: TLS as libpq's sslmode says (against a real server
that accepts TLS connections only, with its own authority), and passwords from the
environment or the password file, never required on a command line."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest
from postgres import CA_FILES, new_database, self_signed, server

import pilothouse as ph

PASSWORD = "s3cret-Pw!"


@pytest.fixture(scope="module")
def tls_pg() -> Iterator[tuple[Path, int, Path]]:
    with server(tls=True, password=PASSWORD) as (bin_dir, port):
        yield bin_dir, port, CA_FILES[port]


def uri_for(pg: tuple[Path, int, Path], tmp_path: Path, query: str = "") -> str:
    bin_dir, port, _ = pg
    base = new_database(bin_dir, port, PASSWORD)
    extra = f"&{query}" if query else ""
    return f"{base}?artifacts={tmp_path / 'artifacts'}{extra}"


def test_tls_modes_against_a_tls_only_server(
    tls_pg: tuple[Path, int, Path], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("PGPASSWORD", PASSWORD)
    ca = tls_pg[2]
    # The server refuses unencrypted connections: disable cannot connect.
    with pytest.raises(ph.PilothouseError, match=r"no encryption"):
        ph.Registry(uri_for(tls_pg, tmp_path, "sslmode=disable"))
    for query in (
        "sslmode=require",
        f"sslmode=verify-ca&sslrootcert={ca}",
        f"sslmode=verify-full&sslrootcert={ca}",
        "",
    ):
        registry = ph.Registry(uri_for(tls_pg, tmp_path, query))
        assert registry.backend == "postgresql"
        assert registry.verify_audit_log() == 0
    # A certificate from another authority is refused under verify-ca / verify-full.
    other, _ = self_signed(tmp_path, "other-ca", "someone else")
    for mode in ("verify-ca", "verify-full"):
        with pytest.raises(ph.PilothouseError, match=r"(?i)certificate|unknownissuer"):
            ph.Registry(uri_for(tls_pg, tmp_path, f"sslmode={mode}&sslrootcert={other}"))
    with pytest.raises(ph.ValidationError, match="sslrootcert"):
        ph.Registry(uri_for(tls_pg, tmp_path, "sslmode=verify-full"))
    with pytest.raises(ph.ValidationError, match="sslmode=sometimes"):
        ph.Registry(uri_for(tls_pg, tmp_path, "sslmode=sometimes"))


def test_passwords_come_from_the_environment_or_the_password_file(
    tls_pg: tuple[Path, int, Path], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    _, port, _ = tls_pg
    uri = uri_for(tls_pg, tmp_path, "sslmode=require")
    monkeypatch.delenv("PGPASSWORD", raising=False)
    monkeypatch.setenv("PGPASSFILE", str(tmp_path / "none"))
    with pytest.raises(ph.PilothouseError, match="password"):
        ph.Registry(uri)
    monkeypatch.setenv("PGPASSWORD", PASSWORD)
    assert ph.Registry(uri).backend == "postgresql"
    monkeypatch.delenv("PGPASSWORD")
    passfile = tmp_path / "pgpass"
    passfile.write_text(
        f"# mine\nother:{port}:*:postgres:wrong\n127.0.0.1:{port}:*:postgres:{PASSWORD}\n"
    )
    passfile.chmod(0o600)
    monkeypatch.setenv("PGPASSFILE", str(passfile))
    registry = ph.Registry(uri)
    assert registry.backend == "postgresql"
    # The URI the registry shows never has a password, even one given in it.
    with_password = uri.replace("postgres@", f"postgres:{PASSWORD}@")
    assert PASSWORD not in ph.Registry(with_password).uri
    # A password file others can read is ignored, as libpq does.
    passfile.chmod(0o644)
    with pytest.raises(ph.PilothouseError, match="password"):
        ph.Registry(uri)


def test_the_server_never_logs_the_password(
    tls_pg: tuple[Path, int, Path], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import subprocess
    import sys
    import time

    uri = uri_for(tls_pg, tmp_path, "sslmode=require").replace("postgres@", f"postgres:{PASSWORD}@")
    process = subprocess.Popen(
        [sys.executable, "-m", "pilothouse.cli", "serve", "--registry", uri, "--port", "0"],
        stderr=subprocess.PIPE,
        stdout=subprocess.DEVNULL,
        text=True,
        env={**os.environ, "PILOTHOUSE_HOME": str(tmp_path / "home")},
    )
    lines = []
    try:
        deadline = time.monotonic() + 30
        assert process.stderr is not None
        while time.monotonic() < deadline:
            line = process.stderr.readline()
            lines.append(line)
            if "serving at" in line or not line:
                break
        url = lines[-1].split("serving at ")[1].split()[0]
        import urllib.request

        with urllib.request.urlopen(f"{url}/v2/health/live", timeout=10) as r:
            assert r.status == 200
        time.sleep(0.3)  # the signal handler is installed once the server runs
    finally:
        process.terminate()
        _, rest = process.communicate(timeout=30)
    text = "".join(lines) + (rest or "")
    assert "serving at" in text and "stopped" in text, text  # the whole log was read
    assert "listening on" in text and "***" in text
    assert PASSWORD not in text
