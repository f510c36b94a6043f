"""Files written whole or not at all, and records read back whole or refused.

A reader (another process, or this one after a crash) sees the old file or the
new one, never half of one: the bytes go to a temporary file in the same
folder, created 0600, are fsynced, and take the name in one rename, which is
itself fsynced with its folder so it survives a power cut.

Root writing into another user's folder gives the file that folder's owner and
group (`owned_like_parent`): the node's state directory is the supervisor's user's,
and root's services (the identity manager, the runners) write the node key,
rights.json and the journal there, which the supervisor must read.
"""

from __future__ import annotations

import json
import os
import tempfile
from pathlib import Path
from typing import Any


def write_atomic(path: Path, data: bytes | str, *, mode: int = 0o600) -> None:
    """Replace `path` with `data` atomically and durably; the file ends with `mode`."""
    path = Path(path)
    if isinstance(data, str):
        data = data.encode("utf-8")
    descriptor, temporary = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")  # 0600
    try:
        with os.fdopen(descriptor, "wb") as file:
            file.write(data)
            file.flush()
            if mode != 0o600:
                os.fchmod(file.fileno(), mode)
            os.fsync(file.fileno())
        owned_like_parent(Path(temporary))
        os.replace(temporary, path)
    except BaseException:
        Path(temporary).unlink(missing_ok=True)
        raise
    sync_directory(path.parent)


def owned_like_parent(path: Path) -> None:
    """Give `path` its folder's owner and group when root made it: whichever service makes a shared file
    first (root's, or the supervisor's user's) must not lock the other out of it. Others' files are theirs."""
    path = Path(path)
    if os.geteuid() != 0:
        return
    parent, own = path.parent.stat(), path.stat()
    if (own.st_uid, own.st_gid) != (parent.st_uid, parent.st_gid):
        os.chown(path, parent.st_uid, parent.st_gid)


def sync_directory(directory: Path) -> None:
    """Make the names in `directory` (a rename, a new file) survive a crash."""
    descriptor = os.open(directory, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(descriptor)
    finally:
        os.close(descriptor)


def read_json(path: Path, error: type[Exception], what: str) -> Any:
    """The JSON value in `path`, None when there is no such file; `error` ("WHAT cannot be read") when it cannot be
    read or is not JSON: a record is refused, never guessed."""
    try:
        return json.loads(Path(path).read_text())
    except FileNotFoundError:
        return None
    except (OSError, ValueError) as exc:
        raise error(f"{what} cannot be read ({path}): {exc}") from None
