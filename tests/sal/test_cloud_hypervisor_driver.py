"""The cloud-hypervisor driver on simulated VMMs (real processes, under their executors), for each release the
simulator plays: start and stop (by ACPI, or forced), the VM's life between, disks, snapshots, its fingerprint."""

from __future__ import annotations

import dataclasses
import time
from pathlib import Path

import pytest

from sal.context import JobContext, running
from sal.errors import SalError
from sal.hypervisor import DeviceConflict, DiskSpec, InvalidVmState, TapSpec, VmmExiting, VmmFailure, VmNotCreated, VmSpec
from sal.hypervisor.base import FEATURES
from sal.hypervisor.drivers.cloud_hypervisor import CloudHypervisor, HypervisorClient
from sal.hypervisor.drivers.cloud_hypervisor.simulator import ACPI_IGNORED, RELEASES
from sal.hypervisor.drivers.cloud_hypervisor.vmm import socket_path
from tests.support.waiting import wait_until

BOOT_LINE = "zeronode simulator: guest booted (boot {})"


# Where the releases answer alike (their differences are tests/sal/test_cloud_hypervisor_releases.py's), one
# release is enough for the driver: the tests where the driver reads their different statuses run on both.
ONE_RELEASE = pytest.mark.parametrize("driver", ["v53.0"], indirect=True)


@pytest.fixture(params=sorted(RELEASES))
def driver(request):
    driver = CloudHypervisor.simulator(request.param)
    yield driver


@pytest.fixture
def vm_dir(short_dir, driver):
    directory = short_dir / "vm"
    directory.mkdir()
    yield directory
    driver.stop(directory, timeout=0)


@pytest.fixture
def spec(vm_dir) -> VmSpec:
    return spec_in(vm_dir)


def spec_in(vm_dir: Path, cmdline: str = "console=ttyS0") -> VmSpec:
    kernel, disk, data = vm_dir / "vmlinux", vm_dir / "root.raw", vm_dir / "data.raw"
    for path in (kernel, disk, data):
        path.write_bytes(b"\0" * 512)
    return VmSpec(kernel=str(kernel), cmdline=cmdline, disks=(DiskSpec(path=str(disk), id="root"),),
                  taps=(TapSpec(tap="tap0", id="nic0"),), serial_file=str(vm_dir / "serial.log"))


def serial(spec: VmSpec) -> list[str]:
    return Path(spec.serial_file).read_text().splitlines()


def client_of(vm_dir: Path) -> HypervisorClient:
    return HypervisorClient(socket_path(vm_dir))


@pytest.fixture
def sent(monkeypatch) -> list[str]:
    """The power requests the driver sends, in order: power_button (ACPI), shutdown (vm.shutdown, the forced
    power-off) and shutdown_vmm (the VMM told to exit)."""
    requests: list[str] = []
    for name in ("power_button", "shutdown", "shutdown_vmm"):
        original = getattr(HypervisorClient, name)

        def recorded(client, *args, _name=name, _original=original, **kwargs):
            requests.append(_name)
            return _original(client, *args, **kwargs)

        monkeypatch.setattr(HypervisorClient, name, recorded)
    return requests


def stopped(driver: CloudHypervisor, vm_dir: Path) -> bool:
    return driver.state(vm_dir) == "Stopped" and driver.pid(vm_dir) is None and not socket_path(vm_dir).exists()


# -- start and stop ----------------------------------------------------------------------------


@ONE_RELEASE
def test_stop_presses_the_power_button_and_the_vmm_exits_by_itself(driver, vm_dir, spec, sent):
    driver.start(vm_dir, spec)
    assert driver.state(vm_dir) == "Running" and driver.pid(vm_dir) is not None
    driver.stop(vm_dir, timeout=60)
    assert sent == ["power_button"]  # nothing forced: the guest powered off and its VMM exited
    assert stopped(driver, vm_dir)
    assert driver.ending(vm_dir).kind == "exited"


@ONE_RELEASE
def test_a_guest_that_ignores_acpi_is_forced_off_after_the_timeout(driver, vm_dir, sent):
    spec = spec_in(vm_dir, cmdline=f"console=ttyS0 {ACPI_IGNORED}")
    driver.start(vm_dir, spec)
    driver.stop(vm_dir, timeout=0.2)
    assert sent == ["power_button", "shutdown", "shutdown_vmm"]
    assert stopped(driver, vm_dir)


@ONE_RELEASE
def test_a_cancelled_job_does_not_wait_for_the_guest(driver, vm_dir, sent):
    class Cancelled:
        cancelled = True

    driver.start(vm_dir, spec_in(vm_dir, cmdline=f"console=ttyS0 {ACPI_IGNORED}"))
    job = JobContext(job_id="j", signer="s", node_id="n", deadline=time.monotonic() + 600, cancel=Cancelled())
    with running(job):
        driver.stop(vm_dir, timeout=600)  # would wait ten minutes for a guest that ignores the button
    assert sent == ["power_button", "shutdown", "shutdown_vmm"]
    assert stopped(driver, vm_dir)


