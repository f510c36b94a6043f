"""A deployment that leaves a real guest running, through the node's real processes: `zeronode supervisor`,
`zeronode runner --pool 1` and `zeronode vm-keeper`, with the qemu driver (TCG) and zeronode's tiny guest.

The guest's console and events are read back through the supervisor with signed requests, by the VM's owner
(and a node admin), never by another signer; the keeper brings a crashed guest back."""

from __future__ import annotations

import os
import signal

import httpx
import pytest

from sal.storage import OwnedStorage
from sal.storage.drivers.btrfs import BtrfsStorage
from sal.tenancy import OPERATOR
from tests.support.health import wait_healthy
from tests.support.ports import free_port
from tests.support.waiting import wait_until
from zeronode.dev import guest
from zeronode.protocol.signed_requests import SignedRequestAuth

DEPLOY = """
vm_create(#{ name: "web1", image: "tiny", memory_mb: 128, restart: "on-failure" });
let vm = vm_start("web1");
#{ state: vm.state, hypervisor: vm.hypervisor, accel: vm.accel }
"""


@pytest.fixture
def qemu_node(node, pool_dir, short_dir, tiny_guest, services):
    """The test node with storage, QEMU (TCG), its supervisor over HTTP, a runner and the VM keeper."""
    image = BtrfsStorage(pool_dir).create("tiny")
    guest.install_image(image.path, tiny_guest)
    OwnedStorage(BtrfsStorage(pool_dir)).share(OPERATOR, "tiny")
    port = free_port()
    node.config.write_text(  # at the top: the file ends in a [limits] table
        f'storage_root = "{pool_dir}"\nvm_dir = "{short_dir / "vms"}"\nhypervisor = "qemu"\nqemu_acceleration = "tcg"\n'
        f'port = {port}\n' + node.config.read_text())
    supervisor = services("supervisor", "--config", node.config)
    node.url = f"http://127.0.0.1:{port}"
    try:
        wait_healthy(node.url, process=supervisor.process)
    except AssertionError:
        raise AssertionError(f"the supervisor is not healthy: {supervisor.logs[-5:]}") from None
    node.pool(1)
    node.keeper = services("vm-keeper", "--config", node.config, "--interval", "0.3")
    yield node
    from sal.registry import NodeSals
    from zeronode.node.settings import NodeSettings

    NodeSals.from_settings(NodeSettings.load(node.config)).vms.stop_all(timeout=1)


def read(node, path: str, key, **params) -> httpx.Response:
    return httpx.get(f"{node.url}{path}", params=params, auth=SignedRequestAuth(key, node.node_id), timeout=10)


def console(node, key=None, **params) -> str:
    answer = read(node, "/v1/vms/web1/console", key or node.client, **params)
    assert answer.status_code == 200, answer.text
    return answer.json()["text"]


def test_a_deployment_leaves_a_real_guest_running_whose_owner_reads_its_console(qemu_node):
    node = qemu_node
    posted = httpx.post(f"{node.url}/v1/jobs", content=node.sign(DEPLOY, timeout=120).to_json(), timeout=10)
    assert posted.status_code == 202, posted.text
    job = node.wait(posted.json()["job_id"], timeout=120)
    assert job.status == "finished", job
    assert job.result == {"state": "Running", "hypervisor": "qemu", "accel": "tcg"}

    seen = wait_until(lambda: "ZN-READY" in (text := console(node, lines=1000)) and text, 90, "the guest's ZN-READY")
    assert "ZN-HOSTNAME" in seen and "ZN-DISK vda" in seen  # a real kernel and userspace wrote these
    assert console(node, node.admin, lines=5)  # a node admin reads every tenant's VM
    for stranger_reads in ("/v1/vms/web1/console", "/v1/vms/web1/events"):
        answer = read(node, stranger_reads, node.stranger)  # another signer: as if there were no such VM
        assert answer.status_code == 404 and answer.json()["reason"] == "not_found"
    assert read(node, "/v1/vms/web1/console", node.client, lines=0).status_code == 422
    assert httpx.get(f"{node.url}/v1/vms/web1/console", timeout=10).status_code == 401  # reads are signed

    # A follower: from where the console ends, then what comes (nothing yet).
    answer = read(node, "/v1/vms/web1/console", node.client).json()
    after = read(node, "/v1/vms/web1/console", node.client, offset=answer["offset"]).json()
    assert after["text"] == "" and after["offset"] == answer["offset"]

    # The VMM crashes; the keeper starts the guest again, and the crashed boot's console is kept.
    pid = wait_until(lambda: node_vm_pid(node), 10, "the VM's pid")
    os.kill(pid, signal.SIGKILL)
    def events() -> list[str]:
        return [event["event"] for event in read(node, "/v1/vms/web1/events", node.client).json()["events"]]

    wait_until(lambda: "restarted" in events(), 60, "the keeper's restart")
    assert events() == ["created", "started", "restarted"] and node_vm_pid(node) not in (None, pid)
    wait_until(lambda: "ZN-READY" in console(node), 90, "the restarted guest's ZN-READY")
    assert "ZN-READY" in console(node, boot=1, lines=1000)


def node_vm_pid(node) -> int | None:
    from sal.registry import NodeSals
    from sal.tenancy import OPERATOR as ADMIN
    from zeronode.node.settings import NodeSettings

    return NodeSals.from_settings(NodeSettings.load(node.config)).vms.info(ADMIN, "web1")["pid"]
