"""A client of cloud-hypervisor's REST API on its UNIX socket (`--api-socket path=...`).

The same code talks to the real VMM and to the simulator beside it. Each
method is one endpoint; an error answer becomes the exception named after what
went wrong (sal.hypervisor.base), carrying the VMM's own messages: by its
status (ERRORS) where that says it, else, for a 500, by its messages
(MESSAGES): the real VMM answers 500 to most refusals, wrong states included,
and never 405 (../shared/specs/README.md, "cloud-hypervisor v53.0 as measured").

    vmm = HypervisorClient("/var/lib/zeronode/vms/web1/api.sock")
    vmm.create(VmSpec(kernel="/images/vmlinux", vcpus=2, memory_mib=1024))
    vmm.boot()
    vmm.info()["state"]   # "Running"
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import httpx

from sal.hypervisor.base import (
    DeviceConflict,
    HypervisorError,
    InvalidVmConfig,
    InvalidVmState,
    VmmExiting,
    VmmFailure,
    VmmUnreachable,
    VmNotCreated,
)
from sal.hypervisor.drivers.cloud_hypervisor.vm_config import vm_config, without_none
from sal.hypervisor.spec import DiskSpec, TapSpec, VmSpec

# The API this client speaks, and the simulator serves: upstream's OpenAPI file of that release (openapi.py).
API_VERSION = "v54.0.0"

# The statuses that say what went wrong by themselves.
ERRORS: dict[int, type[HypervisorError]] = {
    404: VmNotCreated,
    400: InvalidVmConfig,
    409: DeviceConflict,
}

# A 500 says it only in its messages (the error's chain, top to root, in upstream's words); the first match wins.
MESSAGES: tuple[tuple[re.Pattern[str], type[HypervisorError]], ...] = (
    # The API thread lost the VMM thread: the guest powered off and the process is on its way out (as measured).
    (re.compile(r"receiving on a closed channel|API request send error|API response receive error"), VmmExiting),
    # Where main answers 409, v53.0 answers 500: a device id used twice; a disk image another disk holds (its lock).
    (re.compile(r"Identifier .* is not unique|already locked|Error locking disk images"), DeviceConflict),
    # Where main answers 400, v53.0 answers 500: a config taken at vm.create fails validation at vm.boot.
    (re.compile(r"Failed to validate config"), InvalidVmConfig),
    # Where main answers 404, v53.0 answers 500: vm.remove-device of an unknown id.
    (re.compile(r"No device with id .* to remove"), VmNotCreated),
    # A wrong-state action: "VM is not running", "InvalidStateTransition(Running, Running)" (as measured).
    (re.compile(r"VM is not running|InvalidStateTransition|invalid VM state transition|while VM is running"),
     InvalidVmState),
)


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
        if response.status_code in (200, 204):
            return answer_of(endpoint, response)
        messages = messages_of(response)
        error = error_for(response.status_code, messages)
        raise error(f"{endpoint}: {'; '.join(messages) or response.status_code}", response.status_code, messages)

    # -- the VMM -------------------------------------------------------------------

    def ping(self) -> dict[str, Any]:
        return self._call("GET", "vmm.ping")

    def shutdown_vmm(self) -> None:
        """Stop the VMM process itself (it answers 200 with no body, then exits)."""
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
        """Power the guest off at once; the VMM keeps the VM's config, which is Created again."""
        self._call("PUT", "vm.shutdown")

    def reboot(self) -> None:
        self._call("PUT", "vm.reboot")

    def power_button(self) -> None:
        """Ask the guest to power off (ACPI): a guest that does ends the VMM's process. A paused guest hears it
        when resumed."""
        self._call("PUT", "vm.power-button")

    def delete(self) -> None:
        self._call("PUT", "vm.delete")

    def info(self) -> dict[str, Any]:
        """{config, state, memory_actual_size, device_tree}; device_tree once the VM has booted."""
        return self._call("GET", "vm.info")

    def state(self) -> str:
        """Created, Running or Paused (the real VMM never reports Shutdown)."""
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


def answer_of(endpoint: str, response: httpx.Response) -> Any:
    """A success's JSON body, or None when it has none (204; vmm.shutdown answers 200 with an empty body)."""
    if not response.content:
        return None
    try:
        return response.json()
    except ValueError:
        raise VmmFailure(f"{endpoint}: the VMM's answer is not JSON: {response.text[:200]!r}",
                         response.status_code) from None


def error_for(status: int, messages: list[str]) -> type[HypervisorError]:
    if status in ERRORS:
        return ERRORS[status]
    if status == 500:
        text = "\n".join(messages)
        for pattern, error in MESSAGES:
            if pattern.search(text):
                return error
    return VmmFailure


def messages_of(response: httpx.Response) -> list[str]:
    """cloud-hypervisor's error body: a JSON array of messages (or, from elsewhere, plain text)."""
    try:
        body = response.json()
    except ValueError:
        return [response.text.strip()] if response.text.strip() else []
    if isinstance(body, list):
        return [str(message) for message in body]
    return [str(body)]
