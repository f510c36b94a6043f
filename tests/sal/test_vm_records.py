"""The VM record (vm.json): its format and driver, records written before it had them, and a VM whose
root volume a script deleted first. Simulated VMMs, a real btrfs."""

import json

import pytest

from sal.errors import SalError
from sal.hypervisor import VmManager, VmNotFound
from sal.hypervisor.drivers.cloud_hypervisor import CloudHypervisor

from .conftest import make_image


def record_path(manager, name):
    return manager.state_dir / name / "vm.json"


def test_the_record_names_its_format_and_driver(vm_manager, storage):
    make_image(storage)
    vm_manager.create("web1", image="ubuntu")
    record = json.loads(record_path(vm_manager, "web1").read_text())
    assert (record["format"], record["driver"]) == (1, "cloud-hypervisor")  # "cloud-hypervisor" also when simulated


def test_a_record_from_before_formats_is_cloud_hypervisors(vm_manager, storage):
    """A node upgraded with VMs running keeps them: the old record (no format, no driver) reads as format 1."""
    make_image(storage)
    vm_manager.create("web1", image="ubuntu", memory_mib=256)
    pid = vm_manager.start("web1")["pid"]
    path = record_path(vm_manager, "web1")
    record = json.loads(path.read_text())
    old = {key: record[key] for key in ("name", "image", "root_volume", "volumes", "created", "spec")}  # what it wrote
    path.write_text(json.dumps(old, indent=2))

    upgraded = VmManager(vm_manager.state_dir, storage, CloudHypervisor.simulator())
    info = upgraded.info("web1")
    assert (info["state"], info["pid"], info["memory_mb"]) == ("Running", pid, 256)
    assert upgraded.stop("web1", timeout=1)["state"] == "Stopped"
    assert upgraded.start("web1")["state"] == "Running"
    upgraded.delete("web1")
    assert upgraded.list() == [] and not storage.exists("web1-root")


def test_a_record_of_another_driver_is_refused(vm_manager, storage):
    make_image(storage)
    vm_manager.create("web1", image="ubuntu")
    path = record_path(vm_manager, "web1")
    written = path.read_text()
    path.write_text(json.dumps({**json.loads(written), "driver": "qemu"}))
    for operation in (vm_manager.info, vm_manager.start, vm_manager.stop, vm_manager.delete):
        with pytest.raises(SalError, match="created by the 'qemu' hypervisor driver, but this node runs 'cloud-hypervisor'"):
            operation("web1")
    assert path.exists() and storage.exists("web1-root")  # nothing was removed
    path.write_text(written)  # the fixture's clean-up reads it


def test_a_newer_record_format_is_refused(vm_manager, storage):
    make_image(storage)
    vm_manager.create("web1", image="ubuntu")
    path = record_path(vm_manager, "web1")
    written = path.read_text()
    path.write_text(json.dumps({**json.loads(written), "format": 2}))
    with pytest.raises(SalError, match="format 2; this zeronode reads format 1"):
        vm_manager.info("web1")
    path.write_text("{not json")
    with pytest.raises(SalError, match="cannot be read"):
        vm_manager.info("web1")
    path.write_text(written)  # the fixture's clean-up reads it


def test_a_vm_whose_root_volume_is_gone_is_deleted_and_its_name_reused(vm_manager, storage):
    make_image(storage)
    vm_manager.create("web1", image="ubuntu")
    vm_manager.start("web1")
    vm_manager.stop("web1", timeout=1)
    storage.delete("web1-root")  # what a script's volume_delete("web1-root") does
    vm_manager.delete("web1")
    with pytest.raises(VmNotFound):
        vm_manager.info("web1")
    again = vm_manager.create("web1", image="ubuntu")
    assert again["root_volume"] == "web1-root" and storage.exists("web1-root")
    assert vm_manager.start("web1")["state"] == "Running"
