"""cloud-hypervisor's VMM processes, one per VM (sal.hypervisor.processes), with its API socket.

In the VM's directory, beside what every VMM keeps there:

    api.sock    the VMM's API socket (`--api-socket path=...`), also its marker on the command line
"""

from __future__ import annotations

import sys
from pathlib import Path

from sal.hypervisor.base import VmmUnreachable
from sal.hypervisor.drivers.cloud_hypervisor.client import HypervisorClient
from sal.hypervisor.processes import VmmProcesses

SOCKET = "api.sock"
MAX_SOCKET_PATH = 107  # sun_path holds 108 bytes with the terminating NUL
SIMULATOR = "sal.hypervisor.drivers.cloud_hypervisor.simulator"


def socket_path(vm_dir: Path) -> Path:
    return vm_dir / SOCKET


class Vmms(VmmProcesses):
    """The VMMs of one driver: `binary` (a path) runs the real cloud-hypervisor, None its simulator
    (`simulator_args`: which release it plays, e.g. ["--release", "v53.0"])."""

    def __init__(self, binary: str | None, start_timeout: float, simulator_args: list[str] | None = None):
        super().__init__(lambda vm_dir: f"path={socket_path(vm_dir)}", start_timeout=start_timeout)
        self.binary = binary
        self.simulator_args = simulator_args or []

    def command(self, vm_dir: Path) -> list[str]:
        api = ["--api-socket", f"path={socket_path(vm_dir)}"]
        if self.binary:
            return [self.binary, *api]
        return [sys.executable, "-m", SIMULATOR, *api, *self.simulator_args]

    def spawn_client(self, vm_dir: Path) -> HypervisorClient:
        """Start the VM's VMM and wait until its API answers; a client of it."""
        socket = socket_path(vm_dir)
        socket.unlink(missing_ok=True)
        client = HypervisorClient(socket)

        def answers() -> bool:
            try:
                client.ping()
                return True
            except VmmUnreachable:
                return False

        try:
            self.spawn(vm_dir, self.command(vm_dir), answers)
        except BaseException:
            client.close()
            raise
        return client

    def end(self, vm_dir: Path, grace: float = 5.0) -> None:
        super().end(vm_dir, grace)
        socket_path(vm_dir).unlink(missing_ok=True)
