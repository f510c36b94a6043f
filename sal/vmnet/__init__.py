"""The VM network: every VM on the node's mycelium overlay, through a bridge and taps zeronode makes.

    addresses.py   what a VM is on it (tap, MAC, mycelium IPv6, private IPv4), derived from its name
    netlink.py     the bridge and the taps (pyroute2)
    firewall.py    the nftables rules: NAT out, tenants apart, the host shut to guests (nft -j)
    network.py     VmNetwork: plan a VM's addresses at create, up before each boot, down at delete

The VM manager (sal.hypervisor.manager) calls it; a script never names an
interface. docs/rhai-api.md ("VM networking") says what a guest gets.
"""

from sal.vmnet.addresses import VmAddresses, VmNetworkError
from sal.vmnet.network import VmNetwork

__all__ = ["VmAddresses", "VmNetwork", "VmNetworkError"]
