"""Uptime: each node's reports judged against its last one, stored as up intervals, added up over a period.

A report says "at `timestamp` I had been up `uptime` seconds": the node was up
from `timestamp - uptime` (its boot) until `timestamp`. Reports must move
forward: one dated before the last is refused (409 stale_report), the same one
again is a harmless duplicate (a signed request may be replayed within its
window). A report is a **restart** when the uptime went backwards, or when the
boot it implies lies after the last report (the node rebooted in between).

What is kept is one interval per boot: the current one on the node's row
(`up_since` .. `last_report_at`), closed ones in `uptime_sessions`. A node that
keeps its boot covers the time between its reports even when the ledger heard
none of them (the ledger was down; the uptime vouches for it). An interval
never starts before the node was registered, nor before the previous one ended.
"""

from __future__ import annotations

import dataclasses
import logging
from collections.abc import Sequence

import sqlalchemy as sa

from ledger.database import Database
from ledger.schema import nodes, uptime_sessions
from zeronode.api.errors import Refused
from zeronode.api.ledger import UptimeAccepted, UptimeReport

log = logging.getLogger("zeronode.ledger")

# Timestamps and uptimes are whole seconds, read at slightly different moments:
# the boot they imply wobbles by a second or two from report to report.
BOOT_WOBBLE = 2


@dataclasses.dataclass(frozen=True)
class Boot:
    """A node's current boot as the ledger knows it (the uptime columns of its row)."""

    registered_at: int
    last_report_at: int | None
    last_uptime: int | None
    up_since: int | None
    restarts: int


@dataclasses.dataclass(frozen=True)
class Judgement:
    boot: Boot
    restart: bool = False
    duplicate: bool = False
    closed: tuple[int, int] | None = None  # the interval a restart ended


def judge(boot: Boot, report: UptimeReport) -> Judgement:
    """What `report` does to `boot`, or Refused (409) when it does not move forward."""
    last, timestamp = boot.last_report_at, report.timestamp
    booted_at = timestamp - report.uptime
    if last is None:
        up_since = min(max(booted_at, boot.registered_at), timestamp)
        return Judgement(dataclasses.replace(boot, last_report_at=timestamp, last_uptime=report.uptime, up_since=up_since))
    if timestamp < last:
        raise Refused(409, "stale_report", f"report dated {timestamp} is older than the last one, dated {last}")
    if timestamp == last:
        if report.uptime == boot.last_uptime:
            return Judgement(boot, duplicate=True)
        raise Refused(409, "stale_report", f"another report dated {timestamp} was recorded already")
    restart = report.uptime < boot.last_uptime or booted_at > last + BOOT_WOBBLE
    moved = dataclasses.replace(boot, last_report_at=timestamp, last_uptime=report.uptime)
    if not restart:
        return Judgement(moved)
    return Judgement(
        dataclasses.replace(moved, up_since=max(booted_at, last), restarts=boot.restarts + 1),
        restart=True,
        closed=(boot.up_since, last),
    )


_BOOT_COLUMNS = (
    nodes.c.node_id, nodes.c.registered_at, nodes.c.last_report_at, nodes.c.last_uptime, nodes.c.up_since, nodes.c.restarts,
    nodes.c.farm,  # last: not the boot's, for the caller's rollout decision (ledger.rollouts), read in the same query
)
# In id order, so that concurrent batches on PostgreSQL lock rows in the same order and never deadlock.
_READ_BOOTS = (
    sa.select(*_BOOT_COLUMNS)
    .where(nodes.c.node_id.in_(sa.bindparam("ids", expanding=True)))
    .order_by(nodes.c.node_id)
    .with_for_update()
)


def _update_node(prefix: str, *columns: str) -> sa.Update:
    """UPDATE nodes SET each column = :PREFIX+column WHERE node_id = :PREFIX+node_id (executemany-able)."""
    values = {column: sa.bindparam(prefix + column, type_=nodes.c[column].type) for column in columns}
    return sa.update(nodes).where(nodes.c.node_id == sa.bindparam(prefix + "node_id")).values(**values)


_WRITE_BOOT = _update_node("b_", "last_report_at", "last_uptime", "up_since", "restarts")

# What a report says besides the uptime, written when it carries it (nodes before version 4 send none). The
# running version and the last update's result are kept as they were when a report leaves them out.
_WRITE_STATE = _update_node(
    "s_", "reserved_vcpus", "reserved_memory", "reserved_disk", "free_vcpus", "free_memory", "free_disk", "health", "degraded"
).values(
    version=sa.func.coalesce(sa.bindparam("s_version", type_=nodes.c.version.type), nodes.c.version),
    update_result=sa.func.coalesce(sa.bindparam("s_update_result", type_=sa.JSON(none_as_null=True)), nodes.c.update_result),
)


