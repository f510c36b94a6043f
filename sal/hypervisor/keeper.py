"""The VM keeper: VMs that should run, run; VMs that should not, are left alone; no VM is ever deleted.

`zeronode vm-keeper` runs `VmKeeper.run` on each node with VMs. Every few
seconds it looks at each VM that should run (sal.hypervisor.lifecycle: vm_start
said so) and, under the VM's lock, decides by its state and restart policy:

    Running, Paused, Created   nothing
    Unreachable                nothing yet: its VMM runs, and may answer again
    Failed                     its guest stopped on an error: its VMM is ended, then as a crash
    Stopped                    how did its VMM end (sal.hypervisor.processes.Ending)?
        exited (code 0)        the guest powered off: `always` starts it again; otherwise it no longer should run
        failed                 the VMM crashed or was killed: `always` and `on-failure` start it again
        node_restarted         the host rebooted: `always` and `on-failure` start it again (not a failure)
    `never`                    whatever ended it, it no longer should run

It also cuts each running VM's console back to its last MiB once it passes
8 MiB, where the VMM appends to it (sal.hypervisor.console.trim): a guest cannot
fill the node's disk through its serial port.

Restarts back off: the n-th restart within `window` seconds waits
backoff_base × 2^(n-1) seconds (at most backoff_max) after the last; after
`max_restarts` within the window the keeper gives up: the VM no longer should
run, and its `gave_up` says why (vm_start clears it). A restart after a host
reboot is not counted; every failed attempt is. The keeper never waits behind
a VM's lock: a VM a runner is acting on is looked at next time. Each decision
is an event of the VM (vm_events), and a log line.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass

from sal.errors import SalError
from sal.hypervisor import console
from sal.hypervisor.lifecycle import Want, record_event
from sal.hypervisor.manager import VmManager
from sal.hypervisor.record import VmRecord

log = logging.getLogger("zeronode.vm_keeper")

UP = ("Running", "Paused", "Created", "Unreachable")


@dataclass(frozen=True)
class RestartLimits:
    max_restarts: int = 5
    window: float = 600.0
    backoff_base: float = 1.0
    backoff_max: float = 60.0

    def delay(self, recent: int) -> float:
        """Seconds to wait after the last restart before the next, with `recent` restarts in the window."""
        return 0.0 if recent == 0 else min(self.backoff_max, self.backoff_base * 2 ** (recent - 1))


class VmKeeper:
    def __init__(self, manager: VmManager, limits: RestartLimits = RestartLimits(),
                 clock: Callable[[], float] = time.time):
        self.manager = manager
        self.limits = limits
        self.clock = clock

    def run(self, interval: float, stop: threading.Event) -> None:
        log.info("vm keeper started", extra={"vms": str(self.manager.state_dir), "interval": interval})
        while not stop.is_set():
            self.tick()
            stop.wait(interval)

    def tick(self) -> dict[str, str]:
        """Look at every VM once; what was done to each one that needed something."""
        done = {}
        for name in self.manager.names():
            try:
                action = self.keep(name)
            except BlockingIOError:
                continue  # a runner is acting on it (a long vm_stop, say): look again next time
            except (SalError, OSError) as exc:
                log.warning("vm keeper could not look after a vm", extra={"vm": name, "error": str(exc)})
                continue
            if action:
                done[name] = action
        return done

    def keep(self, name: str) -> str | None:
        """Do what the VM needs, under its lock; BlockingIOError when someone holds it (never wait behind a VM)."""
        with self.manager.locked(name, wait=False):
            directory = self.manager.state_dir / name
            if self.manager.driver.console_appends and console.trim(directory):
                log.info("vm console cut back", extra={"vm": name, "kept": console.MAX_BYTES})
            want = Want.load(directory)
            if not want.run:
                return None
            record = VmRecord.load(directory)
            now = self.clock()
            want.restarts = [at for at in want.restarts if now - at < self.limits.window]
            state = self.manager.driver.state(directory)
            if state in UP:
                return None
            if state == "Failed":
                self.manager.driver.stop(directory, timeout=0)
                ending, cause = "failed", "its guest stopped on an error"
            else:
                end = self.manager.driver.ending(directory)
                ending, cause = end.kind, _cause(end.kind, end.code)
            return self._decide(record, want, ending, cause, now)

    def _decide(self, record: VmRecord, want: Want, ending: str, cause: str, now: float) -> str | None:
        directory = self.manager.state_dir / record.name
        again = record.restart == "always" or (record.restart == "on-failure" and ending != "exited")
        if not again:
            Want(run=False, restarts=want.restarts).save(directory)
            record_event(directory, "exited" if ending == "exited" else "crashed", cause=cause, restart=record.restart)
            log.info("vm ended and stays stopped", extra={"vm": record.name, "cause": cause, "restart": record.restart})
            return "left stopped"
        # A host reboot is not the VM's failure: restarting after one is not counted (a failed attempt is).
        counted = ending != "node_restarted"
        if len(want.restarts) >= self.limits.max_restarts:
            reason = (f"{cause}: restarted {len(want.restarts)} times in {self.limits.window:.0f} s, "
                      "the keeper gave up")
            Want(run=False, restarts=want.restarts, gave_up=reason).save(directory)
            record_event(directory, "gave_up", cause=cause, restarts=len(want.restarts))
            log.warning("vm keeper gave up on a vm", extra={"vm": record.name, "reason": reason})
            return "gave up"
        if want.restarts and now < want.restarts[-1] + self.limits.delay(len(want.restarts)):
            return None  # backing off
        try:
            self.manager.boot(record, "restarted", cause=cause, attempt=len(want.restarts) + 1)
        except Exception as exc:  # noqa: BLE001 - whatever failed, the attempt counts (backoff, then giving up)
            record_event(directory, "restart_failed", cause=cause, error=str(exc))
            log.warning("vm restart failed", extra={"vm": record.name, "error": str(exc)})
            Want(run=True, restarts=[*want.restarts, now]).save(directory)
            return "restart failed"
        log.info("vm restarted", extra={"vm": record.name, "cause": cause})
        Want(run=True, restarts=[*want.restarts, now] if counted else want.restarts).save(directory)
        return "restarted"


def _cause(kind: str, code: int | None) -> str:
    if kind == "exited":
        return "its guest powered off"
    if kind == "node_restarted":
        return "the node restarted"
    if kind == "never_started":
        return "it never started"
    if code is None:
        return "its VMM ended unseen"
    return f"its VMM was killed by signal {-code}" if code < 0 else f"its VMM exited with {code}"

