"""What a VM should be doing, and what happened to it: its desired state and its events.

In the VM's directory, beside its record:

    want.json     {"run": true, "restarts": [1767225600.5], "gave_up": null}
                  run: whether the VM should be running (vm_start sets it, vm_stop clears it);
                  restarts: when the VM keeper restarted it lately; gave_up: why it stopped trying
    events.jsonl  one JSON object a line, {"at": 1767225600.5, "event": "started", ...}; the last
                  EVENTS_KEPT are kept

A VM's restart policy is in its record (vm.json's "restart"):

    always      the keeper starts it again whenever its VMM is gone, even after its guest powered off
    on-failure  again when its VMM crashed or the node restarted, not after its guest powered off (default)
    never       never again: a VM that stops stays stopped

The VM keeper (sal.hypervisor.keeper) reads these and writes them; so does the
VM manager, under the VM's lock, so the two never interleave.
"""

from __future__ import annotations

import json
import os
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from sal.errors import SalError
from sal.hypervisor.readers import file_mode
from zeronode.files import write_atomic

RESTART_POLICIES = ("always", "on-failure", "never")
DEFAULT_RESTART = "on-failure"
WANT, EVENTS = "want.json", "events.jsonl"
EVENTS_KEPT = 200


def check_restart(policy: str) -> str:
    if policy not in RESTART_POLICIES:
        raise SalError(f"restart must be one of {', '.join(RESTART_POLICIES)}, not {policy!r}")
    return policy


@dataclass
class Want:
    run: bool = False
    restarts: list[float] = field(default_factory=list)
    gave_up: str | None = None

    @classmethod
    def load(cls, vm_dir: Path) -> Want:
        try:
            data = json.loads((vm_dir / WANT).read_text())
            return cls(run=bool(data["run"]), restarts=[float(at) for at in data.get("restarts", [])],
                       gave_up=data.get("gave_up"))
        except (OSError, ValueError, KeyError, TypeError):
            return cls()  # none yet (a VM from before desired states): it need not run

    def save(self, vm_dir: Path) -> None:
        write_atomic(vm_dir / WANT, json.dumps(asdict(self)))


def record_event(vm_dir: Path, event: str, **detail: Any) -> None:
    """Append one event; past twice EVENTS_KEPT lines the file is cut back to the last EVENTS_KEPT."""
    line = json.dumps({"at": round(time.time(), 3), "event": event, **detail}) + "\n"
    path = vm_dir / EVENTS
    with open(os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, file_mode(vm_dir)), "a") as file:
        file.write(line)
    if path.stat().st_size > EVENTS_KEPT * 2 * 160:  # ~160 bytes an event: check the count only now and then
        kept = path.read_text().splitlines(keepends=True)
        if len(kept) > EVENTS_KEPT * 2:
            write_atomic(path, "".join(kept[-EVENTS_KEPT:]), mode=file_mode(vm_dir))


def events(vm_dir: Path, limit: int = EVENTS_KEPT) -> list[dict[str, Any]]:
    """The VM's last `limit` events, oldest first."""
    try:
        lines = (vm_dir / EVENTS).read_text().splitlines()
    except FileNotFoundError:
        return []
    found = []
    for line in lines[-max(1, min(limit, EVENTS_KEPT)):]:
        try:
            found.append(json.loads(line))
        except ValueError:
            continue  # a line torn by a crash mid-write
    return found
