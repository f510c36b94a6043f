"""Channels, followers and staged rollouts: which release each node should run, decided per report.

Who follows what: a node's own follow (a channel or a pinned version), else its
farm's, else the channel `stable`. A channel carries a release (`version`) and
the one before it (`previous`), and a stage:

    canary        canary nodes (named farms and nodes, `percent` of the rest) get `version`, the others `previous`
    all           every follower gets `version`
    rolled_back   every follower gets `previous` (an explicit downgrade: nodes accept an older version)

Paused (by an operator, or halted by itself when a canary node failed to
update), a rollout gives `version` only to the nodes that run it already; the
rest are told nothing and stay where they are. The canary stage ends by
itself: once every canary node runs `version` and has reported its update a
success `window` seconds ago, the stage becomes `all` (`advance`, run as
nodes report and as the channel is read).
"""

from __future__ import annotations

import hashlib
import logging
import time
import weakref
from collections.abc import Collection
from dataclasses import dataclass
from typing import NamedTuple

import sqlalchemy as sa

from ledger.database import Database
from ledger.schema import channels, follows, nodes, releases
from ledger.users import require_admin, stale
from zeronode.api.errors import Refused
from zeronode.api.ledger import UptimeReport
from zeronode.api.releases import ReleaseSignature, ReleaseTarget, UpdateResult
from zeronode.api.rollouts import DEFAULT_CHANNEL, Canary, ChannelChange, ChannelView, FollowChange, FollowView, RolloutProgress

log = logging.getLogger("zeronode.ledger")

MAX_FAILURES_SHOWN = 10


@dataclass(frozen=True)
class Follow:
    """What a node follows: a channel, or a pinned version."""

    channel: str | None
    version: str | None


def in_canary(canary: Canary, node_id: str, farm: str, version: str) -> bool:
    if node_id in canary.nodes or farm in canary.farms:
        return True
    if not canary.percent:
        return False
    # By node and version: a given release picks the same nodes on every ledger replica, a new one others.
    return int(hashlib.sha256(f"{node_id}:{version}".encode()).hexdigest()[:8], 16) % 100 < canary.percent


# -- changes -------------------------------------------------------------------

def change_channel(db: Database, signer: str, name: str, change: ChannelChange, now: float, admins: Collection[str]) -> ChannelView:
    """Promote, pause, resume or roll back a channel (admins only); the channel as saved."""
    with db.writing() as connection:
        require_admin(connection, signer, admins)
        row = connection.execute(sa.select(channels).where(channels.c.name == name).with_for_update()).first()
        if row is not None and change.sequence <= row.sequence:
            raise stale(f"channel {name}", row.sequence, change.sequence)
        values = {"sequence": change.sequence}
        if change.action == "promote":
            release = connection.execute(sa.select(releases.c.url, releases.c.hosted).where(releases.c.version == change.version)).first()
            if release is None:
                raise Refused(404, "unknown_release", f"no release {change.version} in the ledger: publish it first")
            if release.url is None and not release.hosted:
                raise Refused(409, "artifact_missing", f"release {change.version}'s artifact is not uploaded yet")
            current = None if row is None else (row.previous if row.stage == "rolled_back" else row.version)
            values |= {
                "version": change.version, "previous": current if current != change.version else (row.previous if row else None),
                "stage": "all" if change.canary.empty else "canary", "paused": False, "halted": None,
                "canary": change.canary.model_dump(), "window_seconds": change.window, "stage_since": int(now),
            }
        elif row is None:
            raise Refused(404, "unknown_channel", f"no channel {name}: promote a release to it first")
        elif change.action == "pause":
            values |= {"paused": True}
        elif change.action == "resume":
            values |= {"paused": False, "halted": None, "stage_since": int(now)}  # the window starts again
        else:  # rollback
            if row.previous is None:
                raise Refused(409, "nothing_to_roll_back", f"channel {name} has no version before {row.version}")
            values |= {"stage": "rolled_back", "paused": False, "halted": None, "stage_since": int(now)}
        if row is None:
            connection.execute(sa.insert(channels).values(name=name, **values))
        else:
            connection.execute(sa.update(channels).where(channels.c.name == name).values(values))
        saved = connection.execute(sa.select(channels).where(channels.c.name == name)).one()
    changed(db)
    log.info("channel changed", extra={"channel": name, "action": change.action, "version": saved.version, "by": signer})
    return channel_view(saved)


