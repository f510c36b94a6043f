"""The ledger's database: SQLite (WAL) or PostgreSQL behind one engine, and its write transactions.

A write reads a row, decides, and writes it back (an uptime report must move
forward from the last one), so the read must already hold the write lock:

- SQLite has one writer at a time anyway. Write transactions start with
  `BEGIN IMMEDIATE`, which takes the lock before the read, and a process-wide
  mutex keeps this process's threads from waiting on SQLite's busy timeout.
  WAL lets reads go on meanwhile; `synchronous=NORMAL` makes a commit a write
  to the WAL without an fsync (a power cut may lose the last commits, never
  corrupt the file: lost reports are re-sent a minute later).
- PostgreSQL locks the rows a write reads (`SELECT ... FOR UPDATE`).
"""

from __future__ import annotations

import contextlib
import threading
from collections.abc import Iterator
from pathlib import Path

import sqlalchemy as sa

from ledger import schema


def _sqlite_connect(dbapi_connection, _record) -> None:
    # Transactions are begun by _sqlite_begin, not by the driver's guesswork.
    dbapi_connection.isolation_level = None
    for pragma in ("journal_mode=WAL", "synchronous=NORMAL", "foreign_keys=ON", "busy_timeout=30000"):
        dbapi_connection.execute(f"PRAGMA {pragma}")


def _sqlite_begin(connection: sa.Connection) -> None:
    statement = "BEGIN IMMEDIATE" if connection.get_execution_options().get("ledger_write") else "BEGIN"
    # Straight to sqlite3: SQLAlchemy's statement machinery costs more than the BEGIN itself.
    connection.connection.driver_connection.execute(statement)


class Database:
    def __init__(self, url: str):
        parsed = sa.make_url(url)
        if parsed.drivername == "postgresql":
            parsed = parsed.set(drivername="postgresql+psycopg")  # psycopg 3, not the default psycopg2
        self.is_sqlite = parsed.get_backend_name() == "sqlite"
        if self.is_sqlite:
            if parsed.database and parsed.database != ":memory:":
                Path(parsed.database).parent.mkdir(parents=True, exist_ok=True)
            self.engine = sa.create_engine(parsed, connect_args={"check_same_thread": False})
            sa.event.listen(self.engine, "connect", _sqlite_connect)
            sa.event.listen(self.engine, "begin", _sqlite_begin)
            self._write_lock: contextlib.AbstractContextManager = threading.Lock()
        else:
            # pre_ping: after the server restarts, pooled connections are replaced, not handed out dead.
            self.engine = sa.create_engine(parsed, pool_pre_ping=True, pool_size=10)
            self._write_lock = contextlib.nullcontext()

    @contextlib.contextmanager
    def writing(self) -> Iterator[sa.Connection]:
        """A write transaction: committed when the block ends, rolled back if it raises."""
        with self._write_lock, self.engine.connect() as connection:
            connection.execution_options(ledger_write=True)
            with connection.begin():
                yield connection

    @contextlib.contextmanager
    def reading(self) -> Iterator[sa.Connection]:
        """A connection whose reads see one snapshot."""
        with self.engine.connect() as connection:
            yield connection

    def migrate(self) -> int:
        with self.writing() as connection:
            return schema.migrate(connection)

    def ping(self) -> bool:
        try:
            with self.reading() as connection:
                connection.execute(sa.text("SELECT 1"))
        except sa.exc.SQLAlchemyError:
            return False
        return True

    def close(self) -> None:
        self.engine.dispose()
