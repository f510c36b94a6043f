"""The ledger's tables, and the versioned scheme that creates or migrates them on start.

Why not Alembic: the ledger migrates itself when it starts, on SQLite and on
PostgreSQL alike, and its schema changes seldom. A table of applied versions and
an ordered list of steps does that in a page, with no migration directory,
env.py or second command to run. Alembic's autogeneration is what we would
miss; it is worth adopting when the schema changes often.

The rule, as Alembic's "create_all, then stamp head": a database without the
version table gets the current tables at once and is stamped LATEST. An older
one runs each step after its version, in one transaction (PostgreSQL's DDL is
transactional; SQLite's too). A database newer than this code is refused:
old code must not write into a schema it does not know.

Times are integer Unix seconds, the protocol's unit, so both databases store
and compare them the same way.
"""

from __future__ import annotations

import time
from collections.abc import Callable

import sqlalchemy as sa
from sqlalchemy import BigInteger, Column, ForeignKey, Index, Integer, MetaData, String, Table

from zeronode.errors import ZeronodeError

metadata = MetaData()

nodes = Table(
    "nodes",
    metadata,
    Column("node_id", String(26), primary_key=True),
    Column("public_key", String(43), nullable=False, unique=True),
    Column("farm", String(64), nullable=False),
    Column("owner", String(128)),
    Column("vcpus", Integer, nullable=False),
    Column("memory", BigInteger, nullable=False),
    Column("disk", BigInteger, nullable=False),
    Column("supervisor_url", String(512)),
    Column("mycelium_address", String(45)),
    Column("version", String(64), nullable=False),
    # What the node's drivers are and can do (zeronode.api.ledger.Capabilities), read whole with the node.
    Column("capabilities", sa.JSON),
    Column("registered_at", BigInteger, nullable=False),
    Column("updated_at", BigInteger, nullable=False),
    # The current boot's state, kept on the node's row so that an ordinary
    # report is a single UPDATE; a boot's interval moves to uptime_sessions
    # only when the node restarts.
    Column("last_report_at", BigInteger, index=True),
    Column("last_uptime", BigInteger),
    Column("up_since", BigInteger),
    Column("restarts", Integer, nullable=False, default=0),
    # Version 4, placement: what the last report said the node's VMs and volumes hold and what is free (the
    # node's allocation ratios applied), its parts' health, its labels, and whether coord may place on it.
    Column("labels", sa.JSON),
    Column("schedule", String(16), nullable=False, server_default="active"),
    Column("schedule_sequence", BigInteger, nullable=False, server_default=sa.text("0")),
    Column("degraded", sa.Boolean, nullable=False, server_default=sa.false()),
    Column("health", sa.JSON),
    Column("reserved_vcpus", Integer),
    Column("reserved_memory", BigInteger),
    Column("reserved_disk", BigInteger),
    Column("free_vcpus", Integer),
    Column("free_memory", BigInteger),
    Column("free_disk", BigInteger),
    Index("nodes_by_free_vcpus", "free_vcpus"),
    Index("nodes_by_free_memory", "free_memory"),
    Index("nodes_by_free_disk", "free_disk"),
    # Version 5, releases: how the node's last update went (zeronode.api.releases.UpdateResult).
    Column("update_result", sa.JSON),
    # Version 6: a listing filtered on farm or schedule reads its page straight from these, in id order,
    # however many nodes the fleet has (an index on farm alone made it sort the whole farm for each page).
    Index("nodes_by_farm", "farm", "node_id"),
    Index("nodes_by_schedule", "schedule", "node_id"),
)

# Closed up intervals, one per boot that ended: what "uptime % over 30 days" adds up.
uptime_sessions = Table(
    "uptime_sessions",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("node_id", String(26), ForeignKey("nodes.node_id"), nullable=False),
    Column("started_at", BigInteger, nullable=False),
    Column("ended_at", BigInteger, nullable=False),
    Index("uptime_sessions_by_node", "node_id", "ended_at"),
)

