"""Hypervisor SAL: cloud-hypervisor VMs (client, VM manager, and a simulator for machines without the VMM)."""

from sal.hypervisor.client import (
    DeviceConflict,
    HypervisorClient,
    HypervisorError,
    InvalidVmConfig,
    InvalidVmState,
    VmmFailure,
    VmmUnreachable,
    VmNotCreated,
)
from sal.hypervisor.config import DiskSpec, TapSpec, VmSpec
from sal.hypervisor.manager import InvalidVmName, VmExists, VmManager, VmNotFound

__all__ = [
    "DeviceConflict",
    "DiskSpec",
    "HypervisorClient",
    "HypervisorError",
    "InvalidVmConfig",
    "InvalidVmName",
    "InvalidVmState",
    "TapSpec",
    "VmExists",
    "VmManager",
    "VmNotCreated",
    "VmNotFound",
    "VmSpec",
    "VmmFailure",
    "VmmUnreachable",
]
