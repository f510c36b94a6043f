"""Processes the tests and benchmarks start: the installed `zeronode` command, its JSON logs, stopping it."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import threading
from collections.abc import Callable
from pathlib import Path
from typing import TypeVar

from .waiting import wait_until

T = TypeVar("T")

# The `zeronode` console script installed with this Python (None when it is not installed).
ZERONODE = shutil.which("zeronode", path=str(Path(sys.executable).parent))


def alive(pid: int) -> bool:
    """Whether process `pid` exists and is not a zombie (one that exited, not yet reaped)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()[0] != "Z"


def stop(process: subprocess.Popen, timeout: float = 20, *, group: bool = False) -> int:
    """SIGTERM, then SIGKILL (to its whole process group with `group`) if it is not gone in `timeout` s; its status."""
    if process.poll() is None:
        process.terminate()
    try:
        return process.wait(timeout)
    except subprocess.TimeoutExpired:
        if group:
            os.killpg(process.pid, signal.SIGKILL)
        else:
            process.kill()
        return process.wait(5)


def collect_json_lines(stream, into: list[dict]) -> threading.Thread:
    """Append each JSON log line a process writes on `stream` to `into` (plain lines as {"msg": line})."""

    def read() -> None:
        for line in stream:
            try:
                into.append(json.loads(line))
            except ValueError:
                into.append({"msg": line.rstrip()})

    reader = threading.Thread(target=read, daemon=True)
    reader.start()
    return reader


class ZeronodeProcess:
    """`zeronode ARGS...` as its own process (and process group); its JSON log lines (stderr) are in `logs`."""

    def __init__(self, *args) -> None:
        assert ZERONODE, "the zeronode console script is not installed in this environment"
        self.args = [str(arg) for arg in args]
        self.process = subprocess.Popen(
            [ZERONODE, *self.args], stderr=subprocess.PIPE, text=True, start_new_session=True,
        )
        self.logs: list[dict] = []
        self.reader = collect_json_lines(self.process.stderr, self.logs)

    def wait_for(self, condition: Callable[[list[dict]], T], timeout: float, what: str) -> T:
        """Wait until `condition(logs so far)` is true, and return it; fail at once if the process exits."""
        return wait_until(
            lambda: condition(list(self.logs)), timeout, lambda: f"{what}: {self.logs[-5:]}",
            interval=0.05, process=self.process,
        )

    def wait_for_log(self, condition: Callable[[dict], bool], timeout: float = 30) -> dict:
        """The first log line that `condition` accepts, once there is one."""
        def first(logs: list[dict]) -> dict | None:
            return next((entry for entry in logs if condition(entry)), None)

        return self.wait_for(first, timeout, "a log line")

    def stop(self, timeout: float = 20) -> int:
        """SIGTERM (SIGKILL to its group after `timeout` s), then its exit status, once its last lines are in `logs`."""
        status = stop(self.process, timeout, group=True)
        self.reader.join(5)
        return status
