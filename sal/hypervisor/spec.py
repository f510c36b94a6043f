"""A small typed description of a VM, the same for every hypervisor driver.

A VMM's own configuration has dozens of knobs; a node needs a handful. Each
driver turns a VmSpec into its VMM's terms (cloud-hypervisor: drivers/cloud_hypervisor/vm_config.py).
The VM record keeps it as `as_dict()`.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

MIB = 1024 * 1024


@dataclass(frozen=True)
class DiskSpec:
    path: str
    readonly: bool = False
    id: str | None = None


@dataclass(frozen=True)
class TapSpec:
    tap: str  # the host tap device, made by zeronode for this VM (sal.hypervisor.taps)
    mac: str | None = None
    ip: str | None = None  # the host side's address on the tap
    mask: str | None = None
    id: str | None = None


@dataclass(frozen=True)
class VmSpec:
    vcpus: int = 1
    memory_mib: int = 512
    kernel: str | None = None
    firmware: str | None = None
    cmdline: str | None = None
    initramfs: str | None = None
    disks: tuple[DiskSpec, ...] = ()
    taps: tuple[TapSpec, ...] = ()
    serial_file: str | None = None  # the guest's serial console, written to this file; else discarded

    def __post_init__(self) -> None:
        if not (self.kernel or self.firmware):
            raise ValueError("a VM needs a kernel or a firmware to boot")
        if not 1 <= self.vcpus <= 255:
            raise ValueError(f"vcpus must be 1-255, got {self.vcpus}")
        if self.memory_mib < 64:
            raise ValueError(f"memory must be at least 64 MiB, got {self.memory_mib}")

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> VmSpec:
        return cls(**{
            **data,
            "disks": tuple(DiskSpec(**disk) for disk in data.get("disks", ())),
            "taps": tuple(TapSpec(**tap) for tap in data.get("taps", ())),
        })

