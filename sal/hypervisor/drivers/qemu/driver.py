"""The hypervisor driver for QEMU: one `qemu-system-x86_64` per VM, driven over QMP.

Each VM's QEMU runs under its executor (sal.hypervisor.processes), in a session
of its own, and is found again from its directory alone: its pid file, and its
QMP socket (qmp.sock) on its command line. A runner that restarts finds its
running VMs as it left them.

States, from QMP's query-status (RUN_STATES): running -> Running; paused,
suspended, or between migration steps -> Paused; prelaunch -> Created; a guest
stopped on an error (internal-error, guest-panicked, io-error, watchdog) ->
Failed; shutdown (the guest powered off, QEMU on its way out) -> Stopped. QEMU
exits when its guest powers off (no -no-shutdown), so a powered-off VM is
Stopped, as with cloud-hypervisor.

stop: the ACPI power button (system_powerdown), then, if the guest has not
powered off within the timeout (or the job was cancelled), `quit`, then a kill.
Disks attach to a running VM by blockdev-add and device_add, and detach by
device_del, which waits for the guest to let the disk go (DEVICE_DELETED).
Snapshots are not offered (QEMU could save a paused VM by migrating it to a
file; not done yet): the fingerprint does not list them.
"""

from __future__ import annotations

import contextlib
import logging
import shutil
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from sal.context import job_cancelled
from sal.errors import SalError
from sal.fingerprint import Fingerprint, tool_version
from sal.hypervisor.base import Ending, HypervisorError, InvalidVmState, Unsupported, VmmFailure, VmmUnreachable
from sal.hypervisor.drivers.qemu.accel import Acceleration
from sal.hypervisor.drivers.qemu.command import QMP_SOCKET, option, qemu_command
from sal.hypervisor.drivers.qemu.monitor import Monitor
from sal.hypervisor.processes import VmmProcesses, log_tail
from sal.hypervisor.spec import DiskSpec, VmSpec

log = logging.getLogger("zeronode.hypervisor")

NAME = "qemu"
FEATURES = ("kernel_boot", "firmware_boot", "disks", "taps", "pause", "reboot", "hotplug")
MAX_SOCKET_PATH = 107  # sun_path holds 108 bytes with the terminating NUL
ACCEL_FILE = "accel"  # in the VM's directory: the accelerator its QEMU runs with
STOP_ANSWER = 2.0  # seconds QEMU has to answer while being stopped: a hung one is killed, not waited for
RUN_STATES = {
    "running": "Running",
    "prelaunch": "Created",
    "paused": "Paused", "suspended": "Paused", "debug": "Paused", "inmigrate": "Paused", "postmigrate": "Paused",
    "finish-migrate": "Paused", "save-vm": "Paused", "restore-vm": "Paused", "colo": "Paused",
    "internal-error": "Failed", "guest-panicked": "Failed", "io-error": "Failed", "watchdog": "Failed",
    "shutdown": "Stopped",  # the guest powered off and QEMU is exiting
}


@dataclass(frozen=True)
class KvmProblem:
    reason: str
    proven: bool  # KVM itself failed (every VM would), rather than this guest keeping quiet


def qmp_socket(vm_dir: Path) -> Path:
    return vm_dir / QMP_SOCKET


