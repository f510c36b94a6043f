"""cloud-hypervisor's VMM processes, one per VM: started, found and ended by the VM's directory.

In the VM's directory:

    api.sock    the VMM's API socket (`--api-socket path=...`)
    vmm.pid     the VMM process, while one runs
    vmm.log     its stdout and stderr

A process counts as the VM's VMM only if its command line names that socket,
so a pid the kernel reused for another process is never taken for it, nor
signalled. VMMs run in their own session: runners come and go, VMs stay.
"""

from __future__ import annotations

import logging
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

from sal.hypervisor.base import VmmFailure, VmmUnreachable
from sal.hypervisor.drivers.cloud_hypervisor.client import HypervisorClient

log = logging.getLogger("zeronode.hypervisor")

SOCKET, PID_FILE, LOG_FILE = "api.sock", "vmm.pid", "vmm.log"
MAX_SOCKET_PATH = 107  # sun_path holds 108 bytes with the terminating NUL
SIMULATOR = "sal.hypervisor.drivers.cloud_hypervisor.simulator"


def socket_path(vm_dir: Path) -> Path:
    return vm_dir / SOCKET


class Vmms:
    """The VMMs of one driver: `binary` (a path) runs the real cloud-hypervisor, None its simulator."""

    def __init__(self, binary: str | None, start_timeout: float):
        self.binary = binary
        self.start_timeout = start_timeout
        self._children: dict[Path, subprocess.Popen] = {}  # VMMs this process started, reaped on sight

    def command(self, vm_dir: Path) -> list[str]:
        api = ["--api-socket", f"path={socket_path(vm_dir)}"]
        if self.binary:
            return [self.binary, *api]
        return [sys.executable, "-m", SIMULATOR, *api]

    def pid(self, vm_dir: Path) -> int | None:
        """The pid of the VM's VMM if it runs (checked by its command line, so a reused pid is not taken for it)."""
        child = self._children.get(vm_dir)
        if child is not None and child.poll() is not None:  # ours and exited: reap it
            del self._children[vm_dir]
        try:
            pid = int((vm_dir / PID_FILE).read_text())
            command = Path(f"/proc/{pid}/cmdline").read_bytes()
            status = Path(f"/proc/{pid}/stat").read_text()
        except (OSError, ValueError):  # no pid file, or no such process
            return None
        zombie = process_state(status) == "Z"
        return None if zombie or f"path={socket_path(vm_dir)}".encode() not in command else pid

    def spawn(self, vm_dir: Path) -> HypervisorClient:
        """Start the VM's VMM and wait until its API answers; a client of it."""
        socket = socket_path(vm_dir)
        socket.unlink(missing_ok=True)
        with open(vm_dir / LOG_FILE, "ab") as output:
            process = subprocess.Popen(
                self.command(vm_dir), stdin=subprocess.DEVNULL, stdout=output, stderr=output,
                cwd=vm_dir, start_new_session=True,  # its own session: runners come and go, VMs stay
            )
        self._children[vm_dir] = process
        (vm_dir / PID_FILE).write_text(str(process.pid))
        client = HypervisorClient(socket)
        deadline = time.monotonic() + self.start_timeout
        while True:
            if process.poll() is not None:
                client.close()
                raise VmmFailure(f"the VMM of {vm_dir.name} exited with {process.returncode} at start: {log_tail(vm_dir)}")
            try:
                client.ping()
                log.info("vmm started", extra={"vm": vm_dir.name, "pid": process.pid, "simulated": self.binary is None})
                return client
            except VmmUnreachable:
                if time.monotonic() > deadline:
                    client.close()
                    self.end(vm_dir)
                    raise VmmFailure(f"the VMM of {vm_dir.name} did not answer within {self.start_timeout:.0f} s") from None
                time.sleep(0.02)

    def end(self, vm_dir: Path, grace: float = 5.0) -> None:
        """Make sure the VMM is gone: it was asked to exit; after `grace` seconds it is killed."""
        deadline = time.monotonic() + grace
        pid = self.pid(vm_dir)
        # Wait on the pid itself: an exiting process loses its command line before it is gone.
        while pid is not None and running(pid):
            child = self._children.get(vm_dir)
            if child is not None and child.poll() is not None:  # ours: reaped, so it is gone
                break
            if time.monotonic() > deadline:
                os.kill(pid, signal.SIGKILL)
            time.sleep(0.02)
        self._children.pop(vm_dir, None)
        (vm_dir / PID_FILE).unlink(missing_ok=True)
        socket_path(vm_dir).unlink(missing_ok=True)


def log_tail(vm_dir: Path, lines: int = 5) -> str:
    try:
        return " | ".join((vm_dir / LOG_FILE).read_text(errors="replace").splitlines()[-lines:])
    except OSError:
        return "(no log)"


def process_state(stat: str) -> str:
    """A process's state letter from /proc/PID/stat (after the parenthesised name, which may hold spaces)."""
    return stat.rpartition(")")[2].split()[0]


def running(pid: int) -> bool:
    """Whether `pid` exists and has not exited (a zombie has)."""
    try:
        return process_state(Path(f"/proc/{pid}/stat").read_text()) != "Z"
    except OSError:
        return False
