"""VMs' owners (sal.hypervisor.manager): two deployers on one node and its admin. Simulated VMMs, a real btrfs."""

import json
import re

import pytest

from sal.errors import SalError
from sal.hypervisor import VmExists, VmManager, VmNotFound
from sal.hypervisor.drivers.cloud_hypervisor import CloudHypervisor
from sal.storage import VolumeNotFound, VolumeShared
from sal.storage.drivers.btrfs import BtrfsStorage
from sal.tenancy import OPERATOR

from .conftest import ADMIN, ALICE, BOB, make_image

MIB = 1024 * 1024


def names(vm_manager, caller):
    return [vm["name"] for vm in vm_manager.list(caller)]


@pytest.fixture
def two_tenants(vm_manager, storage):
    """A shared image, and a VM of Alice's with a data volume of hers."""
    make_image(storage, "ubuntu")
    vm_manager.volumes.create(ALICE, "alice-data", quota_bytes=16 * MIB)
    vm_manager.create(ALICE, "alice-vm", image="ubuntu", volumes=["alice-data"])
    return vm_manager


def test_a_deployer_neither_sees_nor_touches_another_deployers_vm(two_tenants):
    vms = two_tenants
    vms.create(BOB, "bob-vm", image="ubuntu")
    vms.start(ALICE, "alice-vm")
    assert names(vms, ALICE) == ["alice-vm"] and names(vms, BOB) == ["bob-vm"]
    assert vms.info(ALICE, "alice-vm")["owner"] == "alice-key"

    for action in (
        lambda name: vms.info(BOB, name),
        lambda name: vms.start(BOB, name),
        lambda name: vms.stop(BOB, name, timeout=1),
        lambda name: vms.delete(BOB, name),
    ):
        with pytest.raises(VmNotFound, match="^no VM named 'alice-vm'$"):  # word for word a missing VM's answer
            action("alice-vm")
    assert vms.info(ALICE, "alice-vm")["state"] == "Running"  # Bob stopped nothing

    # Nor its disks: neither as data volumes nor as an image to boot from.
    for volume in ("alice-data", "alice-vm-root"):
        with pytest.raises(VolumeNotFound, match=f"^no volume '{volume}'$"):
            vms.create(BOB, "bob-vm2", image="ubuntu", volumes=[volume])
        with pytest.raises(VolumeNotFound, match=f"^no volume '{volume}'$"):
            vms.create(BOB, "bob-vm2", image=volume)
    assert names(vms, BOB) == ["bob-vm"]


def test_a_node_admin_sees_and_acts_on_every_vm(two_tenants):
    vms = two_tenants
    vms.create(BOB, "bob-vm", image="ubuntu")
    assert names(vms, ADMIN) == ["alice-vm", "bob-vm"]
    assert vms.start(ADMIN, "alice-vm")["state"] == "Running"
    assert vms.stop(ADMIN, "alice-vm", timeout=1)["state"] == "Stopped"
    # An admin may attach anyone's volume; the VM and its root disk are the admin's.
    vms.volumes.create(BOB, "bob-data", quota_bytes=MIB)
    ops = vms.create(ADMIN, "ops", image="alice-vm-root", volumes=["bob-data"])
    assert ops["owner"] == "admin-key" and vms.volumes.info(ADMIN, "ops-root").owner == "admin-key"
    vms.delete(ADMIN, "alice-vm")
    assert names(vms, ALICE) == [] and not vms.volumes.driver.exists("alice-vm-root")
    assert vms.volumes.info(ALICE, "alice-data").owner == "alice-key"  # data volumes stay, their owner's


def test_the_root_disk_is_the_vms_owners_and_goes_with_it(two_tenants, storage):
    vms = two_tenants
    root = vms.volumes.info(ALICE, "alice-vm-root")
    assert root.owner == "alice-key" and not root.read_only
    record = storage.root / ".owners" / "alice-vm-root.json"
    assert record.exists()
    vms.delete(ALICE, "alice-vm")
    assert not storage.exists("alice-vm-root") and not record.exists()
    assert not (vms.state_dir / "alice-vm").exists()  # the VM's record, and so its owner, is gone with it


def test_a_vm_name_is_node_wide_a_taken_one_is_refused(two_tenants, storage):
    vms = two_tenants
    before = sorted(volume.name for volume in storage.list())
    with pytest.raises(VmExists, match=re.escape("the VM name 'alice-vm' is taken on this node (VM names are node-wide)")):
        vms.create(BOB, "alice-vm", image="ubuntu")
    assert sorted(volume.name for volume in storage.list()) == before and names(vms, BOB) == []
    assert vms.info(ALICE, "alice-vm")["image"] == "ubuntu"


