"""Hypervisor SAL: VMs. The driver interface and VM errors (base.py), the VM description (spec.py) and
record (record.py), the generic VM layer (manager.py); drivers in drivers/ (cloud_hypervisor)."""

from sal.hypervisor.base import (
    DeviceConflict,
    HypervisorDriver,
    HypervisorError,
    InvalidVmConfig,
    InvalidVmName,
    InvalidVmState,
    VmExists,
    Unsupported,
    VmmExiting,
    VmmFailure,
    VmmUnreachable,
    VmNotCreated,
    VmNotFound,
)
from sal.hypervisor.manager import VmManager
from sal.hypervisor.spec import DiskSpec, TapSpec, VmSpec

__all__ = [
    "DeviceConflict",
    "DiskSpec",
    "HypervisorDriver",
    "HypervisorError",
    "InvalidVmConfig",
    "InvalidVmName",
    "InvalidVmState",
    "TapSpec",
    "Unsupported",
    "VmExists",
    "VmManager",
    "VmNotCreated",
    "VmNotFound",
    "VmSpec",
    "VmmExiting",
    "VmmFailure",
    "VmmUnreachable",
]