def _state(node_id: str, report: UptimeReport) -> dict | None:
    """The parameters of _WRITE_STATE for a report that says what the node holds, has free, or how it is."""
    if report.reserved is None and report.free is None and report.health is None and report.version is None:
        return None
    state: dict = {
        "s_node_id": node_id, "s_health": report.health, "s_degraded": not all((report.health or {}).values()),
        "s_version": report.version, "s_update_result": None if report.update is None else report.update.model_dump(),
    }
    for kind, usage in (("reserved", report.reserved), ("free", report.free)):
        for name in ("vcpus", "memory", "disk"):
            state[f"s_{kind}_{name}"] = None if usage is None else getattr(usage, name)
    return state


def ingest(
    db: Database, reports: Sequence[tuple[str, UptimeReport]], *, now: float, skew: float,
    farms: dict[str, str] | None = None,
) -> list[UptimeAccepted | Refused]:
    """Judge and store (node id, report) pairs whose signatures were checked; one answer each, in order.

    One transaction for them all: one read of the nodes' rows, one batched
    write of the rows that moved and one of the intervals that closed.
    `farms`, when given, gets each known node's farm.
    """
    answers: list[UptimeAccepted | Refused | None] = [None] * len(reports)
    for index, (_node_id, report) in enumerate(reports):
        if abs(report.timestamp - now) > skew:
            answers[index] = Refused(
                422, "clock_skew", f"report dated {report.timestamp - now:+.0f} s from the ledger's clock (window {skew:.0f} s)"
            )
    pending = [index for index, answer in enumerate(answers) if answer is None]
    if not pending:
        return answers  # type: ignore[return-value]
    with db.writing() as connection:
        ids = sorted({reports[index][0] for index in pending})
        rows = connection.execute(_READ_BOOTS, {"ids": ids}).all()
        boots = {row.node_id: Boot(*row[1:-1]) for row in rows}
        if farms is not None:  # each node's farm, for the caller (the single report's release answer)
            farms.update((row.node_id, row.farm) for row in rows)
        moved: dict[str, Boot] = {}
        states: dict[str, dict] = {}
        closed: list[dict] = []
        for index in pending:
            node_id, report = reports[index]
            if node_id not in boots:
                answers[index] = Refused(404, "unknown_node", f"no node {node_id} in the ledger: register it first")
                continue
            try:
                judgement = judge(boots[node_id], report)
            except Refused as refusal:
                answers[index] = refusal
                continue
            boots[node_id] = judgement.boot
            if not judgement.duplicate:
                moved[node_id] = judgement.boot
                if (state := _state(node_id, report)) is not None:
                    states[node_id] = state
            if judgement.closed and judgement.closed[1] > judgement.closed[0]:
                closed.append({"node_id": node_id, "started_at": judgement.closed[0], "ended_at": judgement.closed[1]})
            if judgement.restart:
                log.info("node restarted", extra={"node": node_id, "uptime": report.uptime, "restarts": judgement.boot.restarts})
            answers[index] = UptimeAccepted(
                node_id=node_id,
                timestamp=report.timestamp,
                uptime=report.uptime,
                restart=judgement.restart,
                duplicate=judgement.duplicate,
                restarts=judgement.boot.restarts,
            )
        if closed:
            connection.execute(sa.insert(uptime_sessions), closed)
        if moved:
            connection.execute(
                _WRITE_BOOT,
                [
                    {"b_node_id": node_id, "b_last_report_at": boot.last_report_at, "b_last_uptime": boot.last_uptime,
                     "b_up_since": boot.up_since, "b_restarts": boot.restarts}
                    for node_id, boot in moved.items()
                ],
            )
        if states:
            connection.execute(_WRITE_STATE, list(states.values()))
    return answers  # type: ignore[return-value]


def percent(connection: sa.Connection, node: sa.Row, period: int, now: float) -> float | None:
    """Percentage of the last `period` seconds (or of the time since registration, if shorter) the node was up.

    Only what reports prove counts: the time after a node's last report is not
    known to be up yet. None when the period has no length yet.
    """
    start = max(now - period, node.registered_at)
    if now <= start:
        return None

    def overlap(began: int | None, ended: int | None) -> float:
        if began is None or ended is None:
            return 0.0
        return max(0.0, min(ended, now) - max(began, start))

    up = overlap(node.up_since, node.last_report_at)
    closed = sa.select(uptime_sessions.c.started_at, uptime_sessions.c.ended_at).where(
        uptime_sessions.c.node_id == node.node_id, uptime_sessions.c.ended_at > start
    )
    up += sum(overlap(began, ended) for began, ended in connection.execute(closed))
    return round(min(100.0, 100 * up / (now - start)), 3)
