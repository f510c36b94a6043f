"""The VM record (vm.json): its format, driver and owner, records written before it had them, and a VM whose
root volume a script deleted first. Simulated VMMs, a real btrfs."""

import json

import pytest

from sal.errors import SalError
from sal.hypervisor import VmManager, VmNotFound
from sal.hypervisor.drivers.cloud_hypervisor import CloudHypervisor

from .conftest import ADMIN, ALICE, make_image


def record_path(manager, name):
    return manager.state_dir / name / "vm.json"


def test_the_record_names_its_format_and_driver(vm_manager, storage):
    make_image(storage)
    vm_manager.create(ALICE, "web1", image="ubuntu")
    record = json.loads(record_path(vm_manager, "web1").read_text())
    assert (record["format"], record["driver"]) == (2, "cloud-hypervisor")  # "cloud-hypervisor" also when simulated
    assert record["owner"] == "alice-key"
    assert record["disk_uuids"] == {"web1-root": storage.info("web1-root").uuid}


@pytest.mark.parametrize("old_keys", [
    ("format", "driver", "name", "image", "root_volume", "volumes", "created", "spec"),  # format 1
    ("name", "image", "root_volume", "volumes", "created", "spec"),  # before formats
])
def test_an_old_record_is_read_as_owned_by_nobody_so_only_admins_see_it(vm_manager, storage, old_keys):
    make_image(storage)
    vm_manager.create(ALICE, "web1", image="ubuntu")
    path = record_path(vm_manager, "web1")
    record = json.loads(path.read_text())
    path.write_text(json.dumps({key: record[key] for key in old_keys} | ({"format": 1} if "format" in old_keys else {})))
    assert vm_manager.list(ALICE) == []
    with pytest.raises(VmNotFound, match="no VM named 'web1'"):
        vm_manager.start(ALICE, "web1")
    assert vm_manager.info(ADMIN, "web1")["owner"] is None
    assert vm_manager.start(ADMIN, "web1")["state"] == "Running"


def test_a_record_from_before_formats_is_cloud_hypervisors(vm_manager, storage):
    """A node upgraded with VMs running keeps them: the old record (no format, no driver) reads as format 1."""
    make_image(storage)
    vm_manager.create(ALICE, "web1", image="ubuntu", memory_mib=256)
    pid = vm_manager.start(ALICE, "web1")["pid"]
    path = record_path(vm_manager, "web1")
    record = json.loads(path.read_text())
    old = {key: record[key] for key in ("name", "image", "root_volume", "volumes", "created", "spec")}  # what it wrote
    path.write_text(json.dumps(old, indent=2))

    upgraded = VmManager(vm_manager.state_dir, storage, CloudHypervisor.simulator())
    info = upgraded.info(ADMIN, "web1")  # owned by nobody: a node admin's
    assert (info["state"], info["pid"], info["memory_mb"]) == ("Running", pid, 256)
    assert upgraded.stop(ADMIN, "web1", timeout=1)["state"] == "Stopped"
    assert upgraded.start(ADMIN, "web1")["state"] == "Running"
    upgraded.delete(ADMIN, "web1")
    assert upgraded.list(ADMIN) == [] and not storage.exists("web1-root")


def test_a_record_of_another_driver_is_refused(vm_manager, storage):
    make_image(storage)
    vm_manager.create(ALICE, "web1", image="ubuntu")
    path = record_path(vm_manager, "web1")
    written = path.read_text()
    path.write_text(json.dumps({**json.loads(written), "driver": "qemu"}))
    for operation in (vm_manager.info, vm_manager.start, vm_manager.stop, vm_manager.delete):
        with pytest.raises(SalError, match="created by the 'qemu' hypervisor driver, but this node runs 'cloud-hypervisor'"):
            operation(ALICE, "web1")
    assert path.exists() and storage.exists("web1-root")  # nothing was removed
    path.write_text(written)  # the fixture's clean-up reads it


def test_a_newer_record_format_is_refused(vm_manager, storage):
    make_image(storage)
    vm_manager.create(ALICE, "web1", image="ubuntu")
    path = record_path(vm_manager, "web1")
    written = path.read_text()
    path.write_text(json.dumps({**json.loads(written), "format": 3}))
    with pytest.raises(SalError, match="format 3; this zeronode reads formats 1 and 2"):
        vm_manager.info(ADMIN, "web1")
    path.write_text("{not json")
    with pytest.raises(SalError, match="cannot be read"):
        vm_manager.info(ADMIN, "web1")
    # A record that cannot be read names no owner: to anyone but an admin, it is not there.
    with pytest.raises(VmNotFound, match="no VM named 'web1'"):
        vm_manager.info(ALICE, "web1")
    assert vm_manager.list(ALICE) == []
    path.write_text(written)  # the fixture's clean-up reads it


def test_a_vm_whose_root_volume_is_gone_is_deleted_and_its_name_reused(vm_manager, storage):
    make_image(storage)
    vm_manager.create(ALICE, "web1", image="ubuntu")
    vm_manager.start(ALICE, "web1")
    vm_manager.stop(ALICE, "web1", timeout=1)
    vm_manager.volumes.delete(ALICE, "web1-root")  # what a script's volume_delete("web1-root") does
    with pytest.raises(SalError, match="volume 'web1-root', a disk of VM 'web1', is gone"):
        vm_manager.start(ALICE, "web1")
    vm_manager.delete(ALICE, "web1")
    with pytest.raises(VmNotFound):
        vm_manager.info(ALICE, "web1")
    again = vm_manager.create(ALICE, "web1", image="ubuntu")
    assert again["root_volume"] == "web1-root" and storage.exists("web1-root")
    assert vm_manager.start(ALICE, "web1")["state"] == "Running"
