"""One identity manager per node: a reporter lock (flock) in the state dir, so its reports stay monotonic."""

from __future__ import annotations

import contextlib
import fcntl
import os
from collections.abc import Iterator
from pathlib import Path

from zeronode.errors import ZeronodeError

LOCK_NAME = "identity.lock"


class AlreadyRunning(ZeronodeError):
    """Another identity manager holds this node's reporter lock."""


@contextlib.contextmanager
def reporter_lock(state_dir: Path, *, lent_by: str | None = None) -> Iterator[Path]:
    """Hold STATE_DIR/identity.lock while the block runs; AlreadyRunning if another process holds it.

    flock, not a PID file: the kernel drops the lock when its holder dies, however it dies. `lent_by`: the
    pid of the holder that started this process to report once for it while its own reports wait (an
    update's check, zeronode.identity_manager.updates): then the lock is the holder's, and not taken.
    """
    state_dir.mkdir(parents=True, exist_ok=True)
    path = state_dir / LOCK_NAME
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = os.pread(fd, 32, 0).decode("ascii", errors="replace").strip() or "?"
            if lent_by is not None and holder == lent_by:
                yield path
                return
            raise AlreadyRunning(
                f"another `zeronode identity` (pid {holder}) already reports for this node: {path} is locked"
            ) from None
        os.ftruncate(fd, 0)
        os.pwrite(fd, f"{os.getpid()}\n".encode(), 0)  # for the message above, in the next one started
        yield path
    finally:
        os.close(fd)
