"""VMM processes, one per VM: started under an executor, found and ended by the VM's directory.

Every driver runs its VMM the same way (cloud-hypervisor, QEMU, the simulator).
In the VM's directory:

    vmm.pid       the VMM's pid, while one runs (written by its executor)
    vmm.log       the VMM's stdout and stderr
    started.json  when and in which boot of the host the last VMM started
    exit.json     how the last VMM ended, once it has (sal.hypervisor.executor)

A process counts as the VM's VMM only if its command line holds the driver's
marker for that VM (its API socket's path), so a pid the kernel reused for
another process is never taken for it, nor signalled. VMMs run in a session of
their own under their executor: runners come and go, VMs stay. Where systemd
runs the node, the executor and its VMM go into a scope of their own under
zeronode-vms.slice, so stopping the runner unit (which stops its whole cgroup)
leaves them running, and their memory is not counted against the runners'.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import select
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

from sal.hypervisor.base import Ending, VmmFailure
from sal.hypervisor.executor import EXIT_FILE, PID_FILE, boot_id
from zeronode.files import write_atomic

log = logging.getLogger("zeronode.hypervisor")

LOG_FILE, STARTED_FILE = "vmm.log", "started.json"
EXECUTOR = "sal.hypervisor.executor"
VMS_SLICE = "zeronode-vms.slice"


class VmmProcesses:
    """The VMMs of one driver. `marker(vm_dir)`: the string only that VM's VMM has on its command line."""

    def __init__(self, marker: Callable[[Path], str], *, start_timeout: float = 20.0, scope: bool | None = None):
        self.marker = marker
        self.start_timeout = start_timeout
        # None: a systemd scope whenever systemd runs this host.
        self.scope = scope if scope is not None else systemd_running()
        self._children: dict[Path, subprocess.Popen] = {}  # executors this process started, reaped on sight

    def pid(self, vm_dir: Path) -> int | None:
        """The VM's VMM's pid if it runs (checked by its command line, so a reused pid is not taken for it)."""
        self._reap(vm_dir)
        try:
            pid = int((vm_dir / PID_FILE).read_text())
            command = Path(f"/proc/{pid}/cmdline").read_bytes()
            status = Path(f"/proc/{pid}/stat").read_text()
        except (OSError, ValueError):  # no pid file, or no such process
            return None
        zombie = process_state(status) == "Z"
        return None if zombie or self.marker(vm_dir).encode() not in command else pid

    def spawn(self, vm_dir: Path, command: list[str], ready: Callable[[], bool]) -> int:
        """Start the VM's VMM under its executor and wait until `ready()`; its pid. On failure nothing is left."""
        for stale in (PID_FILE, EXIT_FILE):
            (vm_dir / stale).unlink(missing_ok=True)
        executor = [sys.executable, "-m", EXECUTOR, str(vm_dir), "--", *command]
        if self.scope:
            executor = ["systemd-run", "--scope", "--quiet", "--collect", f"--slice={VMS_SLICE}", "--", *executor]
        _bound_log(vm_dir / LOG_FILE)
        with open(vm_dir / LOG_FILE, "ab") as output:
            process = subprocess.Popen(
                executor, stdin=subprocess.DEVNULL, stdout=output, stderr=output,
                cwd=vm_dir, start_new_session=True,  # its own session: runners come and go, VMs stay
            )
        self._children[vm_dir] = process
        # systemd-run --scope execs the executor: the pid is the executor's either way.
        write_atomic(vm_dir / STARTED_FILE, json.dumps({"boot_id": boot_id(), "at": time.time(), "executor": process.pid}))
        deadline = time.monotonic() + self.start_timeout
        while True:
            if process.poll() is not None:
                self._children.pop(vm_dir, None)
                raise VmmFailure(f"the VMM of {vm_dir.name} exited at start: {log_tail(vm_dir)}")
            pid = self.pid(vm_dir)
            if pid is not None and ready():
                log.info("vmm started", extra={"vm": vm_dir.name, "pid": pid, "command": command[0]})
                return pid
            if time.monotonic() > deadline:
                self.end(vm_dir, grace=0)
                process.kill()
                raise VmmFailure(f"the VMM of {vm_dir.name} did not answer within {self.start_timeout:.0f} s: {log_tail(vm_dir)}")
            time.sleep(0.02)

    def end(self, vm_dir: Path, grace: float = 5.0) -> None:
        """Make sure the VMM is gone: it was asked to exit; after `grace` seconds it is killed. It is held by a
        pidfd from the moment its marker is checked, so a pid the kernel hands to another process is never
        signalled."""
        deadline = time.monotonic() + grace
        pid = self.pid(vm_dir)
        handle = _pidfd(pid) if pid is not None else None
        if handle is not None:
            try:
                if self.pid(vm_dir) == pid:  # still the VM's VMM once held: the pidfd is its
                    if not _exited(handle, deadline - time.monotonic()):
                        with contextlib.suppress(ProcessLookupError):
                            signal.pidfd_send_signal(handle, signal.SIGKILL)
                        _exited(handle, 5.0)
            finally:
                os.close(handle)
        self._wait_for_executor(vm_dir, time.monotonic() + 2)
        (vm_dir / PID_FILE).unlink(missing_ok=True)

    def ending(self, vm_dir: Path, wait: float = 5.0) -> Ending:
        """How the VM's last VMM ended (call it when none runs). Its executor writes that down a moment after
        the VMM is gone: while the executor still runs, this waits up to `wait` seconds for it."""
        try:
            started = json.loads((vm_dir / STARTED_FILE).read_text())
        except (OSError, ValueError):
            started = None
        deadline = time.monotonic() + wait
        while True:
            try:
                ended = json.loads((vm_dir / EXIT_FILE).read_text())
                return _ending(ended)
            except (OSError, ValueError, KeyError, TypeError):
                pass
            executor = started.get("executor") if started else None
            if not (executor and self._is_executor(executor, vm_dir)) or time.monotonic() > deadline:
                break
            time.sleep(0.02)
        if started is None:
            return Ending("never_started")
        if started.get("boot_id") != boot_id():
            return Ending("node_restarted", at=started.get("at"))
        return Ending("failed")  # its executor was killed too: nobody saw the end, so it counts as a failure

    def _is_executor(self, pid: int, vm_dir: Path) -> bool:
        self._reap(vm_dir)
        try:
            command = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
        except OSError:
            return False
        return running(pid) and EXECUTOR.encode() in command and str(vm_dir).encode() in command

    def _reap(self, vm_dir: Path) -> None:
        child = self._children.get(vm_dir)
        if child is not None and child.poll() is not None:
            del self._children[vm_dir]

    def _wait_for_executor(self, vm_dir: Path, deadline: float) -> None:
        """An executor writes exit.json once its VMM is gone: wait for it (ours, or one a runner left)."""
        child = self._children.pop(vm_dir, None)
        while time.monotonic() < deadline:
            if child is not None and child.poll() is not None:
                return
            if child is None and (vm_dir / EXIT_FILE).exists():
                return
            time.sleep(0.02)


