"""The node's VM network: one bridge, a tap per VM, each VM on the node's mycelium /64.

    network = VmNetwork(bridge="znbr0", node_subnet=lambda: mycelium.info()["nodeSubnet"],
                        private_subnet="10.208.0.0/24")
    addresses = network.plan("web1", private_ipv4=True, others=[...])   # at vm_create; kept in the VM's record
    network.up(addresses, everyone)      # before each boot: bridge, tap, rules (after a node restart too)
    network.down(addresses, everyone)    # at vm_delete: the tap, and the bridge with the last VM

How packets flow: the mycelium daemon's TUN holds the node's address with a
/7 route (400::/7); the bridge holds the gateway address in the node's /64, so
the kernel's longest-prefix match sends the /64's packets coming off the overlay
to the bridge, and the guests' packets for 400::/7 (their route via the gateway)
out through the TUN. That needs IPv6 forwarding on: `up` turns it on, and IPv4
forwarding when the node gives private addresses.

`everyone` is every VM's addresses on this node (the VM manager reads them from
the records): the rules are rewritten whole from it (sal.vmnet.firewall).
"""

from __future__ import annotations

import ipaddress
from collections.abc import Callable

from sal.vmnet import firewall, netlink
from sal.vmnet.addresses import (
    VmAddresses,
    VmNetworkError,
    mac_address,
    mycelium_ip,
    private_ip,
    tap_name,
)


class VmNetwork:
    def __init__(self, *, bridge: str, node_subnet: Callable[[], str], private_subnet: str | None = None,
                 nameservers: tuple[str, ...] = ()):
        self.bridge = bridge
        self.nameservers = nameservers  # told to VMs with a private IPv4: they go out, and need names
        self.node_subnet = node_subnet  # asked at create only: a booting VM uses the subnet in its record
        self.private_subnet = private_subnet

    def plan(self, vm: str, *, private_ipv4: bool, others: list[VmAddresses]) -> VmAddresses:
        """`vm`'s tap, MAC and addresses, none of them another VM's."""
        if private_ipv4 and not self.private_subnet:
            raise VmNetworkError("this node gives no private IPv4 addresses (its vm_private_subnet is empty)")
        try:
            subnet = self.node_subnet()
        except Exception as exc:  # the daemon's client raises its own errors; any of them means no subnet now
            raise VmNetworkError(f"the node's mycelium subnet is not known now: {exc}") from None
        addresses = VmAddresses(
            tap=tap_name(self.bridge, vm), mac=mac_address(self.bridge, vm), mycelium_ip=mycelium_ip(subnet, vm),
            mycelium_subnet=subnet,
            private_ip=private_ip(self.private_subnet, {o.private_ip for o in others if o.private_ip}) if private_ipv4 else None,
            private_subnet=self.private_subnet if private_ipv4 else None,
        )
        for other in others:
            if other.mycelium_ip == addresses.mycelium_ip or other.tap == addresses.tap:
                raise VmNetworkError(f"VM name {vm!r} derives the same address or tap as another VM here: choose another name")
        return addresses

    def up(self, vm: VmAddresses, everyone: list[VmAddresses]) -> None:
        """Make (or make again) what `vm` needs to run on the network."""
        netlink.set_sysctl("net.ipv6.conf.all.forwarding", "1")
        if any(other.private_ip for other in everyone):
            netlink.set_sysctl("net.ipv4.ip_forward", "1")
        netlink.ensure_bridge(self.bridge, mac_address(self.bridge), self._bridge_addresses(everyone))
        netlink.ensure_tap(vm.tap, self.bridge)
        firewall.apply(self.bridge, self.private_subnet, everyone)

    def down(self, vm: VmAddresses, everyone_else: list[VmAddresses]) -> None:
        """Remove `vm`'s tap; with the last VM, the bridge and its rules."""
        netlink.remove(vm.tap)
        if everyone_else:
            firewall.apply(self.bridge, self.private_subnet, everyone_else)
        else:
            firewall.remove(self.bridge)
            netlink.remove(self.bridge)

    def _bridge_addresses(self, everyone: list[VmAddresses]) -> list[tuple[str, int]]:
        """The gateway of each /64 the VMs are on (one, unless the node's key changed), and .1 of the private
        subnet when a VM has a private address."""
        addresses = sorted({(vm.gateway6, 64) for vm in everyone})
        if any(vm.private_ip for vm in everyone):
            network = ipaddress.IPv4Network(self.private_subnet)
            addresses.append((str(network.network_address + 1), network.prefixlen))
        return addresses
