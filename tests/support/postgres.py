"""A throwaway PostgreSQL cluster for the tests: Debian's server binaries, ``initdb`` into a temp folder,
``pg_ctl start`` on a free loopback port, one password-protected role, stopped and deleted at the end.

PostgreSQL refuses to run as root, so under root (CI) every server command runs as the ``postgres`` system
user the Debian package creates. The password travels in a 0600 file (``initdb --pwfile``), never in argv.
"""

from __future__ import annotations

import contextlib
import glob
import itertools
import os
import secrets
import shutil
import socket
import subprocess
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import sqlalchemy as sa

ROLE = "avatar_ops"
INITDB_OPTIONS = ("--auth=scram-sha-256", "-E", "UTF8", "--locale=C.UTF-8")


def server_bin() -> Path | None:
    """The newest installed ``/usr/lib/postgresql/<n>/bin`` holding ``initdb`` and ``pg_ctl``."""
    found = sorted(glob.glob("/usr/lib/postgresql/*/bin/pg_ctl"), key=lambda p: int(Path(p).parts[-3]))
    return Path(found[-1]).parent if found else None


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@dataclass
class PostgresServer:
    host: str
    port: int
    password: str = field(repr=False)
    _counter: itertools.count[int] = field(default_factory=lambda: itertools.count(1), repr=False)

    def url(self, database: str = "postgres") -> str:
        return f"postgresql://{ROLE}:{self.password}@{self.host}:{self.port}/{database}"

    def create_database(self, prefix: str = "usage") -> str:
        """A fresh empty database; its ``postgresql://`` URL."""
        name = f"{prefix}_{os.getpid()}_{next(self._counter)}"
        engine = sa.create_engine(self.url().replace("postgresql://", "postgresql+psycopg://"))
        try:
            with engine.connect().execution_options(isolation_level="AUTOCOMMIT") as conn:
                conn.exec_driver_sql(f'CREATE DATABASE "{name}"')
        finally:
            engine.dispose()
        return self.url(name)


def _as_server_user(argv: list[str]) -> list[str]:
    return ["runuser", "-u", "postgres", "--", *argv] if os.geteuid() == 0 else argv


@contextlib.contextmanager
def running_postgres() -> Iterator[PostgresServer]:
    """Start a cluster for the test session; stop it and delete its files afterwards."""
    bin_dir = server_bin()
    if bin_dir is None:
        raise RuntimeError("PostgreSQL server binaries are missing: run `make test` (installs Debian's postgresql).")
    root = Path(tempfile.mkdtemp(prefix="avatar-ops-pg-"))
    data, pwfile, logfile = root / "data", root / "pw", root / "server.log"
    password = secrets.token_urlsafe(18)
    pwfile.write_text(password + "\n")
    pwfile.chmod(0o600)
    if os.geteuid() == 0:
        shutil.chown(root, "postgres", "postgres")
        shutil.chown(pwfile, "postgres", "postgres")
    root.chmod(0o700)
    port = _free_port()
    options = (
        f"-k {root} -c listen_addresses=127.0.0.1 -p {port} "
        "-c fsync=off -c synchronous_commit=off -c full_page_writes=off -c max_connections=200"
    )
    started = False
    try:
        subprocess.run(
            _as_server_user(
                [str(bin_dir / "initdb"), "-D", str(data), "-U", ROLE, f"--pwfile={pwfile}", *INITDB_OPTIONS]
            ),
            check=True,
            capture_output=True,
            cwd=root,
        )
        pwfile.unlink()
        pg_ctl = str(bin_dir / "pg_ctl")
        subprocess.run(
            _as_server_user([pg_ctl, "-D", str(data), "-l", str(logfile), "-w", "-o", options, "start"]),
            check=True,
            capture_output=True,
            cwd=root,
            timeout=60,
        )
        started = True
        yield PostgresServer("127.0.0.1", port, password)
    finally:
        if started:
            subprocess.run(
                _as_server_user([str(bin_dir / "pg_ctl"), "-D", str(data), "-m", "fast", "-w", "stop"]),
                capture_output=True,
                cwd=root,
                timeout=60,
            )
        shutil.rmtree(root, ignore_errors=True)
