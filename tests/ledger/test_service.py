"""The service around the data: schema versions, health and metrics, read tokens, error shapes, the CLI's one-line errors."""

import nacl.signing
import pytest
import sqlalchemy as sa

from ledger.database import Database
from ledger.schema import LATEST, SchemaTooNew, schema_versions
from tests.support.answers import detail
from zeronode.protocol import keys

from .conftest import REGISTRATION


def test_the_schema_is_created_once_and_kept_across_restarts(make_ledger, node_key):
    first = make_ledger()
    assert first.signed("POST", "/v1/nodes", node_key, REGISTRATION).status_code == 201
    second = make_ledger()  # a restart on the same database: migrating again changes nothing
    assert len(second.get("/v1/nodes").json()) == 1
    with second.db.reading() as connection:
        assert connection.execute(sa.select(schema_versions.c.version)).scalars().all() == [LATEST]


def shape(connection: sa.Connection) -> dict:
    """Each table's columns (name, type, nullable, default) and primary key, as the database reports them."""
    inspector = sa.inspect(connection)
    return {
        table: (
            [(c["name"], str(c["type"]), c["nullable"], c.get("default")) for c in inspector.get_columns(table)],
            inspector.get_pk_constraint(table)["constrained_columns"],
        )
        for table in sorted(inspector.get_table_names())
    }


PLACEMENT_COLUMNS = (
    "labels", "schedule", "schedule_sequence", "degraded", "health", "reserved_vcpus", "reserved_memory", "reserved_disk",
    "free_vcpus", "free_memory", "free_disk",
)


def back_to_version_5(connection: sa.Connection) -> None:
    """Undo step 6, as a ledger before the listings' indexes left the database."""
    connection.execute(sa.text("DROP INDEX nodes_by_farm"))
    connection.execute(sa.text("DROP INDEX nodes_by_schedule"))
    connection.execute(sa.text("CREATE INDEX ix_nodes_farm ON nodes (farm)"))
    stamp(connection, 5)


def back_to_version_4(connection: sa.Connection) -> None:
    """Undo step 5, as a ledger before releases left the database."""
    back_to_version_5(connection)
    for table in ("releases", "channels", "follows"):
        connection.execute(sa.text(f"DROP TABLE {table}"))
    connection.execute(sa.text("ALTER TABLE nodes DROP COLUMN update_result"))
    stamp(connection, 4)


def back_to_version_3(connection: sa.Connection) -> None:
    """Undo step 4, as a ledger before placement left the database."""
    back_to_version_4(connection)
    for name in ("vcpus", "memory", "disk"):
        connection.execute(sa.text(f"DROP INDEX nodes_by_free_{name}"))
    for column in PLACEMENT_COLUMNS:
        connection.execute(sa.text(f"ALTER TABLE nodes DROP COLUMN {column}"))
    stamp(connection, 3)


def back_to_version_2(connection: sa.Connection) -> None:
    """Undo step 3, as a ledger before sequences and policies left the database."""
    back_to_version_3(connection)
    connection.execute(sa.text("DROP TABLE signature_policies"))
    connection.execute(sa.text("ALTER TABLE users DROP COLUMN sequence"))
    stamp(connection, 2)


def stamp(connection: sa.Connection, version: int) -> None:
    connection.execute(sa.delete(schema_versions))
    connection.execute(schema_versions.insert(), {"version": version, "applied_at": 0})


