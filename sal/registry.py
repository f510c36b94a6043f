"""The one table of functions that Rhai scripts can call on a node.

A runner registers every entry of FUNCTIONS into its engine once. Functions
that need to know which job they serve (its node, its deadline, whether it
was cancelled) read `current_job()`, which the runner sets around each eval.
The SAL drivers (hypervisor, storage, network) add their entries here.
"""

from __future__ import annotations

import contextlib
import os
import platform
import socket
import threading
import time
from collections.abc import Callable, Iterator
from contextvars import ContextVar
from dataclasses import dataclass, field
from typing import Any

import rhai

import zeronode


class SalError(Exception):
    """A SAL refused or failed an operation; the script sees its message and line."""


@dataclass
class JobContext:
    job_id: str
    signer: str
    node_id: str
    deadline: float  # time.monotonic() after which the script is out of time
    # Set when the job is cancelled: a SAL function that waits on something watches it.
    cancelled: threading.Event = field(default_factory=threading.Event)

    def remaining(self) -> float:
        return self.deadline - time.monotonic()


_current: ContextVar[JobContext | None] = ContextVar("zeronode_job", default=None)


def current_job() -> JobContext:
    context = _current.get()
    if context is None:
        raise SalError("this function can only be called from a job")
    return context


@contextlib.contextmanager
def running(context: JobContext) -> Iterator[JobContext]:
    token = _current.set(context)
    try:
        yield context
    finally:
        _current.reset(token)


def node_info() -> dict[str, Any]:
    """What the script's node is: its id, host facts and software version."""
    job = current_job()
    return {
        "id": job.node_id,
        "hostname": socket.gethostname(),
        "cpus": os.cpu_count() or 1,
        "memory_mb": os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") // (1024 * 1024),
        "kernel": platform.release(),
        "zeronode": zeronode.__version__,
    }


FUNCTIONS: dict[str, Callable[..., Any]] = {
    "node_info": node_info,
}
# No `sleep` here: Rhai's own `sleep(seconds)` is there, and rhai-py makes it honour
# the job's timeout and cancellation.


def register_all(engine: rhai.Engine) -> None:
    for name, function in FUNCTIONS.items():
        engine.register(name, function)
