"""The node's VMs as clients read them through the supervisor: their consoles and events, to their owners.

A VM's serial console and its events are its owner's and the node admins'
(sal.tenancy): a reader who may not see a VM gets the answer a missing VM gets.
The supervisor only reads (sal.hypervisor.viewer): no driver, no VMM, nothing
made; it runs as its own user, and needs `vm_dir`'s readers group for it
(sal.hypervisor.readers). Console text is the guest's, untrusted: it goes out as
a JSON string, and clients must not interpret it (the CLI prints it with
terminal controls escaped).
"""

from __future__ import annotations

import os
from collections.abc import Callable
from typing import Any

from sal.errors import SalError
from sal.hypervisor import InvalidVmName, VmNotFound
from sal.hypervisor.console import END
from sal.hypervisor.viewer import VmViewer
from sal.tenancy import Caller
from zeronode.api.errors import NotFound, Refused, Unavailable
from zeronode.node.authorizer import Authorizer
from zeronode.node.settings import NodeSettings


class VmReader:
    def __init__(self, settings: NodeSettings, authorizer: Authorizer):
        self.settings = settings
        self.authorizer = authorizer
        self.viewer = VmViewer(settings.vm_state_dir)

    def console(self, reader: str, name: str, *, lines: int, boot: int) -> dict[str, Any]:
        """The last lines of a boot's console, and (for this boot) where a follower goes on from."""
        def read(caller: Caller) -> dict[str, Any]:
            # The end first: a line written meanwhile is shown twice at worst, never lost to a follower.
            end = self.viewer.console_from(caller, name, END) if boot == 0 else None
            text = self.viewer.logs(caller, name, lines, boot)
            return {"vm": name, "boot": boot, "text": text, "offset": end.offset if end else None,
                    "file": end.file if end else None}

        return self._read(reader, name, read)

    def follow(self, reader: str, name: str, offset: int, file: int | None) -> dict[str, Any]:
        def read(caller: Caller) -> dict[str, Any]:
            chunk = self.viewer.console_from(caller, name, offset, file)
            return {"vm": name, "text": chunk.text, "offset": chunk.offset, "file": chunk.file}

        return self._read(reader, name, read)

    def events(self, reader: str, name: str, limit: int) -> dict[str, Any]:
        return self._read(reader, name, lambda caller: {"vm": name, "events": self.viewer.events(caller, name, limit)})

    def _read(self, reader: str, name: str, read: Callable[[Caller], dict[str, Any]]) -> dict[str, Any]:
        if self.settings.storage_root is None:
            raise NotFound(404, "no_vms", "this node has no VMs (no storage_root)")
        if not os.access(self.viewer.state_dir, os.R_OK | os.X_OK):
            raise Unavailable("the supervisor may not read this node's vm_dir: give vm_dir a readers group "
                              "(docs/operators.md)", status=503, reason="vm_dir_unreadable")
        caller = Caller(owner=reader, admin=self.authorizer.is_admin(reader))
        try:
            return read(caller)
        except (VmNotFound, InvalidVmName):
            raise NotFound(404, "not_found", f"no VM {name!r} on this node") from None
        except SalError as exc:
            raise Refused(422, "invalid_request", str(exc)) from None
        except PermissionError:  # a VM made before vm_dir had its readers group
            raise Unavailable(f"the supervisor may not read VM {name!r}'s directory: give it vm_dir's readers group "
                              "(docs/operators.md)", status=503, reason="vm_dir_unreadable") from None
