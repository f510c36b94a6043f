"""The identity manager's parts: what it reads from the host, its lock, and cycles against a real ledger."""

import logging
import os
import shutil
import tempfile
import threading
from pathlib import Path

import pytest
import sqlalchemy as sa

from ledger.schema import nodes
from sal.network.drivers.mycelium.simulator import SimulatedNode, create_simulator
from tests.support.ports import free_port
from zeronode.api.ledger import Capacity
from zeronode.client.ledger import LedgerClient
from zeronode.identity_manager.host import registration
from zeronode.identity_manager.lock import AlreadyRunning, reporter_lock
from zeronode.identity_manager.manager import IdentityManager, NodeState, node_state
from zeronode.node.identity import node_identity
from zeronode.node.settings import NodeSettings
from zeronode.retry import Backoff


def meminfo_total() -> int:
    for line in Path("/proc/meminfo").read_text().splitlines():
        if line.startswith("MemTotal:"):
            return int(line.split()[1]) * 1024
    raise AssertionError("no MemTotal in /proc/meminfo")


def test_registration_reads_the_host_and_the_network(tmp_path, serve_app):
    mycelium = SimulatedNode()
    storage = Path(tempfile.mkdtemp(dir="/dev/shm"))  # another file system than the state dir's
    try:
        settings = NodeSettings(
            state_dir=tmp_path, storage_root=storage, mycelium_url=serve_app(create_simulator(mycelium)),
            farm="farm-x", owner="ops", supervisor_url="http://[400::7]:8300",
        )
        registered = registration(settings)
        assert registered.capacity == Capacity(
            vcpus=os.cpu_count(), memory=meminfo_total(), disk=shutil.disk_usage(storage).total
        )
        assert registered.mycelium_address == mycelium.ip
        assert (registered.farm, registered.owner, registered.supervisor_url) == ("farm-x", "ops", "http://[400::7]:8300")
    finally:
        shutil.rmtree(storage)
    # No storage pool and a mycelium that does not answer: the state dir's disk, no address.
    bare = registration(NodeSettings(state_dir=tmp_path, mycelium_url=f"http://127.0.0.1:{free_port()}", port=8311))
    assert bare.capacity.disk == shutil.disk_usage(tmp_path).total
    assert bare.mycelium_address is None
    assert bare.supervisor_url == "http://127.0.0.1:8311"


def test_one_reporter_per_state_dir(tmp_path):
    with reporter_lock(tmp_path):
        with pytest.raises(AlreadyRunning, match=f"pid {os.getpid()}"):
            with reporter_lock(tmp_path):
                pass
    with reporter_lock(tmp_path):  # released when its holder is done
        pass


def test_backoff_grows_to_its_cap_and_resets():
    backoff = Backoff(cap=8)
    delays = [backoff.next() for _ in range(8)]
    assert delays[0] <= 1 and all(0 < delay <= 8 for delay in delays)
    assert delays[-1] >= 0.8 * 8
    backoff.reset()
    assert backoff.next() <= 1


def healthy(_settings: NodeSettings) -> NodeState:
    return NodeState(None, None, {"redis": True, "supervisor": True, "runners": True})


def manager(settings: NodeSettings, **kwargs) -> IdentityManager:
    identity = node_identity(settings)
    kwargs.setdefault("read_state", healthy)  # this node has no Redis, supervisor or runners: see below for that
    return IdentityManager(settings, LedgerClient(settings.ledger_url, identity.key, timeout=2), threading.Event(), **kwargs)