class Qemu:
    name = NAME
    simulated = False
    features = FEATURES
    console_reset_at_boot = False  # QEMU keeps its console file open across resets
    console_appends = True  # ... and writes it with O_APPEND (append=on): it can be cut while the guest writes

    def __init__(self, binary: str, *, acceleration: str = "auto", memo_dir: Path | None = None,
                 kvm_probe_seconds: float = 10.0, start_timeout: float = 20.0):
        self.binary = binary
        self.acceleration = Acceleration(acceleration, memo_dir)
        self.kvm_probe_seconds = kvm_probe_seconds
        self.processes = VmmProcesses(lambda vm_dir: option(qmp_socket(vm_dir)), start_timeout=start_timeout)

    @classmethod
    def installed(cls, binary: str = "qemu-system-x86_64", **options: Any) -> Qemu:
        """QEMU as installed; a clear SalError when `binary` (a name on PATH, or a path) is not."""
        found = shutil.which(binary)
        if found is None:
            raise SalError(f"hypervisor = \"qemu\" but {binary!r} is not installed (Debian: qemu-system-x86)")
        return cls(found, **options)

    def fingerprint(self) -> Fingerprint:
        """QEMU's version, and which accelerator new VMs get now ("kvm" or "tcg" among the features)."""
        return Fingerprint(NAME, version=tool_version(self.binary), features=(*FEATURES, self.acceleration.choose()))

    def check_vm_dir(self, vm_dir: Path) -> None:
        if len(str(qmp_socket(vm_dir))) > MAX_SOCKET_PATH:
            raise SalError(f"the VM directory {vm_dir} is too long for the VM's QMP socket path")

    def pid(self, vm_dir: Path) -> int | None:
        return self.processes.pid(vm_dir)

    def state(self, vm_dir: Path) -> str:
        if self.processes.pid(vm_dir) is None:
            return "Stopped"
        try:
            status = self._execute(vm_dir, "query-status")["status"]
        except VmmUnreachable:
            return "Stopped" if self.processes.pid(vm_dir) is None else "Unreachable"
        return RUN_STATES.get(status, "Unreachable")

    # -- the VM's life ---------------------------------------------------------------

    def start(self, vm_dir: Path, spec: VmSpec) -> None:
        state = self.state(vm_dir)
        if state in ("Paused", "Created"):
            self._execute(vm_dir, "cont")
        elif state in ("Failed", "Unreachable"):
            self._end(vm_dir, grace=2)
            self._spawn(vm_dir, spec)
        elif state == "Stopped":
            self._spawn(vm_dir, spec)

    def stop(self, vm_dir: Path, timeout: float) -> None:
        if self.processes.pid(vm_dir) is None:
            return
        with contextlib.suppress(HypervisorError):  # a QEMU that does not answer quickly is not asked twice
            if self._execute(vm_dir, "query-status", timeout=STOP_ANSWER)["status"] == "running":
                self._execute(vm_dir, "system_powerdown", timeout=STOP_ANSWER)
                deadline = time.monotonic() + timeout
                # A cancelled job does not wait for the guest: it is powered off at once.
                while self.processes.pid(vm_dir) is not None and time.monotonic() < deadline and not job_cancelled():
                    time.sleep(0.1)
        self._end(vm_dir, grace=5)

    def ending(self, vm_dir: Path) -> Ending:
        return self.processes.ending(vm_dir)

    def pause(self, vm_dir: Path) -> None:
        self._require(vm_dir, "pause", "Running")
        self._execute(vm_dir, "stop")

    def resume(self, vm_dir: Path) -> None:
        self._require(vm_dir, "resume", "Paused")
        self._execute(vm_dir, "cont")

    def reboot(self, vm_dir: Path) -> None:
        """Reset the guest; a paused one runs again (as cloud-hypervisor does)."""
        state = self._require(vm_dir, "reboot", "Running", "Paused")
        self._execute(vm_dir, "system_reset")
        if state == "Paused":
            self._execute(vm_dir, "cont")

    def details(self, vm_dir: Path) -> dict[str, Any]:
        try:
            accel = (vm_dir / ACCEL_FILE).read_text().strip() or None
        except OSError:
            accel = None
        return {"qmp_socket": str(qmp_socket(vm_dir)), "accel": accel}

    # -- disks while it runs ----------------------------------------------------------

    def add_disk(self, vm_dir: Path, disk: DiskSpec) -> None:
        self._require(vm_dir, "attach a disk to", "Running", "Paused")
        node = {"driver": "raw", "node-name": disk.id, "read-only": disk.readonly,
                "file": {"driver": "file", "filename": disk.path}}
        with Monitor(qmp_socket(vm_dir)) as qmp:
            qmp.execute("blockdev-add", node)
            try:
                qmp.execute("device_add", {"driver": "virtio-blk-pci", "drive": disk.id, "id": disk.id})
            except HypervisorError:
                with contextlib.suppress(HypervisorError):
                    qmp.execute("blockdev-del", {"node-name": disk.id})
                raise

    def remove_disk(self, vm_dir: Path, disk_id: str, timeout: float = 15.0) -> None:
        """Unplug the disk; the guest must let it go (ACPI eject) within `timeout` seconds."""
        self._require(vm_dir, "detach a disk from", "Running")
        with Monitor(qmp_socket(vm_dir)) as qmp:
            released = qmp.execute_until_event("device_del", {"id": disk_id}, "DEVICE_DELETED", timeout,
                                               lambda data: data.get("device") == disk_id)
            if not released:
                raise InvalidVmState(f"the guest did not release disk {disk_id!r} within {timeout:.0f} s")
            with contextlib.suppress(HypervisorError):  # a disk of the command line goes with its device
                qmp.execute("blockdev-del", {"node-name": disk_id})

    def snapshot(self, vm_dir: Path, destination: Path) -> None:
        raise Unsupported("the qemu driver does not snapshot VMs (its fingerprint does not list snapshot)")

    def restore(self, vm_dir: Path, spec: VmSpec, source: Path) -> None:
        raise Unsupported("the qemu driver does not restore VMs (its fingerprint does not list snapshot)")

    # -- helpers ----------------------------------------------------------------------

    def _spawn(self, vm_dir: Path, spec: VmSpec) -> None:
        accel = self.acceleration.choose()
        probing = accel == "kvm" and self.acceleration.mode == "auto"
        try:
            self._spawn_with(vm_dir, spec, accel)
            problem = self._kvm_problem(vm_dir, spec) if probing else None
        except VmmFailure as exc:
            if not probing:
                raise
            problem = KvmProblem(f"QEMU did not start under KVM: {exc}", proven=True)
        if problem:
            log.warning("kvm did not run this guest: it runs on tcg", extra={"vm": vm_dir.name, "reason": problem.reason})
            self._end(vm_dir, grace=0)
            if problem.proven:  # KVM itself failed: every VM would; a guest's silence proves only its own
                self.acceleration.remember_kvm_failed(problem.reason)
            self._spawn_with(vm_dir, spec, "tcg")

    def _spawn_with(self, vm_dir: Path, spec: VmSpec, accel: str) -> None:
        qmp_socket(vm_dir).unlink(missing_ok=True)
        (vm_dir / ACCEL_FILE).write_text(accel)
        command = qemu_command(self.binary, vm_dir, vm_dir.name, spec, accel)
        self.processes.spawn(vm_dir, command, lambda: self._answers(vm_dir))

    def _kvm_problem(self, vm_dir: Path, spec: VmSpec) -> KvmProblem | None:
        """Why KVM does not run this guest, watched for kvm_probe_seconds; None when it does.

        Proven (the node stops using KVM): QEMU failed under KVM, or the guest stopped on an error. Not proven
        (this VM alone goes to TCG): a guest booted with console=ttyS0 that wrote nothing, which a tenant's own
        kernel or a quiet command line could cause as well as a KVM that hangs. A guest that powered itself off
        within the watch is no KVM problem at all."""
        serial = Path(spec.serial_file) if spec.serial_file else None
        expects_output = bool(spec.kernel and serial and "console=ttyS0" in (spec.cmdline or ""))
        deadline = time.monotonic() + self.kvm_probe_seconds
        while time.monotonic() < deadline:
            if self.processes.pid(vm_dir) is None:
                ending = self.processes.ending(vm_dir)
                return None if ending.clean else KvmProblem(f"QEMU ended under KVM: {log_tail(vm_dir)}", proven=True)
            if self.state(vm_dir) == "Failed":
                return KvmProblem(f"the guest stopped on an error under KVM: {log_tail(vm_dir)}", proven=True)
            if expects_output and serial.exists() and serial.stat().st_size > 0:
                return None
            time.sleep(0.1)
        if expects_output:
            return KvmProblem(f"the guest wrote nothing to its console in {self.kvm_probe_seconds:.0f} s", proven=False)
        return None

    def _answers(self, vm_dir: Path) -> bool:
        try:
            self._execute(vm_dir, "query-status")
            return True
        except VmmUnreachable:
            return False

    def _require(self, vm_dir: Path, action: str, *states: str) -> str:
        state = self.state(vm_dir)
        if state not in states:
            raise InvalidVmState(f"cannot {action} the VM: it is {state}, not {' or '.join(states)}")
        return state

    def _execute(self, vm_dir: Path, command: str, arguments: dict[str, Any] | None = None, *,
                 timeout: float = 10.0) -> Any:
        with Monitor(qmp_socket(vm_dir), timeout=timeout) as qmp:
            return qmp.execute(command, arguments)

    def _end(self, vm_dir: Path, grace: float) -> None:
        """Ask QEMU to quit, then make sure it has."""
        if self.processes.pid(vm_dir) is not None:
            with contextlib.suppress(HypervisorError):
                self._execute(vm_dir, "quit", timeout=STOP_ANSWER)
        self.processes.end(vm_dir, grace)
        qmp_socket(vm_dir).unlink(missing_ok=True)
