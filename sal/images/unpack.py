"""From a verified download to an image's files: `disk.raw`, and `vmlinux`, `initramfs`, `cmdline` if it has them.

    raw      the download is the disk
    qcow2    converted to raw by `qemu-img convert` (Debian's qemu-utils), after `qemu-img info` says it is a
             qcow2 with no backing file and no external data file: either would make qemu-img read a file of the
             host's into the image
    bundle   a tar archive, plain or gzip-compressed, whose members are regular files named disk.raw (required),
             vmlinux, initramfs and cmdline, each at most once, at the top (a leading "./" is taken, and the "./"
             directory entry itself); anything else (a link, a directory, another name, a path) refuses it whole

A disk must not start like an image format that a VMM probes for (qcow2,
vhdx): declared raw, it would be read as that format, and a qcow2 can name a
host file as its backing file. What an image unpacks to is bounded by the
node's max_image_bytes too (a qcow2's virtual size, a bundle's files).
"""

from __future__ import annotations

import contextlib
import errno
import json
import os
import subprocess
import tarfile
import zlib
from pathlib import Path

from sal.context import check_interrupted
from sal.images.base import BadImage, ImageDiskFull, ImageError, ImageTooLarge
from sal.images.download import CHUNK, write_sparse

DISK, KERNEL, INITRAMFS, CMDLINE = "disk.raw", "vmlinux", "initramfs", "cmdline"
BUNDLE_FILES = (DISK, KERNEL, INITRAMFS, CMDLINE)
MAX_CMDLINE_BYTES = 4096
ROOT_ENTRY = "./"  # the archive's own directory, which `tar -C DIR .` writes first
QCOW2_MAGIC = b"QFI\xfb"
PROBED_FORMATS = {QCOW2_MAGIC: "qcow2", b"vhdxfile": "vhdx"}
GZIP_MAGIC = b"\x1f\x8b"
TOOL_TIMEOUT = 30.0  # qemu-img info; a conversion runs as long as its job may


def unpack(kind: str, download: Path, into: Path, *, max_bytes: int, qemu_img: str) -> tuple[str, ...]:
    """Make the image's files in `into` from `download` (which is then gone); the names of the files made."""
    if kind == "raw":
        os.rename(download, into / DISK)
        files: tuple[str, ...] = (DISK,)
    elif kind == "qcow2":
        _convert_qcow2(download, into / DISK, max_bytes=max_bytes, qemu_img=qemu_img)
        download.unlink()
        files = (DISK,)
    else:
        files = _extract_bundle(download, into, max_bytes=max_bytes)
        download.unlink()
    _check_disk(into / DISK)
    return files


def _check_disk(disk: Path) -> None:
    with open(disk, "rb") as file:
        head = file.read(8)
    if not head:
        raise BadImage(f"the image's {DISK} is empty")
    for magic, kind in PROBED_FORMATS.items():
        if head.startswith(magic):
            raise BadImage(f"the image's {DISK} is a {kind} image, not a raw disk (pull a qcow2 with format \"qcow2\")")


# -- qcow2 -----------------------------------------------------------------------------------------


def _convert_qcow2(source: Path, disk: Path, *, max_bytes: int, qemu_img: str) -> None:
    with open(source, "rb") as file:
        if file.read(4) != QCOW2_MAGIC:
            raise BadImage("the download is not a qcow2 image")
    # -f qcow2 everywhere: qemu-img never guesses a format from the bytes of a download.
    info = _run_tool([qemu_img, "info", "--output=json", "-f", "qcow2", str(source)], "qemu-img info", TOOL_TIMEOUT,
                     source.parent)
    try:
        details = json.loads(info)
    except ValueError:
        raise BadImage("qemu-img info did not answer JSON about the download") from None
    if details.get("format") != "qcow2":
        raise BadImage(f"the download is not a qcow2 image (qemu-img says {details.get('format')!r})")
    if "backing-filename" in details or "full-backing-filename" in details:
        raise BadImage("the qcow2 image has a backing file: refused (qemu-img would read that file of this host)")
    if "data-file" in details.get("format-specific", {}).get("data", {}):
        raise BadImage("the qcow2 image has an external data file: refused (qemu-img would read that file of this host)")
    size = details.get("virtual-size")
    if not isinstance(size, int) or size <= 0:
        raise BadImage(f"the qcow2 image says no disk size ({size!r})")
    if size > max_bytes:
        raise ImageTooLarge(f"the qcow2 image's disk is {size} bytes, over this node's max_image_bytes ({max_bytes})")
    # Sparse output (qemu-img's default): the raw disk takes the room of what the qcow2 holds.
    _run_tool([qemu_img, "convert", "-q", "-f", "qcow2", "-O", "raw", str(source), str(disk)], "qemu-img convert", None,
              source.parent)


