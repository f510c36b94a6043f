"""QEMU's monitor (QMP) for synchronous callers: the QEMU project's own client, qemu.qmp, on a private event loop.

    with Monitor(vm_dir / "qmp.sock") as qmp:
        qmp.execute("query-status")        # {"status": "running", "running": True, ...}
        qmp.execute("system_powerdown")

Each Monitor is one connection (connect, capability negotiation, commands,
disconnect) on an asyncio loop of its own, never the thread's: runners call the
SALs from plain threads, and nothing here may change what asyncio sees there.
QMP's failures become the hypervisor SAL's errors in one table (ERRORS, then
MESSAGES for QMP's GenericError, which says what went wrong only in words).
"""

from __future__ import annotations

import asyncio
import logging
import re
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any, TypeVar

from qemu.qmp import ConnectError, ExecuteError, QMPClient, QMPError

from sal.hypervisor.base import (
    DeviceConflict,
    HypervisorError,
    InvalidVmConfig,
    InvalidVmState,
    Unsupported,
    VmmFailure,
    VmmUnreachable,
    VmNotCreated,
)

T = TypeVar("T")

# qemu.qmp logs every failed connection and dropped session at ERROR level; each is an answer here (the
# VM is stopped, or on its way out), turned into our errors below and logged, if at all, by the callers.
logging.getLogger("qemu.qmp").setLevel(logging.CRITICAL)

# QMP error classes -> our errors.
ERRORS: dict[str, type[HypervisorError]] = {
    "DeviceNotFound": VmNotCreated,
    "CommandNotFound": Unsupported,
    "DeviceNotActive": InvalidVmState,
}
# GenericError's words -> our errors (the first that matches).
# (QEMU 7.2's words, checked against it.)
MESSAGES: tuple[tuple[re.Pattern[str], type[HypervisorError]], ...] = (
    (re.compile(r"Duplicate (device )?ID|Duplicate nodes? with node-name|already (exists|in use)|Duplicate node "
                r"name|is conflicting with a device id", re.I), DeviceConflict),
    (re.compile(r"Could not open|Node name too long|Parameter|Invalid|expected|must be", re.I), InvalidVmConfig),
    (re.compile(r"Device '[^']*' not found|Cannot find device|No such device", re.I), VmNotCreated),
    (re.compile(r"is not running|not paused|in state|not allowed in|migration", re.I), InvalidVmState),
)


def error_for(error: ExecuteError, command: str) -> HypervisorError:
    words = str(error)
    kind = ERRORS.get(error.error_class)
    if kind is None:
        kind = next((kind for pattern, kind in MESSAGES if pattern.search(words)), VmmFailure)
    return kind(f"{command}: {words}", None, [words])


class Monitor:
    def __init__(self, socket: str | Path, *, timeout: float = 10.0):
        self.socket = str(socket)
        self.timeout = timeout
        self._loop = asyncio.new_event_loop()
        self._client = QMPClient("zeronode")
        try:
            self._run(self._client.connect(self.socket), "connect")
        except BaseException:
            self._loop.close()
            raise

    def execute(self, command: str, arguments: dict[str, Any] | None = None) -> Any:
        return self._run(self._client.execute(command, arguments), command)

    def execute_until_event(self, command: str, arguments: dict[str, Any] | None, event: str,
                            timeout: float, matches: Callable[[dict[str, Any]], bool] = lambda data: True) -> bool:
        """Run `command`, then wait at most `timeout` s for an `event` (e.g. DEVICE_DELETED) whose data `matches`;
        whether one came."""

        async def next_match(listener: Any) -> None:
            while not matches(dict((await listener.get()).get("data", {}))):
                pass

        async def run_and_wait() -> bool:
            with self._client.listener(names=[event]) as listener:
                await self._client.execute(command, arguments)
                try:
                    await asyncio.wait_for(next_match(listener), timeout)
                except TimeoutError:
                    return False
                return True

        return self._run(run_and_wait(), command, timeout=self.timeout + timeout)

    def _run(self, work: Awaitable[T], command: str, *, timeout: float | None = None) -> T:
        try:
            return self._loop.run_until_complete(asyncio.wait_for(work, timeout or self.timeout))
        except ExecuteError as exc:
            raise error_for(exc, command) from None
        except TimeoutError:  # before OSError, which it is a kind of
            raise VmmUnreachable(f"QEMU's monitor on {self.socket} did not answer {command} within "
                                 f"{timeout or self.timeout:.0f} s") from None
        except (ConnectError, OSError, EOFError) as exc:
            raise VmmUnreachable(f"no QEMU monitor answers on {self.socket}: {exc}") from None
        except QMPError as exc:  # the connection dropped mid-command: QEMU is going away
            raise VmmUnreachable(f"QEMU's monitor on {self.socket} went away during {command}: {exc}") from None

    def close(self) -> None:
        try:
            self._loop.run_until_complete(asyncio.wait_for(self._client.disconnect(), self.timeout))
        except (QMPError, OSError, EOFError, TimeoutError):
            pass  # QEMU went away first (after `quit`, say): the connection is closed either way
        finally:
            self._loop.close()

    def __enter__(self) -> Monitor:
        return self

    def __exit__(self, *_exc: object) -> None:
        self.close()
