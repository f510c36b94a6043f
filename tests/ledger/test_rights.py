"""What a node enforces, as the ledger hands it out: who has which roles on it (a signed read for the node
itself and the ledger's admins), and the signature policies admins set for nodes and farms."""

import itertools

import httpx
import nacl.signing
import pytest

from tests.support.answers import detail
from zeronode.api.errors import Conflict, Refused
from zeronode.api.rights import NodeRights, PolicyChange, PolicyRemoved, SignaturePolicy
from zeronode.protocol import keys
from zeronode.protocol.signed_requests import SignedRequestAuth

from .conftest import REGISTRATION, registration

SEQUENCES = itertools.count(1)


def public(key: nacl.signing.SigningKey) -> str:
    return keys.public_key_text(key)


def new_keys(count: int) -> list[nacl.signing.SigningKey]:
    return [nacl.signing.SigningKey.generate() for _ in range(count)]


def save_user(ledger, key, roles, *, nodes=(), farms=(), by=None, sequence=None) -> None:
    body = {"public_key": public(key), "name": "someone", "roles": list(roles), "nodes": list(nodes), "farms": list(farms),
            "sequence": sequence or next(SEQUENCES)}
    response = ledger.signed("POST", "/v1/users", by or ledger.admin, body)
    assert response.status_code in (200, 201), response.text


def policy(scope, target, threshold, signers=(), *, action="deploy", sequence=None) -> dict:
    return {"scope": scope, "target": target, "action": action, "threshold": threshold,
            "keys": [public(key) for key in signers], "sequence": sequence or next(SEQUENCES)}


def grants(answer: httpx.Response) -> dict[str, list[str]]:
    assert answer.status_code == 200, answer.text
    return {grant["public_key"]: grant["roles"] for grant in answer.json()["grants"]}


def test_a_node_reads_who_has_which_roles_on_it(ledger, node_key, registered):
    other_node = nacl.signing.SigningKey.generate()
    elsewhere = ledger.signed("POST", "/v1/nodes", other_node, registration(farm="farm-b")).json()["node_id"]
    farm_deployer, node_operator, other_farm, revoked, db_admin, admin_deployer, everything = new_keys(7)
    save_user(ledger, farm_deployer, ["deployer"], farms=[REGISTRATION["farm"]])
    save_user(ledger, everything, ["admin", "operator", "deployer", "observer"], nodes=[registered])
    save_user(ledger, node_operator, ["operator"], nodes=[registered])
    save_user(ledger, other_farm, ["deployer", "operator"], farms=["farm-b"], nodes=[elsewhere])
    save_user(ledger, revoked, ["deployer"], farms=[REGISTRATION["farm"]])
    save_user(ledger, revoked, [], farms=[REGISTRATION["farm"]])  # empty roles: the revocation
    save_user(ledger, db_admin, ["admin"])
    save_user(ledger, admin_deployer, ["admin", "deployer"], farms=[REGISTRATION["farm"]])
    now = ledger.clock.freeze()

    answer = ledger.signed("GET", f"/v1/nodes/{registered}/rights", node_key)
    assert grants(answer) == {
        public(farm_deployer): ["deployer"],
        public(node_operator): ["operator"],
        public(db_admin): ["admin"],
        public(admin_deployer): ["admin", "deployer"],
        public(everything): ["admin", "deployer", "observer", "operator"],  # every role at once: still one grant
        public(ledger.admin): ["admin"],  # the settings' admins are fleet admins
    }
    rights = NodeRights.model_validate(answer.json())
    assert (rights.node_id, rights.farm, rights.generated_at, rights.policies) == (registered, "farm-a", now, [])

    # The other node's rights name its own operator and deployer, and none of farm-a's.
    assert grants(ledger.signed("GET", f"/v1/nodes/{elsewhere}/rights", other_node)) == {
        public(other_farm): ["deployer", "operator"], public(db_admin): ["admin"],
        public(admin_deployer): ["admin"], public(everything): ["admin"], public(ledger.admin): ["admin"],
    }
    # Ledger admins read any node's, from the settings or the database; the client signs its GET.
    assert grants(ledger.signed("GET", f"/v1/nodes/{registered}/rights", db_admin)) == grants(answer)
    assert ledger.client(ledger.admin).node_rights(registered) == rights
    assert ledger.client(node_key).node_rights().node_id == registered  # a node's client: its own by default


