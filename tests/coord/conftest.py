"""A control plane for the coordinator's tests: a real ledger (SQLite), coord apps on the session's Redis,
and nodes that are either simulated supervisors (tests.support.fleet) or real ones."""

from __future__ import annotations

from dataclasses import dataclass, field

import nacl.signing
import pytest

from coord.app import create_app as create_coord
from coord.settings import CoordSettings
from coord.store import connect
from ledger.app import create_app as create_ledger
from ledger.database import Database
from ledger.settings import LedgerSettings
from tests.support.fleet import Fleet, listeners, node_url, serve_in_background
from tests.support.nodes import new_node_key, register_node
from zeronode.client.coord import CoordClient
from zeronode.protocol.envelope import Envelope, new_envelope

FLEET_ADDRESSES = 16  # the simulated supervisors' distinct origins (127.0.0.1-16), as distinct nodes have


@dataclass
class ControlPlane:
    ledger_url: str
    fleet: Fleet
    fleet_port: int
    client_key: nacl.signing.SigningKey
    coord_key: nacl.signing.SigningKey
    make_coord: object
    coord: CoordClient | None = None
    node_keys: dict[str, nacl.signing.SigningKey] = field(default_factory=dict)

    def add_node(self, *, online: bool = True, supervisor_url: str | None = None) -> str:
        """Register a node in the ledger (its supervisor simulated by the fleet unless given); its id."""
        key, node_id = new_node_key()
        url = supervisor_url or node_url(self.fleet_port, len(self.node_keys), node_id, FLEET_ADDRESSES)
        register_node(self.ledger_url, key, url, online=online)
        self.node_keys[node_id] = key
        return node_id

    def sign(self, targets: list[str], script: str = "42", **kwargs) -> Envelope:
        return new_envelope(script, targets, self.client_key, **kwargs)

    def run(self, envelope: Envelope, timeout: float = 30) -> dict:
        self.coord.submit(envelope)
        *_, final = self.coord.follow(envelope.id, timeout=timeout)
        return final


def tasks_by_node(view: dict) -> dict[str, dict]:
    return {task["node"]: task for task in view["tasks"]}


@pytest.fixture
def control_plane(tmp_path, serve_app, redis_server, redis_client):
    ledger_settings = LedgerSettings(data_dir=tmp_path / "ledger", report_interval=60)
    (tmp_path / "ledger").mkdir()
    database = Database(ledger_settings.database)
    database.migrate()
    ledger_url = serve_app(create_ledger(ledger_settings, database))
    fleet = Fleet(run_time=0.2)
    fleet_server = serve_in_background(fleet, listeners(0, FLEET_ADDRESSES))
    coord_key = nacl.signing.SigningKey.generate()
    clients: list[CoordClient] = []

    def make_coord(**overrides) -> CoordClient:
        settings = CoordSettings(
            state_dir=tmp_path / "coord", ledger_url=ledger_url, redis_url=f"unix://{redis_server}",
            **{"offline_wait": 1.0, "lost_after": 3.0, **overrides},
        )
        connection = connect(settings.redis_url)
        clients.append(CoordClient(serve_app(create_coord(settings, connection, coord_key)), timeout=30))
        return clients[-1]

    client_key = nacl.signing.SigningKey.generate()
    plane = ControlPlane(ledger_url, fleet, fleet_server.port, client_key, coord_key, make_coord)
    plane.coord = make_coord()
    yield plane
    for client in clients:
        client.close()
    database.close()
    fleet_server.stop()