def test_a_version_1_database_is_migrated_and_keeps_its_nodes(make_ledger, node_key):
    first = make_ledger()
    assert first.signed("POST", "/v1/nodes", node_key, REGISTRATION).status_code == 201
    with first.db.writing() as connection:  # back to schema 1, as a ledger before capabilities left it
        back_to_version_2(connection)
        connection.execute(sa.text("ALTER TABLE nodes DROP COLUMN capabilities"))
        stamp(connection, 1)
    second = make_ledger()  # migrates on start
    [node] = second.get("/v1/nodes").json()
    assert node["capabilities"] == {"hypervisor": None, "storage": None, "network": None}
    drivers = {"hypervisor": {"driver": "cloud-hypervisor", "simulated": True}, "storage": {"driver": "btrfs"}}
    assert second.signed("POST", "/v1/nodes", node_key, {**REGISTRATION, "capabilities": drivers}).status_code == 200
    [node] = second.get("/v1/nodes").json()
    assert node["capabilities"]["hypervisor"] == {"driver": "cloud-hypervisor", "simulated": True, "version": None, "features": []}
    assert node["capabilities"]["storage"]["driver"] == "btrfs" and node["capabilities"]["network"] is None
    with second.db.reading() as connection:
        assert connection.execute(sa.select(schema_versions.c.version)).scalars().all() == list(range(1, LATEST + 1))


def migrated(first, make_ledger, back_to):
    """A second ledger on `first`'s database once `back_to` took it back to an older schema; it migrates on start.
    Asserts it ends with the same tables as a database created at this version."""
    with first.db.reading() as connection:
        fresh = shape(connection)
    with first.db.writing() as connection:
        back_to(connection)
    second = make_ledger()
    with second.db.reading() as connection:
        assert shape(connection) == fresh
    return second


def test_a_version_3_database_gets_placement_columns_and_keeps_its_nodes(make_ledger, node_key):
    first = make_ledger()
    node_id = first.signed("POST", "/v1/nodes", node_key, REGISTRATION).json()["node_id"]
    second = migrated(first, make_ledger, back_to_version_3)
    with second.db.reading() as connection:
        indexes = {index["name"] for index in sa.inspect(connection).get_indexes("nodes")}
        assert {"nodes_by_free_vcpus", "nodes_by_free_memory", "nodes_by_free_disk"} <= indexes
    node = second.get(f"/v1/nodes/{node_id}").json()
    assert (node["schedule"], node["free"], node["labels"]) == ("active", None, [])


def test_a_version_5_database_gets_the_listings_indexes_and_keeps_its_nodes(make_ledger, node_key):
    first = make_ledger()
    node_id = first.signed("POST", "/v1/nodes", node_key, REGISTRATION).json()["node_id"]
    second = migrated(first, make_ledger, back_to_version_5)
    with second.db.reading() as connection:
        indexes = {index["name"]: index["column_names"] for index in sa.inspect(connection).get_indexes("nodes")}
    assert indexes["nodes_by_farm"] == ["farm", "node_id"] and indexes["nodes_by_schedule"] == ["schedule", "node_id"]
    assert "ix_nodes_farm" not in indexes
    assert [node["node_id"] for node in second.get("/v1/nodes", params={"farm": REGISTRATION["farm"]}).json()] == [node_id]


def test_a_version_4_database_gets_release_tables_and_keeps_its_nodes(make_ledger, node_key):
    first = make_ledger()
    node_id = first.signed("POST", "/v1/nodes", node_key, REGISTRATION).json()["node_id"]
    second = migrated(first, make_ledger, back_to_version_4)
    node = second.get(f"/v1/nodes/{node_id}").json()
    assert node["version"] == REGISTRATION["version"] and node["update"] is None
    assert second.get("/v1/releases").json() == [] and second.get("/v1/channels").json() == []


def test_a_version_2_database_gets_sequences_and_policies(make_ledger, node_key):
    first = make_ledger()
    node_id = first.signed("POST", "/v1/nodes", node_key, REGISTRATION).json()["node_id"]
    dana = nacl.signing.SigningKey.generate()
    grant = {"public_key": keys.public_key_text(dana), "name": "dana", "roles": ["deployer"], "farms": ["farm-a"], "sequence": 9}
    assert first.signed("POST", "/v1/users", first.admin, grant).status_code == 201
    second = migrated(first, make_ledger, back_to_version_2)
    with second.db.reading() as connection:
        assert connection.execute(sa.select(schema_versions.c.version)).scalars().all() == [2, *range(3, LATEST + 1)]
    # The user kept their rights, at sequence 0: any grant from now on is newer.
    shown = second.get(f"/v1/users/{grant['public_key']}", params={"node": node_id}).json()
    assert (shown["roles"], shown["sequence"], shown["may_deploy"]) == (["deployer"], 0, True)
    assert second.signed("POST", "/v1/users", second.admin, {**grant, "roles": [], "sequence": 1}).status_code == 200
    change = {"scope": "farm", "target": "farm-a", "threshold": 1, "keys": [keys.public_key_text(dana)], "sequence": 1}
    assert second.signed("POST", "/v1/policies", second.admin, change).status_code == 201


