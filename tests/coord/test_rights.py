"""Who may ask coord for what: submissions authorised by the ledger's rights and policies before any task
exists, bounded per signer, in what reaches the ledger and in size, and deployments read by their signer or a
coord admin only."""

import json

import httpx
import nacl.signing
import pytest
from fastapi import FastAPI, Request, Response

from tests.support.ports import free_port
from zeronode.api.errors import Refused, ServiceError
from zeronode.protocol import keys

from .conftest import FARM, tasks_by_node

MID_MINUTE = 1_800_000_030.0  # 30 s into a one-minute window: what the rate tests count by


def stored_keys(redis_client) -> list[bytes]:
    """Coord's records of deployments and tasks (not its rate counters)."""
    return redis_client.keys("coord:deployment:*") + redis_client.keys("coord:task:*") + redis_client.keys("coord:due")


def refused_by(coord, envelope) -> Refused:
    with pytest.raises(Refused) as refused:
        coord.submit(envelope)
    return refused.value


def test_an_unauthorised_signer_is_refused_before_any_task_exists(control_plane, redis_client):
    node = control_plane.add_node()
    stranger = nacl.signing.SigningKey.generate()
    envelope = control_plane.sign([node], key=stranger)
    refusal = refused_by(control_plane.coord, envelope)
    assert (refusal.status, refusal.reason) == (403, "not_authorized")
    assert refusal.detail["refused"] == 1 and refusal.detail["nodes"][node]["reason"] == "not_authorized"
    assert stored_keys(redis_client) == [] and control_plane.fleet.submissions == 0
    with control_plane.client(stranger) as theirs, pytest.raises(Refused) as missing:
        theirs.deployment(envelope.id)
    assert missing.value.status == 404
    control_plane.grant(stranger, ["admin"])  # a ledger admin manages users; the role alone deploys nowhere
    assert refused_by(control_plane.make_coord(rights_ttl=0), envelope).reason == "not_authorized"


def test_authorising_a_hundred_targets_asks_the_ledger_for_lists_not_each_node(control_plane):
    nodes = [control_plane.add_node() for _ in range(100)]
    control_plane.ledger_requests.clear()
    control_plane.coord.submit(control_plane.sign(nodes))
    control_plane.coord.submit(control_plane.sign(nodes[:10]))  # the signer and the policies again: cached
    asked = [request for request in control_plane.ledger_requests if request != "GET /v1/nodes"]
    # The targets come in lists of 200 (GET /v1/nodes?ids=), never one request a node.
    assert asked == [f"GET /v1/users/{keys.public_key_text(control_plane.client_key)}", "GET /v1/policies"]


def test_a_refusal_lists_the_first_hundred_nodes_and_counts_them_all(control_plane, redis_client):
    made_up = [f"node-{i}" for i in range(150)]  # not even node ids: unknown without asking the ledger
    refusal = refused_by(control_plane.coord, control_plane.sign([control_plane.add_node(), *made_up]))
    assert (refusal.status, refusal.reason, refusal.detail["refused"]) == (403, "not_authorized", 150)
    assert len(refusal.detail["nodes"]) == 100 and {n["reason"] for n in refusal.detail["nodes"].values()} == {"unknown_node"}
    assert stored_keys(redis_client) == []


def test_rights_granted_in_the_ledger_are_what_coord_accepts_and_a_revocation_applies(control_plane, redis_client):
    deployer = nacl.signing.SigningKey.generate()
    coord = control_plane.make_coord(key=deployer, rights_ttl=0)  # no cache: the ledger's word of this moment
    first, second = control_plane.add_node(), control_plane.add_node()
    assert refused_by(coord, control_plane.sign([first], key=deployer)).status == 403

    control_plane.grant(deployer, ["deployer"], farms=[FARM])
    envelope = control_plane.sign([first, second], key=deployer)
    coord.submit(envelope)
    *_, final = coord.follow(envelope.id, timeout=30)
    assert final["counts"] == {"succeeded": 2}

    control_plane.grant(deployer, ["deployer"], nodes=[first])  # now on one node only: the farm grant is gone
    coord.submit(control_plane.sign([first], key=deployer))
    both = control_plane.sign([first, second], key=deployer)
    refusal = refused_by(coord, both)
    assert list(refusal.detail["nodes"]) == [second] and refusal.detail["refused"] == 1
    with pytest.raises(Refused) as missing:  # one refused target refuses it all: nothing of it was stored
        coord.deployment(both.id)
    assert missing.value.status == 404

    control_plane.grant(deployer, [])  # revoked
    assert refused_by(coord, control_plane.sign([first], key=deployer)).reason == "not_authorized"


