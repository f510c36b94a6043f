"""The hypervisor driver for cloud-hypervisor: one VMM process per VM, driven through its REST API.

The VMM is the real `cloud-hypervisor` binary, or, where it is not installed,
the simulator beside this file: the same command line, socket and API, so the
same code path here, but no guest code runs (`simulated`; the VM manager logs
it as a warning and node_info() reports it). Either way the driver's name is
"cloud-hypervisor": a VM record made on the simulator runs on the real VMM.

What the real VMM does, and so what this driver expects (../shared/specs/README.md,
"cloud-hypervisor v53.0 as measured"):

- States: Created, Running, Paused, never Shutdown. vm.shutdown drops the guest
  but keeps its config (Created: vm.boot runs it again). A guest that powers
  off ends the VMM's process about 0.1 s later; meanwhile every request
  answers 500 "receiving on a closed channel" (VmmExiting): the VM is Stopped.
- A bad config (boot_vcpus > max_vcpus, no kernel, a duplicate disk id) passes
  vm.create and fails at vm.boot: a start that spawned a VMM ends it on any
  failure, so a failed start leaves nothing behind.
- stop: the ACPI power button, then a wait for the VMM process to exit; if it
  still runs when the timeout passes (a guest ignoring ACPI) or the job is
  cancelled, vm.shutdown and vmm.shutdown; a paused or created VM at once. The
  VMM may vanish at any point of that.
- Wrong-state actions answer 500 with messages, never 405: the client reads
  them into InvalidVmState; vm.reboot of a VM never booted answers 404.
"""

from __future__ import annotations

import contextlib
import shutil
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from sal.context import job_cancelled
from sal.errors import SalError
from sal.fingerprint import Fingerprint, tool_version
from sal.hypervisor.base import (
    Ending,
    HypervisorError,
    InvalidVmState,
    VmmExiting,
    VmmUnreachable,
    VmNotCreated,
)
from sal.hypervisor.drivers.cloud_hypervisor.client import HypervisorClient
from sal.hypervisor.drivers.cloud_hypervisor.vmm import MAX_SOCKET_PATH, Vmms, socket_path
from sal.hypervisor.spec import DiskSpec, VmSpec

NAME = "cloud-hypervisor"
# What the VM manager can ask of it (sal.hypervisor.base.FEATURES).
FEATURES = ("kernel_boot", "firmware_boot", "disks", "taps", "pause", "reboot", "hotplug", "snapshot")
# The release the simulator plays unless told another: the measured one (its DEFAULT_RELEASE; not imported here,
# as the simulator's web stack is for simulated nodes only).
SIMULATED_RELEASE = "v53.0"
EXIT_POLL = 0.05  # seconds between looks at a VMM whose guest is powering off