def test_only_the_node_itself_and_admins_read_its_rights(ledger, node_key, registered):
    other_node, deployer = new_keys(2)
    assert ledger.signed("POST", "/v1/nodes", other_node, REGISTRATION).status_code == 201
    save_user(ledger, deployer, ["deployer", "operator"], nodes=[registered])
    path = f"/v1/nodes/{registered}/rights"
    for stranger in (other_node, deployer):  # another node; even a user with rights on this one
        assert detail(ledger.signed("GET", path, stranger)) == (403, "not_authorized")
    assert detail(ledger.get(path)) == (401, "bad_signature")
    # Signed by the node but for another audience (say a request meant for a supervisor): refused.
    for_a_node = ledger.http.get(path, auth=SignedRequestAuth(node_key, registered))
    assert detail(for_a_node) == (401, "wrong_audience")
    with pytest.raises(Refused) as refused:
        ledger.client(other_node).node_rights(registered)
    assert (refused.value.status, refused.value.reason) == (403, "not_authorized")


def test_rights_of_an_unknown_node_are_404(ledger):
    unregistered = nacl.signing.SigningKey.generate()
    node_id = keys.node_id(public(unregistered))
    assert detail(ledger.signed("GET", f"/v1/nodes/{node_id}/rights", unregistered)) == (404, "unknown_node")
    assert detail(ledger.signed("GET", f"/v1/nodes/{node_id}/rights", ledger.admin)) == (404, "unknown_node")
    assert detail(ledger.signed("GET", "/v1/nodes/NOT-AN-ID/rights", ledger.admin)) == (422, "malformed")


def test_admins_set_update_and_remove_policies(ledger, registered):
    a, b, c = new_keys(3)
    db_admin, stranger = new_keys(2)
    save_user(ledger, db_admin, ["admin"])
    save_user(ledger, stranger, ["operator", "deployer"], farms=["farm-a"])
    assert detail(ledger.signed("POST", "/v1/policies", stranger, policy("farm", "farm-a", 1, [a]))) == (403, "not_admin")

    created = ledger.signed("POST", "/v1/policies", ledger.admin, policy("farm", "farm-a", 2, [c, a, b], sequence=10))
    assert created.status_code == 201, created.text
    assert created.json() == {"scope": "farm", "target": "farm-a", "action": "deploy", "threshold": 2,
                              "keys": sorted(public(key) for key in (a, b, c))}
    updated = ledger.signed("POST", "/v1/policies", db_admin, policy("farm", "farm-a", 1, [a], sequence=11))
    assert (updated.status_code, updated.json()["keys"]) == (200, [public(a)])
    # The first change, replayed as signed: older than the stored one.
    replayed = ledger.http.post("/v1/policies", content=created.request.content, headers=dict(created.request.headers))
    assert detail(replayed) == (409, "stale_sequence") and "sequence 11" in replayed.json()["message"]
    assert [p["threshold"] for p in ledger.get("/v1/policies").json()] == [1]

    # An admin-only policy on the same farm is another policy; another farm's and a node's too.
    admin_only = policy("farm", "farm-a", 1, [b], action="admin", sequence=1)
    assert ledger.signed("POST", "/v1/policies", ledger.admin, admin_only).status_code == 201
    assert ledger.signed("POST", "/v1/policies", ledger.admin, policy("farm", "farm-b", 1, [c])).status_code == 201
    assert ledger.signed("POST", "/v1/policies", ledger.admin, policy("node", registered, 1, [c])).status_code == 201
    listed = ledger.get("/v1/policies").json()
    assert [(p["scope"], p["target"], p["action"]) for p in listed] == [
        ("farm", "farm-a", "admin"), ("farm", "farm-a", "deploy"), ("farm", "farm-b", "deploy"), ("node", registered, "deploy"),
    ]
    assert [p["target"] for p in ledger.get("/v1/policies", params={"scope": "node"}).json()] == [registered]
    assert len(ledger.get("/v1/policies", params={"scope": "farm", "target": "farm-a"}).json()) == 2

    # Threshold 0 removes it; the change that set it, replayed later, does not set it again.
    removal = ledger.signed("POST", "/v1/policies", ledger.admin, policy("farm", "farm-b", 0))
    assert (removal.status_code, removal.json()) == (200, {"scope": "farm", "target": "farm-b", "action": "deploy", "removed": True})
    assert ledger.get("/v1/policies", params={"target": "farm-b"}).json() == []
    stale = ledger.signed("POST", "/v1/policies", ledger.admin, policy("farm", "farm-b", 1, [c], sequence=1))
    assert detail(stale) == (409, "stale_sequence")
    assert ledger.get("/v1/policies", params={"target": "farm-b"}).json() == []
    again = ledger.signed("POST", "/v1/policies", ledger.admin, policy("farm", "farm-b", 1, [a]))
    assert again.status_code == 201  # a policy where there was none any more


