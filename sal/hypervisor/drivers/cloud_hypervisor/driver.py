"""The hypervisor driver for cloud-hypervisor: one VMM process per VM, driven through its REST API.

The VMM is the real `cloud-hypervisor` binary, or, where it is not installed,
the simulator beside this file: the same command line, socket and API, so the
same code path here, but no guest code runs (`simulated`; the VM manager logs
it as a warning and node_info() reports it). Either way the driver's name is
"cloud-hypervisor": a VM record made on the simulator runs on the real VMM.
"""

from __future__ import annotations

import contextlib
import shutil
import time
from pathlib import Path
from typing import Any

from sal.context import job_cancelled
from sal.errors import SalError
from sal.fingerprint import Fingerprint, tool_version
from sal.hypervisor.base import HypervisorError, VmmUnreachable, VmNotCreated
from sal.hypervisor.drivers.cloud_hypervisor.client import API_VERSION, HypervisorClient
from sal.hypervisor.drivers.cloud_hypervisor.vmm import MAX_SOCKET_PATH, Vmms, socket_path
from sal.hypervisor.spec import VmSpec

NAME = "cloud-hypervisor"
# What the VM manager can ask of it: boot a kernel or a firmware, with disks and tap devices.
FEATURES = ("kernel_boot", "firmware_boot", "disks", "taps")


class CloudHypervisor:
    name = NAME

    def __init__(self, binary: str | None, *, start_timeout: float = 20.0):
        """`binary`: the cloud-hypervisor executable's path; None runs the simulator instead."""
        self.binary = binary
        self.simulated = binary is None
        self.vmms = Vmms(binary, start_timeout)

    @classmethod
    def installed(cls, binary: str = "cloud-hypervisor") -> CloudHypervisor:
        """The real VMM; a clear SalError when `binary` (a name on PATH, or a path) is not installed."""
        found = shutil.which(binary)
        if found is None:
            raise SalError(f"hypervisor = \"cloud-hypervisor\" but {binary!r} is not installed")
        return cls(found)

    @classmethod
    def simulator(cls) -> CloudHypervisor:
        return cls(None)

    def fingerprint(self) -> Fingerprint:
        """The binary's version (`--version`), or, simulated, the API version the simulator serves."""
        version = API_VERSION if self.binary is None else tool_version(self.binary)
        return Fingerprint(NAME, simulated=self.simulated, version=version, features=FEATURES)

    def check_vm_dir(self, vm_dir: Path) -> None:
        if len(str(socket_path(vm_dir))) > MAX_SOCKET_PATH:
            raise SalError(f"the VM directory {vm_dir} is too long for the VM's API socket path")

    def pid(self, vm_dir: Path) -> int | None:
        return self.vmms.pid(vm_dir)

    def state(self, vm_dir: Path) -> str:
        if self.vmms.pid(vm_dir) is None:
            return "Stopped"
        try:
            with HypervisorClient(socket_path(vm_dir)) as client:
                return client.state()
        except VmNotCreated:  # a VMM without a VM: nothing runs
            return "Stopped"
        except VmmUnreachable:
            return "Unreachable"

    def start(self, vm_dir: Path, spec: VmSpec) -> None:
        if self.vmms.pid(vm_dir) is None:
            client, state = self.vmms.spawn(vm_dir), "Stopped"
        else:
            client, state = HypervisorClient(socket_path(vm_dir)), self.state(vm_dir)
        with client:
            try:
                if state == "Stopped":
                    client.create(spec)
                    client.boot()
                elif state in ("Created", "Shutdown"):
                    client.boot()
                elif state == "Paused":
                    client.resume()
            except HypervisorError:
                if state == "Stopped":  # nothing half-started stays behind
                    self._end(vm_dir, client)
                raise

    def stop(self, vm_dir: Path, timeout: float) -> None:
        if self.vmms.pid(vm_dir) is None:
            return
        with HypervisorClient(socket_path(vm_dir)) as client:
            with contextlib.suppress(HypervisorError):
                if client.state() == "Running":
                    client.power_button()
                    deadline = time.monotonic() + timeout
                    # A cancelled job does not wait for the guest: it is powered off at once.
                    while client.state() == "Running" and time.monotonic() < deadline and not job_cancelled():
                        time.sleep(0.1)
                if client.state() in ("Running", "Paused"):
                    client.shutdown()
            self._end(vm_dir, client)

    def details(self, vm_dir: Path) -> dict[str, Any]:
        return {"api_socket": str(socket_path(vm_dir))}

    def _end(self, vm_dir: Path, client: HypervisorClient) -> None:
        """Ask the VMM to exit, then make sure it has."""
        with contextlib.suppress(HypervisorError):
            client.shutdown_vmm()
        self.vmms.end(vm_dir)
