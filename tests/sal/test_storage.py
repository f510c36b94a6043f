"""The btrfs storage SAL on a real, loop-mounted btrfs."""

import errno
import os

import pytest

from sal.storage import InvalidName, StorageError, VolumeExists, VolumeNotFound
from sal.storage.drivers.btrfs import BtrfsStorage

MIB = 1024 * 1024


@pytest.fixture
def storage(pool_dir):
    return BtrfsStorage(pool_dir)


def test_create_info_list_delete(storage):
    volume = storage.create("data1")
    assert (volume.name, volume.read_only, volume.parent_uuid) == ("data1", False, None)
    assert volume.path == storage.root / "data1" and volume.path.is_dir()
    assert storage.exists("data1") and not storage.exists("data2")
    storage.create("data2")
    assert [v.name for v in storage.list()] == ["data1", "data2"]
    (volume.path / "file").write_text("x")
    storage.delete("data1")
    assert not volume.path.exists()
    assert [v.name for v in storage.list()] == ["data2"]


def test_plain_directories_are_not_volumes(storage):
    import btrfsutil

    (storage.root / "plain").mkdir()
    btrfsutil.create_subvolume(storage.root / "made by hand")  # a name no script could use
    assert storage.list() == []
    with pytest.raises(StorageError, match="not a volume"):
        storage.info("plain")


def test_missing_and_duplicate_volumes(storage):
    storage.create("v")
    with pytest.raises(VolumeExists):
        storage.create("v")
    with pytest.raises(VolumeNotFound):
        storage.delete("nope")
    with pytest.raises(VolumeNotFound):
        storage.snapshot("nope", "copy")


@pytest.mark.parametrize("name", ["..", "../escape", "/etc", "a/b", ".hidden", "", "x" * 65, "sp ace", "nul\0", 7])
def test_bad_names_are_refused_before_any_syscall(storage, name):
    before = sorted(os.listdir(storage.root))
    with pytest.raises(InvalidName):
        storage.create(name)
    with pytest.raises(InvalidName):
        storage.snapshot("anything", name)
    assert sorted(os.listdir(storage.root)) == before


def test_symlinks_cannot_lead_out_of_the_pool(storage, tmp_path):
    outside = tmp_path / "outside"
    outside.mkdir()
    (storage.root / "evil").symlink_to(outside)
    for action in (lambda: storage.create("evil"), lambda: storage.delete("evil"), lambda: storage.info("evil")):
        with pytest.raises(StorageError, match="not a plain entry"):
            action()
    assert outside.is_dir()


def test_snapshots_read_only_and_writable(storage):
    source = storage.create("base")
    (source.path / "config").write_text("v1")
    frozen = storage.snapshot("base", "base-ro")
    clone = storage.snapshot("base", "base-rw", read_only=False)
    assert frozen.read_only and not clone.read_only
    assert frozen.parent_uuid == clone.parent_uuid == source.uuid
    assert (frozen.path / "config").read_text() == "v1"
    with pytest.raises(OSError) as info:
        (frozen.path / "config").write_text("changed")
    assert info.value.errno == errno.EROFS
    (clone.path / "config").write_text("v2")  # a clone diverges; the source does not see it
    assert (source.path / "config").read_text() == "v1"


def test_delete_with_nested_volumes_needs_recursive(storage):
    outer = storage.create("outer")
    import btrfsutil

    btrfsutil.create_subvolume(outer.path / "inner")
    with pytest.raises(StorageError, match="recursively"):
        storage.delete("outer")
    storage.delete("outer", recursive=True)
    assert not outer.path.exists()


def test_quota_limits_writes_and_usage_reports_it(storage):
    volume = storage.create("small", quota_bytes=2 * MIB)
    with pytest.raises(OSError) as info, open(volume.path / "big", "wb") as file:
        for _ in range(8):
            file.write(os.urandom(MIB))
            file.flush()
            os.fsync(file.fileno())
    assert info.value.errno == errno.EDQUOT
    usage = storage.usage("small")
    assert usage.limit == 2 * MIB
    assert MIB <= usage.referenced <= 3 * MIB
    storage.set_quota("small", None)
    assert storage.usage("small").limit is None
    with pytest.raises(StorageError, match="positive"):
        storage.set_quota("small", -5)


def test_send_and_receive_full_then_incremental(storage, second_pool_dir, tmp_path):
    elsewhere = BtrfsStorage(second_pool_dir)
    data = storage.create("db")
    (data.path / "table").write_text("rows: 1")
    storage.snapshot("db", "db-1")
    full = tmp_path / "db-1.stream"
    with open(full, "wb") as out:
        storage.send("db-1", out)
    with open(full, "rb") as stream:
        received = elsewhere.receive(stream)
    assert received.name == "db-1" and received.read_only
    assert (received.path / "table").read_text() == "rows: 1"

    (data.path / "table").write_text("rows: 2")
    storage.snapshot("db", "db-2")
    delta = tmp_path / "db-2.stream"
    with open(delta, "wb") as out:
        storage.send("db-2", out, parent="db-1")
    assert delta.stat().st_size < full.stat().st_size + 4096
    with open(delta, "rb") as stream:
        second = elsewhere.receive(stream)
    assert (second.name, (second.path / "table").read_text()) == ("db-2", "rows: 2")


def test_only_read_only_snapshots_can_be_sent(storage, tmp_path):
    storage.create("live")
    with pytest.raises(StorageError, match="read-only"), open(tmp_path / "s", "wb") as out:
        storage.send("live", out)


def test_pool_root_must_exist(tmp_path):
    with pytest.raises(StorageError, match="not a directory"):
        BtrfsStorage(tmp_path / "absent")
