"""A VM's serial console on disk: serial.log for the boot in progress, serial.log.1 and .2 for the boots before.

cloud-hypervisor truncates the serial file at every create, boot and reboot
(as measured), and QEMU truncates it when it starts: so before each new boot
the VM manager rotates the file, and the output of the last BOOTS_KEPT boots
stays readable. Each rotated file keeps at most MAX_BYTES (its end: the last
lines matter most). The boot in progress is not cut while it runs.
"""

from __future__ import annotations

import os
from pathlib import Path

SERIAL_LOG = "serial.log"
BOOTS_KEPT = 2
MAX_BYTES = 1024 * 1024
MAX_LINES = 1000  # the most lines one read returns
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


def read_from(vm_dir: Path, offset: int, limit: int = 64 * 1024) -> tuple[bytes, int]:
    """The current boot's console bytes from `offset` (at most `limit`) and the offset after them, for followers;
    offset END: none, and where the console ends now. An offset past the end (a new boot rotated the file)
    starts again at 0."""
    try:
        with open(path(vm_dir), "rb") as file:
            size = file.seek(0, os.SEEK_END)
            if offset == END:
                offset = size
            elif offset > size:
                offset = 0
            file.seek(offset)
            data = file.read(limit)
    except FileNotFoundError:
        return b"", 0
    return data, offset + len(data)
