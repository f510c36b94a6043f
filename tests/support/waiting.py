"""Waiting for something to become true: polling with a deadline, failing with what was awaited."""

from __future__ import annotations

import subprocess
import time
from collections.abc import Callable
from pathlib import Path
from typing import TypeVar

T = TypeVar("T")


def wait_until(
    condition: Callable[[], T],
    timeout: float,
    what: str | Callable[[], str],
    *,
    interval: float = 0.1,
    process: subprocess.Popen | None = None,
    ignoring: tuple[type[BaseException], ...] = (),
) -> T:
    """Call `condition` every `interval` seconds until it returns something true, and return that.

    AssertionError after `timeout` seconds: "timed out waiting for WHAT" (`what` may be a callable,
    asked only then, to say the state things were left in). With `process`, fail as soon as that
    process has exited instead of waiting the whole timeout. Exceptions in `ignoring` raised by
    `condition` mean "not yet" (a server that does not accept connections yet, say).
    """
    deadline = time.monotonic() + timeout
    while True:
        try:
            value = condition()
        except ignoring:
            value = None
        if value:
            return value
        if process is not None and process.poll() is not None:
            exited = f"{_command(process)} exited ({process.returncode})"
            raise AssertionError(f"{exited} while waiting for {_describe(what)}")
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {_describe(what)}")
        time.sleep(interval)


def _describe(what: str | Callable[[], str]) -> str:
    return what() if callable(what) else what


def _command(process: subprocess.Popen) -> str:
    """The process's program and first argument: `zeronode runner`."""
    args = [process.args] if isinstance(process.args, (str, bytes, Path)) else list(process.args)
    return " ".join([Path(str(args[0])).name, *map(str, args[1:2])])
