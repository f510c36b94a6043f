"""A node's capacity: what it has, what its VMs and volumes hold, and what is free for more.

What is held counts every VM defined on the node, running or stopped (a stopped
VM may start again at any time, and its owner expects it to: the VM layer's
sal.hypervisor.record.held), and every volume's quota (`quotas`). The allocation ratios (node settings `cpu_allocation_ratio`,
`memory_allocation_ratio`, `disk_allocation_ratio`, as OpenStack names them)
say how far the node may promise more than it has:

    free = total × ratio − held            (never below zero)

`vm_create` and a volume with a quota are refused (OverCommitted) when they
would take more than is free; the identity manager reports held and free to
the ledger with each uptime report, and coord places deployments on what is free.
"""

from __future__ import annotations

import contextlib
import os
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

from sal.errors import SalError


class Storage(Protocol):
    """What quotas() reads of a storage driver (sal.storage.base.Storage has it; this module imports no SAL)."""

    def list(self) -> list: ...

    def usage(self, name: str) -> Any: ...

MIB = 1024 * 1024


class OverCommitted(SalError):
    """The node has not enough free capacity for this, its allocation ratios applied."""


@dataclass(frozen=True)
class Resources:
    vcpus: int
    memory: int  # bytes
    disk: int  # bytes

    def __add__(self, other: Resources) -> Resources:
        return Resources(self.vcpus + other.vcpus, self.memory + other.memory, self.disk + other.disk)


@dataclass(frozen=True)
class Ratios:
    vcpus: float = 4.0
    memory: float = 1.0
    disk: float = 1.0


def host_total(storage: Path) -> Resources:
    """This machine's CPUs and memory, and the size of the file system holding `storage`."""
    return Resources(
        vcpus=os.cpu_count() or 1,
        memory=os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES"),
        disk=shutil.disk_usage(storage).total,
    )


def quotas(storage: Storage | None) -> Resources:
    """The disk the volumes' quotas promise (a volume without a quota promises nothing). A volume that
    cannot be read counts for nothing."""
    disk = 0
    for volume in storage.list() if storage is not None else ():
        with contextlib.suppress(SalError, OSError):
            disk += storage.usage(volume.name).limit or 0
    return Resources(0, 0, disk)


def free(total: Resources, holding: Resources, ratios: Ratios) -> Resources:
    return Resources(
        vcpus=max(0, int(total.vcpus * ratios.vcpus) - holding.vcpus),
        memory=max(0, int(total.memory * ratios.memory) - holding.memory),
        disk=max(0, int(total.disk * ratios.disk) - holding.disk),
    )


def check_room(wanted: Resources, total: Resources, holding: Resources, ratios: Ratios) -> None:
    """Return when `wanted` fits in what is free; else OverCommitted naming what does not."""
    left = free(total, holding, ratios)
    for name, unit, scale in (("vcpus", "vCPUs", 1), ("memory", "MiB of memory", MIB), ("disk", "MiB of disk", MIB)):
        want, have = getattr(wanted, name), getattr(left, name)
        if want > have:
            ratio = getattr(ratios, name)
            raise OverCommitted(
                f"this node has {have // scale} {unit} free (its {name} allocation ratio {ratio:g} applied), "
                f"and this needs {want // scale}"
            )
