"""Who owns each volume: one small JSON record per volume, in the pool's hidden `.owners` directory.

    POOL/.owners/web1-data.json     {"format": 1, "volume": "web1-data", "owner": "<the signer's key>"}
    POOL/.owners/ubuntu.json        {"format": 1, "volume": "ubuntu", "owner": null, "shared": true}

The first is a tenant's volume; the second a shared image, which the node's
operator marked so (share). A volume without a record has no owner and is not
shared: the node admins' alone. So is every volume made outside scripts, or
before volumes had owners, until an operator gives it an owner (set) or shares
it: being shared is never what a missing record means.

Why records beside the subvolumes rather than an xattr on each subvolume:

- a record is written before its volume is made, so no runner ever sees a
  tenant's volume without its owner (as the admins'); a crash between the two
  leaves a record without a volume, which means nothing and which the next
  create of that name overwrites;
- a read-only snapshot gets its owner without being made writable for it;
- `btrfs send` carries xattrs to the receiving node, which could not trust an
  owner claimed in a stream; records stay on the node that wrote them.

`.owners` cannot collide with a volume (no volume name starts with a dot), and
is 0700 with 0600 records: who owns what is the node's business. Records are
written whole or not at all (a temporary file, fsync, rename). One lock file
serialises the changes that ownership depends on (create, snapshot, delete, share,
quota) across the runners of a pool, processes and threads alike: flock locks
belong to each open file, so a thread of the same process waits too.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from sal.storage.base import StorageError, check_name
from zeronode.files import read_json, write_atomic

DIRECTORY = ".owners"
LOCK = ".lock"
FORMAT = 1


@dataclass(frozen=True)
class Record:
    """What a volume's record says."""

    owner: str | None = None  # the key of the signer whose volume it is; None: nobody's
    shared: bool = False  # a shared image (then owner is None): every deployer may see it and boot from it


ADMINS_ONLY = Record()  # no record at all: nobody's, not shared, so the node admins' alone
SHARED = Record(shared=True)


class Owners:
    def __init__(self, root: Path):
        # Nothing is made here: a storage object is also built only to fingerprint the node.
        self.directory = Path(root) / DIRECTORY

    def _path(self, volume: str) -> Path:
        return self.directory / f"{check_name(volume)}.json"

    def of(self, volume: str) -> Record:
        """The volume's record; ADMINS_ONLY when it has none. An unreadable record is refused, never taken for
        another."""
        path = self._path(volume)
        data = read_json(path, StorageError, f"the owner record of volume {volume!r}")
        if data is None:
            return ADMINS_ONLY
        if isinstance(data, dict) and data.get("format") == FORMAT and data.get("volume") == volume:
            owner, shared = data.get("owner"), data.get("shared", False)
            if isinstance(owner, str) and shared is False:
                return Record(owner=owner)
            if owner is None and shared is True:
                return SHARED
        raise StorageError(f"the owner record of volume {volume!r} is malformed ({path})")

    def set(self, volume: str, owner: str | None) -> None:
        """Record `owner` for the volume; None removes the record (the volume is then the admins' alone)."""
        if owner is None:
            self._path(volume).unlink(missing_ok=True)
        else:
            self._write(volume, {"owner": owner})

    def share(self, volume: str) -> None:
        """Mark the volume shared, in place of any owner it had: an image for every deployer of the node."""
        self._write(volume, {"owner": None, "shared": True})

    def _write(self, volume: str, record: dict) -> None:
        path = self._path(volume)
        self.directory.mkdir(mode=0o700, exist_ok=True)
        write_atomic(path, json.dumps({"format": FORMAT, "volume": volume, **record}))

    @contextlib.contextmanager
    def locked(self) -> Iterator[None]:
        """Hold the pool's ownership lock. Not reentrant: code holding it calls the driver, never back in here."""
        self.directory.mkdir(mode=0o700, exist_ok=True)
        with open(self.directory / LOCK, "a") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)
            yield
