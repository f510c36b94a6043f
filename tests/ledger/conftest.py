"""The ledger for the tests, on SQLite and on a private PostgreSQL server: every test of this package runs on both.

The PostgreSQL server (tests.support.postgres) is started once per session,
with a fresh database for each test.
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass

import httpx
import nacl.signing
import pytest

from ledger.app import create_app
from ledger.database import Database
from ledger.settings import LedgerSettings
from tests.support.postgres import PostgresServer
from tests.support.postgres import postgres_server as postgres_server_running
from zeronode.client.ledger import LedgerClient
from zeronode.protocol import keys
from zeronode.protocol.signed_requests import LEDGER, SignedRequestAuth


@pytest.fixture(scope="session")
def postgres_server():
    with postgres_server_running() as server:
        yield server


@pytest.fixture(params=["sqlite", "postgresql"])
def database_url(request, tmp_path):
    """An empty database: a SQLite file, or a fresh database on the session's PostgreSQL server."""
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path / 'ledger.db'}"
        return
    server: PostgresServer = request.getfixturevalue("postgres_server")
    url = server.create_database()
    yield url
    server.drop_database(url)


class Clock:
    """The ledger's clock in a test: real time, moved on demand, or frozen at a whole second."""

    def __init__(self) -> None:
        self.offset = 0.0
        self.frozen: int | None = None

    def __call__(self) -> float:
        return self.frozen if self.frozen is not None else time.time() + self.offset

    def advance(self, seconds: float) -> None:
        if self.frozen is not None:
            self.frozen += int(seconds)
        self.offset += seconds

    def freeze(self) -> int:
        self.frozen = int(self())
        return self.frozen


@dataclass
class Ledger:
    """A ledger served over HTTP in this process, on its own database, with an admin key from its settings."""

    url: str
    settings: LedgerSettings
    db: Database
    clock: Clock
    admin: nacl.signing.SigningKey
    http: httpx.Client  # one client for the test: making one costs more than a request

    def client(self, key: nacl.signing.SigningKey | None = None, **kwargs) -> LedgerClient:
        return LedgerClient(self.url, key, **kwargs)

    def signed(self, method: str, path: str, key: nacl.signing.SigningKey, body: dict | bytes | None = None) -> httpx.Response:
        """A request signed by `key` on the ledger's clock (which a test may have moved)."""
        content = body if isinstance(body, bytes) else json.dumps(body).encode() if body is not None else b""
        return self.http.request(method, path, content=content, auth=SignedRequestAuth(key, LEDGER, clock=self.clock))

    def report(self, key: nacl.signing.SigningKey, uptime: int, timestamp: int | None = None) -> httpx.Response:
        timestamp = int(self.clock()) if timestamp is None else timestamp
        node_id = keys.node_id(keys.public_key_text(key))
        return self.signed("POST", f"/v1/nodes/{node_id}/uptime", key, {"uptime": uptime, "timestamp": timestamp})

    def get(self, path: str, **kwargs) -> httpx.Response:
        return self.http.get(path, **kwargs)


REGISTRATION = {
    "farm": "farm-a",
    "owner": "ops@example.org",
    "capacity": {"vcpus": 8, "memory": 16 << 30, "disk": 500 << 30},
    "supervisor_url": "http://[4a1:2b3::7]:8300",  # in the node's own mycelium /64: allowed by default
    "mycelium_address": "4a1:2b3::1",
    "version": "0.1.0",
}


def registration(**changes) -> dict:
    return {**REGISTRATION, **changes}


@pytest.fixture
def make_ledger(database_url, tmp_path, serve_app):
    """make_ledger(**settings) -> Ledger: a ledger on this test's database (several share it, like restarts).
    Supervisors on loopback are allowed, as a cluster on one machine needs (supervisor_networks=[] for the default)."""
    made: list[Ledger] = []

    def make(**overrides) -> Ledger:
        admin = nacl.signing.SigningKey.generate()
        settings = LedgerSettings(
            data_dir=tmp_path, database_url=database_url, admins=[keys.public_key_text(admin)],
            **{"report_interval": 10, "supervisor_networks": ["127.0.0.0/8"], **overrides},
        )
        db = Database(settings.database)
        db.migrate()
        clock = Clock()
        url = serve_app(create_app(settings, db, clock=clock))
        made.append(Ledger(url, settings, db, clock, admin, httpx.Client(base_url=url, timeout=10)))
        return made[-1]

    yield make
    for ledger in made:
        ledger.http.close()
        ledger.db.close()


@pytest.fixture
def ledger(make_ledger) -> Ledger:
    return make_ledger()


@pytest.fixture
def node_key() -> nacl.signing.SigningKey:
    return nacl.signing.SigningKey.generate()


@pytest.fixture
def registered(ledger, node_key) -> str:
    """The id of a node registered in `ledger` with `node_key`."""
    response = ledger.signed("POST", "/v1/nodes", node_key, REGISTRATION)
    assert response.status_code == 201, response.text
    return response.json()["node_id"]
