"""A VM's life beyond start and stop, in the VM layer (sal.hypervisor.manager, lifecycle, keeper, console), on
simulated cloud-hypervisor VMMs (real processes): restart policies the keeper enforces and gives up on, consoles
kept per boot, snapshots, and what is refused where the driver cannot. The same with real guests on QEMU:
tests/sal/test_qemu.py."""

from __future__ import annotations

import os
import signal

import pytest

from sal.errors import SalError
from sal.hypervisor import InvalidVmState, Unsupported
from sal.hypervisor.drivers.cloud_hypervisor import HypervisorClient
from sal.hypervisor.keeper import RestartLimits, VmKeeper
from sal.hypervisor.lifecycle import Want
from tests.support.waiting import wait_until

from .conftest import ALICE, make_image

NO_WAIT = RestartLimits(max_restarts=2, backoff_base=0)


@pytest.fixture
def vms(vm_manager, storage):
    make_image(storage)
    return vm_manager


def crash(vms, name: str) -> None:
    os.kill(vms.info(ALICE, name)["pid"], signal.SIGKILL)
    wait_until(lambda: vms.info(ALICE, name)["state"] == "Stopped", 10, f"{name}'s VMM to be gone")


def power_off_from_inside(vms, name: str) -> None:
    """The guest powers itself off (the ACPI button pressed from within, as far as the VMM can tell): its VMM exits 0."""
    with HypervisorClient(vms.info(ALICE, name)["api_socket"]) as client:
        client.power_button()
    wait_until(lambda: vms.info(ALICE, name)["state"] == "Stopped", 10, f"{name}'s VMM to exit")


def events(vms, name: str) -> list[str]:
    return [event["event"] for event in vms.events(ALICE, name)]


def test_on_failure_restarts_a_crash_with_backoff_until_it_gives_up(vms):
    clock = [1000.0]
    keeper = VmKeeper(vms, RestartLimits(max_restarts=2, backoff_base=5), clock=lambda: clock[0])
    vms.create(ALICE, "web1", image="ubuntu")
    vms.start(ALICE, "web1")
    crash(vms, "web1")
    assert keeper.tick() == {"web1": "restarted"}  # the first restart waits for nothing
    crash(vms, "web1")
    assert keeper.tick() == {}  # backing off: 5 s after the first restart
    clock[0] += 5
    assert keeper.tick() == {"web1": "restarted"}
    crash(vms, "web1")
    clock[0] += 60
    assert keeper.tick() == {"web1": "gave up"}  # a third crash within the window: no more
    info = vms.info(ALICE, "web1")
    assert info["state"] == "Stopped" and not info["should_run"] and "gave up" in info["gave_up"]
    assert events(vms, "web1") == ["created", "started", "restarted", "restarted", "gave_up"]
    assert keeper.tick() == {}
    assert vms.start(ALICE, "web1")["gave_up"] is None  # a start forgets it


def test_a_guest_that_powers_itself_off_stays_off_unless_its_policy_is_always(vms):
    keeper = VmKeeper(vms, NO_WAIT)
    for name, restart in (("brief", "on-failure"), ("firm", "always"), ("once", "never")):
        vms.create(ALICE, name, image="ubuntu", restart=restart)
        vms.start(ALICE, name)
        power_off_from_inside(vms, name)
    assert keeper.tick() == {"brief": "left stopped", "firm": "restarted", "once": "left stopped"}
    assert vms.info(ALICE, "firm")["state"] == "Running"
    assert events(vms, "brief")[-1] == "exited" and events(vms, "once")[-1] == "exited"
    crash(vms, "firm")
    vms.start(ALICE, "once")
    crash(vms, "once")  # `never`: not even after a crash
    assert keeper.tick() == {"firm": "restarted", "once": "left stopped"}
    assert vms.events(ALICE, "once")[-1]["cause"] == "its VMM was killed by signal 9"


def test_a_vm_stopped_by_its_owner_is_never_started_by_the_keeper(vms):
    keeper = VmKeeper(vms, NO_WAIT)
    vms.create(ALICE, "web1", image="ubuntu", restart="always")
    vms.start(ALICE, "web1")
    vms.stop(ALICE, "web1", timeout=5)
    assert keeper.tick() == {} and vms.info(ALICE, "web1")["state"] == "Stopped"
    assert not Want.load(vms.state_dir / "web1").run


def test_after_a_host_reboot_what_should_run_runs_without_counting_a_failure(vms):
    keeper = VmKeeper(vms, RestartLimits(max_restarts=1, backoff_base=100))
    vms.create(ALICE, "web1", image="ubuntu")
    vms.start(ALICE, "web1")
    vms.driver.vmms.end(vms.state_dir / "web1", grace=0)  # the host went down with its VMMs...
    (vms.state_dir / "web1" / "exit.json").unlink()  # ...and no executor saw them end
    started = vms.state_dir / "web1" / "started.json"
    started.write_text(started.read_text().replace('"boot_id": "', '"boot_id": "an-earlier-boot-'))
    assert keeper.tick() == {"web1": "restarted"}
    assert vms.events(ALICE, "web1")[-1]["cause"] == "the node restarted"
    assert Want.load(vms.state_dir / "web1").restarts == []  # not the VM's failure: no backoff, no count


