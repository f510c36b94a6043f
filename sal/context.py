"""Which job a SAL function serves: the runner sets it around each eval, functions read `current_job()`.

A long SAL call also reports its progress to the job's output (`report`, the
lines a script's `print` makes) and stops when its job is cancelled or out of
time (`check_interrupted`)."""

from __future__ import annotations

import contextlib
import math
import time
from collections.abc import Callable, Iterator
from contextvars import ContextVar
from dataclasses import dataclass
from typing import Protocol

from sal.errors import JobInterrupted, SalError


@dataclass
class JobContext:
    job_id: str
    signer: str
    node_id: str
    deadline: float  # time.monotonic() after which the script is out of time
    admin: bool = False  # the signer is a node admin here: its script sees and acts on every tenant's VMs and volumes
    cancel: Cancellable | None = None  # the job's cancel token: set when its signer cancels or its runner stops it
    output: Callable[[str], None] | None = None  # adds a line to the job's output, beside the script's prints


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


def check_interrupted(what: str) -> None:
    """Raise JobInterrupted when the current job was cancelled or is out of time: a SAL call that works for long
    (a download, a conversion) checks between its steps, so it never outlives its job. Outside a job (the
    node's operator) nothing interrupts it."""
    context = _current.get()
    if context is None:
        return
    if job_cancelled():
        raise JobInterrupted(f"{what}: the job was cancelled")
    if time.monotonic() >= context.deadline:
        raise JobInterrupted(f"{what}: the job ran out of time")


def seconds_left(at_most: float) -> float:
    """What the current job has left, at most `at_most` seconds (all of it outside a job): the longest a single
    blocking step (a network read) may take."""
    context = _current.get()
    return at_most if context is None else max(0.0, min(at_most, context.deadline - time.monotonic()))


def report(line: str) -> None:
    """Add `line` to the current job's output, where the script's own prints go: a long SAL call's progress.
    Outside a job, or where the runner keeps no output, it goes nowhere."""
    context = _current.get()
    if context is not None and context.output is not None:
        context.output(line)


@contextlib.contextmanager
def running(context: JobContext) -> Iterator[JobContext]:
    token = _current.set(context)
    try:
        yield context
    finally:
        _current.reset(token)
