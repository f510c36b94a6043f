"""A VMM's executor: the small parent that outlives runners and says how its VMM ended.

    python -m sal.hypervisor.executor VM_DIR -- /usr/bin/qemu-system-x86_64 ...

A VMM is started by whichever runner ran `vm_start`, and must outlive it; once
the runner is gone nobody could learn how the VMM ended (a guest that powered
itself off, exit 0, or a crash), which is what a restart policy needs. So each
VMM runs under one of these, as Nomad runs each task under its executor: it
starts the VMM, writes its pid to VM_DIR/vmm.pid, waits for it, and writes
VM_DIR/exit.json when it ends:

    {"code": 0, "at": 1767225600.5, "boot_id": "...", "signalled": null}
        code < 0: killed by that signal; signalled: the signal the executor itself received and passed
        on (a host shutting down stops the VMs' scopes with SIGTERM, and QEMU then exits 0)

It imports nothing but the standard library (it stays small: one per VM), lifts
the soft address-space limit a runner works under (a guest's memory is the
VMM's to map, not a script's), and passes SIGTERM and SIGINT on to the VMM. It
does not die with its parent, nor the VMM with it: killed itself, it leaves the
VMM running, and no exit.json (so the VMM's end is then unknown: a failure).
"""

from __future__ import annotations

import json
import os
import resource
import signal
import subprocess
import sys
import time
from pathlib import Path

PID_FILE, EXIT_FILE = "vmm.pid", "exit.json"


def boot_id() -> str:
    """This boot of the host: a VMM that ran in another boot did not crash, the node restarted."""
    try:
        return Path("/proc/sys/kernel/random/boot_id").read_text().strip()
    except OSError:
        return ""


def _write(path: Path, data: str) -> None:
    temporary = path.with_name(f".{path.name}.{os.getpid()}")
    with open(temporary, "w") as file:
        file.write(data)
        file.flush()
        os.fsync(file.fileno())
    os.replace(temporary, path)


def main(argv: list[str]) -> int:
    if len(argv) < 3 or argv[1] != "--":
        print("usage: python -m sal.hypervisor.executor VM_DIR -- COMMAND...", file=sys.stderr)
        return 2
    vm_dir, command = Path(argv[0]), argv[2:]
    os.umask(0o027)  # the VMM's files (the console) may be read by vm_dir's readers group, never by others
    soft, hard = resource.getrlimit(resource.RLIMIT_AS)
    if soft != hard:
        resource.setrlimit(resource.RLIMIT_AS, (hard, hard))
    (vm_dir / EXIT_FILE).unlink(missing_ok=True)
    try:
        process = subprocess.Popen(command, stdin=subprocess.DEVNULL, cwd=vm_dir)
    except OSError as exc:
        print(f"cannot start the VMM {command[0]}: {exc}", file=sys.stderr)
        _write(vm_dir / EXIT_FILE, json.dumps({"code": 127, "at": time.time(), "boot_id": boot_id()}))
        return 127
    signalled: list[int] = []

    def pass_on(received: int, _frame: object) -> None:
        signalled.append(received)
        process.send_signal(received)

    for number in (signal.SIGTERM, signal.SIGINT):
        signal.signal(number, pass_on)
    signal.signal(signal.SIGHUP, signal.SIG_IGN)
    _write(vm_dir / PID_FILE, str(process.pid))
    code = process.wait()
    ended = {"code": code, "at": time.time(), "boot_id": boot_id(), "signalled": signalled[0] if signalled else None}
    _write(vm_dir / EXIT_FILE, json.dumps(ended))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
