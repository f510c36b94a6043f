"""A control plane for the coordinator's tests: a real ledger (SQLite), coord apps on the session's Redis,
and nodes that are either simulated supervisors (tests.support.fleet) or real ones."""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass, field

import nacl.signing
import pytest
import uvicorn

from coord.app import create_app as create_coord
from coord.settings import CoordSettings
from coord.store import connect
from ledger.app import create_app as create_ledger
from ledger.database import Database
from ledger.settings import LedgerSettings
from tests.support.fleet import Fleet, create_fleet, listeners, node_url
from zeronode.api.ledger import Capacity, NodeRegistration
from zeronode.client.coord import CoordClient
from zeronode.client.ledger import LedgerClient
from zeronode.protocol import keys
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
        key = nacl.signing.SigningKey.generate()
        node_id = keys.node_id(keys.public_key_text(key))
        url = supervisor_url or node_url(self.fleet_port, len(self.node_keys), node_id, FLEET_ADDRESSES)
        with LedgerClient(self.ledger_url, key) as ledger:
            ledger.register(NodeRegistration(
                farm="test", capacity=Capacity(vcpus=2, memory=1 << 30, disk=10 << 30),
                supervisor_url=url, version="test",
            ))
            if online:
                ledger.report_uptime(100)
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
    sockets = listeners(0, FLEET_ADDRESSES)
    fleet_server = uvicorn.Server(uvicorn.Config(create_fleet(fleet), log_level="warning", lifespan="off"))
    fleet_thread = threading.Thread(target=fleet_server.run, kwargs={"sockets": sockets}, daemon=True)
    fleet_thread.start()
    while not fleet_server.started:
        time.sleep(0.01)
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

    plane = ControlPlane(ledger_url, fleet, sockets[0].getsockname()[1], nacl.signing.SigningKey.generate(), coord_key, make_coord)
    plane.coord = make_coord()
    yield plane
    for client in clients:
        client.close()
    database.close()
    fleet_server.should_exit = True
    fleet_thread.join(10)
    for listener in sockets:
        listener.close()