def test_the_console_of_each_boot_is_kept(vms):
    vms.create(ALICE, "web1", image="ubuntu")
    vms.start(ALICE, "web1")
    assert vms.logs(ALICE, "web1") == "zeronode simulator: guest booted (boot 1)"
    vms.reboot(ALICE, "web1")  # cloud-hypervisor truncates the file: the boot before is kept first
    assert vms.logs(ALICE, "web1", boot=1) == "zeronode simulator: guest booted (boot 1)"
    vms.stop(ALICE, "web1", timeout=5)
    vms.start(ALICE, "web1")
    assert vms.logs(ALICE, "web1", boot=2) == "zeronode simulator: guest booted (boot 1)"
    assert vms.info(ALICE, "web1")["boot_logs"][-1].endswith("serial.log.2")
    with pytest.raises(Exception, match="boot must be 0"):
        vms.logs(ALICE, "web1", boot=3)


def test_snapshot_and_restore_on_a_driver_that_has_them(vms):
    vms.create(ALICE, "web1", image="ubuntu")
    vms.start(ALICE, "web1")
    saved = vms.snapshot(ALICE, "web1", "before")
    assert vms.info(ALICE, "web1")["state"] == "Running"  # paused for the snapshot, then running again
    assert (vms.state_dir / "web1" / "snapshots" / "before").is_dir() and saved["snapshot"] == "before"
    with pytest.raises(Exception, match="runs: stop it"):
        vms.restore(ALICE, "web1", "before")
    vms.stop(ALICE, "web1", timeout=5)
    assert vms.restore(ALICE, "web1", "before")["state"] == "Paused"
    assert vms.resume(ALICE, "web1")["state"] == "Running"
    assert events(vms, "web1")[-3:] == ["stopped", "restored", "resumed"]


def test_what_a_driver_lacks_is_refused_as_unsupported(vms):
    vms.create(ALICE, "web1", image="ubuntu")
    vms.driver.features = ("kernel_boot", "disks")  # as a driver without them would say
    for act in (vms.pause, vms.reboot):
        with pytest.raises(Unsupported, match="cannot"):
            act(ALICE, "web1")
    with pytest.raises(Unsupported):
        vms.snapshot(ALICE, "web1", "s1")


def test_snapshots_are_bounded_deletable_and_restore_only_onto_the_disks_they_were_taken_with(vms):
    vms.create(ALICE, "web1", image="ubuntu")
    vms.start(ALICE, "web1")
    for snapshot in ("s1", "s2", "s3"):
        vms.snapshot(ALICE, "web1", snapshot)
    with pytest.raises(SalError, match="has 3 snapshots, the most a VM keeps"):
        vms.snapshot(ALICE, "web1", "s4")
    vms.delete_snapshot(ALICE, "web1", "s3")
    assert vms.info(ALICE, "web1")["snapshots"] == ["s1", "s2"]
    with pytest.raises(SalError, match="invalid snapshot name"):
        vms.snapshot(ALICE, "web1", "../../etc")
    vms.volumes.create(ALICE, "more", quota_bytes=1024 * 1024)
    vms.attach(ALICE, "web1", "more")  # the disks change after s1 and s2
    vms.stop(ALICE, "web1", timeout=5)
    with pytest.raises(SalError, match="disks changed since snapshot 's1'"):
        vms.restore(ALICE, "web1", "s1")
    assert vms.info(ALICE, "web1")["state"] == "Stopped" and not vms.info(ALICE, "web1")["should_run"]


def test_a_vm_that_cannot_reboot_keeps_its_console(vms):
    vms.create(ALICE, "web1", image="ubuntu")
    vms.start(ALICE, "web1")
    vms.stop(ALICE, "web1", timeout=5)
    with pytest.raises(InvalidVmState, match="only a running or paused VM can be rebooted"):
        vms.reboot(ALICE, "web1")
    assert vms.logs(ALICE, "web1") == "zeronode simulator: guest booted (boot 1)"  # not rotated away


def test_the_keeper_never_boots_a_vm_of_another_driver(vms, storage):
    from sal.hypervisor import VmManager
    from sal.hypervisor.drivers.qemu import Qemu

    vms.create(ALICE, "web1", image="ubuntu")
    vms.start(ALICE, "web1")
    crash(vms, "web1")
    other = VmManager(vms.state_dir, storage, Qemu("qemu-system-x86_64", acceleration="tcg"))
    assert VmKeeper(other, NO_WAIT).tick() == {"web1": "restart failed"}
    event = vms.events(ALICE, "web1")[-1]
    assert event["event"] == "restart_failed" and "created by the 'cloud-hypervisor' hypervisor driver" in event["error"]
    assert other.driver.pid(vms.state_dir / "web1") is None  # no QEMU was started on its disks


def test_the_keeper_never_waits_behind_a_vm_a_runner_is_acting_on(vms):
    vms.create(ALICE, "web1", image="ubuntu")
    vms.start(ALICE, "web1")
    crash(vms, "web1")
    with vms.locked("web1"):
        assert VmKeeper(vms, NO_WAIT).tick() == {}  # busy: looked at next time
    assert VmKeeper(vms, NO_WAIT).tick() == {"web1": "restarted"}
