"""Users and their rights: who may manage users (admin), and who may deploy where (deployer, on nodes or farms).

The first admins come from the ledger's settings (`admins`): they may create
users, including admins kept in the database, before anyone else can. A
deployer may deploy on the nodes listed for them and on every node of the
farms listed for them; the admin role alone grants no deployment.
"""

from __future__ import annotations

import logging
from collections.abc import Collection

import sqlalchemy as sa

from ledger.database import Database
from ledger.schema import nodes, users
from zeronode.api.errors import Refused
from zeronode.api.ledger import NewUser, UserView

log = logging.getLogger("zeronode.ledger")


def _roles(connection: sa.Connection, public_key: str) -> list[str] | None:
    return connection.execute(sa.select(users.c.roles).where(users.c.public_key == public_key)).scalar_one_or_none()


def save(db: Database, signer: str, user: NewUser, now: float, config_admins: Collection[str]) -> tuple[UserView, bool]:
    """Create `user`, or replace their name and rights, if `signer` is an admin; the user, and whether it is new."""
    values = {
        "name": user.name,
        "roles": sorted(set(user.roles)),
        "nodes": sorted(set(user.nodes)),
        "farms": sorted(set(user.farms)),
        "updated_at": int(now),
    }
    with db.writing() as connection:
        if signer not in config_admins and "admin" not in (_roles(connection, signer) or []):
            raise Refused(403, "not_admin", f"{signer} is not an admin of this ledger")
        exists = connection.execute(
            sa.select(users.c.public_key).where(users.c.public_key == user.public_key).with_for_update()
        ).first()
        if exists:
            connection.execute(sa.update(users).where(users.c.public_key == user.public_key).values(values))
        else:
            connection.execute(sa.insert(users).values(public_key=user.public_key, created_at=int(now), **values))
        row = connection.execute(sa.select(users).where(users.c.public_key == user.public_key)).one()
    log.info("user saved", extra={"user": user.public_key, "roles": values["roles"], "by": signer})
    return view(row, config_admins), not exists


def view(row: sa.Row, config_admins: Collection[str]) -> UserView:
    roles = set(row.roles) | ({"admin"} if row.public_key in config_admins else set())
    return UserView(
        public_key=row.public_key, name=row.name, roles=sorted(roles), nodes=row.nodes, farms=row.farms,
        source="ledger", created_at=row.created_at, updated_at=row.updated_at,
    )


def get(db: Database, public_key: str, config_admins: Collection[str], node_id: str | None = None) -> UserView:
    """The user with `public_key`, with `may_deploy` on `node_id` when one is given."""
    with db.reading() as connection:
        row = connection.execute(sa.select(users).where(users.c.public_key == public_key)).first()
        if row is not None:
            user = view(row, config_admins)
        elif public_key in config_admins:
            user = UserView(
                public_key=public_key, name="admin (from the ledger's settings)", roles=["admin"], nodes=[], farms=[],
                source="config", created_at=None, updated_at=None,
            )
        else:
            raise Refused(404, "unknown_user", f"no user {public_key} in the ledger")
        if node_id is None:
            return user
        farm = connection.execute(sa.select(nodes.c.farm).where(nodes.c.node_id == node_id)).scalar_one_or_none()
    may_deploy = "deployer" in user.roles and (node_id in user.nodes or (farm is not None and farm in user.farms))
    return user.model_copy(update={"may_deploy": may_deploy})
