"""A control plane for the coordinator's tests: a real ledger (SQLite), coord apps on the session's Redis,
and nodes that are either simulated supervisors (tests.support.fleet) or real ones.

The ledger grants the client's key `deployer` on the farm every test node is in, as an operator
would; tests that need other rights grant them (`grant`, `set_policy`) with the ledger admin's key.
"""

from __future__ import annotations

import ipaddress
import itertools
import time
from dataclasses import dataclass, field

import nacl.signing
import pytest
import sqlalchemy as sa

from coord.app import create_app as create_coord
from coord.settings import CoordSettings
from coord.store import connect
from ledger.app import create_app as create_ledger
from ledger.database import Database
from ledger.schema import nodes as node_rows
from ledger.settings import LedgerSettings
from tests.support.fleet import Fleet, listeners, serve_in_background
from tests.support.nodes import new_node_key, register_node
from zeronode.api.ledger import NewUser
from zeronode.api.rights import PolicyChange
from zeronode.client.coord import CoordClient
from zeronode.client.ledger import LedgerClient
from zeronode.protocol import keys
from zeronode.protocol.envelope import Envelope, new_envelope

FLEET_ADDRESSES = 128  # one loopback origin per simulated node (127.0.0.1-128): the most nodes a test may add
FARM = "test"  # tests.support.nodes.register_node's
LOOPBACK = [ipaddress.ip_network("127.0.0.0/8")]  # where the test supervisors are: allowed at the ledger and coord