def set_follow(db: Database, signer: str, change: FollowChange, admins: Collection[str]) -> FollowView:
    scope, target = ("farm", change.farm) if change.farm is not None else ("node", change.node)
    key = (follows.c.scope == scope) & (follows.c.target == target)
    with db.writing() as connection:
        require_admin(connection, signer, admins)
        if change.version is not None and connection.execute(
            sa.select(releases.c.version).where(releases.c.version == change.version)
        ).first() is None:
            raise Refused(404, "unknown_release", f"no release {change.version} in the ledger")
        row = connection.execute(sa.select(follows.c.sequence).where(key).with_for_update()).first()
        if row is not None and change.sequence <= row.sequence:
            raise stale(f"the follow of {scope} {target}", row.sequence, change.sequence)
        values = {"channel": change.channel, "version": change.version, "sequence": change.sequence}
        if row is None:
            connection.execute(sa.insert(follows).values(scope=scope, target=target, **values))
        else:
            connection.execute(sa.update(follows).where(key).values(values))
    changed(db)
    log.info("follow changed", extra={"scope": scope, "target": target, "channel": change.channel, "version": change.version})
    return FollowView(scope=scope, target=target, channel=change.channel, version=change.version, sequence=change.sequence)


# -- reading -------------------------------------------------------------------

def channel_view(row: sa.Row, progress: RolloutProgress | None = None) -> ChannelView:
    return ChannelView(
        name=row.name, version=row.version, previous=row.previous, stage=row.stage, paused=row.paused, halted=row.halted,
        canary=Canary.model_validate(row.canary), window=row.window_seconds, stage_since=row.stage_since,
        sequence=row.sequence, progress=progress,
    )


def _followers_query() -> sa.Select:
    """Every node with what it follows itself and what its farm follows."""
    own, farm = follows.alias("own"), follows.alias("farm_follow")
    return sa.select(
        nodes.c.node_id, nodes.c.farm, nodes.c.version, nodes.c.update_result,
        own.c.channel.label("own_channel"), own.c.version.label("own_version"),
        farm.c.channel.label("farm_channel"), farm.c.version.label("farm_version"),
    ).select_from(
        nodes.outerjoin(own, (own.c.scope == "node") & (own.c.target == nodes.c.node_id))
        .outerjoin(farm, (farm.c.scope == "farm") & (farm.c.target == nodes.c.farm))
    )


def _follow(row: sa.Row) -> Follow:
    if row.own_channel or row.own_version:
        return Follow(row.own_channel, row.own_version)
    if row.farm_channel or row.farm_version:
        return Follow(row.farm_channel, row.farm_version)
    return Follow(DEFAULT_CHANNEL, None)


def _wanted(channel: sa.Row, node: sa.Row | NodeShape) -> tuple[str | None, bool]:
    """The version the channel gives this follower now, and whether that is an explicit rollback."""
    if channel.stage == "rolled_back":
        return channel.previous, True
    if channel.paused and node.version != channel.version:
        return None, False  # held where it is
    if channel.stage == "all" or in_canary(Canary.model_validate(channel.canary), node.node_id, node.farm, channel.version):
        return channel.version, False
    return channel.previous, False


@dataclass(frozen=True)
class Snapshot:
    """Every channel, follow and release, read at once: what a report's answer is decided from."""

    channels: dict[str, sa.Row]
    follows: dict[tuple[str, str], Follow]
    releases: dict[str, sa.Row]


class NodeShape(NamedTuple):
    """What _wanted needs of a node."""

    node_id: str
    farm: str
    version: str | None


# The uptime report is the ledger's hot path: its answer comes from a snapshot of these small tables, read
# again at most every SNAPSHOT_SECONDS (and at once after a change made through this process), not from
# three queries a report (which halved single reports/s in bench/ledger.py). Another replica's change counts
# here within SNAPSHOT_SECONDS.
SNAPSHOT_SECONDS = 1.0
_snapshots: weakref.WeakKeyDictionary[Database, tuple[float, Snapshot]] = weakref.WeakKeyDictionary()


def snapshot(db: Database) -> Snapshot:
    taken = _snapshots.get(db)
    if taken is not None and time.monotonic() - taken[0] < SNAPSHOT_SECONDS:
        return taken[1]
    with db.reading() as connection:
        fresh = Snapshot(
            channels={row.name: row for row in connection.execute(sa.select(channels))},
            follows={(row.scope, row.target): Follow(row.channel, row.version)
                     for row in connection.execute(sa.select(follows)) if row.channel or row.version},
            releases={row.version: row for row in connection.execute(sa.select(releases))},
        )
    _snapshots[db] = (time.monotonic(), fresh)
    return fresh


def changed(db: Database) -> None:
    """A change of channels, follows or releases made here: the next answer reads them again."""
    _snapshots.pop(db, None)


