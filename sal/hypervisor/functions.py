"""The hypervisor SAL as Rhai scripts see it.

    vm_create(#{ name: "web1", image: "ubuntu", vcpus: 2, memory_mb: 1024, disk_gb: 10,
                 volumes: ["web1-data"], cmdline: "...", taps: ["tap-web1"] });   // the VM's info; taps: admins only
    vm_start("web1");     // boots it (or resumes it); its info, state "Running"
    vm_stop("web1");      // or #{ name: "web1", timeout: 10 }: ACPI power-off, forced after timeout
    vm_info("web1");      // #{ name, state, hypervisor, pid, image, vcpus, memory_mb, disks, volumes, ... }
    vm_list();            // [info, ...]
    vm_delete("web1");    // stops it, removes it and its root disk; data volumes stay

Each acts for the job's signer (sal.tenancy): the VMs it creates are the
signer's, and it sees and acts on only those (a node admin: on all).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from sal.context import time_left
from sal.errors import SalError, configured, spec
from sal.hypervisor.manager import VmManager
from sal.tenancy import current_caller


def functions(manager: VmManager | None) -> dict[str, Callable[..., Any]]:
    vms = configured(manager, "VMs are not available on this node (they need storage_root for their disks)")

    def vm_create(arguments: dict) -> dict:
        args = spec(
            "vm_create", arguments, required={"name": str, "image": str},
            optional={"vcpus": int, "memory_mb": int, "disk_gb": int, "volumes": list, "cmdline": str, "taps": list},
        )
        for key in ("volumes", "taps"):
            if not all(isinstance(item, str) for item in args.get(key, [])):
                raise SalError(f"vm_create: {key!r} must be an array of strings")
        return vms().create(
            current_caller(), args["name"], image=args["image"], vcpus=args.get("vcpus", 1),
            memory_mib=args.get("memory_mb", 512), disk_gb=args.get("disk_gb"), volumes=args.get("volumes", []),
            cmdline=args.get("cmdline"), taps=args.get("taps", []),
        )

    def vm_start(name: str) -> dict:
        return vms().start(current_caller(), name)

    def vm_stop(name_or_arguments: str | dict) -> dict:
        if isinstance(name_or_arguments, str):
            name_or_arguments = {"name": name_or_arguments}
        args = spec("vm_stop", name_or_arguments, required={"name": str}, optional={"timeout": int})
        # The graceful wait fits in what the job has left; past it, the VM is forced off.
        return vms().stop(current_caller(), args["name"], timeout=time_left(args.get("timeout", 30)))

    def vm_delete(name: str) -> None:
        vms().delete(current_caller(), name)

    def vm_info(name: str) -> dict:
        return vms().info(current_caller(), name)

    def vm_list() -> list[dict]:
        return vms().list(current_caller())

    return {
        "vm_create": vm_create,
        "vm_start": vm_start,
        "vm_stop": vm_stop,
        "vm_delete": vm_delete,
        "vm_info": vm_info,
        "vm_list": vm_list,
    }
