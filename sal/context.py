"""Which job a SAL function serves: the runner sets it around each eval, functions read `current_job()`."""

from __future__ import annotations

import contextlib
import math
import time
from collections.abc import Iterator
from contextvars import ContextVar
from dataclasses import dataclass

from sal.errors import SalError


@dataclass
class JobContext:
    job_id: str
    signer: str
    node_id: str
    deadline: float  # time.monotonic() after which the script is out of time
    admin: bool = False  # the signer is a node admin here: its script sees and acts on every tenant's VMs and volumes


_current: ContextVar[JobContext | None] = ContextVar("zeronode_job", default=None)


def current_job() -> JobContext:
    context = _current.get()
    if context is None:
        raise SalError("this function can only be called from a job")
    return context


def time_left(requested: int) -> int:
    """`requested` seconds, cut to what the current job has left, in whole seconds (the daemons' unit):
    a SAL call that waits (a message, a reply, a VM's power-off) never outwaits its job's timeout."""
    left = current_job().deadline - time.monotonic()
    return requested if left >= requested else max(0, math.floor(left))


@contextlib.contextmanager
def running(context: JobContext) -> Iterator[JobContext]:
    token = _current.set(context)
    try:
        yield context
    finally:
        _current.reset(token)
