"""Nodes in the ledger: registration by the node's own key, and reading them back with their status.

A node's id derives from its public key (zeronode.protocol.keys.node_id), and only a
request signed by that key reaches `register`: registering again updates the
record (a node that moved or grew), it never adds a second one.

Coord sends work to the supervisor URL a node registers, so a node could name
any address (a loopback admin port, a metadata service) and have coord call
it: the URL must pass zeronode.api.destinations' check (the node's own
mycelium /64, or a network the settings allow) and is stored as it returns it.
"""

from __future__ import annotations

import logging
from collections.abc import Collection, Sequence

import sqlalchemy as sa

from ledger import uptime, users
from ledger.database import Database
from ledger.schema import nodes
from zeronode.api.destinations import Network, check_supervisor_url
from zeronode.api.errors import Refused
from zeronode.api.releases import UpdateResult
from zeronode.api.ledger import (
    Capabilities,
    Capacity,
    NodeDetail,
    NodeFilters,
    NodeRegistration,
    NodeView,
    Schedule,
    ScheduleChange,
    Status,
    Usage,
)
from zeronode.protocol import keys

log = logging.getLogger("zeronode.ledger")

DAY = 86400


def register(
    db: Database, public_key: str, registration: NodeRegistration, now: float, *, networks: Sequence[Network] = ()
) -> tuple[sa.Row, bool]:
    """Create or update the node of `public_key`; its row, and whether it is new. Refused
    (422 forbidden_destination) if its supervisor URL is outside its mycelium subnet and `networks`."""
    node_id = keys.node_id(public_key)
    supervisor_url = registration.supervisor_url
    if supervisor_url is not None:
        supervisor_url = check_supervisor_url(supervisor_url, mycelium_address=registration.mycelium_address, networks=networks)
    values = {
        "farm": registration.farm,
        "owner": registration.owner,
        "vcpus": registration.capacity.vcpus,
        "memory": registration.capacity.memory,
        "disk": registration.capacity.disk,
        "supervisor_url": supervisor_url,
        "mycelium_address": registration.mycelium_address,
        "version": registration.version,
        "capabilities": registration.capabilities.model_dump(mode="json"),
        "labels": registration.labels,
        "updated_at": int(now),
    }
    try:
        row, created = _save(db, node_id, public_key, values, now)
    except sa.exc.IntegrityError:
        # PostgreSQL: a concurrent first registration inserted it meanwhile; this one updates it.
        row, created = _save(db, node_id, public_key, values, now)
    log.info("node registered" if created else "node updated", extra={"node": node_id, "farm": registration.farm})
    return row, created


def _save(db: Database, node_id: str, public_key: str, values: dict, now: float) -> tuple[sa.Row, bool]:
    with db.writing() as connection:
        exists = connection.execute(sa.select(nodes.c.node_id).where(nodes.c.node_id == node_id).with_for_update()).first()
        if exists:
            connection.execute(sa.update(nodes).where(nodes.c.node_id == node_id).values(values))
        else:
            connection.execute(
                sa.insert(nodes).values(node_id=node_id, public_key=public_key, registered_at=int(now), restarts=0, **values)
            )
        return connection.execute(sa.select(nodes).where(nodes.c.node_id == node_id)).one(), not exists


def status(row: sa.Row, now: float, offline_after: float) -> Status:
    if row.last_report_at is None or row.last_report_at <= now - offline_after:
        return "offline"
    return "degraded" if row.degraded else "online"


def _usage(vcpus: int | None, memory: int | None, disk: int | None) -> Usage | None:
    return None if vcpus is None else Usage(vcpus=vcpus, memory=memory or 0, disk=disk or 0)


