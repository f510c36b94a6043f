"""Hypervisor fixtures: simulated VMMs as real processes on UNIX sockets, VM managers on a real btrfs;
and the callers the SALs act for: two deployers and a node admin, in Python (Caller) and as a job's signer."""

from __future__ import annotations

import contextlib
import subprocess
import sys
import time

import pytest

import rhai
from sal import registry
from sal.hypervisor import VmManager, VmmUnreachable
from sal.hypervisor.drivers.cloud_hypervisor import CloudHypervisor, HypervisorClient
from sal.storage import OwnedStorage
from sal.storage.drivers.btrfs import BtrfsStorage
from sal.tenancy import OPERATOR, Caller
from zeronode.dev import guest

# Two tenants of one node and its admin. Keys are opaque to the SALs: any string does.
ALICE, BOB = Caller(owner="alice-key"), Caller(owner="bob-key")
ADMIN = Caller(owner="admin-key", admin=True)


@contextlib.contextmanager
def job(caller: Caller = ALICE):
    """Run the SAL functions called inside as the runner runs a script signed by `caller`."""
    context = registry.JobContext(
        job_id=f"job-of-{caller.owner}", signer=caller.owner, node_id="node-1", deadline=time.monotonic() + 60,
        admin=caller.admin,
    )
    with registry.running(context):
        yield


@pytest.fixture
def vmm(short_dir):
    """A simulated cloud-hypervisor process, started as the VM manager starts one; its client."""
    socket = short_dir / "api.sock"
    process = subprocess.Popen(
        [sys.executable, "-m", "sal.hypervisor.drivers.cloud_hypervisor.simulator", "--api-socket", f"path={socket}"],
        stderr=subprocess.DEVNULL,
    )
    client = HypervisorClient(socket)
    deadline = time.monotonic() + 20
    while True:
        try:
            client.ping()
            break
        except VmmUnreachable:
            assert process.poll() is None and time.monotonic() < deadline, "the simulator did not start"
            time.sleep(0.02)
    yield client
    client.close()
    process.kill()
    process.wait()


def make_image(storage: BtrfsStorage, name: str = "ubuntu", *, kernel: bool = True, disk_mb: int = 64,
               shared: bool = True):
    """An image volume as the VM manager expects one: disk.raw, and a kernel unless told otherwise. Made by the
    driver, outside any script, it has no owner; then shared, as the operator shares images (`zeronode up` too),
    unless told otherwise: unshared, it is the node admins' alone."""
    volume = storage.create(name)
    with open(volume.path / "disk.raw", "wb") as disk:
        disk.truncate(disk_mb * 1024 * 1024)
    if kernel:
        (volume.path / "vmlinux").write_bytes(b"\x7fELF not really a kernel")
        (volume.path / "cmdline").write_text("console=ttyS0 root=/dev/vda1 rw\n")
    if shared:
        OwnedStorage(storage).share(OPERATOR, name)
    return volume


@pytest.fixture
def storage(pool_dir):
    return BtrfsStorage(pool_dir)


@pytest.fixture
def tiny_storage(pool_dir, tiny_guest):
    """A pool with the shared image "tiny": zeronode's tiny guest, which boots for real (QEMU/TCG)."""
    storage = BtrfsStorage(pool_dir)
    image = storage.create("tiny")
    guest.install_image(image.path, tiny_guest)
    OwnedStorage(storage).share(OPERATOR, "tiny")
    return storage


@pytest.fixture
def vm_manager(storage, short_dir):
    manager = VmManager(short_dir / "vms", storage, CloudHypervisor.simulator())
    yield manager
    manager.stop_all(timeout=1)


@pytest.fixture
def vm_engine(storage, vm_manager):
    """A Rhai engine with storage and VMs (simulated VMMs), and an image volume "ubuntu"."""
    make_image(storage)
    engine = rhai.Engine()
    registry.register_all(engine, registry.NodeSals(storage=storage, vms=vm_manager))
    return engine
