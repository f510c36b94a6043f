"""A VM's serial console on disk: serial.log for the boot in progress, serial.log.1 and .2 for the boots before.

cloud-hypervisor truncates the serial file at every create, boot and reboot
(as measured), and QEMU truncates it when it starts: so before each new boot
the VM manager rotates the file, and the output of the last BOOTS_KEPT boots
stays readable. Each rotated file keeps at most MAX_BYTES (its end: the last
lines matter most). The boot in progress is cut back to its last MAX_BYTES by
the VM keeper once it passes LIVE_MAX (`trim`), where the VMM appends to the
file (QEMU's append=on); cloud-hypervisor's console grows until the next boot.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

SERIAL_LOG = "serial.log"
BOOTS_KEPT = 2
MAX_BYTES = 1024 * 1024
MAX_LINES = 1000  # the most lines one read returns
LIVE_MAX = 8 * MAX_BYTES  # the boot in progress, where the VMM appends: cut back to MAX_BYTES past this
END = -1  # read_from's offset for "where the console ends now"


def rotate(vm_dir: Path) -> None:
    """Keep the current console output as the previous boot's, before a new boot truncates it."""
    current = vm_dir / SERIAL_LOG
    if not current.exists():
        return
    for older in range(BOOTS_KEPT, 1, -1):
        previous = vm_dir / f"{SERIAL_LOG}.{older - 1}"
        if previous.exists():
            os.replace(previous, vm_dir / f"{SERIAL_LOG}.{older}")
    target = vm_dir / f"{SERIAL_LOG}.1"
    if current.stat().st_size <= MAX_BYTES:
        os.replace(current, target)
        return
    with open(current, "rb") as source:  # keep the end, from a line's start
        source.seek(-MAX_BYTES, os.SEEK_END)
        kept = source.read()
    kept = kept[kept.find(b"\n") + 1:] if b"\n" in kept else kept
    temporary = target.with_name(f".{target.name}.tmp")
    temporary.write_bytes(kept)
    os.replace(temporary, target)
    current.unlink()


def trim(vm_dir: Path) -> bool:
    """Cut the console of the boot in progress back to its last MAX_BYTES (from a line's start) once it passes
    LIVE_MAX; whether it did. Only for a VMM that appends to the file: its next write lands after what is kept.
    What the guest writes while this runs may be lost or land before the kept part: a guest that writes 8 MiB
    to its console has lost that claim."""
    current = path(vm_dir)
    try:
        if current.stat().st_size <= LIVE_MAX:
            return False
        with open(current, "r+b") as file:
            file.seek(-MAX_BYTES, os.SEEK_END)
            kept = file.read()
            kept = kept[kept.find(b"\n") + 1:] if b"\n" in kept else kept
            file.truncate(0)
            file.seek(0)
            file.write(kept)
    except FileNotFoundError:
        return False
    return True


def path(vm_dir: Path, boot: int = 0) -> Path:
    """The console file of the current boot (0) or of the boot-th before it."""
    return vm_dir / (SERIAL_LOG if boot == 0 else f"{SERIAL_LOG}.{boot}")


def tail(vm_dir: Path, lines: int, boot: int = 0) -> str:
    """The last `lines` lines of a boot's console output (at most MAX_LINES, from at most MAX_BYTES), as text."""
    lines = max(1, min(lines, MAX_LINES))
    try:
        with open(path(vm_dir, boot), "rb") as file:
            size = file.seek(0, os.SEEK_END)
            file.seek(max(0, size - MAX_BYTES))
            data = file.read()
    except FileNotFoundError:
        return ""
    return "\n".join(data.decode("utf-8", errors="replace").splitlines()[-lines:])


@dataclass(frozen=True)
class Chunk:
    """What a follower gets: the text from its offset on, where to read next, and which file that offset is in
    (its inode: a new boot's console is another file, read from its start)."""

    text: str
    offset: int
    file: int


def read_from(vm_dir: Path, offset: int, file: int | None = None, limit: int = 64 * 1024) -> Chunk:
    """The current boot's console from byte `offset` (at most `limit` bytes), for followers. Offset END: nothing,
    and where the console ends now. When `file` is not the console's file any more (a new boot rotated it), or the
    offset is past its end, reading starts again at 0. The text ends on a whole UTF-8 character: a character
    cut by `limit` or by the writer comes whole in the next read."""
    try:
        with open(path(vm_dir), "rb") as handle:
            inode = os.fstat(handle.fileno()).st_ino
            size = handle.seek(0, os.SEEK_END)
            if offset == END:
                offset = size
            elif offset > size or (file is not None and file != inode):
                offset = 0
            handle.seek(offset)
            data = _whole_characters(handle.read(limit))
    except FileNotFoundError:
        return Chunk("", 0, 0)
    return Chunk(data.decode("utf-8", errors="replace"), offset + len(data), inode)


def _whole_characters(data: bytes) -> bytes:
    """`data` without a UTF-8 character cut at its end (at most 3 bytes left for the next read)."""
    for back in range(1, min(4, len(data)) + 1):
        byte = data[-back]
        if byte < 0x80:  # ASCII: nothing cut
            return data
        if byte >= 0xC0:  # a lead byte: is its sequence whole?
            length = 2 if byte < 0xE0 else 3 if byte < 0xF0 else 4
            return data if back >= length else data[:-back]
    return data  # only continuation bytes: not UTF-8; leave it to the decoder