def view(row: sa.Row, now: float, offline_after: float) -> NodeView:
    return NodeView(
        node_id=row.node_id,
        public_key=row.public_key,
        farm=row.farm,
        owner=row.owner,
        capacity=Capacity(vcpus=row.vcpus, memory=row.memory, disk=row.disk),
        supervisor_url=row.supervisor_url,
        mycelium_address=row.mycelium_address,
        version=row.version,
        capabilities=Capabilities.model_validate(row.capabilities or {}),
        registered_at=row.registered_at,
        updated_at=row.updated_at,
        status=status(row, now, offline_after),
        last_report_at=row.last_report_at,
        last_uptime=row.last_uptime,
        restarts=row.restarts,
        labels=row.labels or [],
        schedule=row.schedule,
        reserved=_usage(row.reserved_vcpus, row.reserved_memory, row.reserved_disk),
        free=_usage(row.free_vcpus, row.free_memory, row.free_disk),
        health=row.health,
        update=UpdateResult.model_validate(row.update_result) if row.update_result else None,
    )


def detail(db: Database, node_id: str, now: float, offline_after: float) -> NodeDetail:
    with db.reading() as connection:
        row = connection.execute(sa.select(nodes).where(nodes.c.node_id == node_id)).first()
        if row is None:
            raise Refused(404, "unknown_node", f"no node {node_id} in the ledger")
        return NodeDetail(
            **view(row, now, offline_after).model_dump(),
            uptime_24h=uptime.percent(connection, row, DAY, now),
            uptime_30d=uptime.percent(connection, row, 30 * DAY, now),
        )


def listing(db: Database, filters: NodeFilters, *, now: float, offline_after: float) -> list[NodeView]:
    query = sa.select(nodes).order_by(nodes.c.node_id).limit(filters.limit)
    heard_since = now - offline_after
    if filters.status in ("online", "degraded"):
        query = query.where(nodes.c.last_report_at > heard_since, nodes.c.degraded.is_(filters.status == "degraded"))
    elif filters.status == "offline":
        query = query.where(sa.or_(nodes.c.last_report_at.is_(None), nodes.c.last_report_at <= heard_since))
    if filters.schedule is not None:
        query = query.where(nodes.c.schedule == filters.schedule)
    minimums = (
        (nodes.c.vcpus, filters.min_vcpus), (nodes.c.memory, filters.min_memory), (nodes.c.disk, filters.min_disk),
        (nodes.c.free_vcpus, filters.min_free_vcpus), (nodes.c.free_memory, filters.min_free_memory),
        (nodes.c.free_disk, filters.min_free_disk),
    )
    for column, minimum in minimums:
        if minimum is not None:
            query = query.where(column >= minimum)
    if filters.farm is not None:
        query = query.where(nodes.c.farm == filters.farm)
    if filters.after is not None:
        query = query.where(nodes.c.node_id > filters.after)
    if filters.ids is not None:
        query = query.where(nodes.c.node_id.in_(filters.ids.split(",")))
    with db.reading() as connection:
        return [view(row, now, offline_after) for row in connection.execute(query)]


def counts(db: Database, now: float, offline_after: float) -> dict[Status, int]:
    """How many nodes are online, degraded and offline (for /metrics)."""
    heard = nodes.c.last_report_at > now - offline_after
    up = sa.func.count().filter(heard, nodes.c.degraded.is_(False))
    degraded = sa.func.count().filter(heard, nodes.c.degraded.is_(True))
    with db.reading() as connection:
        total, online, failing = connection.execute(sa.select(sa.func.count(), up, degraded).select_from(nodes)).one()
    return {"online": online, "degraded": failing, "offline": total - online - failing}


def set_schedule(
    db: Database, signer: str, node_id: str, change: ScheduleChange, config_admins: Collection[str]
) -> Schedule:
    """Cordon, drain or reactivate a node, for an admin; its schedule as saved. 409 for a stale sequence."""
    with db.writing() as connection:
        users.require_admin(connection, signer, config_admins)
        row = connection.execute(
            sa.select(nodes.c.schedule_sequence).where(nodes.c.node_id == node_id).with_for_update()
        ).first()
        if row is None:
            raise Refused(404, "unknown_node", f"no node {node_id} in the ledger")
        if change.sequence <= row.schedule_sequence:
            raise users.stale(f"node {node_id}'s schedule", row.schedule_sequence, change.sequence)
        connection.execute(
            sa.update(nodes).where(nodes.c.node_id == node_id)
            .values(schedule=change.schedule, schedule_sequence=change.sequence)
        )
    log.info("node schedule changed", extra={"node": node_id, "schedule": change.schedule, "by": signer})
    return change.schedule
