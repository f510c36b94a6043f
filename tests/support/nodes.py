"""Nodes made up for tests and benchmarks: a key and its node id, registered in a ledger as a node would."""

from __future__ import annotations

import nacl.signing

from zeronode.api.ledger import Capacity, NodeRegistration, Usage
from zeronode.client.ledger import LedgerClient
from zeronode.protocol import keys


CAPACITY = Capacity(vcpus=2, memory=1 << 30, disk=10 << 30)


def new_node_key() -> tuple[nacl.signing.SigningKey, str]:
    """A fresh node key and the node id it gives: (key, node id)."""
    key = nacl.signing.SigningKey.generate()
    return key, keys.node_id(keys.public_key_text(key))


def register_node(
    ledger_url: str, key: nacl.signing.SigningKey, supervisor_url: str, *,
    farm: str = "test", version: str = "test", online: bool = True, labels: list[str] = (),
    free: Usage | None = None, health: dict[str, bool] | None = None,
) -> None:
    """Register the node of `key` (a small one, with `labels`) in the ledger, its supervisor at `supervisor_url`;
    `online`: it also reports an uptime, as a running node does, with `free` capacity and `health` if given."""
    with LedgerClient(ledger_url, key) as ledger:
        ledger.register(NodeRegistration(
            farm=farm, capacity=CAPACITY, supervisor_url=supervisor_url, version=version, labels=list(labels),
        ))
        if online:
            ledger.report_uptime(100, free=free, health=health)