def test_a_shared_image_boots_anyones_vm_but_is_no_ones_data_volume(two_tenants):
    vms = two_tenants
    bob = vms.create(BOB, "bob-vm", image="ubuntu")
    assert bob["image"] == "ubuntu" and vms.volumes.info(BOB, "bob-vm-root").owner == "bob-key"
    with pytest.raises(VolumeShared, match="volume 'ubuntu' is shared"):
        vms.create(BOB, "bob-vm2", image="ubuntu", volumes=["ubuntu"])
    image = vms.volumes.create(BOB, "bob-image")
    (image.path / "disk.raw").write_bytes(b"\0" * MIB)
    (image.path / "vmlinux").write_bytes(b"Bob's kernel")
    vms.create(BOB, "bob-vm3", image="bob-image")  # one's own image, too
    with pytest.raises(VolumeNotFound):
        vms.create(ALICE, "alice-vm2", image="bob-image")  # but not another's


def test_an_attached_volume_names_only_a_vm_the_caller_may_see(two_tenants):
    vms = two_tenants
    vms.volumes.create(ALICE, "alice-more", quota_bytes=MIB)
    vms.create(ADMIN, "ops", image="ubuntu", volumes=["alice-more"])
    with pytest.raises(SalError, match="^volume 'alice-more' is attached to another VM already$"):
        vms.create(ALICE, "alice-vm2", image="ubuntu", volumes=["alice-more"])
    with pytest.raises(SalError, match="^volume 'alice-data' is attached to VM 'alice-vm' already$"):
        vms.create(ALICE, "alice-vm2", image="ubuntu", volumes=["alice-data"])


def test_an_image_without_an_owner_record_boots_only_admins_vms_until_it_is_shared(two_tenants, storage):
    """An image made outside scripts and not shared, or any volume from before volumes had owners, is the admins':
    a deployer cannot boot a VM from it (its root disk would be a copy of the volume's data)."""
    vms = two_tenants
    make_image(storage, "debian", shared=False)
    for caller in (ALICE, BOB):
        with pytest.raises(VolumeNotFound, match="^no volume 'debian'$"):
            vms.create(caller, "bob-vm", image="debian")
    assert not storage.exists("bob-vm-root") and names(vms, BOB) == []
    assert vms.create(ADMIN, "ops", image="debian")["image"] == "debian"
    vms.volumes.share(OPERATOR, "debian")
    assert vms.create(BOB, "bob-vm", image="debian")["owner"] == "bob-key"
    with pytest.raises(VolumeShared, match="volume 'debian' is shared"):
        vms.volumes.delete(BOB, "debian")


def test_an_unowned_vms_disk_is_not_an_image(two_tenants, storage):
    """A VM recorded before VMs had owners, with a root disk from before volumes had them: both own-less, so the
    admins'. No deployer boots from that disk, even if an operator shares it by mistake: it is that VM's data."""
    vms = two_tenants
    vms.create(ALICE, "legacy", image="ubuntu")
    path = vms.state_dir / "legacy" / "vm.json"
    record = json.loads(path.read_text())
    path.write_text(json.dumps({key: value for key, value in record.items() if key not in ("owner", "disk_uuids")}
                               | {"format": 1}))
    vms.volumes.owners.set("legacy-root", None)
    with pytest.raises(VolumeNotFound, match="^no volume 'legacy-root'$"):
        vms.create(BOB, "bob-vm", image="legacy-root")
    vms.volumes.share(ADMIN, "legacy-root")
    with pytest.raises(SalError, match="volume 'legacy-root' is another VM's disk, not an image"):
        vms.create(BOB, "bob-vm", image="legacy-root")
    assert vms.create(ADMIN, "rescue", image="legacy-root")["image"] == "legacy-root"


def test_a_vm_never_boots_another_tenants_volume_that_took_its_disks_name(two_tenants):
    """Alice deletes her VM's root volume but not the VM; Bob then takes the name, with a disk of his own in it."""
    vms = two_tenants
    vms.volumes.delete(ALICE, "alice-vm-root")
    planted = vms.volumes.create(BOB, "alice-vm-root")
    (planted.path / "disk.raw").write_bytes(b"Bob's disk")
    with pytest.raises(SalError, match="volume 'alice-vm-root' is not the one VM 'alice-vm' was created with"):
        vms.start(ALICE, "alice-vm")
    vms.delete(ALICE, "alice-vm")
    assert vms.volumes.info(BOB, "alice-vm-root").uuid == planted.uuid  # the VM took nothing of Bob's with it


def test_owners_outlive_the_manager(two_tenants, storage, short_dir):
    two_tenants.create(BOB, "bob-vm", image="ubuntu")
    restarted = VmManager(two_tenants.state_dir, BtrfsStorage(storage.root), CloudHypervisor.simulator())
    assert names(restarted, ALICE) == ["alice-vm"] and names(restarted, BOB) == ["bob-vm"]
    assert names(restarted, ADMIN) == ["alice-vm", "bob-vm"]
    with pytest.raises(VmNotFound):
        restarted.delete(BOB, "alice-vm")
    restarted.delete(ALICE, "alice-vm")
    assert names(restarted, ADMIN) == ["bob-vm"]
