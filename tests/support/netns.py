"""Run part of a test inside a fresh network namespace, so its bridges, taps and nft rules touch no host state.

    with network_namespace() as name:      # this thread is in `name` until the block ends
        ...                                # processes and threads started here are in it too

setns(2) moves only the calling thread; what it starts (a QEMU, a mycelium
simulator, a thread) inherits the namespace. Start the services the block uses
inside it: a server started before listens on the host's loopback, which the
namespace does not see. The namespace is deleted at the end, with every
interface in it.
"""

from __future__ import annotations

import contextlib
import ctypes
import os
import subprocess
import uuid
from collections.abc import Iterator

from pyroute2 import IPRoute

CLONE_NEWNET = 0x40000000
_libc = ctypes.CDLL(None, use_errno=True)


def _enter(fd: int) -> None:
    if _libc.setns(fd, CLONE_NEWNET) != 0:
        error = ctypes.get_errno()
        raise OSError(error, os.strerror(error))


@contextlib.contextmanager
def network_namespace() -> Iterator[str]:
    name = f"zn-test-{uuid.uuid4().hex[:8]}"
    subprocess.run(["ip", "netns", "add", name], check=True)
    original = os.open("/proc/thread-self/ns/net", os.O_RDONLY)
    try:
        inside = os.open(f"/run/netns/{name}", os.O_RDONLY)
        try:
            _enter(inside)
        finally:
            os.close(inside)
        try:
            subprocess.run(["ip", "link", "set", "lo", "up"], check=True)
            yield name
        finally:
            _enter(original)
    finally:
        os.close(original)
        subprocess.run(["ip", "netns", "delete", name], check=False)


def interfaces() -> set[str]:
    """The network interfaces of the calling thread's namespace (by netlink: /sys/class/net shows the namespace
    that mounted /sys)."""
    with IPRoute() as ip:
        return {link.get_attr("IFLA_IFNAME") for link in ip.get_links()}


def nft_tables() -> str:
    return subprocess.run(["nft", "list", "tables"], capture_output=True, text=True, check=True).stdout
