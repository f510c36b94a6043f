"""Processes that must not outlive the one that started them: Linux's parent-death signal.

A runner pool's runners, and every process `zeronode up` starts, ask the kernel
for a signal when their parent dies, however it dies (kill -9 included): an
orphaned runner would go on taking jobs beside the runners of the pool started
again in its place. The setting is not inherited across fork, so what a runner
starts on purpose to outlive it (a VM's VMM) is not affected.
"""

from __future__ import annotations

import contextlib
import ctypes
import os
import signal

PR_SET_PDEATHSIG = 1


def die_with_parent(parent_pid: int | None = None, signum: int = signal.SIGTERM) -> None:
    """Be sent `signum` when the parent dies. With `parent_pid`, the parent this process was started by:
    if it died already (before the request could be made), the signal is sent now."""
    with contextlib.suppress(OSError, AttributeError):  # not Linux, or no libc: best effort
        ctypes.CDLL("libc.so.6", use_errno=True).prctl(PR_SET_PDEATHSIG, signum)
    if parent_pid is not None and os.getppid() != parent_pid:
        os.kill(os.getpid(), signum)
