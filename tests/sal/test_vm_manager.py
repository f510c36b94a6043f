"""The VM manager: VMM processes per VM (the simulator here), disks as btrfs snapshots on a real pool."""

import json
import os
import signal
import subprocess
import sys
import time

import btrfsutil
import pytest

from sal import capacity
from sal.hypervisor import record
from sal.errors import SalError
from sal.hypervisor import InvalidVmName, VmExists, VmManager, VmmFailure, VmNotFound
from sal.hypervisor.drivers.cloud_hypervisor import CloudHypervisor, HypervisorClient
from sal.storage import VolumeNotFound
from tests.support.processes import alive

from .conftest import ADMIN, ALICE, job, make_image


def test_create_start_stop_delete(vm_manager, storage):
    image = make_image(storage, "ubuntu")
    data = vm_manager.volumes.create(ALICE, "web1-data", quota_bytes=32 * 1024 * 1024)

    created = vm_manager.create(ALICE, "web1", image="ubuntu", vcpus=2, memory_mib=1024, disk_gb=1, volumes=["web1-data"])
    assert created["state"] == "Stopped" and created["pid"] is None and created["hypervisor"] == "simulated"
    root = storage.info("web1-root")
    assert root.parent_uuid == image.uuid and not root.read_only  # an instant clone of the image
    assert os.path.getsize(root.path / "disk.raw") == 1024**3  # grown to disk_gb, sparse
    assert storage.usage("web1-root").limit == 1024**3
    assert os.path.getsize(data.path / "disk.raw") == 32 * 1024 * 1024  # the data disk is the volume's quota
    assert created["disks"] == [str(root.path / "disk.raw"), str(data.path / "disk.raw")]

    started = vm_manager.start(ALICE, "web1")
    assert started["state"] == "Running" and alive(started["pid"])
    config = HypervisorClient(started["api_socket"]).info()["config"]
    assert config["payload"] == {"kernel": str(root.path / "vmlinux"), "cmdline": "console=ttyS0 root=/dev/vda1 rw"}
    assert config["memory"]["size"] == 1024**3 and config["cpus"]["boot_vcpus"] == 2
    assert vm_manager.start(ALICE, "web1")["pid"] == started["pid"]  # starting a running VM changes nothing

    stopped = vm_manager.stop(ALICE, "web1", timeout=5)
    assert stopped["state"] == "Stopped" and not alive(started["pid"])
    assert vm_manager.start(ALICE, "web1")["state"] == "Running"  # and it starts again from its record

    vm_manager.delete(ALICE, "web1")
    assert vm_manager.list(ALICE) == []
    assert not storage.exists("web1-root")
    assert storage.exists("web1-data") and (data.path / "disk.raw").exists()  # data outlives the VM
    with pytest.raises(VmNotFound):
        vm_manager.info(ALICE, "web1")


def test_a_restarted_manager_finds_its_running_vms(storage, short_dir):
    make_image(storage)
    state_dir = short_dir / "vms"
    first = VmManager(state_dir, storage, CloudHypervisor.simulator())
    first.create(ALICE, "web1", image="ubuntu")
    first.create(ALICE, "web2", image="ubuntu")
    pid = first.start(ALICE, "web1")["pid"]
    del first  # what a runner restart leaves: the files and the VMM process

    second = VmManager(state_dir, storage, CloudHypervisor.simulator())
    try:
        assert [(vm["name"], vm["state"], vm["pid"]) for vm in second.list(ALICE)] == [
            ("web1", "Running", pid), ("web2", "Stopped", None)
        ]
        second.stop(ALICE, "web1", timeout=1)
        assert not alive(pid)
    finally:
        second.stop_all(timeout=1)


