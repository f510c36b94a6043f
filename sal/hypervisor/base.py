"""The hypervisor SAL's interface: what a driver does for the generic VM layer, and the VM errors.

sal.hypervisor.manager owns everything about a VM but running it: its record,
its disks, the per-VM lock. A driver (sal/hypervisor/drivers/) runs it. The
handle a driver gets for a VM is the VM's directory: whatever it needs to find
the VM's process again (a pid file, an API socket) it keeps in there. So a
restarted runner, with a fresh driver, finds every running VM from the files
alone, as Nomad's task drivers recover their tasks from handles.

A VM's state is its VMM's ("Created", "Running", "Paused", "Shutdown"),
"Stopped" when no process runs for it, or "Unreachable" when one runs but does
not answer.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any, Protocol

from sal.errors import SalError
from sal.fingerprint import Fingerprint
from sal.hypervisor.spec import VmSpec

# A VM name is also a hostname label and the prefix of its root volume ("NAME-root").
VM_NAME = re.compile(r"[a-z0-9]([a-z0-9-]{0,46}[a-z0-9])?")


class HypervisorDriver(Protocol):
    # Written into every VM's record: a VM is only ever run by the driver that created it.
    name: str
    # A simulator serves the VMM's API: VMs "run", but no guest code does. node_info() says so.
    simulated: bool

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

    def details(self, vm_dir: Path) -> dict[str, Any]:
        """The driver's own fields of the VM's info (e.g. cloud-hypervisor's api_socket)."""


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


class VmNotCreated(HypervisorError):
    """There is no VM in this VMM, or no device with that id (cloud-hypervisor: 404)."""


class InvalidVmState(HypervisorError):
    """The VM is not in a state for that action, e.g. pause when not running (405)."""


class InvalidVmConfig(HypervisorError):
    """The VMM refused the configuration or request (400)."""


class DeviceConflict(HypervisorError):
    """A device with the same id or path exists (409)."""


class VmmFailure(HypervisorError):
    """The action failed inside the VMM (500 or another status), or the VMM did not start."""
