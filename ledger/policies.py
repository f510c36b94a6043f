"""Signature policies: "threshold of these keys must have signed" for what runs on a node or a farm's nodes.

Admins set them (POST /v1/policies); nodes read the ones that cover them with
their rights (ledger.rights), coord reads them to check a submission before
any task exists. One policy per (scope, target, action); a change carries a
sequence greater than the last one for the same triple, as user grants do.
A change with threshold 0 removes the policy but keeps its row (threshold 0,
no keys) and so its sequence: deleting the row would let the change that set
the policy be replayed to set it again.
"""

from __future__ import annotations

import logging
from collections.abc import Collection

import sqlalchemy as sa

from ledger.database import Database
from ledger.schema import signature_policies as policies
from ledger.users import require_admin, stale
from zeronode.api.rights import PolicyChange, PolicyFilters, PolicyRemoved, SignaturePolicy

log = logging.getLogger("zeronode.ledger")


def save(
    db: Database, signer: str, change: PolicyChange, now: float, config_admins: Collection[str]
) -> tuple[SignaturePolicy | PolicyRemoved, bool]:
    """Set or remove a policy if `signer` is an admin and the sequence is newer; what is there now, and whether it is new."""
    keys = [] if change.removes else sorted(change.keys)
    try:
        created = _save(db, signer, change, keys, now, config_admins)
    except sa.exc.IntegrityError:
        # PostgreSQL: a concurrent change created the row meanwhile; this one is then checked against it.
        created = _save(db, signer, change, keys, now, config_admins)
    log.info(
        "policy removed" if change.removes else "policy saved",
        extra={"scope": change.scope, "target": change.target, "action": change.action, "threshold": change.threshold,
               "sequence": change.sequence, "by": signer},
    )
    if change.removes:
        return PolicyRemoved(scope=change.scope, target=change.target, action=change.action), False
    return policy(change.scope, change.target, change.action, change.threshold, keys), created


def _save(
    db: Database, signer: str, change: PolicyChange, keys: list[str], now: float, config_admins: Collection[str]
) -> bool:
    """Write the change; whether it put a policy where none was (or only a removed one)."""
    triple = (policies.c.scope == change.scope) & (policies.c.target == change.target) & (policies.c.action == change.action)
    values = {"threshold": change.threshold, "keys": keys, "sequence": change.sequence, "updated_at": int(now)}
    with db.writing() as connection:
        require_admin(connection, signer, config_admins)
        stored = connection.execute(sa.select(policies.c.threshold, policies.c.sequence).where(triple).with_for_update()).first()
        if stored is not None and change.sequence <= stored.sequence:
            raise stale(f"the {change.action} policy of {change.scope} {change.target}", stored.sequence, change.sequence)
        if stored is not None:
            connection.execute(sa.update(policies).where(triple).values(values))
        else:
            connection.execute(sa.insert(policies).values(scope=change.scope, target=change.target, action=change.action, **values))
    return stored is None or stored.threshold == 0


def policy(scope: str, target: str, action: str, threshold: int, keys: list[str]) -> SignaturePolicy:
    return SignaturePolicy(scope=scope, target=target, action=action, threshold=threshold, keys=frozenset(keys))


def _policies(connection: sa.Connection, where: sa.ColumnElement[bool]) -> list[SignaturePolicy]:
    query = (
        sa.select(policies)
        .where(where, policies.c.threshold > 0)  # not the removed ones
        .order_by(policies.c.scope, policies.c.target, policies.c.action)
    )
    return [policy(row.scope, row.target, row.action, row.threshold, row.keys) for row in connection.execute(query)]


def listing(db: Database, filters: PolicyFilters) -> list[SignaturePolicy]:
    where = sa.true()
    if filters.scope is not None:
        where &= policies.c.scope == filters.scope
    if filters.target is not None:
        where &= policies.c.target == filters.target
    with db.reading() as connection:
        return _policies(connection, where)


def covering(connection: sa.Connection, node_id: str, farm: str | None) -> list[SignaturePolicy]:
    """The policies that cover node `node_id` of `farm`: the node's own and its farm's."""
    where = (policies.c.scope == "node") & (policies.c.target == node_id)
    if farm is not None:
        where |= (policies.c.scope == "farm") & (policies.c.target == farm)
    return _policies(connection, where)