@dataclass
class ControlPlane:
    ledger_url: str
    database: Database
    fleet: Fleet
    fleet_port: int
    ledger_admin: nacl.signing.SigningKey
    client_key: nacl.signing.SigningKey
    coord_key: nacl.signing.SigningKey
    make_coord: object
    ledger_requests: list[str]  # "METHOD PATH" of every request the ledger served
    redis_url: object  # redis_url(db) → the URL of database `db` of the session's Redis
    coord: CoordClient | None = None
    node_keys: dict[str, nacl.signing.SigningKey] = field(default_factory=dict)
    # Every change to the ledger's rights carries a greater sequence than the last.
    sequence: itertools.count = field(default_factory=lambda: itertools.count(time.time_ns() // 1_000_000))

    def add_node(self, *, online: bool = True, supervisor_url: str | None = None, **report) -> str:
        """Register a node in the ledger (its supervisor simulated by the fleet unless given), reporting as
        `report` says (tests.support.nodes.register_node: labels, free, health); its id."""
        key, node_id = new_node_key()
        url = supervisor_url or self.fleet.serve(node_id, self.fleet_port, len(self.node_keys))
        register_node(self.ledger_url, key, url, online=online, **report)
        self.node_keys[node_id] = key
        return node_id

    def point_node_at(self, node_id: str, supervisor_url: str) -> None:
        """Make the ledger's record of the node name any URL, as records kept from before the ledger checked
        them may (the ledger refuses such a registration now: only its database can hold one)."""
        with self.database.writing() as connection:
            connection.execute(sa.update(node_rows).where(node_rows.c.node_id == node_id).values(supervisor_url=supervisor_url))

    def heard(self, node_id: str, seconds_ago: float) -> None:
        """Make the ledger's last report of the node `seconds_ago` old: a node gone silent, or back."""
        with self.database.writing() as connection:
            connection.execute(
                sa.update(node_rows).where(node_rows.c.node_id == node_id).values(last_report_at=int(time.time() - seconds_ago))
            )

    def grant(self, key: nacl.signing.SigningKey, roles: list[str], *, nodes: list[str] = (), farms: list[str] = ()) -> None:
        """Give `key` these roles on these nodes and farms in the ledger (empty roles revoke them)."""
        with LedgerClient(self.ledger_url, self.ledger_admin) as ledger:
            ledger.create_user(NewUser(
                public_key=keys.public_key_text(key), name="a test user", roles=roles, nodes=list(nodes), farms=list(farms),
                sequence=next(self.sequence),
            ))

    def set_policy(self, scope: str, target: str, threshold: int, signers: list[nacl.signing.SigningKey]) -> None:
        """'`threshold` of these keys must sign' for what deploys on a node or farm."""
        with LedgerClient(self.ledger_url, self.ledger_admin) as ledger:
            ledger.set_policy(PolicyChange(
                scope=scope, target=target, threshold=threshold, keys=[keys.public_key_text(k) for k in signers],
                sequence=next(self.sequence),
            ))

    def client(self, key: nacl.signing.SigningKey | None) -> CoordClient:
        """A client of the first coord signing with `key` (None: unsigned); close it (`with`)."""
        return CoordClient(str(self.coord.http.base_url), key=key, timeout=30)

    def sign(self, targets: list[str], script: str = "42", *, key: nacl.signing.SigningKey | None = None, **kwargs) -> Envelope:
        return new_envelope(script, targets, key or self.client_key, **kwargs)

    def run(self, envelope: Envelope, timeout: float = 30) -> dict:
        self.coord.submit(envelope)
        *_, final = self.coord.follow(envelope.id, timeout=timeout)
        return final


def tasks_by_node(view: dict) -> dict[str, dict]:
    return {task["node"]: task for task in view["tasks"]}


@pytest.fixture
def control_plane(tmp_path, serve_app, redis_server, redis_client):
    ledger_admin = nacl.signing.SigningKey.generate()
    ledger_settings = LedgerSettings(
        data_dir=tmp_path / "ledger", report_interval=60, admins=[keys.public_key_text(ledger_admin)],
        supervisor_networks=LOOPBACK,
    )
    (tmp_path / "ledger").mkdir()
    database = Database(ledger_settings.database)
    database.migrate()
    ledger = create_ledger(ledger_settings, database)
    ledger_requests: list[str] = []

    @ledger.middleware("http")
    async def count(request, call_next):  # what coord costs the ledger
        ledger_requests.append(f"{request.method} {request.url.path}")
        return await call_next(request)

    ledger_url = serve_app(ledger)

    def redis_url(db: int) -> str:
        return f"unix://{redis_server}?db={db}"
    coord_key = nacl.signing.SigningKey.generate()
    # The supervisors show a job to its signer and to node admins: coord is one (it reads and cancels).
    fleet = Fleet(run_time=0.2, admins={keys.public_key_text(coord_key)})
    fleet_server = serve_in_background(fleet, listeners(0, FLEET_ADDRESSES))
    client_key = nacl.signing.SigningKey.generate()
    clients: list[CoordClient] = []

    def make_coord(
        *, key: nacl.signing.SigningKey | None = client_key, clock=time.time, db: int = 0, **overrides
    ) -> CoordClient:
        """Another coord replica on the same Redis (with `overrides` of its settings, and `clock` to count
        submissions by), and a client of it signing its reads with `key` (None: unsigned). `db`: another
        Redis database than the fixture's own replica's, so that only replicas made for it step its tasks."""
        defaults = {
            "ledger_url": ledger_url, "offline_wait": 1.0, "supervisor_networks": LOOPBACK,
            "state_dir": tmp_path / "coord", "redis_url": redis_url(db),
        }
        settings = CoordSettings(**{**defaults, **overrides})
        connection = connect(settings.redis_url)
        clients.append(CoordClient(serve_app(create_coord(settings, connection, coord_key, clock=clock)), key=key, timeout=30))
        return clients[-1]

    plane = ControlPlane(
        ledger_url, database, fleet, fleet_server.port, ledger_admin, client_key, coord_key, make_coord, ledger_requests,
        redis_url,
    )
    plane.grant(client_key, ["deployer"], farms=[FARM])
    plane.coord = make_coord()
    yield plane
    for client in clients:
        client.close()
    database.close()
    fleet_server.stop()
