"""Who owns each volume: one small JSON record per volume, in the pool's hidden `.owners` directory.

    POOL/.owners/web1-data.json     {"format": 1, "volume": "web1-data", "owner": "<the signer's key>"}

A volume without a record has no owner: the node's operator made it outside
scripts (a shared image), or it was made before volumes had owners.

Why records beside the subvolumes rather than an xattr on each subvolume:

- a record is written before its volume is made, so no runner ever sees a
  tenant's volume without its owner, i.e. as shared; a crash between the two
  leaves a record without a volume, which means nothing and which the next
  create of that name overwrites;
- a read-only snapshot gets its owner without being made writable for it;
- `btrfs send` carries xattrs to the receiving node, which could not trust an
  owner claimed in a stream; records stay on the node that wrote them.

`.owners` cannot collide with a volume (no volume name starts with a dot), and
is 0700 with 0600 records: who owns what is the node's business. Records are
written whole or not at all (a temporary file, fsync, rename). One lock file
serialises the changes that ownership depends on (create, snapshot, delete,
quota) across the runners of a pool, processes and threads alike: flock locks
belong to each open file, so a thread of the same process waits too.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import tempfile
from collections.abc import Iterator
from pathlib import Path

from sal.storage.base import StorageError, check_name

DIRECTORY = ".owners"
LOCK = ".lock"
FORMAT = 1


class Owners:
    def __init__(self, root: Path):
        # Nothing is made here: a storage object is also built only to fingerprint the node.
        self.directory = Path(root) / DIRECTORY

    def _path(self, volume: str) -> Path:
        return self.directory / f"{check_name(volume)}.json"

    def of(self, volume: str) -> str | None:
        """The volume's owner, None when it has none. An unreadable record is refused, never taken for "no owner"."""
        path = self._path(volume)
        try:
            data = json.loads(path.read_text())
        except FileNotFoundError:
            return None
        except (OSError, ValueError) as exc:
            raise StorageError(f"the owner record of volume {volume!r} cannot be read ({path}): {exc}") from None
        owner = data.get("owner") if isinstance(data, dict) and data.get("format") == FORMAT else None
        if not isinstance(owner, str) or data.get("volume") != volume:
            raise StorageError(f"the owner record of volume {volume!r} is malformed ({path})")
        return owner

    def set(self, volume: str, owner: str | None) -> None:
        """Record `owner` for the volume; None removes the record (the volume has no owner)."""
        path = self._path(volume)
        if owner is None:
            path.unlink(missing_ok=True)
            return
        self.directory.mkdir(mode=0o700, exist_ok=True)
        descriptor, temporary = tempfile.mkstemp(dir=self.directory, prefix=".tmp-")  # 0600
        try:
            with os.fdopen(descriptor, "w") as file:
                json.dump({"format": FORMAT, "volume": volume, "owner": owner}, file)
                file.flush()
                os.fsync(file.fileno())
            os.replace(temporary, path)
        except BaseException:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(temporary)
            raise
        self._sync_directory()  # the rename itself survives a crash

    def _sync_directory(self) -> None:
        descriptor = os.open(self.directory, os.O_RDONLY | os.O_DIRECTORY)
        try:
            os.fsync(descriptor)
        finally:
            os.close(descriptor)

    @contextlib.contextmanager
    def locked(self) -> Iterator[None]:
        """Hold the pool's ownership lock. Not reentrant: code holding it calls the driver, never back in here."""
        self.directory.mkdir(mode=0o700, exist_ok=True)
        with open(self.directory / LOCK, "a") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)
            yield