users = Table(
    "users",
    metadata,
    Column("public_key", String(43), primary_key=True),
    Column("name", String(128), nullable=False),
    # Small lists read whole with their user: JSON, not tables of their own.
    Column("roles", sa.JSON, nullable=False),
    Column("nodes", sa.JSON, nullable=False),
    Column("farms", sa.JSON, nullable=False),
    Column("created_at", BigInteger, nullable=False),
    Column("updated_at", BigInteger, nullable=False),
    # The sequence of the last grant saved: an older grant replayed later cannot restore revoked rights.
    # Last, where step 3 adds it to older databases, so that new and migrated ones are alike.
    Column("sequence", BigInteger, nullable=False, server_default=sa.text("0")),
)

# "threshold of these keys must sign" for the envelopes run on a node or a farm's nodes (zeronode.api.rights).
# A removed policy stays as a row with threshold 0: its sequence must outlive it, or the change that set it
# could be replayed to set it again.
signature_policies = Table(
    "signature_policies",
    metadata,
    Column("scope", String(8), primary_key=True),
    Column("target", String(64), primary_key=True),
    Column("action", String(8), primary_key=True),
    Column("threshold", Integer, nullable=False),
    Column("keys", sa.JSON, nullable=False),
    Column("sequence", BigInteger, nullable=False),
    Column("updated_at", BigInteger, nullable=False),
)


def _release_tables(meta: MetaData) -> tuple[Table, Table, Table]:
    """Version 5's tables: releases, the channels that carry them, and who follows which channel or version."""
    return (
        Table(
            "releases",
            meta,
            Column("version", String(32), primary_key=True),
            Column("sha256", String(64), nullable=False),
            Column("size", BigInteger, nullable=False),
            Column("url", String(512)),  # None: the ledger serves the artifact uploaded to it (hosted)
            Column("signatures", sa.JSON, nullable=False),
            Column("signers", sa.JSON, nullable=False),
            Column("hosted", sa.Boolean, nullable=False),
            Column("published_at", BigInteger, nullable=False),
            Column("published_by", String(43), nullable=False),
        ),
        Table(
            "channels",
            meta,
            Column("name", String(32), primary_key=True),
            Column("version", String(32)),
            Column("previous", String(32)),
            Column("stage", String(16), nullable=False),
            Column("paused", sa.Boolean, nullable=False),
            Column("halted", String(500)),
            Column("canary", sa.JSON, nullable=False),
            Column("window_seconds", Integer, nullable=False),
            Column("stage_since", BigInteger, nullable=False),
            Column("sequence", BigInteger, nullable=False),
        ),
        # A farm's or a node's channel or pinned version; both None: the default. Kept when unset, for its sequence.
        Table(
            "follows",
            meta,
            Column("scope", String(8), primary_key=True),
            Column("target", String(64), primary_key=True),
            Column("channel", String(32)),
            Column("version", String(32)),
            Column("sequence", BigInteger, nullable=False),
        ),
    )


releases, channels, follows = _release_tables(metadata)

schema_versions = Table(
    "schema_versions",
    metadata,
    Column("version", Integer, primary_key=True, autoincrement=False),
    Column("applied_at", BigInteger, nullable=False),
)


def _add_capabilities(connection: sa.Connection) -> None:
    """2: nodes report their drivers' fingerprints (nodes registered before report none until they register again)."""
    column_type = sa.JSON().compile(dialect=connection.dialect)
    connection.execute(sa.text(f"ALTER TABLE nodes ADD COLUMN capabilities {column_type}"))


