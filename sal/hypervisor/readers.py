"""Who besides the runners (root) reads a VM's directory: the group the operator gave `vm_dir`, if any.

The supervisor serves each VM's console and events to its owner
(supervisor/vms.py), and runs as its own user (`zeronode`), not root. VM
directories are root's and private (0700, files 0600) unless the operator opts
in by giving `vm_dir` a group that may read it:

    chgrp zeronode /var/lib/zeronode/vms && chmod 2750 /var/lib/zeronode/vms

Then each VM's directory is made group-readable by that group (2750: what is
made in it keeps the group), and the files the supervisor reads (the record,
the events, the console) 0640. Nobody else reads any of it, and only root
writes: the supervisor can read consoles, never act on a VM.

Only root writes, on the whole path: runners and the VM keeper run as root and
boot what VM records say (kernels, disks, taps), so `check_only_root_writes`
refuses a `vm_dir` that another user could write to, or whose parent another
user could rename it in (say /var/lib/zeronode, the supervisor's state dir):
keep it on its own, e.g. /var/lib/zeronode-vms.
"""

from __future__ import annotations

import os
import stat
from pathlib import Path

GROUP_READ = stat.S_IRGRP | stat.S_IXGRP


def readers_group(vms_dir: Path) -> int | None:
    """The group that may read `vms_dir`'s VMs, or None when the operator gave it none (VMs are root's alone)."""
    status = os.stat(vms_dir)
    return status.st_gid if status.st_mode & GROUP_READ == GROUP_READ else None


def make_vm_dir(directory: Path) -> None:
    """Make a VM's directory: private, or readable by its parent's readers group."""
    directory.mkdir(mode=0o700, parents=True)
    group = readers_group(directory.parent)
    if group is not None:
        os.chown(directory, -1, group)
        os.chmod(directory, 0o2750)


def file_mode(directory: Path) -> int:
    """The mode of a file the supervisor reads in a VM's directory: 0640 where its readers group may, else 0600."""
    return 0o640 if os.stat(directory).st_mode & stat.S_IRGRP else 0o600


def check_only_root_writes(vms_dir: Path) -> str | None:
    """Why `vms_dir` is not root's alone (a directory on its path another user may write to, not sticky), or None.
    The nearest existing ancestor counts for a vm_dir still to be made."""
    path = Path(vms_dir).resolve()
    for directory in (path, *path.parents):
        try:
            status = os.stat(directory)
        except FileNotFoundError:
            continue
        sticky = status.st_mode & stat.S_ISVTX  # /tmp: others may add, not rename or remove what is root's
        if status.st_uid != 0:
            return f"{directory} belongs to uid {status.st_uid}, not root"
        if status.st_mode & (stat.S_IWGRP | stat.S_IWOTH) and not sticky:
            return f"{directory} may be written by its group or others (mode {stat.S_IMODE(status.st_mode):o})"
    return None
