"""The cloud-hypervisor client against the simulator process (release v53.0): the VM's life and every error path;
and how the client reads answers (an empty 200, a 500's messages) from canned ones."""

import httpx
import pytest

from sal.hypervisor import (
    DeviceConflict,
    DiskSpec,
    HypervisorError,
    InvalidVmConfig,
    InvalidVmState,
    TapSpec,
    VmmExiting,
    VmmFailure,
    VmmUnreachable,
    VmNotCreated,
    VmSpec,
)
from sal.hypervisor.drivers.cloud_hypervisor import HypervisorClient
from tests.support.waiting import wait_until


@pytest.fixture
def files(short_dir):
    kernel, disk = short_dir / "vmlinux", short_dir / "root.raw"
    kernel.write_bytes(b"kernel")
    disk.write_bytes(b"\0" * 4096)
    return kernel, disk


def spec_for(files, **overrides):
    kernel, disk = files
    return VmSpec(kernel=str(kernel), cmdline="console=ttyS0", disks=(DiskSpec(path=str(disk), id="root"),), **overrides)


def test_full_lifecycle(vmm, files):
    assert vmm.ping()["build_version"] == "v53.0"
    vmm.create(spec_for(files, vcpus=2, memory_mib=1024, taps=(TapSpec(tap="tap-web1", mac="52:54:00:12:34:56"),)))
    assert vmm.state() == "Created"
    info = vmm.info()
    assert info["config"]["cpus"] == {"boot_vcpus": 2, "max_vcpus": 2}
    assert info["config"]["memory"]["size"] == 1024 * 1024 * 1024  # the API takes bytes
    assert info["config"]["net"][0]["tap"] == "tap-web1"

    vmm.boot()
    assert vmm.state() == "Running"
    assert {"root", vmm.info()["config"]["net"][0]["id"]} <= set(vmm.info()["device_tree"])
    vmm.pause()
    assert vmm.state() == "Paused"
    vmm.resume()
    vmm.reboot()
    assert vmm.state() == "Running"
    vmm.shutdown()
    assert vmm.state() == "Created"  # the guest is dropped, its config kept
    vmm.boot()  # so it boots again
    assert vmm.state() == "Running"
    vmm.delete()
    with pytest.raises(VmNotCreated):
        vmm.info()


def test_actions_in_the_wrong_state_answer_500_with_messages(vmm, files):
    statuses = []

    def refused(action, error, message):
        with pytest.raises(error, match=message) as refusal:
            action()
        statuses.append(refusal.value.status)
        return refusal.value

    no_vm = refused(vmm.boot, VmNotCreated, "VM is not created")
    assert no_vm.status == 404 and no_vm.messages[-1] == "VM is not created"
    refused(vmm.pause, InvalidVmState, "VM is not running")
    vmm.create(spec_for(files))
    for action in (vmm.pause, vmm.resume, vmm.shutdown, vmm.power_button, vmm.counters):
        assert refused(action, InvalidVmState, "VM is not running").status == 500
    refused(vmm.reboot, VmNotCreated, "VM is not created")  # a created VM that never booted: 404
    vmm.boot()
    refused(vmm.resume, InvalidVmState, r"InvalidStateTransition\(Running, Running\)")
    refused(vmm.boot, InvalidVmState, r"InvalidStateTransition\(Running, Running\)")
    refused(lambda: vmm.snapshot(files[0].parent), InvalidVmState, "while VM is running")
    vmm.pause()
    refused(vmm.pause, InvalidVmState, r"InvalidStateTransition\(Paused, Paused\)")
    refused(lambda: vmm.create(spec_for(files)), VmmFailure, "VM is already created")
    assert 405 not in statuses and set(statuses) == {404, 500}


def test_invalid_bodies_answer_400_with_the_reasons(vmm, files):
    with pytest.raises(InvalidVmConfig, match=r"memory\.size: 'lots' is not of type 'integer'"):
        vmm.create({"payload": {"kernel": "/k"}, "memory": {"size": "lots"}})
    with pytest.raises(InvalidVmConfig, match="'payload' is a required property"):
        vmm.create({"cpus": {"boot_vcpus": 1, "max_vcpus": 1}})
    with pytest.raises(InvalidVmConfig, match="cpus.boot_vcpus: 0 is less than the minimum of 1"):
        vmm.create({"payload": {"kernel": "/k"}, "cpus": {"boot_vcpus": 0, "max_vcpus": 2}})
    with pytest.raises(VmNotCreated):  # nothing of the refused bodies stayed
        vmm.info()
    response = vmm.http.put("/vm.create", content=b"{not json")
    assert response.status_code == 400 and response.json() == ["the request body is not JSON"]


def test_boot_fails_when_the_kernel_or_a_disk_is_missing(vmm, files, short_dir):
    vmm.create(spec_for(files, initramfs=str(short_dir / "missing-initrd")))
    with pytest.raises(VmmFailure, match="cannot open initramfs") as failed:
        vmm.boot()
    assert failed.value.status == 500
    assert vmm.state() == "Created"


def test_disks_and_nics_are_hot_plugged_into_a_running_vm_and_cold_added_otherwise(vmm, files, short_dir):
    extra = short_dir / "data.raw"
    extra.write_bytes(b"\0" * 4096)
    vmm.create(spec_for(files))
    assert vmm.add_disk(DiskSpec(path=str(extra), id="cold")) is None
    vmm.boot()
    assert "cold" in vmm.info()["device_tree"]
    vmm.remove_device("cold")
    plugged = vmm.add_disk(DiskSpec(path=str(extra), id="data"))
    assert plugged["id"] == "data" and plugged["bdf"].startswith("0000:00:")
    with pytest.raises(DeviceConflict, match="already locked"):  # its image is the disk "data"'s
        vmm.add_disk(DiskSpec(path=str(extra), id="other"))
    with pytest.raises(DeviceConflict, match="Identifier data is not unique"):
        vmm.add_net(TapSpec(tap="tap0", id="data"))
    net = vmm.add_net(TapSpec(tap="tap0"))
    assert set(vmm.counters()) == {"root", "data", net["id"]}
    vmm.remove_device("data")
    assert [d["id"] for d in vmm.info()["config"]["disks"]] == ["root"]
    with pytest.raises(VmNotCreated, match='No device with id "data" to remove'):
        vmm.remove_device("data")