def test_a_database_from_a_newer_ledger_is_refused(database_url, tmp_path, zn):
    db = Database(database_url)
    db.migrate()
    with db.writing() as connection:
        connection.execute(schema_versions.insert(), {"version": LATEST + 1, "applied_at": 0})
    with pytest.raises(SchemaTooNew):
        db.migrate()
    db.close()
    config = tmp_path / "ledger.toml"
    config.write_text(f'database_url = "{database_url}"\nport = 0\n')
    result = zn("ledger", "--config", config)
    assert result.returncode == 1
    assert result.stderr.startswith(f"error: the database is at schema version {LATEST + 1}")


def test_bad_settings_and_unreachable_databases_are_one_line_errors(tmp_path, zn):
    config = tmp_path / "ledger.toml"
    config.write_text('admins = ["not-a-key"]\n')
    bad = zn("ledger", "--config", config)
    assert bad.returncode == 1 and bad.stderr.startswith(f"error: invalid settings in {config}: admins:")
    config.write_text(f'database_url = "postgresql://ledger:secret@/ledger?host={tmp_path}/nowhere"\n')
    away = zn("ledger", "--config", config)
    assert away.returncode == 1 and away.stderr.startswith("error: cannot open the ledger database")
    assert "secret" not in away.stderr and "Traceback" not in away.stderr
    assert len(away.stderr.strip().splitlines()) == 1


def test_health_ping_and_metrics(ledger, node_key, registered):
    assert ledger.get("/health").json() == {"status": "ok"}
    assert ledger.get("/ping").status_code == 200
    ledger.report(node_key, uptime=10)
    ledger.report(node_key, uptime=5, timestamp=int(ledger.clock()) - 30)  # stale
    metrics = ledger.get("/metrics").text
    assert "zeronode_ledger_reports_accepted_total 1.0" in metrics
    assert 'zeronode_ledger_reports_refused_total{reason="stale_report"} 1.0' in metrics
    assert 'zeronode_ledger_node_registrations_total{kind="created"} 1.0' in metrics
    assert 'zeronode_ledger_nodes{status="online"} 1.0' in metrics


def test_a_read_token_guards_reads_but_not_health(make_ledger, node_key):
    ledger = make_ledger(read_token="s3cret")
    assert ledger.signed("POST", "/v1/nodes", node_key, REGISTRATION).status_code == 201  # writes: signatures only
    for path in ("/v1/nodes", f"/v1/users/{ledger.settings.admins[0]}", "/v1/policies"):
        assert detail(ledger.get(path)) == (401, "bad_token")
        assert detail(ledger.get(path, headers={"authorization": "Bearer wrong"})) == (401, "bad_token")
        assert ledger.get(path, headers={"authorization": "Bearer s3cret"}).status_code == 200
    assert ledger.get("/health").status_code == 200
    assert len(ledger.client(token="s3cret").nodes()) == 1


def test_errors_are_json_with_a_reason(ledger, node_key):
    assert detail(ledger.get("/v1/nothing-here")) == (404, "not_found")
    assert detail(ledger.http.delete("/v1/nodes")) == (405, "method_not_allowed")
    chunked = ledger.http.post("/v1/nodes", content=iter([b'{"farm": "x"}']))  # no Content-Length
    assert detail(chunked) == (411, "length_required")
    oversized = ledger.http.post("/v1/uptime/batch", content=b" " * (5 * 1024 * 1024))
    assert detail(oversized) == (413, "too_large")