def test_bad_policy_changes_are_malformed(ledger):
    signers = new_keys(17)
    bad_changes = [
        policy("farm", "farm-a", 2, signers[:1]),  # more signatures than keys
        policy("farm", "farm-a", 1, [signers[0], signers[0]]),  # the same key twice
        policy("farm", "farm-a", 16, signers),  # 17 keys
        policy("node", "farm-a", 1, signers[:1]),  # a node's policy names a node id
        policy("planet", "earth", 1, signers[:1]),
        policy("farm", "farm-a", 1, signers[:1], action="everything"),
        policy("farm", "farm-a", -1),
        {**policy("farm", "farm-a", 1, signers[:1]), "threshold": "1"},  # strict: "1" is not 1
        {**policy("farm", "farm-a", 1, signers[:1]), "sequence": 0},
        {**policy("farm", "farm-a", 1, signers[:1]), "keys": ["not-a-key"]},
        {**policy("farm", "farm-a", 1, signers[:1]), "comment": "hi"},
        {key: value for key, value in policy("farm", "farm-a", 1, signers[:1]).items() if key != "sequence"},
    ]
    for bad in bad_changes:
        assert detail(ledger.signed("POST", "/v1/policies", ledger.admin, bad)) == (422, "malformed"), bad
    assert ledger.get("/v1/policies").json() == []
    assert detail(ledger.get("/v1/policies", params={"scope": "planet"})) == (422, "malformed")


def test_a_nodes_rights_carry_the_policies_that_cover_it(ledger, node_key, registered):
    other_node = nacl.signing.SigningKey.generate()
    elsewhere = ledger.signed("POST", "/v1/nodes", other_node, registration(farm="farm-b")).json()["node_id"]
    a, b = new_keys(2)
    for change in (
        policy("node", registered, 1, [a]),
        policy("farm", "farm-a", 2, [a, b]),
        policy("farm", "farm-a", 1, [b], action="admin"),
        policy("farm", "farm-b", 1, [b]),  # another farm's
        policy("node", elsewhere, 1, [a]),  # another node's
        policy("farm", "farm-c", 1, [a]),
    ):
        assert ledger.signed("POST", "/v1/policies", ledger.admin, change).status_code == 201
    assert ledger.signed("POST", "/v1/policies", ledger.admin, policy("farm", "farm-c", 0)).status_code == 200

    covering = NodeRights.model_validate(ledger.signed("GET", f"/v1/nodes/{registered}/rights", node_key).json()).policies
    assert covering == [
        SignaturePolicy(scope="farm", target="farm-a", action="admin", threshold=1, keys=frozenset({public(b)})),
        SignaturePolicy(scope="farm", target="farm-a", action="deploy", threshold=2, keys=frozenset({public(a), public(b)})),
        SignaturePolicy(scope="node", target=registered, action="deploy", threshold=1, keys=frozenset({public(a)})),
    ]
    assert all(p.covers(registered, "farm-a") for p in covering)
    # A node that moves to another farm is covered by that farm's policies from then on.
    assert ledger.signed("POST", "/v1/nodes", node_key, registration(farm="farm-c")).status_code == 200
    assert [p.target for p in ledger.client(node_key).node_rights().policies] == [registered]


def test_the_client_sets_reads_and_removes_policies(ledger):
    a, b = new_keys(2)
    admin = ledger.client(ledger.admin)
    change = PolicyChange(scope="farm", target="farm-a", threshold=1, keys=[public(a), public(b)], sequence=5)
    saved = admin.set_policy(change)
    assert saved == SignaturePolicy(scope="farm", target="farm-a", threshold=1, keys=frozenset({public(a), public(b)}))
    assert ledger.client().policies(scope="farm") == [saved]
    assert ledger.client().policies(target="farm-z") == []
    with pytest.raises(Conflict) as stale:
        admin.set_policy(change)
    assert stale.value.reason == "stale_sequence"
    removed = admin.set_policy(PolicyChange(scope="farm", target="farm-a", threshold=0, sequence=6))
    assert removed == PolicyRemoved(scope="farm", target="farm-a", action="deploy")
    assert ledger.client().policies() == []
    with pytest.raises(Refused) as refused:
        ledger.client(a).set_policy(PolicyChange(scope="farm", target="farm-a", threshold=0, sequence=7))
    assert (refused.value.status, refused.value.reason) == (403, "not_admin")