def test_snapshot_of_a_paused_vm_restores_in_a_new_vmm(vmm, files, short_dir):
    snapshot = short_dir / "snap"
    snapshot.mkdir()
    vmm.create(spec_for(files, vcpus=3))
    vmm.boot()
    with pytest.raises(InvalidVmState):  # cloud-hypervisor snapshots paused VMs only
        vmm.snapshot(snapshot)
    vmm.pause()
    vmm.snapshot(snapshot)
    assert {path.name for path in snapshot.iterdir()} == {"config.json", "state.json", "memory-ranges"}
    with pytest.raises(VmmFailure, match="VM is already created"):
        vmm.restore(snapshot)
    vmm.shutdown()
    vmm.delete()
    vmm.restore(snapshot)
    assert vmm.state() == "Paused"
    assert vmm.info()["config"]["cpus"]["boot_vcpus"] == 3
    vmm.resume()
    assert vmm.state() == "Running"


def test_unimplemented_and_unknown_endpoints(vmm):
    resize = vmm.http.put("/vm.resize", json={"desired_vcpus": 2})
    assert resize.status_code == 500 and "not implemented" in resize.json()[0]
    assert vmm.http.put("/vm.resize", json={"desired_vcpus": 0}).status_code == 400  # still checked
    assert vmm.http.put("/vm.teleport").status_code == 404
    # An endpoint asked with the other method: 400, as the VMM answers (never 405).
    assert vmm.http.get("/vm.boot").status_code == 400
    assert vmm.http.put("/vm.info").status_code == 400


def test_shutting_the_vmm_down_ends_its_process(vmm):
    assert vmm.shutdown_vmm() is None  # 200 with an empty body
    wait_until(lambda: not answers(vmm), 10, "the VMM to exit")


def answers(client: HypervisorClient) -> bool:
    try:
        client.ping()
        return True
    except VmmUnreachable:
        return False


def test_no_vmm_on_the_socket_is_a_clear_error(short_dir):
    client = HypervisorClient(short_dir / "nothing.sock")
    with pytest.raises(VmmUnreachable, match="no VMM answers on"):
        client.ping()


# -- how answers are read (canned answers) -----------------------------------------------


def canned(status: int, **response) -> HypervisorClient:
    return HypervisorClient("/unused.sock", transport=httpx.MockTransport(lambda request: httpx.Response(status, **response)))


def test_an_empty_200_is_none_and_a_body_that_is_not_json_a_failure():
    # vmm.shutdown answers 200 with Content-Length: 0, where the spec says 204.
    assert canned(200, headers={"content-length": "0"}).shutdown_vmm() is None
    assert canned(200).info() is None
    with pytest.raises(VmmFailure, match="not JSON") as failed:
        canned(200, text="<html>").info()
    assert failed.value.status == 200


def test_a_non_json_error_body_still_gives_a_message():
    with pytest.raises(VmmFailure, match="bad gateway") as failed:
        canned(502, text="bad gateway").boot()
    assert failed.value.status == 502


@pytest.mark.parametrize(("status", "messages", "error"), [
    # The VMM is on its way out (its guest powered off): the VM is stopped.
    (500, ["Error from API", "API response receive error", "receiving on a closed channel"], VmmExiting),
    (500, ["Error from API", "API request send error", "sending on a closed channel"], VmmExiting),
    (500, ["API response receive error; receiving on a closed channel"], VmmExiting),
    # Wrong states, in the words of v53.0 and of main.
    (500, ["Error from API", "The VM could not be paused", "VM is not running"], InvalidVmState),
    (500, ["Error from API", "The VM could not resume", "InvalidStateTransition(Running, Running)"], InvalidVmState),
    (500, ["Error from API", "The VM could not boot", "invalid VM state transition: Running to Running"], InvalidVmState),
    (500, ["Error from API", "The VM could not be snapshotted", "Trying to snapshot while VM is running"], InvalidVmState),
    # What main answers with 409, 400 and 404, v53.0 answers with 500.
    (500, ["Error from API", "Failed to validate config", "Identifier data is not unique"], DeviceConflict),
    (500, ["Failed to get Write lock for disk image /a.raw: the file is already locked"], DeviceConflict),
    (500, ["Error from API", "The VM could not boot", "Failed to validate config", "Max CPUs lower than boot CPUs"],
     InvalidVmConfig),
    (500, ["Error from API", 'No device with id "data" to remove'], VmNotCreated),
    (500, ["Error from API", "The VM could not boot", "cannot open kernel /k"], VmmFailure),
    # The status says it where it can, whatever the messages.
    (404, ["VM is not running"], VmNotCreated),
    (409, ["Identifier data is not unique"], DeviceConflict),
    (400, ["Bad Request"], InvalidVmConfig),
    (405, ["VM is not running"], VmmFailure),  # never sent by the VMM: nothing to read into it
])
def test_an_error_is_typed_by_its_status_else_by_its_messages(status, messages, error):
    with pytest.raises(HypervisorError) as raised:  # the root: a wrong type shows in the assertion below
        canned(status, json=messages).pause()
    assert type(raised.value) is error and raised.value.messages == messages and raised.value.status == status
