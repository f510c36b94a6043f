"""A small typed description of a VM, and the cloud-hypervisor VmConfig it becomes.

VmConfig has dozens of knobs; a node needs a handful. `VmSpec.to_vm_config()`
writes only what we set, leaving the VMM's defaults for the rest, and is the
single place the API's units live (memory in bytes, CPUs as boot/max).
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
    tap: str  # the host tap device; cloud-hypervisor creates it if missing
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

    def to_vm_config(self) -> dict[str, Any]:
        payload = {key: value for key in ("kernel", "firmware", "cmdline", "initramfs") if (value := getattr(self, key))}
        config: dict[str, Any] = {
            "cpus": {"boot_vcpus": self.vcpus, "max_vcpus": self.vcpus},
            "memory": {"size": self.memory_mib * MIB},
            "payload": payload,
            "serial": {"mode": "File", "file": self.serial_file} if self.serial_file else {"mode": "Null"},
            "console": {"mode": "Off"},
        }
        if self.disks:
            config["disks"] = [without_none(asdict(disk)) for disk in self.disks]
        if self.taps:
            config["net"] = [without_none(asdict(tap)) for tap in self.taps]
        return config

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> VmSpec:
        return cls(**{
            **data,
            "disks": tuple(DiskSpec(**disk) for disk in data.get("disks", ())),
            "taps": tuple(TapSpec(**tap) for tap in data.get("taps", ())),
        })


def without_none(entry: dict[str, Any]) -> dict[str, Any]:
    return {key: value for key, value in entry.items() if value is not None}
