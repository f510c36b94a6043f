"""What a VM is on the node's VM network: its tap, MAC and addresses, derived so a restart gives the same ones.

    mycelium_ip   the node's mycelium /64, then ff0f and 48 bits of sha256(VM name)
    gateway6      the node's mycelium /64, then ff0f::1: the bridge, the guest's route to 400::/7
    private_ip    the lowest free address of the private IPv4 subnet (optional; .1 is the bridge)
    tap, mac      from sha256(bridge, VM name): two nodes on one host (a local cluster) never share one;
                  a tap's name starts with its bridge's prefix (znt + 4 hex digits), which the rules match

The ff0f prefix keeps VMs away from the node's own overlay address, which the
daemon derives from its key anywhere in the /64. A VM whose 48 bits equal
another VM's on the node is refused at create (one name in 2^24 on a node of
4096 VMs), never given a second address.
"""

from __future__ import annotations

import hashlib
import ipaddress
from dataclasses import asdict, dataclass
from typing import Any

from sal.errors import SalError

TAP_PREFIX = "znt"  # every tap zeronode makes: the firewall's rules match it (sal.vmnet.firewall)
VMS = 0xFF0F << 48  # the VMs' part of each /64's interface ids
GATEWAY = VMS | 1
OVERLAY = "400::/7"  # mycelium's whole address range: what the guest routes through the node


class VmNetworkError(SalError):
    """The VM network could not be made as asked: no mycelium subnet, an address taken, a netlink or nft refusal."""


@dataclass(frozen=True)
class VmAddresses:
    tap: str
    mac: str
    mycelium_ip: str
    mycelium_subnet: str
    private_ip: str | None = None
    private_subnet: str | None = None

    @property
    def gateway6(self) -> str:
        return str(ipaddress.IPv6Network(self.mycelium_subnet).network_address + GATEWAY)

    @property
    def gateway4(self) -> str | None:
        return str(ipaddress.IPv4Network(self.private_subnet).network_address + 1) if self.private_subnet else None

    def as_record(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_record(cls, data: dict[str, Any]) -> VmAddresses:
        return cls(**data)

    def cloud_init_network(self, nameservers: tuple[str, ...] = ()) -> dict[str, Any]:
        """The guest's network config (cloud-init's version 2): its NIC by MAC, its addresses and routes, and the
        node's choice of DNS servers for a VM that goes out (private IPv4)."""
        addresses = [f"{self.mycelium_ip}/64"]
        routes = [{"to": OVERLAY, "via": self.gateway6}]
        if self.private_ip:
            addresses.append(f"{self.private_ip}/{ipaddress.IPv4Network(self.private_subnet).prefixlen}")
            routes.append({"to": "0.0.0.0/0", "via": self.gateway4})
        nic = {"match": {"macaddress": self.mac}, "set-name": "eth0", "addresses": addresses, "routes": routes}
        if self.private_ip and nameservers:
            nic["nameservers"] = {"addresses": list(nameservers)}
        return {"version": 2, "ethernets": {"eth0": nic}}


def tap_prefix(bridge: str) -> str:
    """What every tap on `bridge` is named from: the nft rules of one bridge never match another's taps."""
    return TAP_PREFIX + _digest("bridge", bridge)[:4]


def tap_name(bridge: str, vm: str) -> str:
    return tap_prefix(bridge) + _digest(bridge, vm)[:8]  # 15 bytes: the most a Linux interface name has


def mac_address(*parts: str) -> str:
    """A locally administered unicast MAC (02:...) from `parts`: (bridge, VM) a VM's, (bridge,) the bridge's."""
    digest = bytes.fromhex(_digest("mac", *parts)[:10])
    return ":".join(f"{byte:02x}" for byte in (0x02, *digest))


def mycelium_ip(subnet: str, vm: str) -> str:
    network = _subnet64(subnet)
    host = int(_digest("mycelium", vm)[:12], 16)
    if host < 2:  # ::0 is no host and ::1 the gateway
        host += 2
    return str(network.network_address + (VMS | host))


def private_ip(subnet: str, taken: set[str]) -> str:
    """The lowest address of `subnet` after the bridge's (.1) that no VM has."""
    network = ipaddress.IPv4Network(subnet)
    for address in list(network.hosts())[1:]:
        if str(address) not in taken:
            return str(address)
    raise VmNetworkError(f"the private subnet {subnet} has no free address: every one is a VM's")


def _subnet64(subnet: str) -> ipaddress.IPv6Network:
    try:
        network = ipaddress.IPv6Network(subnet)
    except ValueError:
        raise VmNetworkError(f"the node's mycelium subnet {subnet!r} is not an IPv6 network") from None
    if network.prefixlen != 64 or not network.subnet_of(ipaddress.IPv6Network(OVERLAY)):
        raise VmNetworkError(f"the node's mycelium subnet {subnet} is not a /64 in {OVERLAY}")
    return network


def _digest(*parts: str) -> str:
    return hashlib.sha256("\0".join(parts).encode()).hexdigest()