def test_a_vm_outlives_the_runner_process_that_started_it(storage, short_dir):
    """VMMs run in their own session: killing the process that started one leaves the VM running."""
    make_image(storage)
    state_dir = short_dir / "vms"
    starter = (
        "import sys; from pathlib import Path; from sal.storage.drivers.btrfs import BtrfsStorage;"
        "from sal.hypervisor import VmManager; from sal.hypervisor.drivers.cloud_hypervisor import CloudHypervisor;"
        "from sal.tenancy import Caller; alice = Caller('alice-key');"
        f"m = VmManager(Path({str(state_dir)!r}), BtrfsStorage(Path({str(storage.root)!r})), CloudHypervisor.simulator());"
        "m.create(alice, 'web1', image='ubuntu'); m.start(alice, 'web1'); print('up', flush=True); sys.stdin.read()"
    )
    runner = subprocess.Popen([sys.executable, "-c", starter], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    assert runner.stdout.readline().strip() == "up"
    runner.send_signal(signal.SIGKILL)
    runner.wait()
    manager = VmManager(state_dir, storage, CloudHypervisor.simulator())
    try:
        info = manager.info(ALICE, "web1")
        assert info["state"] == "Running" and alive(info["pid"])
    finally:
        manager.stop_all(timeout=1)


def test_a_dead_vmm_shows_as_stopped_and_starts_again(vm_manager, storage):
    make_image(storage)
    vm_manager.create(ALICE, "web1", image="ubuntu")
    pid = vm_manager.start(ALICE, "web1")["pid"]
    os.kill(pid, signal.SIGKILL)
    deadline = time.monotonic() + 5
    while vm_manager.info(ALICE, "web1")["state"] != "Stopped":
        assert time.monotonic() < deadline
        time.sleep(0.02)
    restarted = vm_manager.start(ALICE, "web1")
    assert restarted["state"] == "Running" and restarted["pid"] != pid


def test_a_reused_pid_is_not_taken_for_the_vmm(vm_manager, storage, short_dir):
    make_image(storage)
    vm_manager.create(ALICE, "web1", image="ubuntu")
    stranger = subprocess.Popen(["sleep", "30"])
    try:
        (short_dir / "vms" / "web1" / "vmm.pid").write_text(str(stranger.pid))
        assert vm_manager.info(ALICE, "web1")["state"] == "Stopped"
        vm_manager.stop(ALICE, "web1")
        assert stranger.poll() is None  # stop never signals a process that is not the VM's VMM
    finally:
        stranger.kill()
        stranger.wait()


def test_images_without_a_kernel_boot_the_node_firmware(storage, short_dir):
    make_image(storage, "debian", kernel=False)
    firmware = short_dir / "hypervisor-fw"
    firmware.write_bytes(b"fw")
    without = VmManager(short_dir / "vms", storage, CloudHypervisor.simulator())
    with pytest.raises(SalError, match="no vmlinux and the node has no vm_firmware"):
        without.create(ALICE, "web1", image="debian")
    assert not storage.exists("web1-root") and without.list(ALICE) == []  # a refused create leaves nothing

    manager = VmManager(short_dir / "vms", storage, CloudHypervisor.simulator(), firmware=firmware)
    try:
        socket = manager.create(ALICE, "web1", image="debian")["api_socket"]
        manager.start(ALICE, "web1")
        assert HypervisorClient(socket).info()["config"]["payload"] == {"firmware": str(firmware)}
        firmware.unlink()
        manager.stop(ALICE, "web1")
        with pytest.raises(VmmFailure, match="cannot open firmware"):  # the VMM's boot error reaches the caller
            manager.start(ALICE, "web1")
        assert manager.info(ALICE, "web1")["state"] == "Stopped" and manager.info(ALICE, "web1")["pid"] is None
    finally:
        manager.stop_all(timeout=1)


def test_bad_requests_are_refused_before_anything_is_made(vm_manager, storage):
    make_image(storage)
    vm_manager.volumes.create(ALICE, "not-an-image")
    vm_manager.volumes.create(ALICE, "no-quota")
    cases = [
        (dict(name="Web_1", image="ubuntu"), InvalidVmName, "invalid VM name"),
        (dict(name="../etc", image="ubuntu"), InvalidVmName, "invalid VM name"),
        (dict(name="web1", image="nope"), VolumeNotFound, "nope"),
        (dict(name="web1", image="not-an-image"), SalError, "has no disk.raw"),
        (dict(name="web1", image="ubuntu", volumes=["no-quota"]), SalError, "has no quota"),
        (dict(name="web1", image="ubuntu", volumes=["nope"]), VolumeNotFound, "nope"),
        (dict(name="web1", image="ubuntu", vcpus=0), SalError, "vcpus must be 1-"),
        (dict(name="web1", image="ubuntu", vcpus=100_000), SalError, r"vcpus must be 1-\d+ \(this node's CPUs\)"),
        (dict(name="web1", image="ubuntu", memory_mib=8), SalError, "memory_mb must be 64-"),
        (dict(name="web1", image="ubuntu", memory_mib=1 << 40), SalError, r"\(this node's memory\)"),
        (dict(name="web1", image="ubuntu", disk_gb=0), SalError, "disk_gb must be 1-"),
        (dict(name="web1", image="ubuntu", disk_gb=1 << 20), SalError, r"\(this node's storage pool\)"),
        (dict(name="web1", image="ubuntu", mycelium=True), SalError, "this node has no VM network"),
    ]
    for arguments, error, message in cases:
        with pytest.raises(error, match=message):
            vm_manager.create(ALICE, **arguments)
    with pytest.raises(TypeError):  # no host interface is ever named by a caller: zeronode makes and names taps
        vm_manager.create(ADMIN, "web1", image="ubuntu", taps=["eth0"])
    assert vm_manager.list(ALICE) == []
    assert sorted(v.name for v in storage.list()) == ["no-quota", "not-an-image", "ubuntu"]

    vm_manager.create(ALICE, "web1", image="ubuntu")
    with pytest.raises(VmExists):
        vm_manager.create(ALICE, "web1", image="ubuntu")
    vm_manager.volumes.create(ALICE, "data", quota_bytes=1024 * 1024)
    vm_manager.create(ALICE, "web2", image="ubuntu", volumes=["data"])
    with pytest.raises(SalError, match="attached to VM 'web2'"):
        vm_manager.create(ALICE, "web3", image="ubuntu", volumes=["data"])
    with pytest.raises(SalError, match="attached to VM 'web1'"):  # a root disk is attached to its VM too
        vm_manager.create(ALICE, "web3", image="ubuntu", volumes=["web1-root"])
    for operation in (vm_manager.start, vm_manager.stop, vm_manager.delete, vm_manager.info):
        with pytest.raises(VmNotFound, match="no VM named 'ghost'"):
            operation(ALICE, "ghost")


def test_the_record_on_disk_is_what_a_restart_needs(vm_manager, storage, short_dir):
    make_image(storage)
    vm_manager.create(ALICE, "web1", image="ubuntu", memory_mib=256)
    directory = short_dir / "vms" / "web1"
    assert oct(directory.stat().st_mode & 0o777) == "0o700"
    record = json.loads((directory / "vm.json").read_text())
    assert record["root_volume"] == "web1-root" and record["spec"]["memory_mib"] == 256
    assert btrfsutil.is_subvolume(storage.root / "web1-root")


def test_an_unusable_state_dir_is_refused(storage, tmp_path):
    manager = VmManager(tmp_path / ("x" * 90), storage, CloudHypervisor.simulator())
    make_image(storage)
    with pytest.raises(SalError, match="too long for the VM's API socket"):
        manager.create(ALICE, "web1", image="ubuntu")


def test_vms_beyond_the_allocation_ratios_are_refused_and_stopped_ones_still_count(storage, short_dir):
    cpus = os.cpu_count()
    manager = VmManager(short_dir / "vms", storage, CloudHypervisor.simulator(), ratios=capacity.Ratios(vcpus=1.0))
    make_image(storage, "ubuntu")
    try:
        manager.create(ALICE, "web1", image="ubuntu", vcpus=cpus, memory_mib=64)  # every CPU, held while stopped
        with pytest.raises(capacity.OverCommitted, match=r"0 vCPUs free \(its vcpus allocation ratio 1 applied\)"):
            manager.create(ALICE, "web2", image="ubuntu", vcpus=1, memory_mib=64)
        assert not storage.exists("web2-root") and [vm["name"] for vm in manager.list(ALICE)] == ["web1"]
        manager.delete(ALICE, "web1")
        manager.create(ALICE, "web2", image="ubuntu", vcpus=1, memory_mib=64)  # room again
        total = capacity.host_total(storage.root)
        held = record.held(short_dir / "vms") + capacity.quotas(storage)
        assert (held.vcpus, held.memory) == (1, 64 << 20)
        assert capacity.free(total, held, capacity.Ratios(vcpus=1.0)).vcpus == cpus - 1
    finally:
        manager.stop_all(timeout=1)


def test_volume_quotas_beyond_the_pool_are_refused(storage):
    from sal.storage.functions import functions

    volume_create = functions(storage, capacity.Ratios())["volume_create"]
    pool = capacity.host_total(storage.root).disk >> 20
    with job(ALICE):
        volume_create({"name": "half", "quota_mb": pool // 2})
        with pytest.raises(capacity.OverCommitted, match="MiB of disk free"):
            volume_create({"name": "more", "quota_mb": pool // 2 + 2})
        assert not storage.exists("more")
        volume_create({"name": "unbounded"})  # no quota, no promise
