"""A VmSpec in cloud-hypervisor's terms: the VmConfig body of PUT vm.create.

Only what the spec sets is written, leaving the VMM's defaults for the rest;
this is the single place the API's units live (memory in bytes, CPUs as boot/max).
"""

from __future__ import annotations

from dataclasses import asdict
from typing import Any

from sal.hypervisor.spec import MIB, VmSpec


def vm_config(spec: VmSpec) -> dict[str, Any]:
    payload = {key: value for key in ("kernel", "firmware", "cmdline", "initramfs") if (value := getattr(spec, key))}
    config: dict[str, Any] = {
        "cpus": {"boot_vcpus": spec.vcpus, "max_vcpus": spec.vcpus},
        "memory": {"size": spec.memory_mib * MIB},
        "payload": payload,
        "serial": {"mode": "File", "file": spec.serial_file} if spec.serial_file else {"mode": "Null"},
        "console": {"mode": "Off"},
    }
    if spec.disks:
        config["disks"] = [without_none(asdict(disk)) for disk in spec.disks]
    if spec.taps:
        config["net"] = [without_none(asdict(tap)) for tap in spec.taps]
    return config


def without_none(entry: dict[str, Any]) -> dict[str, Any]:
    return {key: value for key, value in entry.items() if value is not None}
