"""What placement needs of the ledger: capacity and health from the nodes' reports, filters on free capacity,
and admins cordoning and draining nodes."""

import nacl.signing
import pytest

from tests.support.answers import detail
from zeronode.protocol import keys

from .conftest import registration

GIB = 1 << 30


def report(ledger, key, *, free_memory, health=None, uptime=100):
    node_id = keys.node_id(keys.public_key_text(key))
    body = {
        "uptime": uptime, "timestamp": int(ledger.clock()),
        "reserved": {"vcpus": 2, "memory": 2 * GIB, "disk": 10 * GIB},
        "free": {"vcpus": 6, "memory": free_memory, "disk": 90 * GIB},
        "health": health or {"redis": True, "runners": True},
    }
    response = ledger.signed("POST", f"/v1/nodes/{node_id}/uptime", key, body)
    assert response.status_code == 200, response.text
    return node_id


@pytest.fixture
def fleet(ledger):
    """Three registered nodes, reporting 1, 4 and 8 GiB free."""
    made = {}
    for name, free in (("small", 1), ("medium", 4), ("large", 8)):
        key = nacl.signing.SigningKey.generate()
        assert ledger.signed("POST", "/v1/nodes", key, registration(labels=[f"size={name}"])).status_code == 201
        made[name] = report(ledger, key, free_memory=free * GIB)
    return made


def ids(answer):
    return {node["node_id"] for node in answer.json()}


def test_reports_carry_reserved_and_free_capacity_and_health(ledger, fleet):
    node = ledger.get(f"/v1/nodes/{fleet['medium']}").json()
    assert node["reserved"] == {"vcpus": 2, "memory": 2 * GIB, "disk": 10 * GIB}
    assert node["free"]["memory"] == 4 * GIB
    assert (node["status"], node["health"], node["labels"], node["schedule"]) == (
        "online", {"redis": True, "runners": True}, ["size=medium"], "active",
    )


def test_filters_on_free_capacity(ledger, fleet):
    assert ids(ledger.get("/v1/nodes", params={"min_free_memory": 3 * GIB})) == {fleet["medium"], fleet["large"]}
    assert ids(ledger.get("/v1/nodes", params={"min_free_memory": 5 * GIB, "status": "online"})) == {fleet["large"]}
    assert ids(ledger.get("/v1/nodes", params={"min_free_memory": 9 * GIB})) == set()


def test_a_node_whose_parts_fail_is_degraded(ledger, fleet):
    key = nacl.signing.SigningKey.generate()
    assert ledger.signed("POST", "/v1/nodes", key, registration()).status_code == 201
    ledger.clock.advance(1)
    node_id = report(ledger, key, free_memory=GIB, health={"redis": True, "runners": False})
    assert ledger.get(f"/v1/nodes/{node_id}").json()["status"] == "degraded"
    assert node_id not in ids(ledger.get("/v1/nodes", params={"status": "online"}))
    assert ids(ledger.get("/v1/nodes", params={"status": "degraded"})) == {node_id}
    ledger.clock.advance(1)
    report(ledger, key, free_memory=GIB, uptime=101)  # healthy again
    assert ledger.get(f"/v1/nodes/{node_id}").json()["status"] == "online"


def test_admins_cordon_drain_and_reactivate_nodes(ledger, fleet):
    node_id = fleet["small"]
    changed = ledger.signed("POST", f"/v1/nodes/{node_id}/schedule", ledger.admin, {"schedule": "cordoned", "sequence": 1})
    assert changed.status_code == 200, changed.text
    assert ledger.get(f"/v1/nodes/{node_id}").json()["schedule"] == "cordoned"
    assert node_id not in ids(ledger.get("/v1/nodes", params={"schedule": "active"}))
    assert ledger.signed("POST", f"/v1/nodes/{node_id}/schedule", ledger.admin, {"schedule": "draining", "sequence": 2}).status_code == 200
    # A replayed older change cannot undo a later one.
    stale = ledger.signed("POST", f"/v1/nodes/{node_id}/schedule", ledger.admin, {"schedule": "active", "sequence": 2})
    assert detail(stale) == (409, "stale_sequence")
    assert ledger.get(f"/v1/nodes/{node_id}").json()["schedule"] == "draining"


def test_only_admins_change_a_schedule(ledger, fleet):
    stranger = nacl.signing.SigningKey.generate()
    refused = ledger.signed("POST", f"/v1/nodes/{fleet['small']}/schedule", stranger, {"schedule": "cordoned", "sequence": 1})
    assert detail(refused) == (403, "not_admin")
    unknown = ledger.signed("POST", f"/v1/nodes/{'a' * 26}/schedule", ledger.admin, {"schedule": "cordoned", "sequence": 1})
    assert detail(unknown) == (404, "unknown_node")
    bogus = ledger.signed("POST", f"/v1/nodes/{fleet['small']}/schedule", ledger.admin, {"schedule": "gone", "sequence": 1})
    assert bogus.status_code == 422
