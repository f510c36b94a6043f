"""A node for the tests: settings on a private Redis, keys, the supervisor over HTTP, runner pools as processes."""

from __future__ import annotations

import uuid
from dataclasses import dataclass, field
from pathlib import Path

import httpx
import nacl.signing
import pytest
import redis

from supervisor.app import create_app
from supervisor.service import Supervisor
from tests.support.processes import ZeronodeProcess
from tests.support.waiting import wait_until
from zeronode.api.jobs import JobView
from zeronode.node.authorizer import node_authorizer
from zeronode.node.identity import NodeIdentity, node_identity
from zeronode.node.settings import NodeSettings
from zeronode.protocol import keys
from zeronode.protocol.envelope import Envelope, new_envelope
from zeronode.protocol.signed_requests import SignedRequestAuth
from zeronode.protocol.ticket import HEADER as TICKET_HEADER


class RunnerPool(ZeronodeProcess):
    """`zeronode runner --pool N` as a real process, once its N runners are up; its JSON log lines are collected."""

    def __init__(self, config: Path, size: int):
        super().__init__("runner", "--pool", size, "--config", config)
        self.wait_for(lambda entries: sum(e["msg"] == "runner started" for e in entries) >= size, 60, "runners to start")

    def runner_pids(self) -> list[int]:
        return [e["pid"] for e in self.logs if e.get("msg") == "runner process started"]


@dataclass
class Node:
    settings: NodeSettings
    config: Path
    identity: NodeIdentity
    client: nacl.signing.SigningKey
    admin: nacl.signing.SigningKey
    stranger: nacl.signing.SigningKey
    connection: redis.Redis
    supervisor: Supervisor
    http: httpx.Client
    placer: nacl.signing.SigningKey  # coord's key, as the node's settings trust it (placers)
    pools: list[RunnerPool] = field(default_factory=list)

    @property
    def node_id(self) -> str:
        return self.identity.node_id

    def sign(self, script: str, key: nacl.signing.SigningKey | None = None, **kwargs) -> Envelope:
        return new_envelope(script, [self.node_id], key or self.client, **kwargs)

    def post(self, envelope: Envelope | str | bytes, *, ticket: str | None = None) -> httpx.Response:
        body = envelope.to_json() if isinstance(envelope, Envelope) else envelope
        return self.http.post("/v1/jobs", content=body, headers={TICKET_HEADER: ticket} if ticket else {})

    def job(self, job_id: str) -> JobView:
        response = self.http.get(f"/v1/jobs/{job_id}")
        assert response.status_code == 200, response.text
        return JobView.model_validate(response.json())

    def wait(self, job_id: str, until=lambda v: v.status not in ("queued", "started"), timeout: float = 30) -> JobView:
        last: JobView | None = None

        def ready() -> JobView | None:
            nonlocal last
            last = self.job(job_id)
            return last if until(last) else None

        return wait_until(ready, timeout, lambda: f"job {job_id} (still {last.status})", interval=0.05)

    def cancel(self, job_id: str, key: nacl.signing.SigningKey) -> httpx.Response:
        return self.http.post(f"/v1/jobs/{job_id}/cancel", auth=SignedRequestAuth(key, self.node_id))

    def pool(self, size: int) -> RunnerPool:
        pool = RunnerPool(self.config, size)
        self.pools.append(pool)
        return pool


@pytest.fixture
def node(tmp_path, redis_server, serve_app):
    queue = f"q{uuid.uuid4().hex[:8]}"
    state = tmp_path / "state"
    config = tmp_path / "node.toml"
    placer = nacl.signing.SigningKey.generate()
    config.write_text(
        f'state_dir = "{state}"\nredis_url = "unix://{redis_server}"\nqueue = "{queue}"\n'
        f'placers = ["{keys.public_key_text(placer)}"]\nfarm = "edge"\n'
        "heartbeat_interval = 0.5\ndead_after = 3.0\nstop_grace = 5.0\n"
        # High enough that a script's timeout, not its operation count, ends a runaway loop.
        "[limits]\nmax_operations = 100000000000\n"
    )
    settings = NodeSettings.load(config)
    identity = node_identity(settings)
    client, admin, stranger = (nacl.signing.SigningKey.generate() for _ in range(3))
    settings.authorized_keys_path.write_text(
        f"{keys.public_key_text(client)}  # the client\n{keys.public_key_text(admin)} deployer admin\n"
    )
    connection = redis.Redis(unix_socket_path=str(redis_server))
    service = Supervisor(settings, connection, identity, node_authorizer(settings, identity))
    # Reads are signed requests: this client signs each as the node's admin (tests of who may read sign their own).
    reader = SignedRequestAuth(admin, identity.node_id)
    with httpx.Client(base_url=serve_app(create_app(service)), timeout=30, auth=reader) as http:
        node = Node(settings, config, identity, client, admin, stranger, connection, service, http, placer)
        yield node
        for pool in node.pools:
            pool.stop(timeout=60)
    connection.close()
