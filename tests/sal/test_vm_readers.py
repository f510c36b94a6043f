"""VM directories are root's and private, unless the operator gives vm_dir a readers group (sal.hypervisor.readers):
then the supervisor's user, in that group, reads consoles, records and events, and still writes nothing."""

from __future__ import annotations

import grp
import os
import pwd
import stat
import subprocess

import pytest

from sal.errors import SalError
from sal.hypervisor import VmManager
from sal.hypervisor.drivers.cloud_hypervisor import CloudHypervisor

from .conftest import ALICE, make_image

READER = "nobody"  # another user, as the supervisor's `zeronode` is; its group is the readers group here


def as_reader(*command: str) -> subprocess.CompletedProcess:
    group = grp.getgrgid(pwd.getpwnam(READER).pw_gid).gr_name
    return subprocess.run(list(command), user=READER, group=group, extra_groups=[], capture_output=True, text=True)


@pytest.fixture
def vms_in(storage, short_dir):
    short_dir.chmod(0o711)  # others may pass through to vm_dir, as /var/lib/zeronode lets them
    make_image(storage)
    managers = []

    def make(readable: bool) -> VmManager:
        vms_dir = short_dir / ("shared" if readable else "private")
        vms_dir.mkdir(mode=0o700)
        if readable:
            os.chown(vms_dir, -1, pwd.getpwnam(READER).pw_gid)
            vms_dir.chmod(0o2750)
        managers.append(VmManager(vms_dir, storage, CloudHypervisor.simulator()))
        return managers[-1]

    yield make
    for manager in managers:
        manager.stop_all(timeout=1)


def test_a_vm_dir_with_a_readers_group_lets_that_group_read_and_nobody_write(vms_in):
    vms = vms_in(readable=True)
    vms.create(ALICE, "web1", image="ubuntu")
    vms.start(ALICE, "web1")
    directory = vms.state_dir / "web1"
    assert stat.S_IMODE(directory.stat().st_mode) == 0o2750 and directory.stat().st_gid == vms.state_dir.stat().st_gid
    for name in ("vm.json", "events.jsonl", "serial.log"):
        read = as_reader("cat", str(directory / name))
        assert read.returncode == 0, (name, read.stderr)
    assert "guest booted" in as_reader("cat", str(directory / "serial.log")).stdout
    assert as_reader("touch", str(directory / "planted")).returncode != 0  # read, never write
    assert as_reader("cp", "/dev/null", str(directory / "vm.json")).returncode != 0


def test_without_a_readers_group_vms_are_roots_alone(vms_in):
    vms = vms_in(readable=False)
    vms.create(ALICE, "web1", image="ubuntu")
    directory = vms.state_dir / "web1"
    assert stat.S_IMODE(directory.stat().st_mode) == 0o700
    assert stat.S_IMODE((directory / "vm.json").stat().st_mode) == 0o600
    assert as_reader("cat", str(directory / "vm.json")).returncode != 0


def test_a_vm_dir_another_user_could_write_to_or_rename_is_refused(storage, short_dir):
    """Runners and the keeper (root) boot what VM records say: nobody else may write where they live."""
    short_dir.chmod(0o711)
    owned_by_another = short_dir / "zeronode-state"
    owned_by_another.mkdir()
    os.chown(owned_by_another, pwd.getpwnam(READER).pw_uid, -1)
    with pytest.raises(SalError, match=r"is not root's alone \(.*belongs to uid"):
        VmManager(owned_by_another / "vms", storage, CloudHypervisor.simulator())
    group_writable = short_dir / "shared"
    group_writable.mkdir()
    group_writable.chmod(0o775)
    with pytest.raises(SalError, match="may be written by its group or others"):
        VmManager(group_writable / "vms", storage, CloudHypervisor.simulator())
    assert VmManager(short_dir / "vms", storage, CloudHypervisor.simulator())  # root's alone (under a sticky /tmp)