@ONE_RELEASE
def test_a_paused_or_created_vm_is_forced_off_at_once(driver, vm_dir, spec, sent):
    driver.start(vm_dir, spec)
    driver.pause(vm_dir)
    driver.stop(vm_dir, timeout=600)
    assert sent == ["shutdown", "shutdown_vmm"] and stopped(driver, vm_dir)

    driver.start(vm_dir, spec)
    with client_of(vm_dir) as client:
        client.shutdown()
    sent.clear()
    driver.stop(vm_dir, timeout=600)
    assert sent == ["shutdown", "shutdown_vmm"] and stopped(driver, vm_dir)


@ONE_RELEASE
def test_stop_takes_a_vmm_that_vanishes_on_the_way(driver, vm_dir, spec):
    driver.start(vm_dir, spec)
    with client_of(vm_dir) as client:
        client.power_button()  # the guest powers off: its VMM is going
    assert driver.state(vm_dir) == "Stopped"  # on its way out (500 "receiving on a closed channel"), or gone
    driver.stop(vm_dir, timeout=60)
    assert stopped(driver, vm_dir)
    driver.stop(vm_dir, timeout=60)  # nothing runs: nothing to do

    driver.start(vm_dir, spec)  # and a VMM already gone when stop comes leaves nothing behind either
    with client_of(vm_dir) as client:
        client.power_button()
    wait_until(lambda: driver.pid(vm_dir) is None, 30, "the VMM to exit after its guest powered off")
    driver.stop(vm_dir, timeout=60)
    assert stopped(driver, vm_dir)


@ONE_RELEASE
def test_a_vmm_on_its_way_out_is_stopped_and_start_replaces_it(driver, vm_dir, spec, monkeypatch):
    driver.start(vm_dir, spec)
    first = driver.pid(vm_dir)

    def exiting(client):
        raise VmmExiting("API response receive error; receiving on a closed channel", 500)

    with monkeypatch.context() as patched:  # what the VMM answers between its guest's power-off and its exit
        patched.setattr(HypervisorClient, "state", exiting)
        patched.setattr(HypervisorClient, "pause", exiting)
        assert driver.state(vm_dir) == "Stopped"
        with pytest.raises(InvalidVmState, match="Stopped: its guest powered off"):
            driver.pause(vm_dir)
    with monkeypatch.context() as patched:
        patched.setattr(HypervisorClient, "state", exiting)
        driver.start(vm_dir, spec)
    assert driver.state(vm_dir) == "Running" and driver.pid(vm_dir) not in (None, first)


@ONE_RELEASE
def test_start_after_a_shutdown_boots_the_vm_the_vmm_kept(driver, vm_dir, spec):
    driver.start(vm_dir, spec)
    pid = driver.pid(vm_dir)
    with client_of(vm_dir) as client:
        client.shutdown()
    assert driver.state(vm_dir) == "Created"
    driver.start(vm_dir, spec)
    assert driver.state(vm_dir) == "Running" and driver.pid(vm_dir) == pid  # booted again, not a new VMM
    assert serial(spec) == [BOOT_LINE.format(2)]


@ONE_RELEASE
def test_start_resumes_a_paused_vm_and_leaves_a_running_one(driver, vm_dir, spec):
    driver.start(vm_dir, spec)
    pid = driver.pid(vm_dir)
    driver.pause(vm_dir)
    driver.start(vm_dir, spec)
    assert driver.state(vm_dir) == "Running"
    driver.start(vm_dir, spec)
    assert driver.state(vm_dir) == "Running" and driver.pid(vm_dir) == pid
    assert serial(spec) == [BOOT_LINE.format(1)]


def test_a_failed_start_leaves_no_vmm_behind(driver, vm_dir, spec):
    twice = DiskSpec(path=spec.disks[0].path.replace("root", "data"), id="root")
    with pytest.raises(DeviceConflict, match="Identifier root is not unique"):  # taken at create, refused at boot
        driver.start(vm_dir, dataclasses.replace(spec, disks=(*spec.disks, twice)))
    assert stopped(driver, vm_dir)
    Path(spec.kernel).unlink()
    with pytest.raises(VmmFailure, match="cannot open kernel"):
        driver.start(vm_dir, spec)
    assert stopped(driver, vm_dir)


# -- between start and stop --------------------------------------------------------------------


