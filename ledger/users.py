"""Users and their rights: who manages the ledger (admin), who administers and deploys on which nodes
(operator, deployer), as zeronode.api.rights defines the roles.

The first admins come from the ledger's settings (`admins`): they are fleet
admins, and may create users, including admins kept in the database, before
anyone else can. Operators and deployers act on the nodes listed for them and
on every node of the farms listed for them; the admin role alone grants no
deployment.

Each save carries a sequence greater than the user's last one. A signed
request may be replayed within its window, and without the sequence an
admin's grant replayed after a revocation would restore the revoked rights.
"""

from __future__ import annotations

import logging
from collections.abc import Collection

import sqlalchemy as sa

from ledger.database import Database
from ledger.schema import nodes, users
from zeronode.api import rights
from zeronode.api.errors import Refused
from zeronode.api.ledger import NewUser, UserView

log = logging.getLogger("zeronode.ledger")


def is_admin(connection: sa.Connection, public_key: str, config_admins: Collection[str]) -> bool:
    """Whether `public_key` may manage the ledger's users and policies: an admin of the settings or of the database."""
    if public_key in config_admins:
        return True
    roles = connection.execute(sa.select(users.c.roles).where(users.c.public_key == public_key)).scalar_one_or_none()
    return "admin" in (roles or [])


def require_admin(connection: sa.Connection, public_key: str, config_admins: Collection[str]) -> None:
    if not is_admin(connection, public_key, config_admins):
        raise Refused(403, "not_admin", f"{public_key} is not an admin of this ledger")


def stale(what: str, stored: int, given: int) -> Refused:
    return Refused(
        409, "stale_sequence", f"{what} is at sequence {stored}; a change must carry a greater one than that, not {given}"
    )


def save(db: Database, signer: str, user: NewUser, now: float, config_admins: Collection[str]) -> tuple[UserView, bool]:
    """Create `user`, or replace their name and rights (empty roles revoke them), if `signer` is an admin
    and the sequence is newer than the stored one; the user, and whether it is new."""
    values = {
        "name": user.name,
        "roles": sorted(set(user.roles)),
        "nodes": sorted(set(user.nodes)),
        "farms": sorted(set(user.farms)),
        "sequence": user.sequence,
        "updated_at": int(now),
    }
    try:
        row, created = _save(db, signer, user, values, now, config_admins)
    except sa.exc.IntegrityError:
        # PostgreSQL: a concurrent change created the user meanwhile; this one is then checked against it.
        row, created = _save(db, signer, user, values, now, config_admins)
    log.info("user saved", extra={"user": user.public_key, "roles": values["roles"], "sequence": user.sequence, "by": signer})
    return view(row, config_admins), created


def _save(
    db: Database, signer: str, user: NewUser, values: dict, now: float, config_admins: Collection[str]
) -> tuple[sa.Row, bool]:
    with db.writing() as connection:
        require_admin(connection, signer, config_admins)
        stored = connection.execute(
            sa.select(users.c.sequence).where(users.c.public_key == user.public_key).with_for_update()
        ).scalar_one_or_none()
        if stored is not None and user.sequence <= stored:
            raise stale(f"user {user.public_key}", stored, user.sequence)
        if stored is not None:
            connection.execute(sa.update(users).where(users.c.public_key == user.public_key).values(values))
        else:
            connection.execute(sa.insert(users).values(public_key=user.public_key, created_at=int(now), **values))
        return connection.execute(sa.select(users).where(users.c.public_key == user.public_key)).one(), stored is None


def roles(row: sa.Row, config_admins: Collection[str]) -> list[str]:
    """A user's roles: the database's, and admin for the settings' admins whatever the database says."""
    return sorted(set(row.roles) | ({"admin"} if row.public_key in config_admins else set()))


def view(row: sa.Row, config_admins: Collection[str]) -> UserView:
    return UserView(
        public_key=row.public_key, name=row.name, roles=roles(row, config_admins), nodes=row.nodes, farms=row.farms,
        source="ledger", sequence=row.sequence, created_at=row.created_at, updated_at=row.updated_at,
    )


def config_admin(public_key: str) -> UserView:
    """An admin from the ledger's settings who is not in the database."""
    return UserView(
        public_key=public_key, name="admin (from the ledger's settings)", roles=["admin"], nodes=[], farms=[],
        source="config", sequence=0, created_at=None, updated_at=None,
    )


def get(db: Database, public_key: str, config_admins: Collection[str], node_id: str | None = None) -> UserView:
    """The user with `public_key`, with `may_deploy` on `node_id` when one is given."""
    with db.reading() as connection:
        row = connection.execute(sa.select(users).where(users.c.public_key == public_key)).first()
        if row is not None:
            user = view(row, config_admins)
        elif public_key in config_admins:
            user = config_admin(public_key)
        else:
            raise Refused(404, "unknown_user", f"no user {public_key} in the ledger")
        if node_id is None:
            return user
        farm = connection.execute(sa.select(nodes.c.farm).where(nodes.c.node_id == node_id)).scalar_one_or_none()
    on_node = rights.roles_on(user.roles, user.nodes, user.farms, node_id, farm)
    return user.model_copy(update={"may_deploy": rights.may_deploy(on_node)})