class CloudHypervisor:
    name = NAME
    features = FEATURES
    console_reset_at_boot = True  # the serial file is truncated at every create, boot and reboot (as measured)
    console_appends = False  # not known to append: its console is not cut while it runs

    def __init__(self, binary: str | None, *, start_timeout: float = 20.0, release: str = SIMULATED_RELEASE):
        """`binary`: the cloud-hypervisor executable's path; None runs the simulator instead, playing `release`."""
        self.binary = binary
        self.simulated = binary is None
        self.release = None if binary else release
        self.vmms = Vmms(binary, start_timeout, None if binary else ["--release", release])

    @classmethod
    def installed(cls, binary: str = "cloud-hypervisor") -> CloudHypervisor:
        """The real VMM; a clear SalError when `binary` (a name on PATH, or a path) is not installed."""
        found = shutil.which(binary)
        if found is None:
            raise SalError(f"hypervisor = \"cloud-hypervisor\" but {binary!r} is not installed")
        return cls(found)

    @classmethod
    def simulator(cls, release: str = SIMULATED_RELEASE, **options: Any) -> CloudHypervisor:
        """The simulator, answering as cloud-hypervisor `release` does ("v53.0", or upstream "main")."""
        known = simulated_releases()
        if release not in known:
            raise SalError(f"the cloud-hypervisor simulator plays {', '.join(sorted(known))}, not {release!r}")
        return cls(None, release=release, **options)

    def fingerprint(self) -> Fingerprint:
        """The binary's version (`--version`), or, simulated, the version the simulated release's binary says."""
        version = tool_version(self.binary) if self.binary else simulated_releases()[self.release].build_version
        return Fingerprint(NAME, simulated=self.simulated, version=version, features=self.features)

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
        except (VmmExiting, VmNotCreated):  # on its way out (its guest powered off), or a VMM without a VM
            return "Stopped"
        except VmmUnreachable:
            return "Stopped" if self.vmms.pid(vm_dir) is None else "Unreachable"

    def ending(self, vm_dir: Path) -> Ending:
        return self.vmms.ending(vm_dir)

    def details(self, vm_dir: Path) -> dict[str, Any]:
        return {"api_socket": str(socket_path(vm_dir))}

    # -- the VM's life ---------------------------------------------------------------

    def start(self, vm_dir: Path, spec: VmSpec) -> None:
        def create_and_boot(client: HypervisorClient) -> None:
            client.create(spec)  # the real VMM takes a bad config here, and refuses it at boot
            client.boot()

        state = self.state(vm_dir)
        if state in ("Stopped", "Unreachable"):
            if self.vmms.pid(vm_dir) is not None:  # one without a VM, on its way out, or not answering
                self._end(vm_dir)
            self._in_new_vmm(vm_dir, create_and_boot)
        elif state == "Created":  # shut down: the VMM kept its config
            self._request(vm_dir, HypervisorClient.boot)
        elif state == "Paused":
            self._request(vm_dir, HypervisorClient.resume)

    def stop(self, vm_dir: Path, timeout: float) -> None:
        if self.vmms.pid(vm_dir) is None:
            if socket_path(vm_dir).exists():  # gone by itself already: a VMM leaves its API socket behind
                self.vmms.end(vm_dir)
            return
        with HypervisorClient(socket_path(vm_dir)) as client:
            if state_of(client) == "Running" and power_button(client):
                self._wait_for_exit(vm_dir, timeout)
            if self.vmms.pid(vm_dir) is not None:  # paused, created, or its guest ignored the button
                with contextlib.suppress(HypervisorError):
                    client.shutdown()
        self._end(vm_dir)

    def pause(self, vm_dir: Path) -> None:
        self._request(vm_dir, HypervisorClient.pause)

    def resume(self, vm_dir: Path) -> None:
        self._request(vm_dir, HypervisorClient.resume)

    def reboot(self, vm_dir: Path) -> None:
        try:
            self._request(vm_dir, HypervisorClient.reboot)
        except VmNotCreated as exc:  # the VMM's answer for a VM created but never booted
            raise InvalidVmState(f"VM {vm_dir.name} is not booted: nothing to reboot", exc.status,
                                 exc.messages) from None

    # -- disks while it runs ---------------------------------------------------------

    def add_disk(self, vm_dir: Path, disk: DiskSpec) -> None:
        """Hot-plugged when the VM runs or is paused; added to its config (for its boot) when created."""
        self._request(vm_dir, lambda client: client.add_disk(disk))

    def remove_disk(self, vm_dir: Path, disk_id: str) -> None:
        def remove(client: HypervisorClient) -> None:
            disks = client.info()["config"].get("disks") or []
            if disk_id not in [disk.get("id") for disk in disks]:  # a NIC's id, say: not a disk to remove
                raise VmNotCreated(f"VM {vm_dir.name} has no disk {disk_id!r}")
            client.remove_device(disk_id)

        self._request(vm_dir, remove)

    # -- snapshots -------------------------------------------------------------------

    def snapshot(self, vm_dir: Path, destination: Path) -> None:
        if not destination.is_dir() or any(destination.iterdir()):
            raise SalError(f"a snapshot is written into an empty directory, and {destination} is not one")
        self._request(vm_dir, lambda client: client.snapshot(destination))

    def restore(self, vm_dir: Path, spec: VmSpec, source: Path) -> None:
        """The VM as `source` saved it, paused. `spec` is not needed: the snapshot holds the VM's config."""
        if self.vmms.pid(vm_dir) is not None:
            raise InvalidVmState(f"a VMM runs for VM {vm_dir.name}: stop it before restoring a snapshot")
        self._in_new_vmm(vm_dir, lambda client: client.restore(source))

    # -- helpers ---------------------------------------------------------------------

    def _request(self, vm_dir: Path, request: Callable[[HypervisorClient], object]) -> None:
        """One request to the VM's VMM. A VM without one, or with one on its way out, is Stopped: in no state
        for it."""
        if self.vmms.pid(vm_dir) is None:
            raise InvalidVmState(f"VM {vm_dir.name} is Stopped")
        try:
            with HypervisorClient(socket_path(vm_dir)) as client:
                request(client)
        except VmmExiting as exc:
            raise InvalidVmState(f"VM {vm_dir.name} is Stopped: its guest powered off", exc.status,
                                 exc.messages) from None

    def _in_new_vmm(self, vm_dir: Path, setup: Callable[[HypervisorClient], object]) -> None:
        """Start a VMM for the VM and set the VM up in it; on any failure the VMM goes: nothing half-started stays."""
        with self.vmms.spawn_client(vm_dir) as client:
            try:
                setup(client)
            except BaseException:
                self._end(vm_dir)
                raise

    def _wait_for_exit(self, vm_dir: Path, timeout: float) -> None:
        """Until the VMM process exits (its guest powered off), `timeout` seconds pass, or the job is cancelled
        (a cancelled job does not wait for the guest)."""
        deadline = time.monotonic() + timeout
        while self.vmms.pid(vm_dir) is not None and time.monotonic() < deadline and not job_cancelled():
            time.sleep(EXIT_POLL)

    def _end(self, vm_dir: Path) -> None:
        """Ask the VMM to exit, then make sure it has (killed after a grace period)."""
        if self.vmms.pid(vm_dir) is not None:
            with HypervisorClient(socket_path(vm_dir)) as client, contextlib.suppress(HypervisorError):
                client.shutdown_vmm()
        self.vmms.end(vm_dir)


def state_of(client: HypervisorClient) -> str | None:
    """The VM's state as its VMM says it; None when it says none (no VM, on its way out, gone)."""
    try:
        return client.state()
    except HypervisorError:
        return None


def power_button(client: HypervisorClient) -> bool:
    """Press it: whether the guest may be powering off now (it heard it, or its VMM is already going)."""
    try:
        client.power_button()
    except VmmUnreachable:  # on its way out already, or gone
        return True
    except HypervisorError:  # refused: the guest will not hear it
        return False
    return True


def simulated_releases() -> dict[str, Any]:
    """The releases the simulator plays. Imported here: its web stack is for simulated nodes only."""
    from sal.hypervisor.drivers.cloud_hypervisor.simulator import RELEASES

    return RELEASES
