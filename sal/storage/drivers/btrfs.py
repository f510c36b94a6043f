"""The storage SAL on btrfs: subvolumes, snapshots, quotas, send and receive, and volumes built out of sight.

btrfsutil does what it can (create, snapshot, delete, info, read-only flag).
The `btrfs` command does the rest, quotas and send/receive, with argument
lists, never a shell.
"""

from __future__ import annotations

import os
import re
import subprocess
from pathlib import Path
from typing import BinaryIO

import btrfsutil

from sal.fingerprint import Fingerprint, tool_version
from sal.storage.base import NAME, STAGED_KEY, StorageError, Usage, Volume, VolumeExists, VolumeNotFound, check_name

BTRFS = "btrfs"
COMMAND_TIMEOUT = 600
STAGING = ".staging"  # scratch subvolumes: a dot, so no volume name can be it and list() never shows them
DRIVER = "btrfs"
FEATURES = ("snapshots", "quotas", "send_receive")


def _run(*args: str, stdin: BinaryIO | None = None, stdout: BinaryIO | None = None) -> str:
    try:
        result = subprocess.run(
            [BTRFS, *args], stdin=stdin, stdout=stdout if stdout is not None else subprocess.PIPE,
            stderr=subprocess.PIPE, timeout=COMMAND_TIMEOUT, check=False,
        )
    except (OSError, subprocess.TimeoutExpired) as exc:
        raise StorageError(f"btrfs {args[0]} failed: {exc}") from exc
    if result.returncode != 0:
        detail = result.stderr.decode(errors="replace").strip().splitlines()
        raise StorageError(f"btrfs {' '.join(args[:2])} failed: {detail[-1] if detail else result.returncode}")
    return result.stdout.decode(errors="replace") if stdout is None else ""


