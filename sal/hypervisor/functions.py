"""The hypervisor SAL as Rhai scripts see it.

    vm_create(#{ name: "web1", image: "ubuntu", vcpus: 2, memory_mb: 1024, disk_gb: 10,
                 volumes: ["web1-data"], cmdline: "...", restart: "on-failure",
                 mycelium: true, private_ipv4: true, cloud_init: #{ ssh_keys: ["ssh-ed25519 ..."] } });
                          // the VM's info (mycelium_ip, private_ip); restart: always | on-failure | never
    vm_start("web1");     // boots it (or resumes it); its info, state "Running"; from now on it should run
    vm_stop("web1");      // or #{ name: "web1", timeout: 10 }: ACPI power-off, forced after timeout
    vm_info("web1");      // #{ name, state, should_run, restart, hypervisor, pid, image, vcpus, memory_mb, ... }
    vm_list();            // [info, ...]
    vm_delete("web1");    // stops it, removes it, its tap and its root disk; data volumes stay
    vm_pause("web1"); vm_resume("web1"); vm_reboot("web1");
    vm_attach("web1", "more-data"); vm_detach("web1", "more-data");   // data volumes, also while it runs
    vm_snapshot("web1", "before"); vm_restore("web1", "before");      // where the driver can (fingerprint)
    vm_snapshot_delete("web1", "before");                             // at most 3 snapshots a VM
    vm_logs("web1"); vm_logs("web1", 50);   // the last lines of its serial console; #{ name, lines, boot: 1 }
    vm_events("web1");    // [#{ at, event, ... }, ...]: created, started, stopped, exited, crashed, restarted...

Each acts for the job's signer (sal.tenancy): the VMs it creates are the
signer's, and it sees and acts on only those (a node admin: on all).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from sal.context import time_left
from sal.errors import SalError, configured, spec
from sal.hypervisor.cloud_init import CloudInit
from sal.hypervisor.manager import VmManager
from sal.tenancy import current_caller


def functions(manager: VmManager | None) -> dict[str, Callable[..., Any]]:
    vms = configured(manager, "VMs are not available on this node (they need storage_root for their disks)")

    def vm_create(arguments: dict) -> dict:
        args = spec(
            "vm_create", arguments, required={"name": str, "image": str},
            optional={"vcpus": int, "memory_mb": int, "disk_gb": int, "volumes": list, "cmdline": str,
                      "mycelium": bool, "private_ipv4": bool, "restart": str, "cloud_init": dict},
        )
        if not all(isinstance(item, str) for item in args.get("volumes", [])):
            raise SalError("vm_create: 'volumes' must be an array of strings")
        return vms().create(
            current_caller(), args["name"], image=args["image"], vcpus=args.get("vcpus", 1),
            memory_mib=args.get("memory_mb", 512), disk_gb=args.get("disk_gb"), volumes=args.get("volumes", []),
            cmdline=args.get("cmdline"), mycelium=args.get("mycelium"), private_ipv4=args.get("private_ipv4", False),
            restart=args.get("restart", "on-failure"),
            cloud_init=CloudInit.from_script(args["cloud_init"], args["name"]) if "cloud_init" in args else None,
        )

    def vm_start(name: str) -> dict:
        return vms().start(current_caller(), name)

    def vm_stop(name_or_arguments: str | dict) -> dict:
        if isinstance(name_or_arguments, str):
            name_or_arguments = {"name": name_or_arguments}
        args = spec("vm_stop", name_or_arguments, required={"name": str}, optional={"timeout": int})
        # The graceful wait fits in what the job has left; past it, the VM is forced off.
        return vms().stop(current_caller(), args["name"], timeout=time_left(args.get("timeout", 30)))

    def vm_logs(name_or_arguments: str | dict, lines: int = 100) -> str:
        if isinstance(name_or_arguments, str):
            name_or_arguments = {"name": name_or_arguments, "lines": lines}
        args = spec("vm_logs", name_or_arguments, required={"name": str}, optional={"lines": int, "boot": int})
        return vms().logs(current_caller(), args["name"], args.get("lines", 100), args.get("boot", 0))

    return {
        "vm_create": vm_create,
        "vm_start": vm_start,
        "vm_stop": vm_stop,
        "vm_delete": lambda name: vms().delete(current_caller(), name),
        "vm_info": lambda name: vms().info(current_caller(), name),
        "vm_list": lambda: vms().list(current_caller()),
        "vm_pause": lambda name: vms().pause(current_caller(), name),
        "vm_resume": lambda name: vms().resume(current_caller(), name),
        "vm_reboot": lambda name: vms().reboot(current_caller(), name),
        "vm_attach": lambda name, volume: vms().attach(current_caller(), name, volume),
        "vm_detach": lambda name, volume: vms().detach(current_caller(), name, volume),
        "vm_snapshot": lambda name, snapshot: vms().snapshot(current_caller(), name, snapshot),
        "vm_restore": lambda name, snapshot: vms().restore(current_caller(), name, snapshot),
        "vm_snapshot_delete": lambda name, snapshot: vms().delete_snapshot(current_caller(), name, snapshot),
        "vm_logs": vm_logs,
        "vm_events": lambda name: vms().events(current_caller(), name),
    }
