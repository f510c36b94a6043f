"""The host taps VMs use: made by zeronode, for one VM each, and only those.

A tap names a host network interface. Letting a script name any interface
would let it attach a guest to `eth0`, `lo`, or another tenant's tap; so a VM
gets only taps zeronode made for it. Their names start with PREFIX; the VM
manager creates each (`ip tuntap add ... mode tap`) when the VM is created,
records it in VM_DIR/.taps/NAME.json (which VM has it), and deletes it with
the VM. A name that is already a host interface zeronode did not make is
refused, as is a tap another VM has.
"""

from __future__ import annotations

import json
import re
import subprocess
from pathlib import Path

from sal.errors import SalError
from zeronode.files import write_atomic

PREFIX = "zn"
TAP_NAME = re.compile(rf"{PREFIX}[a-z0-9-]{{1,13}}")  # Linux interface names: at most 15 bytes
DIRECTORY = ".taps"


def check_tap_name(name: object) -> str:
    if not isinstance(name, str) or not TAP_NAME.fullmatch(name):
        raise SalError(f"invalid tap name {name!r}: {PREFIX!r} then 1-13 lowercase letters, digits or '-' "
                       "(zeronode makes the tap; it must not be a host interface already)")
    return name


def interface_exists(name: str) -> bool:
    return Path("/sys/class/net", name).exists()


class Taps:
    def __init__(self, vms_dir: Path):
        self.directory = vms_dir / DIRECTORY

    def holder(self, name: str) -> str | None:
        """The VM that has the tap `name`, or None when zeronode did not make it."""
        try:
            return json.loads((self.directory / f"{name}.json").read_text())["vm"]
        except (OSError, ValueError, KeyError, TypeError):
            return None

    def make(self, name: str, vm: str) -> None:
        """Create the tap for `vm` (refused when the name is any other interface or another VM's tap)."""
        check_tap_name(name)
        holder = self.holder(name)
        if holder is not None and holder != vm:
            raise SalError(f"tap {name!r} belongs to another VM")
        if holder is None and interface_exists(name):
            raise SalError(f"{name!r} is a host interface zeronode did not make: a VM gets only taps zeronode makes")
        self.directory.mkdir(mode=0o700, exist_ok=True)
        write_atomic(self.directory / f"{name}.json", json.dumps({"vm": vm}))  # first: a crash leaves no stray tap
        if not interface_exists(name):
            _ip("tuntap", "add", "dev", name, "mode", "tap")
        _ip("link", "set", name, "up")

    def remove(self, name: str, vm: str) -> None:
        """Delete the tap if it is `vm`'s."""
        if self.holder(name) != vm:
            return
        if interface_exists(name):
            _ip("link", "delete", name)
        (self.directory / f"{name}.json").unlink(missing_ok=True)


def _ip(*arguments: str) -> None:
    try:
        result = subprocess.run(["ip", *arguments], capture_output=True, text=True, timeout=10, check=False)
    except (OSError, subprocess.SubprocessError) as exc:
        raise SalError(f"ip {' '.join(arguments)}: {exc}") from None
    if result.returncode != 0:
        raise SalError(f"ip {' '.join(arguments)}: {result.stderr.strip() or result.returncode}")