class BtrfsStorage:
    def __init__(self, root: Path):
        root = Path(root)
        if not root.is_dir():
            raise StorageError(f"storage pool {root} is not a directory")
        self.root = root.resolve()
        self._quotas_enabled = False

    def fingerprint(self) -> Fingerprint:
        """btrfs, with btrfs-progs' version; no features when the pool root is not on a btrfs (nothing would work)."""
        try:
            btrfsutil.subvolume_id(self.root)  # any path on a btrfs has one; elsewhere it fails
            features = FEATURES
        except (btrfsutil.BtrfsUtilError, OSError):
            features = ()
        return Fingerprint(DRIVER, version=tool_version(BTRFS), features=features)

    # -- paths -----------------------------------------------------------

    def _path(self, name: str) -> Path:
        """The volume's path, proven to stay directly inside the pool (no symlink out)."""
        path = self.root / check_name(name)
        if path.is_symlink() or (path.exists() and path.resolve().parent != self.root):
            raise StorageError(f"volume {name!r} is not a plain entry of the pool")
        return path

    def _existing(self, name: str) -> Path:
        path = self._path(name)
        if not path.exists():
            raise VolumeNotFound(f"no volume {name!r}")
        try:
            if not btrfsutil.is_subvolume(path):
                raise StorageError(f"{name!r} is not a volume")
        except btrfsutil.BtrfsUtilError as exc:
            raise StorageError(f"cannot inspect {name!r}: {exc}") from exc
        return path

    def _fresh(self, name: str) -> Path:
        path = self._path(name)
        if path.exists():
            raise VolumeExists(f"volume {name!r} already exists")
        return path

    # -- volumes ---------------------------------------------------------

    def create(self, name: str, *, quota_bytes: int | None = None) -> Volume:
        path = self._fresh(name)
        try:
            btrfsutil.create_subvolume(path)
        except btrfsutil.BtrfsUtilError as exc:
            raise StorageError(f"cannot create volume {name!r}: {exc}") from exc
        if quota_bytes is not None:
            self.set_quota(name, quota_bytes)
        return self.info(name)

    def delete(self, name: str, *, recursive: bool = False) -> None:
        path = self._existing(name)
        try:
            btrfsutil.delete_subvolume(path, recursive=recursive)
        except btrfsutil.BtrfsUtilError as exc:
            hint = " (it holds other volumes: delete recursively)" if not recursive else ""
            raise StorageError(f"cannot delete volume {name!r}: {exc}{hint}") from exc

    def info(self, name: str) -> Volume:
        path = self._existing(name)
        try:
            info = btrfsutil.subvolume_info(path)
            read_only = btrfsutil.get_subvolume_read_only(path)
        except btrfsutil.BtrfsUtilError as exc:
            raise StorageError(f"cannot read volume {name!r}: {exc}") from exc
        parent = info.parent_uuid.hex() if any(info.parent_uuid) else None
        return Volume(name, path, info.id, info.uuid.hex(), parent, read_only, info.otime)

    def exists(self, name: str) -> bool:
        try:
            self._existing(name)
        except VolumeNotFound:
            return False
        return True

    def list(self) -> list[Volume]:
        """The pool's volumes. Entries that could not be volume names (made by hand) are not listed."""
        names = sorted(
            entry.name for entry in os.scandir(self.root) if entry.is_dir(follow_symlinks=False) and NAME.fullmatch(entry.name)
        )
        return [self.info(name) for name in names if btrfsutil.is_subvolume(self.root / name)]

    def snapshot(self, source: str, name: str, *, read_only: bool = True) -> Volume:
        check_name(source), check_name(name)  # both, before touching the filesystem
        source_path, path = self._existing(source), self._fresh(name)
        try:
            btrfsutil.create_snapshot(source_path, path, read_only=read_only)
        except btrfsutil.BtrfsUtilError as exc:
            raise StorageError(f"cannot snapshot {source!r} as {name!r}: {exc}") from exc
        return self.info(name)

    # -- quotas ----------------------------------------------------------

    def _enable_quotas(self) -> None:
        if not self._quotas_enabled:
            _run("quota", "enable", str(self.root))
            self._quotas_enabled = True

    def set_quota(self, name: str, limit_bytes: int | None) -> None:
        """Limit what the volume may refer to; None lifts the limit."""
        if limit_bytes is not None and (not isinstance(limit_bytes, int) or limit_bytes <= 0):
            raise StorageError(f"a quota is a positive number of bytes, got {limit_bytes!r}")
        path = self._existing(name)
        self._enable_quotas()
        _run("qgroup", "limit", "none" if limit_bytes is None else str(limit_bytes), str(path))

    def usage(self, name: str) -> Usage:
        path = self._existing(name)
        self._enable_quotas()
        _run("quota", "rescan", "-w", str(self.root))
        volume_id = btrfsutil.subvolume_id(path)
        output = _run("qgroup", "show", "-re", "--raw", str(path))
        for line in output.splitlines():
            fields = line.split()
            if fields and fields[0] == f"0/{volume_id}":
                referenced, exclusive, max_referenced = fields[1], fields[2], fields[3]
                limit = None if max_referenced == "none" else int(max_referenced)
                return Usage(int(referenced), int(exclusive), limit)
        raise StorageError(f"no quota group for volume {name!r}")

    # -- moving volumes between nodes ----------------------------------

    def send(self, name: str, out: BinaryIO, *, parent: str | None = None) -> None:
        """Write a read-only volume as a btrfs send stream (incremental against `parent`)."""
        volume = self.info(name)
        if not volume.read_only:
            raise StorageError(f"only a read-only snapshot can be sent; {name!r} is writable")
        args = ["send", "-q"]
        if parent is not None:
            args += ["-p", str(self._existing(parent))]
        _run(*args, str(volume.path), stdout=out)

    def receive(self, stream: BinaryIO) -> Volume:
        """Receive a send stream into the pool; returns the volume it created."""
        before = {entry.name for entry in os.scandir(self.root)}
        output = _run("receive", "-e", str(self.root), stdin=stream)
        after = {entry.name for entry in os.scandir(self.root)} - before
        named = re.findall(r"At (?:subvol|snapshot) (\S+)", output)
        candidates = sorted(after) or [Path(n).name for n in named]
        if len(candidates) != 1:
            raise StorageError("the stream did not create exactly one volume")
        return self.info(check_name(candidates[0]))

    # -- volumes built out of sight ---------------------------------------

    def _staged_path(self, key: str) -> Path:
        if not isinstance(key, str) or not STAGED_KEY.fullmatch(key):
            raise StorageError(f"invalid staging key {key!r}")
        return self.root / STAGING / key

    def stage(self, key: str) -> Path:
        """A writable scratch subvolume for `key`, which no listing shows: made, or the one a build of the same key
        left when it was interrupted (a download to resume). Its time is set to now: staged() says when it was
        last used."""
        path = self._staged_path(key)
        path.parent.mkdir(mode=0o700, exist_ok=True)
        try:
            if not path.exists():
                btrfsutil.create_subvolume(path)
            elif not btrfsutil.is_subvolume(path):
                raise StorageError(f"staging {key!r} is not a subvolume")
        except btrfsutil.BtrfsUtilError as exc:
            raise StorageError(f"cannot stage {key!r}: {exc}") from exc
        os.utime(path)
        return path

    def publish(self, key: str, name: str) -> Volume:
        """Make what was built in staging `key` the read-only volume `name`, all at once (a read-only snapshot:
        btrfs refuses to move a read-only subvolume), and drop the scratch subvolume."""
        source, path = self._staged_path(key), self._fresh(name)
        try:
            btrfsutil.create_snapshot(source, path, read_only=True)
            btrfsutil.delete_subvolume(source)
        except btrfsutil.BtrfsUtilError as exc:
            raise StorageError(f"cannot publish staging {key!r} as volume {name!r}: {exc}") from exc
        return self.info(name)

    def discard(self, key: str) -> None:
        """Remove staging `key` and what it holds; nothing when there is none."""
        path = self._staged_path(key)
        if path.exists():
            try:
                btrfsutil.delete_subvolume(path)
            except btrfsutil.BtrfsUtilError as exc:
                raise StorageError(f"cannot discard staging {key!r}: {exc}") from exc

    def staged(self) -> dict[str, float]:
        """Each staging key -> when it was last staged (Unix time), for removing what was given up."""
        directory = self.root / STAGING
        if not directory.is_dir():
            return {}
        return {entry.name: entry.stat(follow_symlinks=False).st_mtime for entry in os.scandir(directory)
                if STAGED_KEY.fullmatch(entry.name) and entry.is_dir(follow_symlinks=False)}
