"""The cloud-hypervisor client against the simulator process: the VM's life and every error path."""

import httpx
import pytest

from sal.hypervisor import (
    DeviceConflict,
    DiskSpec,
    InvalidVmConfig,
    InvalidVmState,
    TapSpec,
    VmmFailure,
    VmmUnreachable,
    VmNotCreated,
    VmSpec,
)
from sal.hypervisor.drivers.cloud_hypervisor import HypervisorClient


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
    assert vmm.ping()["version"].startswith("v")
    vmm.create(spec_for(files, vcpus=2, memory_mib=1024, taps=(TapSpec(tap="tap-web1", mac="52:54:00:12:34:56"),)))
    assert vmm.state() == "Created"
    info = vmm.info()
    assert info["config"]["cpus"] == {"boot_vcpus": 2, "max_vcpus": 2}
    assert info["config"]["memory"]["size"] == 1024 * 1024 * 1024  # the API takes bytes
    assert info["config"]["net"][0]["tap"] == "tap-web1"
    assert set(info["device_tree"]) == {"root", info["config"]["net"][0]["id"]}

    vmm.boot()
    assert vmm.state() == "Running"
    vmm.pause()
    assert vmm.state() == "Paused"
    vmm.resume()
    vmm.reboot()
    assert vmm.state() == "Running"
    vmm.shutdown()
    assert vmm.state() == "Shutdown"
    vmm.boot()  # a shut-down VM boots again
    vmm.power_button()
    assert vmm.state() == "Shutdown"
    vmm.delete()
    with pytest.raises(VmNotCreated):
        vmm.info()


def test_actions_in_the_wrong_state_answer_405(vmm, files):
    with pytest.raises(VmNotCreated, match="not created") as no_vm:
        vmm.boot()
    assert no_vm.value.status == 404 and no_vm.value.messages == ["VM is not created"]
    vmm.create(spec_for(files))
    for action in (vmm.pause, vmm.resume, vmm.shutdown, vmm.reboot, vmm.power_button):
        with pytest.raises(InvalidVmState) as wrong:
            action()
        assert wrong.value.status == 405
    vmm.boot()
    with pytest.raises(InvalidVmState, match="Running, not Paused"):
        vmm.resume()
    with pytest.raises(VmmFailure, match="already booted"):
        vmm.boot()
    with pytest.raises(VmmFailure, match="already created"):
        vmm.create(spec_for(files))


def test_invalid_configs_answer_400_with_the_reasons(vmm, files):
    with pytest.raises(InvalidVmConfig, match=r"memory\.size: 'lots' is not of type 'integer'"):
        vmm.create({"payload": {"kernel": "/k"}, "memory": {"size": "lots"}})
    with pytest.raises(InvalidVmConfig, match="'payload' is a required property"):
        vmm.create({"cpus": {"boot_vcpus": 1, "max_vcpus": 1}})
    with pytest.raises(InvalidVmConfig, match="no kernel, firmware or igvm"):
        vmm.create({"payload": {"cmdline": "quiet"}})
    with pytest.raises(InvalidVmConfig, match="boot_vcpus is greater than max_vcpus"):
        vmm.create({"payload": {"kernel": "/k"}, "cpus": {"boot_vcpus": 4, "max_vcpus": 2}})
    with pytest.raises(InvalidVmConfig, match="cpus.boot_vcpus: 0 is less than the minimum of 1"):
        vmm.create({"payload": {"kernel": "/k"}, "cpus": {"boot_vcpus": 0, "max_vcpus": 2}})
    with pytest.raises(InvalidVmConfig, match="already exists"):
        vmm.create({"payload": {"kernel": "/k"}, "disks": [{"path": "/a", "id": "d"}, {"path": "/b", "id": "d"}]})
    with pytest.raises(VmNotCreated):  # nothing of the refused configs stayed
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
    vmm.remove_device("cold")
    plugged = vmm.add_disk(DiskSpec(path=str(extra), id="data"))
    assert plugged["id"] == "data" and plugged["bdf"].startswith("0000:00:")
    with pytest.raises(DeviceConflict, match="already attached"):
        vmm.add_disk(DiskSpec(path=str(extra), id="other"))
    with pytest.raises(DeviceConflict, match="'data' already exists"):
        vmm.add_net(TapSpec(tap="tap0", id="data"))
    net = vmm.add_net(TapSpec(tap="tap0"))
    assert set(vmm.counters()) == {"root", "data", net["id"]}
    vmm.remove_device("data")
    assert [d["id"] for d in vmm.info()["config"]["disks"]] == ["root"]
    with pytest.raises(VmNotCreated, match="no device with id 'data'"):
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
    with pytest.raises(VmNotCreated, match="already created"):
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
    assert vmm.http.get("/vm.boot").status_code == 405


def test_shutting_the_vmm_down_ends_its_process(vmm):
    vmm.shutdown_vmm()
    with pytest.raises(VmmUnreachable):
        for _ in range(200):  # the process exits a moment after answering
            vmm.ping()


def test_no_vmm_on_the_socket_is_a_clear_error(short_dir):
    client = HypervisorClient(short_dir / "nothing.sock")
    with pytest.raises(VmmUnreachable, match="no VMM answers on"):
        client.ping()


def test_a_non_json_error_body_still_gives_a_message():
    transport = httpx.MockTransport(lambda request: httpx.Response(502, text="bad gateway"))
    client = HypervisorClient("/unused.sock", transport=transport)
    with pytest.raises(VmmFailure, match="bad gateway") as failed:
        client.boot()
    assert failed.value.status == 502
