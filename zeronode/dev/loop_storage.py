"""A btrfs for a local cluster's nodes when none is given: a sparse image in the state dir, loop-mounted.

    with LoopBtrfs(state_dir / "storage", size_gb=4) as root:   # root: the mounted filesystem
        ...

Needs root, mkfs.btrfs (btrfs-progs) and a free loop device; `unavailable()`
says why not when one is missing, and `zeronode up` then runs without storage
(and says so). Unmounted on exit, and deleted unless `keep`: a state dir that is
used again (`zeronode up --state-dir`) finds its volumes and VMs' disks where
they were, the image mounted again as it is (made once).
"""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

from zeronode.errors import ZeronodeError


class LoopStorageError(ZeronodeError):
    """The loop-mounted btrfs could not be made or mounted."""


def unavailable() -> str | None:
    """Why a loop-mounted btrfs cannot be made here, or None."""
    if os.geteuid() != 0:
        return "mounting a btrfs image needs root"
    if not shutil.which("mkfs.btrfs"):
        return "mkfs.btrfs is not installed (btrfs-progs)"
    return None


class LoopBtrfs:
    def __init__(self, directory: Path, size_gb: int = 4, *, keep: bool = False):
        self.directory = Path(directory)
        self.image = self.directory.with_name(self.directory.name + ".img")
        self.size_gb = size_gb
        self.keep = keep
        self.mounted = False

    def mount(self) -> Path:
        self.directory.mkdir(mode=0o700, parents=True, exist_ok=True)
        if self.keep and self.image.is_file():
            if not os.path.ismount(self.directory):  # mounted still: an earlier run that was killed left it so
                self._run(["mount", "-o", "loop", str(self.image), str(self.directory)])
            self.mounted = True
            return self.directory
        try:
            # 0600: the image holds every volume. Sparse: it takes what the volumes write.
            with open(os.open(self.image, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600), "wb") as file:
                file.truncate(self.size_gb * 1024**3)
            self._run(["mkfs.btrfs", "-q", str(self.image)])
            self._run(["mount", "-o", "loop", str(self.image), str(self.directory)])
        except BaseException:
            self.image.unlink(missing_ok=True)
            raise
        self.mounted = True
        return self.directory

    def unmount(self) -> None:
        if self.mounted:
            subprocess.run(["umount", "-l", str(self.directory)], capture_output=True, check=False)
            self.mounted = False
        if not self.keep:
            self.image.unlink(missing_ok=True)

    @staticmethod
    def _run(command: list[str]) -> None:
        result = subprocess.run(command, capture_output=True, text=True, check=False)
        if result.returncode != 0:
            raise LoopStorageError(f"{' '.join(command[:2])}: {result.stderr.strip() or result.returncode}")

    def __enter__(self) -> Path:
        return self.mount()

    def __exit__(self, *_exc: object) -> None:
        self.unmount()