def test_a_two_of_three_policy_wants_two_of_its_keys(control_plane):
    node = control_plane.add_node()
    operator, auditor = nacl.signing.SigningKey.generate(), nacl.signing.SigningKey.generate()
    control_plane.set_policy("node", node, 2, [control_plane.client_key, operator, auditor])
    alone = control_plane.sign([node])
    refusal = refused_by(control_plane.coord, alone)
    assert (refusal.status, refusal.reason) == (403, "policy_not_met")
    assert refusal.detail["nodes"][node]["reason"] == "policy_not_met"
    outsider = alone.signed_by(nacl.signing.SigningKey.generate())  # a signature from outside the policy counts for nothing
    assert refused_by(control_plane.coord, outsider).reason == "policy_not_met"
    cosigned = control_plane.sign([node]).signed_by(operator)
    final = control_plane.run(cosigned)
    assert final["status"] == "succeeded"


def test_submissions_are_rate_limited_per_signer_across_replicas(control_plane, redis_client):
    one = control_plane.make_coord(submissions_per_minute=2, clock=lambda: MID_MINUTE)
    other = control_plane.make_coord(submissions_per_minute=2, clock=lambda: MID_MINUTE)
    node = control_plane.add_node()
    tampered = json.loads(control_plane.sign([node]).to_json())
    tampered["script"] = "666"
    for _ in range(3):  # signed by nobody: spends nobody's quota
        assert one.http.post("/v1/deployments", content=json.dumps(tampered)).status_code == 401
    one.submit(control_plane.sign([node]))
    other.submit(control_plane.sign([node]))  # the count is the replicas' shared one
    third = control_plane.sign([node])
    for replica in (one, other):
        answer = replica.http.post("/v1/deployments", content=third.to_json())
        assert answer.status_code == 429 and answer.headers["retry-after"] == "30"
        assert answer.json()["reason"] == "rate_limited" and answer.json()["retry_after"] == 30
    with pytest.raises(Refused) as missing:
        one.deployment(third.id)
    assert missing.value.status == 404
    stranger = nacl.signing.SigningKey.generate()  # another signer has a quota of its own (and no rights)
    assert refused_by(one, control_plane.sign([node], key=stranger)).status == 403


def test_replaying_a_stored_envelope_spends_none_of_its_signers_quota(control_plane, redis_client):
    one = control_plane.make_coord(submissions_per_minute=2, clock=lambda: MID_MINUTE)
    other = control_plane.make_coord(submissions_per_minute=2, clock=lambda: MID_MINUTE)
    node = control_plane.add_node()
    victims = control_plane.sign([node])
    assert one.submit(victims)["duplicate"] is False  # the signer's first submission of the minute
    with control_plane.client(None) as anyone:  # whoever saw the envelope replays it, far beyond the quota
        for _ in range(10):
            for replica in (one, other):
                answer = replica.http.post("/v1/deployments", content=victims.to_json())
                assert (answer.status_code, answer.json()) == (200, {"id": victims.id, "targets": [node], "placed": [], "duplicate": True})
        assert anyone.submit(victims)["duplicate"] is True
    assert other.submit(control_plane.sign([node]))["duplicate"] is False  # the second: within the quota still
    assert refused_by(one, control_plane.sign([node])).status == 429  # the third is over it: replays counted for nothing
    assert redis_client.get(f"coord:rate:{keys.public_key_text(control_plane.client_key)}:{int(MID_MINUTE // 60)}") == b"3"


def test_submissions_checked_with_the_ledger_are_capped_across_replicas(control_plane, redis_client):
    one = control_plane.make_coord(ledger_lookups_per_second=2, clock=lambda: MID_MINUTE)
    other = control_plane.make_coord(ledger_lookups_per_second=2, clock=lambda: MID_MINUTE)
    node = control_plane.add_node()
    stored = control_plane.sign([node])
    one.submit(stored)  # the first of the second's two
    fresh = [nacl.signing.SigningKey.generate() for _ in range(3)]  # each a quota of its own, and no rights
    assert refused_by(other, control_plane.sign([node], key=fresh[0])).status == 403  # the second: the ledger was asked
    control_plane.ledger_requests.clear()
    for replica, key in ((one, fresh[1]), (other, fresh[2])):
        answer = replica.http.post("/v1/deployments", content=control_plane.sign([node], key=key).to_json())
        assert answer.status_code == 429 and answer.headers["retry-after"] == "1"
        assert answer.json()["reason"] == "rate_limited" and answer.json()["retry_after"] == 1
    assert control_plane.ledger_requests == []  # refused before the ledger was asked anything
    assert one.submit(stored)["duplicate"] is True  # a stored envelope asks the ledger nothing: answered still
    # The window is the second: the next one checks with the ledger again.
    later = control_plane.make_coord(ledger_lookups_per_second=2, clock=lambda: MID_MINUTE + 1)
    assert refused_by(later, control_plane.sign([node], key=fresh[1])).status == 403


