"""Which job a SAL function serves: the runner sets it around each eval, functions read `current_job()`."""

from __future__ import annotations

import contextlib
import math
import time
from collections.abc import Iterator
from contextvars import ContextVar
from dataclasses import dataclass
from typing import Protocol

from sal.errors import SalError


@dataclass
class JobContext:
    job_id: str
    signer: str
    node_id: str
    deadline: float  # time.monotonic() after which the script is out of time
    admin: bool = False  # the signer is a node admin here: its script sees and acts on every tenant's VMs and volumes
    cancel: Cancellable | None = None  # the job's cancel token: set when its signer cancels or its runner stops it


class Cancellable(Protocol):
    @property
    def cancelled(self) -> bool: ...


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


def job_cancelled() -> bool:
    """Whether the current job was cancelled (False outside a job): a SAL call that waits gives up then."""
    context = _current.get()
    return context is not None and context.cancel is not None and context.cancel.cancelled


def wait_slices(requested: int, step: int = 1) -> Iterator[int]:
    """The seconds of a wait of `requested` seconds, in slices of at most `step`, for as long as the job
    has time left and is not cancelled: a long poll made of short ones returns within both."""
    remaining = time_left(requested)
    while remaining > 0 and not job_cancelled():
        wait = min(step, remaining, time_left(step))
        if wait <= 0:
            return
        yield wait
        remaining -= wait


@contextlib.contextmanager
def running(context: JobContext) -> Iterator[JobContext]:
    token = _current.set(context)
    try:
        yield context
    finally:
        _current.reset(token)
