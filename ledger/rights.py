"""A node's rights, as the node fetches them: every user with a role on it, and the policies that cover it.

The node asks every ~15 s, so the answer is one read: the node's farm, every
user, and the covering policies. Users are filtered here in Python with
zeronode.api.rights.roles_on, the same function the nodes and coord decide
with. Roles, nodes and farms are JSON lists, which neither database indexes
portably, and one SELECT of a few thousand users is milliseconds; a ledger
with far more users would want a table of (user, node or farm) grants instead.
"""

from __future__ import annotations

from collections.abc import Collection

import sqlalchemy as sa

from ledger import policies
from ledger.database import Database
from ledger.schema import nodes, users
from ledger.users import is_admin
from zeronode.api.errors import Refused
from zeronode.api.rights import NONE, Grant, NodeRights, roles_on
from zeronode.protocol import keys


def node_rights(db: Database, signer: str, node_id: str, now: float, config_admins: Collection[str]) -> NodeRights:
    """The rights on `node_id`, for the node itself or a ledger admin (`signer`); Refused for anyone else."""
    with db.reading() as connection:
        if keys.node_id(signer) != node_id and not is_admin(connection, signer, config_admins):
            raise Refused(403, "not_authorized", f"only node {node_id} itself or a ledger admin may read its rights")
        farm = connection.execute(sa.select(nodes.c.farm).where(nodes.c.node_id == node_id)).scalar_one_or_none()
        if farm is None:  # farm is NOT NULL: None means no such node
            raise Refused(404, "unknown_node", f"no node {node_id} in the ledger")
        roles: dict[str, frozenset[str]] = {key: frozenset({"admin"}) for key in config_admins}  # fleet admins
        for row in connection.execute(sa.select(users.c.public_key, users.c.roles, users.c.nodes, users.c.farms)):
            on_node = roles_on(row.roles, row.nodes, row.farms, node_id, farm)
            if on_node:
                roles[row.public_key] = roles.get(row.public_key, NONE) | on_node
        covering = policies.covering(connection, node_id, farm)
    grants = [Grant(public_key=key, roles=sorted(roles[key])) for key in sorted(roles)]
    return NodeRights(node_id=node_id, farm=farm, generated_at=int(now), grants=grants, policies=covering)
