"""Restarting the node's services onto the version `current` names: the one thing an update needs of
whoever runs them. One class per service manager, chosen by `service_manager`.

    systemd   `systemctl restart` of `update_units` (their ExecStart runs INSTALL_ROOT/current/bin/zeronode)
    local     `zeronode up`: it writes each node's service pids to STATE_DIR/services.json and starts again
              any that exits; a restart is SIGTERM, then waiting for the new pids
    none      nobody restarts them: updates are refused

The identity manager itself is not among them: it restarts itself last, by
exec, once the new version has passed its checks (zeronode.identity_manager.updates).
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import time
from pathlib import Path
from typing import Protocol

from zeronode.node.settings import NodeSettings
from zeronode.release.manifest import ReleaseError

SERVICES_FILE = "services.json"
SELF = "identity"


class RestartFailed(ReleaseError):
    """The node's services could not be restarted."""


class ServiceControl(Protocol):
    def restart(self, timeout: float) -> None:
        """Restart the node's services (not the identity manager); RestartFailed if they do not come back."""

    def still_running(self) -> str | None:
        """None while every service restarted last is still the process it started as; else what stopped
        (a version that crashes after its start, a service in a restart loop)."""


class Systemd:
    def __init__(self, units: list[str]):
        self.units = units
        self.started: dict[str, str] = {}  # each unit's main pid and state, once restarted

    def restart(self, timeout: float) -> None:
        try:
            done = subprocess.run(["systemctl", "restart", "--", *self.units], capture_output=True, text=True, timeout=timeout)
        except (OSError, subprocess.TimeoutExpired) as exc:
            raise RestartFailed(f"systemctl restart: {exc}") from None
        if done.returncode != 0:
            raise RestartFailed(f"systemctl restart {' '.join(self.units)}: {done.stderr.strip()[-300:]}")
        self.started = self._main_pids()

    def _main_pids(self) -> dict[str, str]:
        done = subprocess.run(["systemctl", "show", "--property=MainPID,ActiveState", "--", *self.units],
                              capture_output=True, text=True, check=False)
        blocks = [block for block in done.stdout.strip().split("\n\n") if block]
        return {unit: block for unit, block in zip(self.units, blocks, strict=False)}

    def still_running(self) -> str | None:
        now = self._main_pids()
        changed = [unit for unit in self.units if now.get(unit) != self.started.get(unit)
                   or "ActiveState=active" not in now.get(unit, "")]
        return f"{', '.join(changed)} stopped or restarted since the update started them" if changed else None


class LocalServices:
    """The services `zeronode up` runs for this node, by the pids it writes for them."""

    def __init__(self, path: Path):
        self.path = path
        self.started: dict[str, int] = {}  # each service's pid, once restarted

    def pids(self) -> dict[str, int]:
        try:
            return {name: int(pid) for name, pid in json.loads(self.path.read_text()).items()}
        except (OSError, ValueError, TypeError, AttributeError) as exc:
            raise RestartFailed(f"cannot read the local services' pids in {self.path}: {exc}") from None

    def restart(self, timeout: float) -> None:
        before = {name: pid for name, pid in self.pids().items() if name != SELF}
        for pid in before.values():
            try:
                os.kill(pid, signal.SIGTERM)
            except ProcessLookupError:
                pass
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            now = self.pids()
            if all(now.get(name, pid) != pid and _alive(now[name]) for name, pid in before.items()):
                self.started = {name: now[name] for name in before}
                return
            time.sleep(0.1)
        raise RestartFailed(f"the local services did not come back within {timeout:.0f} s (is `zeronode up` running?)")

    def still_running(self) -> str | None:
        now = self.pids()
        stopped = [name for name, pid in self.started.items() if now.get(name) != pid or not _alive(pid)]
        return f"{', '.join(stopped)} stopped or restarted since the update started them" if stopped else None


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def service_control(settings: NodeSettings) -> ServiceControl | None:
    if settings.service_manager == "systemd":
        return Systemd(settings.update_units)
    if settings.service_manager == "local":
        return LocalServices(settings.state_dir / SERVICES_FILE)
    return None
