"""What a driver says about itself: which driver runs a SAL, whether a simulator stands in, what it can do.

Every driver has `fingerprint()`. It is cheap (at most one local request or one
`--version`), has no side effects and never raises: a backend that is not there
(a daemon that does not answer, a pool root not on btrfs) gives a fingerprint
with no features, since nothing would work. The identity manager reports the
node's fingerprints (sal.registry.fingerprint) to the ledger, which validates
them as zeronode.api.ledger.Driver.
"""

from __future__ import annotations

import functools
import re
import subprocess
from dataclasses import dataclass

# Simulators that serve HTTP mark every answer with this header (its value: what they simulate),
# so a driver talking to one through the same code as to the real daemon can tell which it reached.
SIMULATOR_HEADER = "x-zeronode-simulator"
VERSION = re.compile(r"v?\d+\.\d+[\w.+-]*")


@dataclass(frozen=True)
class Fingerprint:
    driver: str  # the name in sal.registry's table, e.g. "cloud-hypervisor", "btrfs", "mycelium"
    simulated: bool = False  # a simulator serves the API: for a hypervisor, no guest code runs
    version: str | None = None  # the backend's version, when it says
    features: tuple[str, ...] = ()  # what it can do now; empty when its backend is not there

    def as_dict(self) -> dict:
        return {"driver": self.driver, "simulated": self.simulated, "version": self.version, "features": list(self.features)}


@functools.cache  # an installed tool's version does not change while a process runs
def tool_version(binary: str) -> str | None:
    """The version `BINARY --version` prints ("btrfs-progs v6.2", "cloud-hypervisor v40.0.0"), or None when it
    prints none or cannot run."""
    try:
        output = subprocess.run([binary, "--version"], capture_output=True, text=True, timeout=5, check=False).stdout
    except (OSError, subprocess.SubprocessError):
        return None
    found = VERSION.search(output)
    return found.group(0)[:64] if found else None  # the ledger keeps 64 characters