def _add_sequences_and_policies(connection: sa.Connection) -> None:
    """3: user grants carry a sequence (users saved before are at 0), and signature policies get their table.

    The table is spelled out as version 3 has it, not taken from `signature_policies` above,
    which a later version may change: a released step must do the same thing forever."""
    connection.execute(sa.text("ALTER TABLE users ADD COLUMN sequence BIGINT NOT NULL DEFAULT 0"))
    Table(
        "signature_policies",
        MetaData(),
        Column("scope", String(8), primary_key=True),
        Column("target", String(64), primary_key=True),
        Column("action", String(8), primary_key=True),
        Column("threshold", Integer, nullable=False),
        Column("keys", sa.JSON, nullable=False),
        Column("sequence", BigInteger, nullable=False),
        Column("updated_at", BigInteger, nullable=False),
    ).create(connection)


def _add_placement(connection: sa.Connection) -> None:
    """4: nodes report what they hold and have free, and their health; admins cordon and drain them.
    Spelled out as version 4 has them (see step 3)."""
    json_type = sa.JSON().compile(dialect=connection.dialect)
    false = "false" if connection.dialect.name == "postgresql" else "0"
    for column in (
        f"labels {json_type}",
        "schedule VARCHAR(16) NOT NULL DEFAULT 'active'",
        "schedule_sequence BIGINT NOT NULL DEFAULT 0",
        f"degraded BOOLEAN NOT NULL DEFAULT {false}",
        f"health {json_type}",
        "reserved_vcpus INTEGER", "reserved_memory BIGINT", "reserved_disk BIGINT",
        "free_vcpus INTEGER", "free_memory BIGINT", "free_disk BIGINT",
    ):
        connection.execute(sa.text(f"ALTER TABLE nodes ADD COLUMN {column}"))
    for name in ("vcpus", "memory", "disk"):
        connection.execute(sa.text(f"CREATE INDEX nodes_by_free_{name} ON nodes (free_{name})"))


def _add_releases(connection: sa.Connection) -> None:
    """5: releases, channels and follows; nodes report how their last update went."""
    json_type = sa.JSON().compile(dialect=connection.dialect)
    connection.execute(sa.text(f"ALTER TABLE nodes ADD COLUMN update_result {json_type}"))
    for table in _release_tables(MetaData()):
        table.create(connection)


def _index_pages(connection: sa.Connection) -> None:
    """6: the listings filtered on farm or schedule read their pages in id order from an index (bench/ledger.py)."""
    connection.execute(sa.text("DROP INDEX ix_nodes_farm"))
    connection.execute(sa.text("CREATE INDEX nodes_by_farm ON nodes (farm, node_id)"))
    connection.execute(sa.text("CREATE INDEX nodes_by_schedule ON nodes (schedule, node_id)"))


# Step N+1 takes a version-N database to version N+1. Append; never edit a released step.
MIGRATIONS: list[Callable[[sa.Connection], None]] = [
    _add_capabilities, _add_sequences_and_policies, _add_placement, _add_releases, _index_pages,
]
LATEST = 1 + len(MIGRATIONS)


class SchemaTooNew(ZeronodeError):
    """The database was migrated by a newer ledger than this one."""


def migrate(connection: sa.Connection) -> int:
    """Create or bring up to date the schema, inside the caller's write transaction; the version reached."""
    if connection.dialect.name == "postgresql":
        # Ledgers starting together take turns; the lock ends with the transaction.
        connection.execute(sa.text("SELECT pg_advisory_xact_lock(7316430152)"))
    current = None
    if sa.inspect(connection).has_table(schema_versions.name):
        current = connection.execute(sa.select(sa.func.max(schema_versions.c.version))).scalar_one()
    if current is None:  # a new database
        metadata.create_all(connection)
        connection.execute(schema_versions.insert(), {"version": LATEST, "applied_at": int(time.time())})
        return LATEST
    if current > LATEST:
        raise SchemaTooNew(f"the database is at schema version {current}; this ledger knows up to {LATEST}: upgrade it")
    for version in range(current + 1, LATEST + 1):
        MIGRATIONS[version - 2](connection)
        connection.execute(schema_versions.insert(), {"version": version, "applied_at": int(time.time())})
    return LATEST
