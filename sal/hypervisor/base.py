"""The hypervisor SAL's interface: what a driver does for the generic VM layer, and the VM errors.

sal.hypervisor.manager owns everything about a VM but running it: its record,
its disks, the per-VM lock. A driver (sal/hypervisor/drivers/) runs it. The
handle a driver gets for a VM is the VM's directory: whatever it needs to find
the VM's process again (a pid file, an API socket) it keeps in there. So a
restarted runner, with a fresh driver, finds every running VM from the files
alone, as Nomad's task drivers recover their tasks from handles.

A VM's state is one of STATES, the same for every driver:

    Created      a VMM runs, holding a VM that is not booted (cloud-hypervisor
                 after vm.shutdown drops the guest: its info says Created)
    Running      the guest runs
    Paused       the guest's vCPUs are stopped; its memory is kept
    Failed       a VMM runs but its guest stopped on an error (QEMU: an internal
                 error, a panic); stopping the VM ends the VMM
    Stopped      no VMM runs for it, including one on its way out (the guest
                 powered off, the VMM exits: cloud-hypervisor answers 500 then)
    Unreachable  a VMM runs but does not answer

No driver reports "Shutdown": the real cloud-hypervisor never does (a powered-off
guest ends its VMM), and QEMU here exits when its guest powers off.

Optional abilities are FEATURES a driver lists in its fingerprint; asking a
driver for one it lacks raises Unsupported.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

from sal.errors import SalError
from sal.fingerprint import Fingerprint
from sal.hypervisor.spec import DiskSpec, VmSpec

STATES = ("Created", "Running", "Paused", "Failed", "Stopped", "Unreachable")

# What a driver may be able to do beyond start, stop and state, as its fingerprint lists them.
FEATURES = {
    "kernel_boot": "boots a kernel (vmlinux, optional initramfs and cmdline) directly",
    "firmware_boot": "boots a firmware (images without a kernel)",
    "disks": "virtio block disks",
    "taps": "virtio network devices on host taps",
    "pause": "pause and resume",
    "reboot": "reset the guest",
    "hotplug": "attach and detach disks while the guest runs",
    "snapshot": "save a paused VM and restore it",
}

# A VM name is also a hostname label and the prefix of its root volume ("NAME-root").
VM_NAME = re.compile(r"[a-z0-9]([a-z0-9-]{0,46}[a-z0-9])?")


@dataclass(frozen=True)
class Ending:
    """How a VM's last VMM ended, when none runs."""

    kind: str  # "exited" (code 0: the guest powered off, or the VMM was told to quit), "failed", "node_restarted", "never_started"
    code: int | None = None  # the VMM's exit status; < 0: the signal that killed it
    at: float | None = None

    @property
    def clean(self) -> bool:
        return self.kind == "exited"


class HypervisorDriver(Protocol):
    # Written into every VM's record: a VM is only ever run by the driver that created it.
    name: str
    # A simulator serves the VMM's API: VMs "run", but no guest code does. node_info() says so.
    simulated: bool
    # Which of FEATURES it has, as its fingerprint says.
    features: tuple[str, ...]
    # Whether its VMM truncates the console file at every boot and reboot of a running VMM (cloud-hypervisor
    # does, as measured), so the VM layer keeps the boot before first; every VMM's file is new at its start.
    console_reset_at_boot: bool
    # Whether its VMM writes the console file appending (O_APPEND), so it can be cut while the guest writes.
    console_appends: bool

    def fingerprint(self) -> Fingerprint: ...

    def check_vm_dir(self, vm_dir: Path) -> None:
        """Refuse (SalError) a VM directory the driver could not use, before anything is made."""

    def pid(self, vm_dir: Path) -> int | None:
        """The VM's process while it runs (a reused pid is never taken for it), else None."""

    def state(self, vm_dir: Path) -> str:
        """The VM's state (see the module's docstring)."""

    def start(self, vm_dir: Path, spec: VmSpec) -> None:
        """Run the VM: start its process, create and boot it; boot it again when shut down, resume it when
        paused; nothing when it runs. A failed start leaves no process behind."""

    def stop(self, vm_dir: Path, timeout: float) -> None:
        """Power the guest off (ACPI), forced after `timeout` seconds, and end its process; nothing when none runs."""

    def ending(self, vm_dir: Path) -> Ending:
        """How the VM's last VMM ended (when none runs): the guest powered off, a crash, a node restart."""

    def details(self, vm_dir: Path) -> dict[str, Any]:
        """The driver's own fields of the VM's info (e.g. cloud-hypervisor's api_socket)."""

    def pause(self, vm_dir: Path) -> None:
        """Stop the guest's vCPUs (InvalidVmState unless it runs)."""

    def resume(self, vm_dir: Path) -> None:
        """Run a paused guest again (InvalidVmState unless it is paused)."""

    def reboot(self, vm_dir: Path) -> None:
        """Reset the guest (InvalidVmState unless it runs or is paused)."""

    def add_disk(self, vm_dir: Path, disk: DiskSpec) -> None:
        """Attach a disk to the running VM under `disk.id` (the "hotplug" feature)."""

    def remove_disk(self, vm_dir: Path, disk_id: str) -> None:
        """Detach the disk `disk_id` from the running VM (the "hotplug" feature)."""

    def snapshot(self, vm_dir: Path, destination: Path) -> None:
        """Save a paused VM (its memory and devices) into the empty directory `destination` (the "snapshot" feature)."""

    def restore(self, vm_dir: Path, spec: VmSpec, source: Path) -> None:
        """Run the VM again from a snapshot, paused; no VMM may run for it (the "snapshot" feature)."""


class VmNotFound(SalError):
    pass


class VmExists(SalError):
    pass


class InvalidVmName(SalError, ValueError):
    pass


def check_vm_name(name: str) -> str:
    if not isinstance(name, str) or not VM_NAME.fullmatch(name):
        raise InvalidVmName(f"invalid VM name {name!r}: use 1-48 lowercase letters, digits and '-', not at either end")
    return name


class HypervisorError(SalError):
    """The VMM refused or failed a request; `status` and `messages` are its answer."""

    def __init__(self, message: str, status: int | None = None, messages: list[str] | None = None):
        super().__init__(message)
        self.status = status
        self.messages = messages or []


class VmmUnreachable(HypervisorError):
    """Nothing answers on the VMM's API: it is not running."""


class VmmExiting(VmmUnreachable):
    """The VMM answers that it is going away (its guest powered off): the VM is stopped, or about to be."""


class VmNotCreated(HypervisorError):
    """There is no VM in this VMM, or no device with that id (cloud-hypervisor: 404)."""


class InvalidVmState(HypervisorError):
    """The VM is not in a state for that action, e.g. pause when not running."""


class InvalidVmConfig(HypervisorError):
    """The VMM refused the configuration or request (400)."""


class DeviceConflict(HypervisorError):
    """A device with the same id or path exists (409)."""


class VmmFailure(HypervisorError):
    """The action failed inside the VMM (500 or another status), or the VMM did not start."""


class Unsupported(HypervisorError):
    """This driver cannot do that (a feature its fingerprint does not list)."""
