"""The VM network's nftables rules: NAT out for private IPv4, tenants apart, the host shut to its guests.

Two tables per bridge, both named `zeronode-BRIDGE`, rewritten whole in one
transaction (nft -j: JSON on stdin, never a string a script wrote) whenever a VM
joins or leaves:

    inet    input        from the bridge, the host answers ICMP and its own connections, nothing else
                         (a guest must not reach the node's Redis or supervisor)
            postrouting  the private IPv4 subnet masqueraded out of any other interface
    bridge  prerouting   a tap sends only from its VM's MAC and addresses (no VM takes another's
                         overlay address or traffic); a tap of this bridge no VM has sends nothing
            forward      no IPv4 or ARP between taps: private IPv4 is for going out, and tenants share
                         the bridge; the overlay (IPv6) is open between VMs as it is across nodes
"""

from __future__ import annotations

import json
import subprocess
from typing import Any

from sal.vmnet.addresses import VmAddresses, VmNetworkError, tap_prefix

NFT_SECONDS = 10


def table(bridge: str) -> str:
    return f"zeronode-{bridge}"


def apply(bridge: str, private_subnet: str | None, vms: list[VmAddresses]) -> None:
    _nft(_replace(bridge, "inet", _inet_chains(bridge, private_subnet))
         + _replace(bridge, "bridge", _bridge_chains(bridge, vms)))


def remove(bridge: str) -> None:
    _nft([command for family in ("inet", "bridge") for command in _replace(bridge, family, [])[:2]])


def _replace(bridge: str, family: str, chains: list[tuple[dict, list[list[dict]]]]) -> list[dict]:
    """Commands that make the table anew: add (so that delete never fails), delete, then build it."""
    name = {"family": family, "name": table(bridge)}
    commands = [{"add": {"table": name}}, {"delete": {"table": name}}]
    if chains:
        commands.append({"add": {"table": name}})
    for chain, rules in chains:
        where = {"family": family, "table": table(bridge), "name": chain["name"]}
        commands.append({"add": {"chain": {**where, **chain, "prio": chain.get("prio", 0), "policy": "accept"}}})
        for expr in rules:
            commands.append({"add": {"rule": {"family": family, "table": table(bridge), "chain": chain["name"],
                                              "expr": expr}}})
    return commands


def _inet_chains(bridge: str, private_subnet: str | None) -> list[tuple[dict, list[list[dict]]]]:
    from_bridge = _is("iifname", bridge)
    chains = [({"name": "input", "type": "filter", "hook": "input"}, [
        [from_bridge, {"match": {"op": "in", "left": {"ct": {"key": "state"}}, "right": ["established", "related"]}},
         {"accept": None}],
        [from_bridge, {"match": {"op": "==", "left": {"meta": {"key": "l4proto"}}, "right": {"set": ["icmp", "ipv6-icmp"]}}},
         {"accept": None}],
        [from_bridge, {"drop": None}],
    ])]
    if private_subnet:
        address, length = private_subnet.split("/")
        chains.append(({"name": "postrouting", "type": "nat", "hook": "postrouting", "prio": 100}, [
            [{"match": {"op": "==", "left": _field("ip", "saddr"), "right": {"prefix": {"addr": address, "len": int(length)}}}},
             {"match": {"op": "!=", "left": {"meta": {"key": "oifname"}}, "right": bridge}},
             {"masquerade": None}],
        ]))
    return chains


def _bridge_chains(bridge: str, vms: list[VmAddresses]) -> list[tuple[dict, list[list[dict]]]]:
    """Rules on this bridge's taps only (by their name's prefix): the bridge family's hooks see every bridge's
    frames, and this kernel has no match on the bridge's name."""
    sources = []
    for vm in vms:
        from_tap = _is("iifname", vm.tap)
        ipv4 = [vm.private_ip] if vm.private_ip else []
        sources += [
            [from_tap, {"match": {"op": "!=", "left": _field("ether", "saddr"), "right": vm.mac}}, {"drop": None}],
            [from_tap, {"match": {"op": "!=", "left": _field("ip6", "saddr"),
                                  "right": {"set": [vm.mycelium_ip, "::", {"prefix": {"addr": "fe80::", "len": 10}}]}}},
             {"drop": None}],
            [from_tap, {"match": {"op": "!=", "left": _field("ip", "saddr"), "right": {"set": [*ipv4, "0.0.0.0"]}}},
             {"drop": None}],
            [from_tap, {"match": {"op": "!=", "left": _field("arp", "saddr ip"), "right": {"set": ipv4 or ["0.0.0.0"]}}},
             {"drop": None}],
        ]
    any_tap = f"{tap_prefix(bridge)}*"
    sources.append([_is("iifname", any_tap), {"match": {"op": "!=", "left": {"meta": {"key": "iifname"}},
                                                        "right": {"set": [vm.tap for vm in vms] or [""]}}}, {"drop": None}])
    return [
        ({"name": "prerouting", "type": "filter", "hook": "prerouting"}, sources),
        ({"name": "forward", "type": "filter", "hook": "forward"}, [
            [_is("iifname", any_tap), _is("oifname", any_tap),
             {"match": {"op": "==", "left": {"meta": {"key": "protocol"}}, "right": {"set": ["ip", "arp"]}}},
             {"drop": None}],
        ]),
    ]


def _is(key: str, value: str) -> dict:
    return {"match": {"op": "==", "left": {"meta": {"key": key}}, "right": value}}


def _field(protocol: str, field: str) -> dict:
    return {"payload": {"protocol": protocol, "field": field}}


def _nft(commands: list[dict[str, Any]]) -> None:
    try:
        result = subprocess.run(["nft", "-j", "-f", "-"], input=json.dumps({"nftables": commands}),
                                capture_output=True, text=True, timeout=NFT_SECONDS, check=False)
    except FileNotFoundError:
        raise VmNetworkError("nft is not installed (Debian: nftables): the VM network's rules need it") from None
    except subprocess.TimeoutExpired:
        raise VmNetworkError(f"nft did not answer in {NFT_SECONDS} s") from None
    if result.returncode != 0:
        raise VmNetworkError(f"nft refused the VM network's rules: {result.stderr.strip()[:500]}")
