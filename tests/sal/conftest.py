"""A real btrfs for the storage tests: an image file, loop-mounted (this needs root, which these machines give)."""

import contextlib
import os
import shutil
import subprocess
import uuid

import btrfsutil
import pytest


@pytest.fixture(scope="session")
def btrfs_mount(tmp_path_factory):
    assert os.geteuid() == 0, "the btrfs tests mount a loop device: run them as root"
    assert shutil.which("mkfs.btrfs"), "mkfs.btrfs is missing; run scripts/install-system-packages"
    base = tmp_path_factory.mktemp("btrfs")
    image, mount = base / "pool.img", base / "mnt"
    mount.mkdir()
    with open(image, "wb") as file:
        file.truncate(512 * 1024 * 1024)
    subprocess.run(["mkfs.btrfs", "-q", str(image)], check=True, capture_output=True)
    subprocess.run(["mount", "-o", "loop", str(image), str(mount)], check=True, capture_output=True)
    try:
        yield mount
    finally:
        subprocess.run(["umount", "-l", str(mount)], check=False, capture_output=True)


def remove_pool(path):
    for entry in sorted(path.iterdir(), reverse=True) if path.exists() else []:
        if not entry.is_symlink() and entry.is_dir() and btrfsutil.is_subvolume(entry):
            if btrfsutil.get_subvolume_read_only(entry):
                btrfsutil.set_subvolume_read_only(entry, False)
            btrfsutil.delete_subvolume(entry, recursive=True)
    shutil.rmtree(path, ignore_errors=True)


@contextlib.contextmanager
def new_pool(btrfs_mount):
    """A fresh, empty pool directory on the btrfs, removed with all its volumes afterwards."""
    path = btrfs_mount / f"pool-{uuid.uuid4().hex[:8]}"
    path.mkdir()
    try:
        yield path
    finally:
        remove_pool(path)


@pytest.fixture
def pool_dir(btrfs_mount):
    with new_pool(btrfs_mount) as path:
        yield path


@pytest.fixture
def second_pool_dir(btrfs_mount):
    """Another pool: where a volume sent from `pool_dir` is received."""
    with new_pool(btrfs_mount) as path:
        yield path
