"""The VM network's interfaces, made and removed through netlink (pyroute2): the bridge, and a tap per VM.

Every call is idempotent: making what exists, or removing what does not, is
no error, so a node that crashed half way through makes or removes the rest
next time. Only names zeronode derived (sal.vmnet.addresses) reach here.
"""

from __future__ import annotations

import contextlib
import errno
from collections.abc import Iterator
from pathlib import Path

from pyroute2 import IPRoute
from pyroute2.netlink.exceptions import NetlinkError

from sal.vmnet.addresses import VmNetworkError

IFA_F_NODAD = 0x02  # the bridge is the only holder of its addresses: no duplicate detection, usable at once


@contextlib.contextmanager
def netlink() -> Iterator[IPRoute]:
    try:
        with IPRoute() as ip:
            yield ip
    except NetlinkError as exc:
        raise VmNetworkError(f"netlink: {exc.args[-1] if exc.args else exc} (errno {exc.code})") from None


def ensure_bridge(name: str, mac: str, addresses: list[tuple[str, int]]) -> None:
    """The bridge `name`, up, with a fixed MAC (else it takes its lowest port's, and changes as VMs come and
    go) and `addresses` (address, prefix length)."""
    with netlink() as ip:
        if not ip.link_lookup(ifname=name):
            _ignore(errno.EEXIST, ip.link, "add", ifname=name, kind="bridge", address=mac)
        index = ip.link_lookup(ifname=name)[0]
        kind = ip.get_links(index)[0].get_nested("IFLA_LINKINFO", "IFLA_INFO_KIND")
        if kind != "bridge":
            raise VmNetworkError(f"{name!r} is an interface of this host but not a bridge ({kind or 'a device'}): "
                                 "set vm_bridge to a name no interface has")
        for address, prefix in addresses:
            _ignore(errno.EEXIST, ip.addr, "add", index=index, address=address, prefixlen=prefix, flags=IFA_F_NODAD)
        ip.link("set", index=index, state="up")


def ensure_tap(name: str, bridge: str) -> None:
    """A persistent tap `name` on `bridge`, up: the VMM opens it by name."""
    with netlink() as ip:
        if not ip.link_lookup(ifname=name):
            _ignore(errno.EEXIST, ip.link, "add", ifname=name, kind="tuntap", mode="tap")
        ip.link("set", index=ip.link_lookup(ifname=name)[0], master=ip.link_lookup(ifname=bridge)[0], state="up")


def remove(name: str) -> None:
    with netlink() as ip:
        indexes = ip.link_lookup(ifname=name)
        if indexes:
            _ignore(errno.ENODEV, ip.link, "del", index=indexes[0])


def set_sysctl(key: str, value: str) -> None:
    """net.ipv6.conf.all.forwarding and the like, for this network namespace (/proc/sys/net is the caller's;
    /sys/class/net is not: it shows the namespace that mounted /sys, so interfaces are looked up by netlink)."""
    path = Path("/proc/sys", *key.split("."))
    try:
        if path.read_text().strip() != value:
            path.write_text(value)
    except OSError as exc:
        raise VmNetworkError(f"sysctl {key}={value}: {exc.strerror}") from None


def _ignore(code: int, call, *args, **kwargs) -> None:
    try:
        call(*args, **kwargs)
    except NetlinkError as exc:
        if exc.code != code:
            raise
