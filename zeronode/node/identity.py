"""A node's identity: its Ed25519 key (created on first start, 0600) and the id derived from it."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import nacl.signing

from zeronode.node.settings import NodeSettings
from zeronode.protocol import keys
from zeronode.protocol.errors import KeyFileError


@dataclass(frozen=True)
class NodeIdentity:
    key: nacl.signing.SigningKey
    public_key: str
    node_id: str


def load_or_create_key(path: Path) -> nacl.signing.SigningKey:
    """The key at `path`, created there first if there is none yet."""
    if not path.exists():
        try:
            keys.save_private_key(keys.generate(), path)
        except KeyFileError:
            pass  # another process of this node created it first: use theirs
    return keys.load_private_key(path)


def node_identity(settings: NodeSettings) -> NodeIdentity:
    key = load_or_create_key(settings.node_key_path)
    public_key = keys.public_key_text(key)
    return NodeIdentity(key=key, public_key=public_key, node_id=settings.node_id or keys.node_id(public_key))
