"""The ledger's rights for this node, as last fetched: one file that outlives the ledger's outages and restarts.

The identity manager fetches them (GET /v1/nodes/{id}/rights, signed by the
node's key) every `rights_refresh` seconds and saves them here; the supervisor
and every runner read the file whenever it changes (zeronode.node.authorizer).
One fetch a node, however many runners it has. The file says when it was
fetched, so whoever reads it knows how stale it is.

    {"fetched_at": 1767225600.5, "rights": {NodeRights}}
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

from pydantic import ValidationError

from zeronode.api.rights import NodeRights
from zeronode.errors import ZeronodeError
from zeronode.files import write_atomic


@dataclass(frozen=True)
class RightsSnapshot:
    rights: NodeRights
    fetched_at: float  # this node's clock when the ledger answered


class SnapshotError(ZeronodeError):
    """A rights file that is not one (a torn write cannot happen: saves are atomic)."""


def save(path: Path, snapshot: RightsSnapshot) -> None:
    """Write the snapshot atomically (a reader sees the old file or the new one), mode 0600."""
    body = json.dumps({"fetched_at": snapshot.fetched_at, "rights": snapshot.rights.model_dump(mode="json")})
    path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
    write_atomic(path, body)


def load(path: Path) -> RightsSnapshot:
    """The snapshot in `path`; FileNotFoundError when there is none, SnapshotError when it is not one."""
    raw = path.read_bytes()
    try:
        data = json.loads(raw)
        fetched_at = data["fetched_at"]
        if not isinstance(fetched_at, (int, float)) or isinstance(fetched_at, bool):
            raise TypeError("fetched_at is not a number")
        rights = NodeRights.model_validate(data["rights"], strict=False)
    except (ValueError, KeyError, TypeError, ValidationError) as exc:
        raise SnapshotError(f"{path}: not a rights snapshot: {exc}") from None
    return RightsSnapshot(rights, float(fetched_at))
