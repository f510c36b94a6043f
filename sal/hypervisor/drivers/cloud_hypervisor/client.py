"""A client of cloud-hypervisor's REST API on its UNIX socket (`--api-socket path=...`).

The same code talks to the real VMM and to the simulator beside it. Each
method is one endpoint; an error answer becomes the exception named after what
went wrong (sal.hypervisor.base), carrying the VMM's own messages.

    vmm = HypervisorClient("/var/lib/zeronode/vms/web1/api.sock")
    vmm.create(VmSpec(kernel="/images/vmlinux", vcpus=2, memory_mib=1024))
    vmm.boot()
    vmm.info()["state"]   # "Running"
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import httpx

from sal.hypervisor.base import (
    DeviceConflict,
    HypervisorError,
    InvalidVmConfig,
    InvalidVmState,
    VmmFailure,
    VmmUnreachable,
    VmNotCreated,
)
from sal.hypervisor.drivers.cloud_hypervisor.vm_config import vm_config, without_none
from sal.hypervisor.spec import DiskSpec, TapSpec, VmSpec

# The API this client speaks, and the simulator serves: upstream's OpenAPI file of that release (openapi.py).
API_VERSION = "v54.0.0"

ERRORS: dict[int, type[HypervisorError]] = {
    404: VmNotCreated,
    405: InvalidVmState,
    400: InvalidVmConfig,
    409: DeviceConflict,
}


class HypervisorClient:
    def __init__(self, socket_path: str | Path, *, timeout: float = 30.0, transport: httpx.BaseTransport | None = None):
        self.socket_path = str(socket_path)
        self.http = httpx.Client(
            transport=transport or httpx.HTTPTransport(uds=self.socket_path),
            base_url="http://localhost/api/v1",
            timeout=timeout,
        )

    def _call(self, method: str, endpoint: str, body: dict[str, Any] | None = None) -> Any:
        try:
            response = self.http.request(method, f"/{endpoint}", json=body)
        except httpx.TransportError as exc:
            raise VmmUnreachable(f"no VMM answers on {self.socket_path}: {exc}") from exc
        if response.status_code == 204:
            return None
        if response.status_code == 200:
            return response.json()
        messages = messages_of(response)
        error = ERRORS.get(response.status_code, VmmFailure)
        raise error(f"{endpoint}: {'; '.join(messages) or response.status_code}", response.status_code, messages)

    # -- the VMM -------------------------------------------------------------------

    def ping(self) -> dict[str, Any]:
        return self._call("GET", "vmm.ping")

    def shutdown_vmm(self) -> None:
        """Stop the VMM process itself."""
        self._call("PUT", "vmm.shutdown")

    # -- the VM's life -------------------------------------------------------------

    def create(self, spec: VmSpec | dict[str, Any]) -> None:
        """Create the VM (not booted). A dict is sent as a raw VmConfig."""
        self._call("PUT", "vm.create", vm_config(spec) if isinstance(spec, VmSpec) else spec)

    def boot(self) -> None:
        self._call("PUT", "vm.boot")

    def pause(self) -> None:
        self._call("PUT", "vm.pause")

    def resume(self) -> None:
        self._call("PUT", "vm.resume")

    def shutdown(self) -> None:
        self._call("PUT", "vm.shutdown")

    def reboot(self) -> None:
        self._call("PUT", "vm.reboot")

    def power_button(self) -> None:
        """Ask the guest to power off (ACPI), as a graceful shutdown."""
        self._call("PUT", "vm.power-button")

    def delete(self) -> None:
        self._call("PUT", "vm.delete")

    def info(self) -> dict[str, Any]:
        """{config, state, memory_actual_size, device_tree}"""
        return self._call("GET", "vm.info")

    def state(self) -> str:
        return self.info()["state"]

    def counters(self) -> dict[str, dict[str, int]]:
        return self._call("GET", "vm.counters")

    # -- devices -------------------------------------------------------------------

    def add_disk(self, disk: DiskSpec) -> dict[str, str] | None:
        """Attach a disk: its {id, bdf} when hot-plugged into a booted VM, None when cold-added."""
        return self._call("PUT", "vm.add-disk", without_none(vars(disk)))

    def add_net(self, tap: TapSpec) -> dict[str, str] | None:
        return self._call("PUT", "vm.add-net", without_none(vars(tap)))

    def remove_device(self, device_id: str) -> None:
        self._call("PUT", "vm.remove-device", {"id": device_id})

    # -- snapshots -----------------------------------------------------------------

    def snapshot(self, directory: str | Path) -> None:
        """Snapshot a paused VM into `directory` (which must exist)."""
        self._call("PUT", "vm.snapshot", {"destination_url": f"file://{Path(directory).resolve()}"})

    def restore(self, directory: str | Path, *, resume: bool = False) -> None:
        """Recreate the VM from a snapshot, into a VMM that has no VM yet; paused unless `resume`."""
        self._call("PUT", "vm.restore", {"source_url": f"file://{Path(directory).resolve()}", "resume": resume})

    def close(self) -> None:
        self.http.close()

    def __enter__(self) -> HypervisorClient:
        return self

    def __exit__(self, *_exc: object) -> None:
        self.close()


def messages_of(response: httpx.Response) -> list[str]:
    """cloud-hypervisor's error body: a JSON array of messages (or, from elsewhere, plain text)."""
    try:
        body = response.json()
    except ValueError:
        return [response.text.strip()] if response.text.strip() else []
    if isinstance(body, list):
        return [str(message) for message in body]
    return [str(body)]