def _run_tool(args: list[str], what: str, timeout: float | None, within: Path) -> str:
    """Run a tool (an argument list, never a shell) on files `within` a directory until it ends, the job is
    cancelled or out of time, or `timeout` passes; its standard output."""
    try:
        process = subprocess.Popen(args, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    except OSError as exc:
        raise ImageError(f"{what} cannot run ({exc}): install Debian's qemu-utils") from None
    waited = 0.0
    while True:
        try:
            out, err = process.communicate(timeout=0.2)
            break
        except subprocess.TimeoutExpired:
            waited += 0.2
            try:
                check_interrupted(what)
                if timeout is not None and waited >= timeout:
                    raise ImageError(f"{what} took more than {timeout:.0f} s")
            except BaseException:
                process.kill()
                process.communicate()
                raise
    if process.returncode != 0:
        # Its words, with the files' names but not the pool's paths.
        detail = err.decode(errors="replace").strip().replace(f"{within}/", "")
        if "No space left on device" in detail or "Disk quota exceeded" in detail:
            raise ImageDiskFull(f"the storage pool is full: {what} failed ({detail})")
        raise BadImage(f"{what} failed: {detail or process.returncode}")
    return out.decode(errors="replace")


# -- bundles ---------------------------------------------------------------------------------------


def _extract_bundle(archive: Path, into: Path, *, max_bytes: int) -> tuple[str, ...]:
    with open(archive, "rb") as file:
        mode = "r:gz" if file.read(2) == GZIP_MAGIC else "r:"
    made: list[str] = []
    total = 0
    try:
        with tarfile.open(archive, mode) as tar:
            for member in tar:
                name = _member_name(member)
                if name in made:  # a second "./" too: tarfile keeps every member it reads in memory
                    raise BadImage(f"the bundle holds {name} twice")
                if name == ROOT_ENTRY:
                    made.append(name)
                    continue
                total += member.size
                if total > max_bytes:
                    raise ImageTooLarge(f"the bundle's files are over this node's max_image_bytes ({max_bytes})")
                if name == CMDLINE and member.size > MAX_CMDLINE_BYTES:
                    raise BadImage(f"the bundle's cmdline is over {MAX_CMDLINE_BYTES} bytes")
                source = tar.extractfile(member)
                if source is None:  # not a regular file after all (_member_name lets none through)
                    raise BadImage(f"the bundle's {name} cannot be read")
                _copy(source, into / name, member.size)
                made.append(name)
    except (tarfile.TarError, EOFError, zlib.error, OSError) as exc:
        if isinstance(exc, OSError) and exc.errno in (errno.ENOSPC, errno.EDQUOT):
            raise
        raise BadImage(f"the bundle is not a whole tar archive (plain or gzip): {exc}") from None
    if DISK not in made:
        raise BadImage(f"the bundle has no {DISK}")
    if CMDLINE in made:
        _check_cmdline(into / CMDLINE)
    return tuple(name for name in BUNDLE_FILES if name in made)


def _member_name(member: tarfile.TarInfo) -> str:
    """The image file a member is, or ROOT_ENTRY for the archive's own "./"; anything else refuses the bundle."""
    if member.isdir() and member.name in (".", "./"):
        return ROOT_ENTRY
    name = member.name.removeprefix("./")
    if name not in BUNDLE_FILES:
        raise BadImage(f"the bundle holds {member.name!r}: a bundle holds only {', '.join(BUNDLE_FILES)}")
    if not member.isreg():
        raise BadImage(f"the bundle's {name} is not a regular file (links, devices and directories are refused)")
    return name


def _copy(source, target: Path, size: int) -> None:
    # O_EXCL | O_NOFOLLOW: a file made here, never one a link points at.
    descriptor = os.open(target, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o600)
    with os.fdopen(descriptor, "wb") as file:
        left = size
        while left > 0:
            block = source.read(min(CHUNK, left))
            if not block:
                raise BadImage(f"the bundle's {target.name} ends early")
            write_sparse(file, block)
            left -= len(block)
            check_interrupted("image unpacking")
        file.truncate()


def _check_cmdline(path: Path) -> None:
    with contextlib.suppress(UnicodeDecodeError):
        text = path.read_bytes().decode("utf-8")
        if "\0" not in text:
            return
    raise BadImage("the bundle's cmdline is not UTF-8 text")