def target(db: Database, node: NodeShape) -> ReleaseTarget | None:
    """What the node should run, or None when nothing is decided for it (no channel, no release yet)."""
    taken = snapshot(db)
    follow = taken.follows.get(("node", node.node_id)) or taken.follows.get(("farm", node.farm)) or Follow(DEFAULT_CHANNEL, None)
    if follow.version is not None:
        version, rollback, channel_name = follow.version, True, "pinned"
    else:
        channel = taken.channels.get(follow.channel)
        if channel is None or channel.version is None:
            return None
        version, rollback = _wanted(channel, node)
        channel_name = channel.name
    release = taken.releases.get(version) if version is not None else None
    if release is None:
        return None
    return ReleaseTarget(
        version=release.version, sha256=release.sha256, size=release.size, channel=channel_name, rollback=rollback,
        signatures=[ReleaseSignature.model_validate(signature) for signature in release.signatures],
        url=release.url or f"/v1/releases/{release.version}/artifact",
    )


def after_report(db: Database, node_id: str, farm: str, report: UptimeReport, now: float) -> ReleaseTarget | None:
    """What the ledger answers a node's report with: its target release. A report with an update's result
    may end or halt a canary stage, so the canary stages are looked at first."""
    if report.update is not None:
        with db.reading() as connection:
            names = connection.execute(sa.select(channels.c.name).where(channels.c.stage == "canary")).scalars().all()
        for name in names:
            advance(db, name, now)
    return target(db, NodeShape(node_id, farm, report.version))


def _followers(connection: sa.Connection, name: str) -> list[sa.Row]:
    return [row for row in connection.execute(_followers_query()) if _follow(row) == Follow(name, None)]


def progress(channel: sa.Row, followers: list[sa.Row]) -> RolloutProgress:
    versions: dict[str, int] = {}
    counts = {"target": 0, "succeeded": 0, "updating": 0, "rolled_back": 0, "refused": 0}
    failures: dict[str, str] = {}
    for node in followers:
        versions[node.version] = versions.get(node.version, 0) + 1
        told = _wanted(channel, node)[0] == channel.version
        counts["target"] += told
        result = UpdateResult.model_validate(node.update_result) if node.update_result else None
        if node.version == channel.version:
            counts["succeeded"] += 1
        elif result is not None and result.version == channel.version and result.result != "succeeded":
            counts[result.result] += 1
            if len(failures) < MAX_FAILURES_SHOWN:
                failures[node.node_id] = f"{result.result}: {result.reason or 'no reason given'}"
        elif told:
            counts["updating"] += 1
    return RolloutProgress(versions=versions, failed=counts["rolled_back"] + counts["refused"], failures=failures, **counts)


def advance(db: Database, name: str, now: float) -> None:
    """Move a canary stage on: halt it when a canary node failed the release, open it to all once every
    canary node has run it for the window. Nothing for other stages."""
    with db.writing() as connection:
        channel = connection.execute(sa.select(channels).where(channels.c.name == name).with_for_update()).first()
        if channel is None or channel.stage != "canary" or channel.paused:
            return
        canary = Canary.model_validate(channel.canary)
        on_canary = [node for node in _followers(connection, name) if in_canary(canary, node.node_id, node.farm, channel.version)]
        latest = channel.stage_since
        for node in on_canary:
            result = UpdateResult.model_validate(node.update_result) if node.update_result else None
            if result is not None and result.version == channel.version and result.result != "succeeded":
                halted = f"canary node {node.node_id}: {result.result}: {result.reason or 'no reason given'}"[:500]
                connection.execute(sa.update(channels).where(channels.c.name == name).values(paused=True, halted=halted))
                changed(db)
                log.warning("rollout halted", extra={"channel": name, "version": channel.version, "reason": halted})
                return
            if node.version != channel.version:
                return  # still updating
            if result is not None and result.version == channel.version:
                latest = max(latest, result.at)
        if now - latest >= channel.window_seconds:
            connection.execute(sa.update(channels).where(channels.c.name == name).values(stage="all", stage_since=int(now)))
            changed(db)
            log.info("rollout past its canary", extra={"channel": name, "version": channel.version, "canary_nodes": len(on_canary)})


def channel(db: Database, name: str, now: float) -> ChannelView:
    advance(db, name, now)
    with db.reading() as connection:
        row = connection.execute(sa.select(channels).where(channels.c.name == name)).first()
        if row is None:
            raise Refused(404, "unknown_channel", f"no channel {name}")
        return channel_view(row, progress(row, _followers(connection, name)))


def channel_names(db: Database) -> list[str]:
    with db.reading() as connection:
        return list(connection.execute(sa.select(channels.c.name).order_by(channels.c.name)).scalars())


def follows_listing(db: Database) -> list[FollowView]:
    with db.reading() as connection:
        rows = connection.execute(sa.select(follows).order_by(follows.c.scope, follows.c.target)).all()
    return [FollowView(scope=row.scope, target=row.target, channel=row.channel, version=row.version, sequence=row.sequence)
            for row in rows if row.channel or row.version]
