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


# The authority that signed each TLS server's certificate, by port.
CA_FILES: dict[int, Path] = {}


@contextmanager
def server(tls: bool = False, password: str | None = None) -> Iterator[tuple[Path, int]]:
    """A PostgreSQL server on 127.0.0.1 in a temporary folder. With ``tls``, it has a
    certificate for 127.0.0.1 signed by its own authority (``<data>/../ca.pem``) and accepts
    TCP connections over TLS only; with ``password``, the superuser needs it (scram)."""
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
    auth = ["--auth=trust"]
    if password is not None:
        pwfile = root / "pw"
        pwfile.write_text(password)
        if os.geteuid() == 0:
            shutil.chown(pwfile, "postgres")
        auth = ["--auth-local=trust", "--auth-host=scram-sha-256", f"--pwfile={pwfile}"]
    subprocess.run(
        _as_postgres(
            [str(bin_dir / "initdb"), "-D", str(data), "-U", "postgres", *auth, "-E", "UTF8"]
        ),
        check=True,
        capture_output=True,
    )
    options = (
        f"-p {port} -k {sockets} -c listen_addresses=127.0.0.1 -c fsync=off -c max_connections=200"
    )
    if tls:
        _certificates(root, data)
        CA_FILES[port] = root / "ca.pem"
        options += " -c ssl=on -c ssl_cert_file=server.crt -c ssl_key_file=server.key"
        method = "trust" if password is None else "scram-sha-256"
        (data / "pg_hba.conf").write_text(
            f"local all all trust\nhostssl all all 127.0.0.1/32 {method}\n"
            "hostnossl all all 127.0.0.1/32 reject\n"
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


def self_signed(folder: Path, name: str, common_name: str) -> tuple[Path, Path]:
    """A self-signed certificate and its key (`<name>.pem`, `<name>.key`), made by openssl."""
    cert, key = folder / f"{name}.pem", folder / f"{name}.key"
    subprocess.run(
        [
            "openssl",
            "req",
            "-x509",
            "-newkey",
            "rsa:2048",
            "-nodes",
            "-days",
            "2",
            "-subj",
            f"/CN={common_name}",
            "-keyout",
            str(key),
            "-out",
            str(cert),
        ],
        check=True,
        capture_output=True,
    )
    return cert, key


def _certificates(root: Path, data: Path) -> None:
    """An authority (root/ca.pem) and a server certificate for 127.0.0.1 it signed."""

    def openssl(*args: str) -> None:
        subprocess.run(["openssl", *args], check=True, capture_output=True, cwd=root)

    self_signed(root, "ca", "pilothouse test CA")
    openssl(
        "req",
        "-newkey",
        "rsa:2048",
        "-nodes",
        "-subj",
        "/CN=127.0.0.1",
        "-keyout",
        "server.key",
        "-out",
        "server.csr",
    )
    (root / "san.ext").write_text("subjectAltName=IP:127.0.0.1\n")
    openssl(
        "x509",
        "-req",
        "-in",
        "server.csr",
        "-CA",
        "ca.pem",
        "-CAkey",
        "ca.key",
        "-CAcreateserial",
        "-days",
        "2",
        "-extfile",
        "san.ext",
        "-out",
        "server.crt",
    )
    for name in ("server.crt", "server.key"):
        shutil.copy(root / name, data / name)
        os.chmod(data / name, 0o600)
        if os.geteuid() == 0:
            shutil.chown(data / name, "postgres")


def new_database(bin_dir: Path, port: int, password: str | None = None) -> str:
    name = f"ph_{uuid.uuid4().hex[:12]}"
    env = {**os.environ, **({"PGPASSWORD": password} if password else {})}
    subprocess.run(
        [str(bin_dir / "createdb"), "-h", "127.0.0.1", "-p", str(port), "-U", "postgres", name],
        check=True,
        capture_output=True,
        env=env,
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
