"""Volumes' owners (sal.storage.owned): two deployers on one node, its admin, volumes without owners and shared
ones, on a real btrfs."""

import json
import re

import btrfsutil
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


def test_a_volume_without_an_owner_record_is_the_admins_alone(pool_dir, volumes, storage):
    """What a node upgraded to owners holds: volumes made before them, or outside scripts, have no record. They are
    nobody's, so no deployer's: not shared, as if they did not exist."""
    storage.create("legacy-data")  # a tenant's, from before volumes had owners
    made = volumes.create(OPERATOR, "ops")  # the operator through this layer: no owner, no record either
    assert (made.owner, made.shared) == (None, False) and not (pool_dir / ".owners" / "ops.json").exists()
    assert names(volumes, ALICE) == names(volumes, BOB) == []
    for action in (
        lambda caller, name: volumes.info(caller, name),
        lambda caller, name: volumes.clone(caller, name, "mine"),  # a VM's root disk from it: what this stops
        lambda caller, name: volumes.snapshot(caller, name, "mine"),
        lambda caller, name: volumes.delete(caller, name),
        lambda caller, name: volumes.set_quota(caller, name, MIB),
    ):
        for caller in (ALICE, BOB):
            for name in ("legacy-data", "ops"):
                with pytest.raises(VolumeNotFound, match=f"^no volume '{name}'$"):  # a missing volume's words
                    action(caller, name)
    assert not storage.exists("mine")
    legacy = volumes.info(ADMIN, "legacy-data")
    assert (legacy.owner, legacy.shared) == (None, False) and legacy.as_dict()["shared_image"] is False
    assert names(volumes, ADMIN) == ["legacy-data", "ops"]
    volumes.owners.set("legacy-data", "alice-key")  # the operator gives it its owner back
    assert names(volumes, ALICE) == ["legacy-data"] and names(volumes, BOB) == []


def test_a_shared_volume_is_seen_by_everyone_and_changed_by_admins_only(pool_dir, volumes, storage):
    storage.create("ubuntu")  # made outside scripts, by the operator: the admins' until shared
    shared = volumes.share(OPERATOR, "ubuntu")
    assert (shared.owner, shared.shared) == (None, True) and shared.as_dict()["shared_image"] is True
    record = pool_dir / ".owners" / "ubuntu.json"
    assert json.loads(record.read_text()) == {"format": 1, "volume": "ubuntu", "owner": None, "shared": True}
    assert oct(record.stat().st_mode & 0o777) == "0o600"
    volumes.create(ALICE, "alice-data")
    assert names(volumes, ALICE) == ["alice-data", "ubuntu"] and names(volumes, BOB) == ["ubuntu"]
    assert volumes.info(BOB, "ubuntu").shared
    for action in (
        lambda caller: volumes.delete(caller, "ubuntu"),
        lambda caller: volumes.snapshot(caller, "ubuntu", "mine"),
        lambda caller: volumes.set_quota(caller, "ubuntu", MIB),
    ):
        for caller in (ALICE, BOB):
            with pytest.raises(VolumeShared, match="volume 'ubuntu' is shared on this node .* only a node admin"):
                action(caller)
    # ... but booting from it is what it is for: a clone is the deployer's own, and not shared.
    clone = volumes.clone(BOB, "ubuntu", "bob-root")
    assert (clone.owner, clone.shared) == ("bob-key", False) and names(volumes, ALICE) == ["alice-data", "ubuntu"]
    volumes.delete(ADMIN, "ubuntu")
    assert names(volumes, ALICE) == ["alice-data"] and not record.exists()


def test_only_a_node_admin_shares_and_only_a_volume_that_exists(pool_dir, volumes):
    volumes.create(ALICE, "alice-image")
    for caller in (ALICE, BOB):  # not even one's own: sharing is the node's decision
        with pytest.raises(StorageError, match="^only a node admin may share a volume$"):
            volumes.share(caller, "alice-image")
    with pytest.raises(VolumeNotFound):
        volumes.share(OPERATOR, "ghost")
    assert not (pool_dir / ".owners" / "ghost.json").exists()  # no mark waits for a volume made under the name
    assert names(volumes, BOB) == []
    shared = volumes.share(ADMIN, "alice-image")  # an admin may: the mark takes the owner's place
    assert (shared.owner, shared.shared) == (None, True) and names(volumes, BOB) == ["alice-image"]
    with pytest.raises(VolumeShared):
        volumes.delete(ALICE, "alice-image")


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


def test_a_refused_delete_leaves_the_volume_as_it_was(volumes):
    volumes.create(ALICE, "alice-data")
    volumes.create(ADMIN, "image")
    volumes.share(ADMIN, "image")
    for caller, name in ((ALICE, "alice-data"), (ADMIN, "image")):
        btrfsutil.create_subvolume(volumes.info(caller, name).path / "inner")  # not deleted without recursive
        with pytest.raises(StorageError, match="delete recursively"):
            volumes.delete(caller, name)
    assert volumes.info(ALICE, "alice-data").owner == "alice-key" and volumes.info(BOB, "image").shared
    volumes.delete(ALICE, "alice-data", recursive=True)
    assert names(volumes, ADMIN) == ["image"]


def test_an_unreadable_owner_record_is_refused_not_taken_for_another(pool_dir, volumes):
    volumes.create(ALICE, "data")
    (pool_dir / ".owners" / "data.json").write_text("{torn")
    with pytest.raises(StorageError, match="the owner record of volume 'data' cannot be read"):
        volumes.info(BOB, "data")


@pytest.mark.parametrize(
    "record",
    [
        {"owner": "alice-key", "shared": True},  # both: whose is it?
        {"owner": None},  # neither, but a record: not "no record"
        {"owner": None, "shared": "yes"},
        {"shared": True, "volume": "other"},
        {"owner": "alice-key", "format": 2},
    ],
)
def test_a_malformed_owner_record_is_refused_not_taken_for_shared(pool_dir, volumes, record):
    volumes.create(ALICE, "data")
    (pool_dir / ".owners" / "data.json").write_text(json.dumps({"format": 1, "volume": "data", **record}))
    for caller in (BOB, ADMIN):
        with pytest.raises(StorageError, match="the owner record of volume 'data' is malformed"):
            volumes.info(caller, "data")
