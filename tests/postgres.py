"""A real PostgreSQL server for the tests: Debian's postgresql, started on 127.0.0.1 on a free
port in a temporary data directory, stopped afterwards. `make test` installs the package."""

from __future__ import annotations

import glob
import os
import shutil
import socket
import sqlite3
import subprocess
import tempfile
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import pilothouse as ph


def _bin_dir() -> Path | None:
    found = sorted(glob.glob("/usr/lib/postgresql/*/bin/pg_ctl"))
    if found:
        return Path(found[-1]).parent
    pg_ctl = shutil.which("pg_ctl")
    return Path(pg_ctl).parent if pg_ctl else None


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


def _as_postgres(cmd: list[str]) -> list[str]:
    # PostgreSQL refuses to run as root; Debian's package provides the postgres user.
    if os.geteuid() == 0:
        return ["runuser", "-u", "postgres", "--", *cmd]
    return cmd


@contextmanager
def server() -> Iterator[tuple[Path, int]]:
    bin_dir = _bin_dir()
    if bin_dir is None:
        raise RuntimeError(
            "PostgreSQL is not installed: the team-backend tests need Debian's postgresql "
            "package (make test installs it with apt-get)"
        )
    root = Path(tempfile.mkdtemp(prefix="ph-postgres-"))
    data, sockets = root / "data", root / "sock"
    sockets.mkdir()
    if os.geteuid() == 0:
        shutil.chown(root, "postgres")
        shutil.chown(sockets, "postgres")
    port = _free_port()
    subprocess.run(
        _as_postgres(
            [
                str(bin_dir / "initdb"),
                "-D",
                str(data),
                "-U",
                "postgres",
                "--auth=trust",
                "-E",
                "UTF8",
            ]
        ),
        check=True,
        capture_output=True,
    )
    options = (
        f"-p {port} -k {sockets} -c listen_addresses=127.0.0.1 -c fsync=off -c max_connections=200"
    )
    subprocess.run(
        _as_postgres(
            [
                str(bin_dir / "pg_ctl"),
                "-D",
                str(data),
                "-o",
                options,
                "-l",
                str(root / "log"),
                "-w",
                "start",
            ]
        ),
        check=True,
        capture_output=True,
    )
    try:
        yield bin_dir, port
    finally:
        subprocess.run(
            _as_postgres([str(bin_dir / "pg_ctl"), "-D", str(data), "-m", "immediate", "stop"]),
            capture_output=True,
        )
        shutil.rmtree(root, ignore_errors=True)


def new_database(bin_dir: Path, port: int) -> str:
    name = f"ph_{uuid.uuid4().hex[:12]}"
    subprocess.run(
        [str(bin_dir / "createdb"), "-h", "127.0.0.1", "-p", str(port), "-U", "postgres", name],
        check=True,
        capture_output=True,
    )
    return f"postgresql://postgres@127.0.0.1:{port}/{name}"


def psql(bin_dir: Path, uri: str, sql: str) -> str:
    out = subprocess.run(
        [str(bin_dir / "psql"), uri, "-v", "ON_ERROR_STOP=1", "-At", "-c", sql],
        check=True,
        capture_output=True,
        text=True,
    )
    return out.stdout


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
