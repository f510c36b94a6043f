"""A private PostgreSQL server: the machine's own binaries (Debian's `postgresql`, scripts/install-system-packages),
on a Unix socket in a temporary directory, tuned for tests (no fsync). PostgreSQL refuses to run as root, so as
root it runs as the `postgres` system user.

    with postgres_server() as server:
        url = server.create_database()      # postgresql+psycopg://... of a fresh database
"""

from __future__ import annotations

import contextlib
import os
import pwd
import shutil
import subprocess
import tempfile
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import psycopg
import sqlalchemy

from .waiting import wait_until


def postgres_bindir() -> Path:
    found = sorted(Path("/usr/lib/postgresql").glob("*/bin/postgres"), key=lambda p: int(p.parent.parent.name))
    assert found, "PostgreSQL is not installed: run scripts/install-system-packages"
    return found[-1].parent


@dataclass(frozen=True)
class PostgresServer:
    socket_dir: Path
    port: int

    def url(self, database: str) -> str:
        return f"postgresql+psycopg://postgres@/{database}?host={self.socket_dir}&port={self.port}"

    def admin(self) -> psycopg.Connection:
        return psycopg.connect(host=str(self.socket_dir), port=self.port, user="postgres", dbname="postgres", autocommit=True)

    def create_database(self) -> str:
        """A fresh, empty database's URL."""
        name = f"ledger_{uuid.uuid4().hex[:12]}"
        with self.admin() as admin:
            admin.execute(f'CREATE DATABASE "{name}"')
        return self.url(name)

    def drop_database(self, url: str) -> None:
        name = sqlalchemy.make_url(url).database
        with self.admin() as admin:
            admin.execute(f'DROP DATABASE "{name}" WITH (FORCE)')


@contextlib.contextmanager
def postgres_server(*settings: str) -> Iterator[PostgresServer]:
    """A server for the block; `settings` are more `name=value` for it (max_connections=200)."""
    bindir = postgres_bindir()
    as_postgres = ["runuser", "-u", "postgres", "--"] if os.geteuid() == 0 else []
    # Not under pytest's tmp dir: that one is private to root, and the server's user must reach its files.
    base = Path(tempfile.mkdtemp(prefix="zeronode-pg-"))
    if as_postgres:
        user = pwd.getpwnam("postgres")
        os.chown(base, user.pw_uid, user.pw_gid)
    data, port = base / "data", 5432  # no TCP listener: the port only names the socket
    subprocess.run(
        [*as_postgres, str(bindir / "initdb"), "-D", str(data), "-U", "postgres", "--auth=trust", "--no-sync",
         "-E", "UTF8", "--locale=C"],
        check=True, capture_output=True,
    )
    options = ["listen_addresses=", "fsync=off", "synchronous_commit=off", "full_page_writes=off", *settings]
    process = subprocess.Popen(
        [*as_postgres, str(bindir / "postgres"), "-D", str(data), "-k", str(base), "-p", str(port),
         *(part for option in options for part in ("-c", option))],
        stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
    )
    server = PostgresServer(base, port)

    def accepting() -> bool:
        server.admin().close()
        return True

    try:
        try:
            wait_until(accepting, 30, "postgres to accept connections", interval=0.05, process=process,
                       ignoring=(psycopg.OperationalError,))
        except AssertionError:
            process.kill()
            raise RuntimeError(f"postgres did not start: {process.stderr.read()[-2000:]}") from None
        yield server
    finally:
        subprocess.run([*as_postgres, str(bindir / "pg_ctl"), "-D", str(data), "stop", "-m", "fast", "-w"], capture_output=True)
        if process.poll() is None:
            process.wait(30)
        shutil.rmtree(base, ignore_errors=True)