def _ending(ended: dict) -> Ending:
    """What an executor's exit.json says. A VMM that ended in an earlier boot of the host ended with the host,
    whatever its status (QEMU exits 0 on the SIGTERM a shutdown sends); one stopped by a signal the executor
    passed on, in this boot, was stopped from outside: not its guest's doing, so not a clean exit."""
    code, at = ended["code"], ended["at"]
    if ended.get("boot_id") != boot_id():
        return Ending("node_restarted", code, at)
    if code == 0 and not ended.get("signalled"):
        return Ending("exited", code, at)
    return Ending("failed", code, at)


def _pidfd(pid: int) -> int | None:
    try:
        return os.pidfd_open(pid)
    except ProcessLookupError:
        return None


def _exited(handle: int, timeout: float) -> bool:
    """Wait at most `timeout` seconds for the process behind the pidfd to exit (a pidfd reads ready then)."""
    readable, _, _ = select.select([handle], [], [], max(0.0, timeout))
    return bool(readable)


def systemd_running() -> bool:
    return Path("/run/systemd/system").is_dir() and shutil.which("systemd-run") is not None


def _bound_log(path: Path, keep: int = 256 * 1024) -> None:
    """Keep a VMM's log (appended to at every start) to its last `keep` bytes."""
    try:
        if path.stat().st_size <= 4 * keep:
            return
        with open(path, "rb") as file:
            file.seek(-keep, os.SEEK_END)
            kept = file.read()
        write_atomic(path, kept, mode=0o600)
    except FileNotFoundError:
        pass


def log_tail(vm_dir: Path, lines: int = 5) -> str:
    try:
        return " | ".join((vm_dir / LOG_FILE).read_text(errors="replace").splitlines()[-lines:]) or "(empty log)"
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