def test_it_reports_capacity_and_a_failing_part_makes_the_node_degraded(ledger, tmp_path):
    settings = NodeSettings(state_dir=tmp_path / "state", ledger_url=ledger.url, uptime_interval=30,
                            redis_url="redis://127.0.0.1:1/0", port=1, memory_allocation_ratio=0.5)
    identity = manager(settings, clock=ledger.clock, read_state=node_state)  # as `zeronode identity` reads it
    assert identity.cycle() == 30
    node = ledger.get(f"/v1/nodes/{identity.ledger.node_id}").json()
    # Nothing answers on port 1: no Redis, no supervisor, so no runners either.
    assert (node["status"], node["health"]) == ("degraded", {"redis": False, "supervisor": False, "runners": False})
    assert node["reserved"] == {"vcpus": 0, "memory": 0, "disk": 0}  # no VMs, no volumes
    assert node["free"]["memory"] == node["capacity"]["memory"] // 2  # the memory allocation ratio applied


def test_it_registers_once_reports_and_registers_again_when_the_host_changes(ledger, tmp_path):
    ledger.clock.freeze()  # whole seconds that do not tick over between a report and its check
    settings = NodeSettings(state_dir=tmp_path / "state", ledger_url=ledger.url, uptime_interval=30, farm="farm-m")
    host = {"vcpus": 4}
    identity = manager(settings, clock=ledger.clock, read_registration=lambda s: registration(s).model_copy(
        update={"capacity": Capacity(vcpus=host["vcpus"], memory=1 << 30, disk=1 << 30)}))
    assert identity.cycle() == 30
    node_id = identity.ledger.node_id
    assert ledger.get(f"/v1/nodes/{node_id}").json()["status"] == "online"
    ledger.clock.advance(1)
    assert identity.cycle() == 30
    host["vcpus"] = 8  # more CPUs after a reboot, say
    ledger.clock.advance(1)
    assert identity.cycle() == 30
    node = ledger.get(f"/v1/nodes/{node_id}").json()
    assert (node["capacity"]["vcpus"], node["farm"]) == (8, "farm-m")
    assert node["last_report_at"] == int(ledger.clock())  # each cycle reported
    metrics = ledger.get("/metrics").text
    assert 'zeronode_ledger_node_registrations_total{kind="created"} 1.0' in metrics
    assert 'zeronode_ledger_node_registrations_total{kind="updated"} 1.0' in metrics


def test_a_ledger_that_lost_the_node_gets_it_registered_again(ledger, tmp_path):
    ledger.clock.freeze()
    identity = manager(NodeSettings(state_dir=tmp_path / "state", ledger_url=ledger.url, uptime_interval=30), clock=ledger.clock)
    assert identity.cycle() == 30
    with ledger.db.writing() as connection:
        connection.execute(sa.delete(nodes))
    ledger.clock.advance(1)
    assert 0 < identity.cycle() <= 30  # refused as unknown: retried soon
    ledger.clock.advance(1)
    assert identity.cycle() == 30
    assert ledger.get(f"/v1/nodes/{identity.ledger.node_id}").json()["last_report_at"] == int(ledger.clock())


@pytest.mark.parametrize("ledger_url", ["http://127.0.0.1:{port}", "http://ledger.invalid:8400"], ids=["down", "no-dns"])
def test_an_unreachable_ledger_is_retried_with_backoff_never_raised(tmp_path, caplog, ledger_url):
    settings = NodeSettings(state_dir=tmp_path, ledger_url=ledger_url.format(port=free_port()), uptime_interval=20)
    identity = manager(settings)
    with caplog.at_level(logging.WARNING, logger="zeronode.identity"):
        delays = [identity.cycle() for _ in range(3)]
    assert all(0 < delay <= 20 for delay in delays) and delays[0] < delays[2]
    assert [r.msg for r in caplog.records] == ["ledger unavailable, retrying"] * 3


def test_an_unexpected_error_is_logged_and_retried(tmp_path, caplog):
    def broken(_settings):
        raise RuntimeError("disk on fire")

    settings = NodeSettings(state_dir=tmp_path, ledger_url="http://127.0.0.1:1", uptime_interval=20)
    identity = manager(settings, read_registration=broken)
    with caplog.at_level(logging.ERROR, logger="zeronode.identity"):
        assert 0 < identity.cycle() <= 20
    assert caplog.records[0].msg == "identity cycle failed, retrying" and "disk on fire" in caplog.text
