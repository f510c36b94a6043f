"""sal.hypervisor.processes and its executor: a VMM per VM, found by its directory, and how it ended.

The "VMM" here is a plain Python process that carries the VM's marker on its command line, as a VMM carries
its API socket: what is tested is the process handling every driver shares, not a hypervisor."""

from __future__ import annotations

import json
import os
import signal
import stat
import sys

import pytest

from sal.hypervisor.base import VmmFailure
from sal.hypervisor.processes import STARTED_FILE, VmmProcesses
from tests.support.waiting import wait_until


def vmm(vm_dir, *, exit_after: float | None = None, code: int = 0) -> list[str]:
    body = f"import time, sys; time.sleep({exit_after}); sys.exit({code})" if exit_after else "import time; time.sleep(600)"
    return [sys.executable, "-c", body, f"marker={vm_dir}/api.sock"]


@pytest.fixture
def processes():
    return VmmProcesses(lambda vm_dir: f"marker={vm_dir}/api.sock", start_timeout=10, scope=False)


def test_a_vmm_is_found_by_its_marker_and_its_end_is_told_by_its_executor(processes, tmp_path):
    pid = processes.spawn(tmp_path, vmm(tmp_path), ready=lambda: True)
    assert processes.pid(tmp_path) == pid
    assert VmmProcesses(lambda vm_dir: f"marker={vm_dir}/api.sock", scope=False).pid(tmp_path) == pid  # from the files alone
    assert VmmProcesses(lambda vm_dir: "another marker", scope=False).pid(tmp_path) is None  # a pid is not enough
    os.kill(pid, signal.SIGKILL)
    wait_until(lambda: processes.pid(tmp_path) is None, 10, "the VMM to be gone")
    ending = processes.ending(tmp_path)
    assert ending.kind == "failed" and ending.code == -signal.SIGKILL


def test_a_vmm_that_exits_cleanly_has_exited(processes, tmp_path):
    processes.spawn(tmp_path, vmm(tmp_path, exit_after=0.5), ready=lambda: True)
    wait_until(lambda: processes.pid(tmp_path) is None, 10, "the VMM to exit")
    assert processes.ending(tmp_path).kind == "exited" and processes.ending(tmp_path).code == 0


def test_a_vmm_that_dies_at_start_fails_the_start_and_leaves_nothing(processes, tmp_path):
    with pytest.raises(VmmFailure, match="exited at start"):
        processes.spawn(tmp_path, [sys.executable, "-c", "import sys; print('bad option'); sys.exit(3)"], ready=lambda: False)
    assert processes.pid(tmp_path) is None and processes.ending(tmp_path).code == 3


def test_a_vmm_of_an_earlier_boot_of_the_host_ended_with_the_node(processes, tmp_path):
    assert processes.ending(tmp_path).kind == "never_started"
    processes.spawn(tmp_path, vmm(tmp_path), ready=lambda: True)
    processes.end(tmp_path, grace=0)  # killed; its executor saw it
    assert processes.pid(tmp_path) is None and processes.ending(tmp_path).kind == "failed"
    # As if the host rebooted: no exit record, and the start was in another boot.
    (tmp_path / "exit.json").unlink()
    started = json.loads((tmp_path / STARTED_FILE).read_text())
    (tmp_path / STARTED_FILE).write_text(json.dumps({**started, "boot_id": "an-earlier-boot"}))
    assert processes.ending(tmp_path).kind == "node_restarted"
    (tmp_path / STARTED_FILE).write_text(json.dumps(started))  # this boot, and nobody saw the end: a failure
    assert processes.ending(tmp_path, wait=0).kind == "failed"


def test_under_systemd_the_executor_starts_in_a_scope_of_its_own(tmp_path, monkeypatch):
    """systemd-run cannot run here (no systemd): a stand-in on PATH records its arguments and runs the rest,
    as `systemd-run --scope` does (it execs the command in a new scope)."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    stand_in = bin_dir / "systemd-run"
    stand_in.write_text(f"#!{sys.executable}\nimport os, sys\nopen({str(tmp_path / 'args')!r}, 'w').write(' '.join(sys.argv[1:]))\n"
                        "command = sys.argv[sys.argv.index('--') + 1:]\nos.execvp(command[0], command)\n")
    stand_in.chmod(stand_in.stat().st_mode | stat.S_IEXEC)
    monkeypatch.setenv("PATH", f"{bin_dir}:{os.environ['PATH']}")
    vm_dir = tmp_path / "vm"
    vm_dir.mkdir()
    processes = VmmProcesses(lambda d: f"marker={d}/api.sock", start_timeout=10, scope=True)
    processes.spawn(vm_dir, vmm(vm_dir), ready=lambda: True)
    try:
        recorded = (tmp_path / "args").read_text()
        assert recorded.startswith("--scope --quiet --collect --slice=zeronode-vms.slice -- ")
        assert "-m sal.hypervisor.executor" in recorded
    finally:
        processes.end(vm_dir, grace=0)


def test_a_vmm_stopped_from_outside_did_not_exit_cleanly_even_with_status_0(processes, tmp_path):
    """QEMU exits 0 on SIGTERM, as when a host shutting down stops the VMs' scopes: not its guest's doing."""
    listening = tmp_path / "listening"
    exits_0_on_term = [sys.executable, "-c", "import signal, sys, time; signal.signal(signal.SIGTERM, lambda *_: "
                       f"sys.exit(0)); open({str(listening)!r}, 'w').close(); time.sleep(600)", f"marker={tmp_path}/api.sock"]
    processes.spawn(tmp_path, exits_0_on_term, ready=listening.exists)
    executor = json.loads((tmp_path / STARTED_FILE).read_text())["executor"]
    os.kill(executor, signal.SIGTERM)  # the executor passes it on, and writes that it did
    wait_until(lambda: (tmp_path / "exit.json").exists(), 10, "the executor's exit record")
    ending = processes.ending(tmp_path)
    assert ending.kind == "failed" and ending.code == 0
    assert json.loads((tmp_path / "exit.json").read_text())["signalled"] == signal.SIGTERM


def test_a_clean_exit_recorded_in_an_earlier_boot_ended_with_the_host(processes, tmp_path):
    processes.spawn(tmp_path, vmm(tmp_path, exit_after=0.2), ready=lambda: True)
    wait_until(lambda: processes.pid(tmp_path) is None and (tmp_path / "exit.json").exists(), 10, "the VMM to exit")
    ended = json.loads((tmp_path / "exit.json").read_text())
    (tmp_path / "exit.json").write_text(json.dumps({**ended, "boot_id": "an-earlier-boot"}))
    assert processes.ending(tmp_path).kind == "node_restarted"  # not "its guest powered off": it should run again
