"""Which accelerator QEMU runs guests with: KVM when it can run them, else TCG (software emulation).

    acceleration = "kvm"   KVM or nothing: a VM that cannot start under KVM fails
    acceleration = "tcg"   always software emulation (slow, but runs anywhere)
    acceleration = "auto"  KVM, falling back to TCG when /dev/kvm is missing or not usable, or when KVM
                           fails to run the guest

/dev/kvm can exist and still not run a Linux guest: on hosts with a paravirtual
KVM module (kvm-pvm) a Linux guest dies at its first cmpxchg16b, QEMU aborts at
start with `-cpu host`, or the guest hangs before printing anything. So under
`auto` each VM started on KVM is watched for its first seconds (kvm_probe_seconds):
its VMM must stay up, its guest must not stop on an error, and a guest booted
with a kernel that logs to the serial console must write to it. A VM that fails
this is started again on TCG, and the node remembers (the memo file beside the
VMs: .kvm-unusable.json) for as long as this boot of the host lasts, so later
VMs go to TCG at once. The fingerprint says which accelerator VMs get now.
"""

from __future__ import annotations

import json
import os
import time
from pathlib import Path

from sal.hypervisor.executor import boot_id
from zeronode.files import write_atomic

ACCELERATIONS = ("auto", "kvm", "tcg")
KVM_DEVICE = "/dev/kvm"
MEMO = ".kvm-unusable.json"


def kvm_device_problem() -> str | None:
    """Why /dev/kvm cannot be used from here, or None when it can be opened for reading and writing."""
    if not os.path.exists(KVM_DEVICE):
        return f"{KVM_DEVICE} does not exist"
    if not os.access(KVM_DEVICE, os.R_OK | os.W_OK):
        return f"{KVM_DEVICE} is not readable and writable by this user"
    return None


class Acceleration:
    def __init__(self, mode: str, memo_dir: Path | None):
        if mode not in ACCELERATIONS:
            raise ValueError(f"qemu acceleration must be one of {', '.join(ACCELERATIONS)}, not {mode!r}")
        self.mode = mode
        self.memo = memo_dir / MEMO if memo_dir else None

    def choose(self) -> str:
        """The accelerator the next VM starts with."""
        if self.mode != "auto":
            return self.mode
        return "tcg" if self.kvm_problem() else "kvm"

    def kvm_problem(self) -> str | None:
        """Why KVM is not used for new VMs now, or None."""
        problem = kvm_device_problem()
        if problem or self.memo is None:
            return problem
        try:
            memo = json.loads(self.memo.read_text())
        except (OSError, ValueError):
            return None
        return memo.get("reason") if memo.get("boot_id") == boot_id() else None

    def remember_kvm_failed(self, reason: str) -> None:
        if self.memo is not None:
            self.memo.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
            write_atomic(self.memo, json.dumps({"reason": reason, "boot_id": boot_id(), "at": time.time()}))
