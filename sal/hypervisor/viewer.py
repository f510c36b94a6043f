"""A node's VMs read, never acted on: which VMs a caller may see, and their consoles and events.

The VM manager acts on VMs and reads through this; the supervisor reads only
through this (supervisor/vms.py), as a user that is not root: it needs no
driver, no storage and no VMM, only read access to `vm_dir`
(sal.hypervisor.readers), and makes nothing.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from sal.errors import SalError
from sal.hypervisor import console, lifecycle
from sal.hypervisor.base import VmNotFound, check_vm_name
from sal.hypervisor.record import VmRecord
from sal.tenancy import Caller


class VmViewer:
    def __init__(self, vms_dir: Path):
        self.state_dir = Path(vms_dir)

    def directory(self, name: str) -> Path:
        return self.state_dir / check_vm_name(name)

    def visible(self, caller: Caller, name: str) -> VmRecord:
        """The VM's record if the caller may see it; VmNotFound otherwise, as for a VM that does not exist."""
        try:
            record = VmRecord.load(self.directory(name))
        except VmNotFound:
            raise
        except SalError:
            if caller.admin:
                raise
            record = None  # a record that cannot be read names no owner to let in: only admins learn of it
        if record is None or not caller.may_act_on(record.owner):
            raise VmNotFound(f"no VM named {name!r}")  # as for a missing VM: another tenant's does not show
        return record

    def logs(self, caller: Caller, name: str, lines: int = 100, boot: int = 0) -> str:
        """The last `lines` lines of the VM's serial console: this boot's (0), or an earlier one's (1, 2)."""
        self.visible(caller, name)
        if not 0 <= boot <= console.BOOTS_KEPT:
            raise SalError(f"boot must be 0 (the current one) to {console.BOOTS_KEPT}, got {boot}")
        return console.tail(self.directory(name), lines, boot)

    def console_from(self, caller: Caller, name: str, offset: int, file: int | None = None) -> console.Chunk:
        """The console from `offset` on, for followers (`zeronode vm logs --follow`): see console.read_from."""
        self.visible(caller, name)
        return console.read_from(self.directory(name), offset, file)

    def events(self, caller: Caller, name: str, limit: int = lifecycle.EVENTS_KEPT) -> list[dict[str, Any]]:
        self.visible(caller, name)
        return lifecycle.events(self.directory(name), limit)
