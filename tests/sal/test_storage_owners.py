"""Volumes' owners (sal.storage.owned): two deployers on one node, its admin, and shared volumes, on a real btrfs."""

import json
import re

import pytest

from sal.storage import OwnedStorage, StorageError, VolumeExists, VolumeNotFound, VolumeShared
from sal.storage.drivers.btrfs import BtrfsStorage
from sal.tenancy import OPERATOR

from .conftest import ADMIN, ALICE, BOB

MIB = 1024 * 1024


@pytest.fixture
def volumes(storage):
    return OwnedStorage(storage)


def names(volumes, caller):
    return [volume.name for volume in volumes.list(caller)]


def test_a_deployer_neither_sees_nor_touches_another_deployers_volume(volumes):
    volumes.create(ALICE, "alice-data", quota_bytes=8 * MIB)
    volumes.create(BOB, "bob-data")
    assert names(volumes, ALICE) == ["alice-data"] and names(volumes, BOB) == ["bob-data"]
    assert volumes.info(ALICE, "alice-data").owner == "alice-key"

    # Bob is answered exactly as for a volume that does not exist.
    for action in (
        lambda name: volumes.info(BOB, name),
        lambda name: volumes.usage(BOB, name),
        lambda name: volumes.delete(BOB, name),
        lambda name: volumes.snapshot(BOB, name, "bob-copy"),
        lambda name: volumes.clone(BOB, name, "bob-clone"),
        lambda name: volumes.set_quota(BOB, name, None),
    ):
        messages = []
        for name in ("alice-data", "ghost"):
            with pytest.raises(VolumeNotFound) as info:
                action(name)
            messages.append(str(info.value).replace(name, "NAME"))
        assert messages[0] == messages[1] == "no volume 'NAME'"
    assert volumes.usage(ALICE, "alice-data").limit == 8 * MIB  # the quota Bob tried to lift
    assert names(volumes, ADMIN) == ["alice-data", "bob-data"]
    assert not volumes.driver.exists("bob-copy") and not volumes.driver.exists("bob-clone")


def test_a_node_admin_sees_and_acts_on_every_volume(volumes):
    volumes.create(ALICE, "alice-data", quota_bytes=8 * MIB)
    copy = volumes.snapshot(ADMIN, "alice-data", "alice-data-backup")
    assert copy.owner == "admin-key"  # a snapshot is its maker's
    volumes.set_quota(ADMIN, "alice-data", 16 * MIB)
    assert volumes.usage(ADMIN, "alice-data").limit == 16 * MIB
    volumes.delete(ADMIN, "alice-data")
    assert names(volumes, ALICE) == [] and names(volumes, ADMIN) == ["alice-data-backup"]


def test_a_deployer_snapshots_its_own_volumes_and_owns_the_snapshots(volumes):
    volumes.create(ALICE, "alice-data")
    snapshot = volumes.snapshot(ALICE, "alice-data", "alice-data-1")
    clone = volumes.snapshot(ALICE, "alice-data-1", "alice-work", read_only=False)
    assert (snapshot.owner, snapshot.read_only, clone.owner, clone.read_only) == ("alice-key", True, "alice-key", False)
    assert names(volumes, BOB) == []


def test_a_name_is_node_wide_a_taken_one_is_refused_whoever_holds_it(volumes):
    volumes.create(ALICE, "data")
    volumes.create(BOB, "bob-data")
    taken = re.escape("the volume name 'data' is taken on this node (volume names are node-wide)")
    with pytest.raises(VolumeExists, match=taken):
        volumes.create(BOB, "data")
    with pytest.raises(VolumeExists, match=taken):
        volumes.snapshot(BOB, "bob-data", "data")
    with pytest.raises(VolumeExists, match=taken):
        volumes.create(ALICE, "data")  # one's own too: creating is not "make sure it exists"
    assert volumes.info(ALICE, "data").owner == "alice-key"  # the refusals changed nothing
    assert names(volumes, BOB) == ["bob-data"]


def test_a_shared_volume_is_seen_by_everyone_and_changed_by_admins_only(volumes, storage):
    storage.create("ubuntu")  # made outside scripts, by the operator: no owner
    operators = volumes.create(OPERATOR, "debian")  # the operator through this layer: no owner either
    assert operators.owner is None and volumes.info(ALICE, "ubuntu").owner is None
    assert names(volumes, ALICE) == names(volumes, BOB) == ["debian", "ubuntu"]
    for action in (
        lambda caller: volumes.delete(caller, "ubuntu"),
        lambda caller: volumes.snapshot(caller, "ubuntu", "mine"),
        lambda caller: volumes.set_quota(caller, "ubuntu", MIB),
    ):
        for caller in (ALICE, BOB):
            with pytest.raises(VolumeShared, match="volume 'ubuntu' is shared on this node .* only a node admin"):
                action(caller)
    # ... but booting from it is what it is for: a clone is the deployer's own.
    assert volumes.clone(BOB, "ubuntu", "bob-root").owner == "bob-key"
    volumes.delete(ADMIN, "ubuntu")
    assert names(volumes, ALICE) == ["debian"]


def test_owners_outlive_the_storage_object_and_are_kept_private(pool_dir, volumes):
    volumes.create(ALICE, "alice-data")
    volumes.snapshot(ALICE, "alice-data", "alice-data-1")
    restarted = OwnedStorage(BtrfsStorage(pool_dir))  # what a restarted runner builds
    assert [(v.name, v.owner) for v in restarted.list(ADMIN)] == [("alice-data", "alice-key"), ("alice-data-1", "alice-key")]
    assert names(restarted, BOB) == []

    records = pool_dir / ".owners"
    assert oct(records.stat().st_mode & 0o777) == "0o700"
    record = records / "alice-data.json"
    assert oct(record.stat().st_mode & 0o777) == "0o600"
    assert json.loads(record.read_text()) == {"format": 1, "volume": "alice-data", "owner": "alice-key"}
    assert ".owners" not in names(restarted, ADMIN)


def test_deleting_a_volume_removes_its_owner_and_a_stale_record_is_overwritten(pool_dir, volumes):
    volumes.create(ALICE, "data")
    volumes.delete(ALICE, "data")
    assert not (pool_dir / ".owners" / "data.json").exists()

    volumes.owners.set("ghost", "alice-key")  # what a crash between a claim and its volume leaves
    assert volumes.create(BOB, "ghost").owner == "bob-key"


def test_an_unreadable_owner_record_is_refused_not_taken_for_shared(pool_dir, volumes):
    volumes.create(ALICE, "data")
    (pool_dir / ".owners" / "data.json").write_text("{torn")
    with pytest.raises(StorageError, match="the owner record of volume 'data' cannot be read"):
        volumes.info(BOB, "data")