@ONE_RELEASE
def test_pause_resume_and_reboot(driver, vm_dir, spec):
    with pytest.raises(InvalidVmState, match="Stopped"):
        driver.pause(vm_dir)
    driver.start(vm_dir, spec)
    driver.pause(vm_dir)
    assert driver.state(vm_dir) == "Paused"
    with pytest.raises(InvalidVmState, match=r"InvalidStateTransition\(Paused, Paused\)"):
        driver.pause(vm_dir)
    driver.resume(vm_dir)
    assert driver.state(vm_dir) == "Running"
    with pytest.raises(InvalidVmState, match=r"InvalidStateTransition\(Running, Running\)"):
        driver.resume(vm_dir)
    driver.reboot(vm_dir)
    assert driver.state(vm_dir) == "Running" and serial(spec) == [BOOT_LINE.format(2)]
    driver.pause(vm_dir)
    driver.reboot(vm_dir)  # a paused VM reboots to Running
    assert driver.state(vm_dir) == "Running" and serial(spec) == [BOOT_LINE.format(3)]

    with client_of(vm_dir) as client:
        client.shutdown()
    with pytest.raises(InvalidVmState, match="not booted"):  # the VMM's 404 for a created VM
        driver.reboot(vm_dir)
    with pytest.raises(InvalidVmState, match="VM is not running"):
        driver.pause(vm_dir)


def test_disks_attach_and_detach(driver, vm_dir, spec):
    data = DiskSpec(path=spec.disks[0].path.replace("root", "data"), id="data")
    with pytest.raises(InvalidVmState, match="Stopped"):
        driver.add_disk(vm_dir, data)
    driver.start(vm_dir, spec)
    driver.add_disk(vm_dir, data)
    with client_of(vm_dir) as client:
        assert "data" in client.info()["device_tree"]
    with pytest.raises(DeviceConflict, match="is not unique"):
        driver.add_disk(vm_dir, DiskSpec(path=spec.disks[0].path, id="data"))
    with pytest.raises(DeviceConflict, match="already locked"):
        driver.add_disk(vm_dir, DiskSpec(path=data.path, id="again"))
    driver.remove_disk(vm_dir, "data")
    with pytest.raises(VmNotCreated, match="no disk 'data'"):
        driver.remove_disk(vm_dir, "data")
    with pytest.raises(VmNotCreated, match="no disk 'nic0'"):  # a NIC is not a disk
        driver.remove_disk(vm_dir, "nic0")

    with client_of(vm_dir) as client:
        client.shutdown()
    driver.add_disk(vm_dir, data)  # created: into its config, plugged at boot
    driver.start(vm_dir, spec)
    with client_of(vm_dir) as client:
        assert "data" in client.info()["device_tree"]


def test_a_paused_vm_is_snapshotted_and_restored_paused(driver, vm_dir, spec, short_dir):
    snapshot = short_dir / "snapshot"
    snapshot.mkdir()
    driver.start(vm_dir, spec)
    with pytest.raises(InvalidVmState, match="while VM is running"):
        driver.snapshot(vm_dir, snapshot)
    driver.pause(vm_dir)
    (snapshot / "left-over").write_text("")
    with pytest.raises(SalError, match="empty directory"):
        driver.snapshot(vm_dir, snapshot)
    (snapshot / "left-over").unlink()
    driver.snapshot(vm_dir, snapshot)
    assert (snapshot / "config.json").is_file()

    with pytest.raises(InvalidVmState, match="stop it before restoring"):
        driver.restore(vm_dir, spec, snapshot)
    driver.stop(vm_dir, timeout=0)
    driver.restore(vm_dir, spec, snapshot)
    assert driver.state(vm_dir) == "Paused"
    driver.resume(vm_dir)
    assert driver.state(vm_dir) == "Running"


def test_a_failed_restore_leaves_no_vmm_behind(driver, vm_dir, spec, short_dir):
    nothing = short_dir / "nothing-saved"
    nothing.mkdir()
    with pytest.raises(VmmFailure, match="cannot read the snapshot"):
        driver.restore(vm_dir, spec, nothing)
    assert stopped(driver, vm_dir)


# -- what it says of itself ------------------------------------------------------------------


def test_the_fingerprint_lists_every_feature_and_the_simulated_releases_version(driver, vm_dir, spec):
    fingerprint = driver.fingerprint()
    assert fingerprint.features == driver.features == tuple(FEATURES)  # every one of the interface's
    assert fingerprint.simulated
    driver.start(vm_dir, spec)
    with client_of(vm_dir) as client:  # what the simulated release's binary says it is
        assert fingerprint.version == client.ping()["build_version"] == RELEASES[driver.release].build_version


def test_the_simulator_plays_only_the_releases_it_knows():
    assert CloudHypervisor.simulator().fingerprint().version == "v53.0"  # the measured release, unless told
    with pytest.raises(SalError, match="not 'v1.0'"):
        CloudHypervisor.simulator("v1.0")