def test_submissions_are_bounded_in_size_and_targets(control_plane):
    too_many = control_plane.sign([f"node-{i}" for i in range(1001)])
    refusal = refused_by(control_plane.coord, too_many)
    assert (refusal.status, refusal.reason) == (422, "too_many_targets")
    small = control_plane.make_coord(max_envelope_bytes=64 * 1024)
    large = control_plane.sign([control_plane.add_node()], script="// " + "x" * 100_000)
    assert (refused_by(small, large).status, refused_by(small, large).reason) == (413, "too_large")


def test_the_ledger_away_is_503_and_nothing_is_stored(control_plane, redis_client):
    away = control_plane.make_coord(ledger_url=f"http://127.0.0.1:{free_port()}")
    with pytest.raises(ServiceError) as unavailable:
        away.submit(control_plane.sign([control_plane.add_node()]))
    assert (unavailable.value.status, unavailable.value.reason) == (503, "ledger_unavailable")
    assert stored_keys(redis_client) == []


def ledger_without_policies(ledger_url: str) -> FastAPI:
    """The ledger behind a proxy that routes all but GET /v1/policies (a misrouted ledger_url, in part)."""
    proxy = FastAPI()

    @proxy.get("/{path:path}")
    async def forward(path: str, request: Request) -> Response:
        if path == "v1/policies":
            return Response('{"detail": "Not Found"}', status_code=404, media_type="application/json")
        async with httpx.AsyncClient() as http:
            answer = await http.get(f"{ledger_url}/{path}", params=request.query_params)
        return Response(answer.content, status_code=answer.status_code, media_type=answer.headers.get("content-type"))

    return proxy


def test_a_ledger_that_will_not_show_its_policies_is_503_not_no_policies(control_plane, serve_app, redis_client):
    node = control_plane.add_node()
    operator = nacl.signing.SigningKey.generate()
    control_plane.set_policy("node", node, 2, [control_plane.client_key, operator])  # two signatures, or nothing runs
    proxied = control_plane.make_coord(ledger_url=serve_app(ledger_without_policies(control_plane.ledger_url)))
    with pytest.raises(ServiceError) as unavailable:
        proxied.submit(control_plane.sign([node]))  # one signature: would run if a 404 meant "no policies"
    assert (unavailable.value.status, unavailable.value.reason) == (503, "ledger_unavailable")
    assert "404" in str(unavailable.value)
    assert stored_keys(redis_client) == [] and control_plane.fleet.submissions == 0
    assert refused_by(control_plane.coord, control_plane.sign([node])).reason == "policy_not_met"  # the ledger's own word


def test_deployments_are_read_by_their_signer_or_a_coord_admin(control_plane):
    admin, colleague, stranger = (nacl.signing.SigningKey.generate() for _ in range(3))
    as_admin = control_plane.make_coord(key=admin, admins=[keys.public_key_text(admin)])
    control_plane.grant(colleague, ["deployer"], farms=[FARM])
    node = control_plane.add_node()
    mine = control_plane.run(control_plane.sign([node]))
    theirs = control_plane.sign([node], key=colleague)
    control_plane.coord.submit(theirs)

    with control_plane.client(None) as anonymous:
        for read in (lambda: anonymous.deployment(mine["id"]), anonymous.deployments):
            with pytest.raises(Refused) as unsigned:
                read()
            assert (unsigned.value.status, unsigned.value.reason) == (401, "bad_signature")
    with control_plane.client(stranger) as other:
        with pytest.raises(Refused) as forbidden:
            other.deployment(mine["id"])
        assert (forbidden.value.status, forbidden.value.reason) == (403, "not_authorized")
        assert other.deployments() == []
        with pytest.raises(Refused) as listing:
            other.deployments(signer=mine["signer"])
        assert listing.value.status == 403

    assert tasks_by_node(control_plane.coord.deployment(mine["id"]))[node]["result"] == {"node": node}
    assert [d["id"] for d in control_plane.coord.deployments()] == [mine["id"]]  # the signer's own only
    assert {d["id"] for d in as_admin.deployments()} == {mine["id"], theirs.id}
    assert [d["id"] for d in as_admin.deployments(signer=keys.public_key_text(colleague))] == [theirs.id]
    assert as_admin.deployment(theirs.id)["signer"] == keys.public_key_text(colleague)


def test_a_fleet_admin_of_the_ledger_reads_every_deployment(control_plane):
    fleet_admin = nacl.signing.SigningKey.generate()
    control_plane.grant(fleet_admin, ["admin"])
    node = control_plane.add_node()
    mine = control_plane.run(control_plane.sign([node]))
    with control_plane.client(fleet_admin) as admin:
        assert admin.deployment(mine["id"])["signer"] == mine["signer"]
        assert [d["id"] for d in admin.deployments(signer=mine["signer"])] == [mine["id"]]
    # A key the ledger does not know reads nothing.
    with control_plane.client(nacl.signing.SigningKey.generate()) as stranger, pytest.raises(Refused) as forbidden:
        stranger.deployment(mine["id"])
    assert forbidden.value.status == 403
