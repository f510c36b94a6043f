"""The storage SAL's interface: volumes (btrfs subvolumes) under one pool root.

A driver implements `Storage` (sal/storage/drivers/: btrfs). Names are
checked here, before any driver touches the filesystem: one path component of
letters, digits, '.', '_' and '-', not starting with a dot, at most 64
characters. So no name can be absolute, climb out with '..', or carry a
separator.

A volume can also be built out of sight (stage, publish): in a scratch
volume no listing shows, made the read-only volume `name` all at once when it
is whole. The image store (sal.images) builds images so.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO, Protocol

from sal.errors import SalError
from sal.fingerprint import Fingerprint

NAME = re.compile(r"[A-Za-z0-9_-][A-Za-z0-9._-]{0,63}")
STAGED_KEY = re.compile(r"[a-z0-9][a-z0-9-]{0,99}")  # what a volume being built out of sight is known by


class StorageError(SalError):
    """A storage operation failed; the message says what and why."""


class InvalidName(StorageError, ValueError):
    """A volume name that could reach outside the pool, or one reserved (refused before any syscall)."""


class VolumeNotFound(StorageError):
    pass


class VolumeExists(StorageError):
    pass


def check_name(name: str) -> str:
    if not isinstance(name, str) or not NAME.fullmatch(name):
        raise InvalidName(
            f"invalid volume name {name!r}: use 1-64 letters, digits, '.', '_' or '-', not starting with '.'"
        )
    return name


@dataclass(frozen=True)
class Volume:
    name: str
    path: Path
    id: int
    uuid: str
    parent_uuid: str | None  # the volume it is a snapshot of
    read_only: bool
    created: float  # Unix time

    def as_dict(self) -> dict:
        return {
            "name": self.name,
            "path": str(self.path),
            "id": self.id,
            "uuid": self.uuid,
            "parent_uuid": self.parent_uuid,
            "read_only": self.read_only,
            "created": self.created,
        }


@dataclass(frozen=True)
class Usage:
    referenced: int  # bytes the volume refers to (shared with snapshots included)
    exclusive: int  # bytes only this volume holds
    limit: int | None  # its quota, if any


class Storage(Protocol):
    root: Path

    def fingerprint(self) -> Fingerprint: ...
    def create(self, name: str, *, quota_bytes: int | None = None) -> Volume: ...
    def delete(self, name: str, *, recursive: bool = False) -> None: ...
    def info(self, name: str) -> Volume: ...
    def exists(self, name: str) -> bool: ...
    def list(self) -> list[Volume]: ...
    def snapshot(self, source: str, name: str, *, read_only: bool = True) -> Volume: ...
    def set_quota(self, name: str, limit_bytes: int | None) -> None: ...
    def usage(self, name: str) -> Usage: ...
    def send(self, name: str, out: BinaryIO, *, parent: str | None = None) -> None: ...
    def receive(self, stream: BinaryIO) -> Volume: ...
    def stage(self, key: str) -> Path: ...
    def publish(self, key: str, name: str) -> Volume: ...
    def discard(self, key: str) -> None: ...
    def staged(self) -> dict[str, float]: ...
