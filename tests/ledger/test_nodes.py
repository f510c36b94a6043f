"""Registration by the node's own key, re-registration, forgeries, and reading nodes back with filters."""

import json

import httpx
import nacl.signing
import pytest
from pydantic import ValidationError

from tests.support.answers import detail
from zeronode.api.ledger import Capacity, NodeRegistration
from zeronode.protocol import keys
from zeronode.protocol.signed_requests import (
    KEY_HEADER,
    LEDGER,
    SIGNATURE_HEADER,
    TIMESTAMP_HEADER,
    SignedRequestAuth,
)

from .conftest import REGISTRATION, registration


def test_a_node_registers_under_the_id_of_its_key(ledger, node_key):
    response = ledger.signed("POST", "/v1/nodes", node_key, REGISTRATION)
    assert response.status_code == 201, response.text
    node = response.json()
    assert node["node_id"] == keys.node_id(keys.public_key_text(node_key))
    assert node["public_key"] == keys.public_key_text(node_key)
    assert node["capacity"] == REGISTRATION["capacity"]
    assert (node["farm"], node["supervisor_url"], node["mycelium_address"]) == ("farm-a", "http://[4a1:2b3::7]:8300", "4a1:2b3::1")
    assert node["status"] == "offline" and node["last_report_at"] is None  # registered, not yet heard from


def test_re_registration_updates_the_record_and_never_duplicates_it(ledger, node_key, registered):
    first = ledger.get(f"/v1/nodes/{registered}").json()
    ledger.clock.advance(5)
    moved = registration(
        mycelium_address="5b2::9", supervisor_url="http://[5b2::7]:8300", capacity={"vcpus": 16, "memory": 32 << 30, "disk": 1 << 40}
    )
    response = ledger.signed("POST", "/v1/nodes", node_key, moved)
    assert response.status_code == 200, response.text
    listed = ledger.get("/v1/nodes").json()
    assert [node["node_id"] for node in listed] == [registered]
    assert listed[0]["capacity"] == moved["capacity"] and listed[0]["mycelium_address"] == "5b2::9"
    assert listed[0]["supervisor_url"] == "http://[5b2::7]:8300"
    assert listed[0]["registered_at"] == first["registered_at"] < listed[0]["updated_at"]


def test_a_registration_signed_by_another_key_is_refused(ledger, node_key, registered):
    forger = nacl.signing.SigningKey.generate()
    body = json.dumps(registration(supervisor_url="http://[4a1:2b3::66]:8300")).encode()

    # The forger claims the node's key but can only sign with their own.
    def forged(request):
        request = next(SignedRequestAuth(forger, LEDGER).auth_flow(request))
        request.headers[KEY_HEADER] = keys.public_key_text(node_key)
        return request

    response = httpx.post(f"{ledger.url}/v1/nodes", content=body, auth=forged)
    assert response.status_code == 401
    assert response.json()["reason"] == "bad_signature"
    # Signed properly by the forger, it registers the forger's own node, never touching the victim's.
    assert ledger.signed("POST", "/v1/nodes", forger, body).json()["node_id"] != registered
    assert ledger.get(f"/v1/nodes/{registered}").json()["supervisor_url"] == REGISTRATION["supervisor_url"]


def test_unsigned_stale_and_tampered_writes_are_refused(ledger, node_key):
    unsigned = httpx.post(f"{ledger.url}/v1/nodes", json=REGISTRATION)
    assert (unsigned.status_code, unsigned.json()["reason"]) == (401, "bad_signature")
    ledger.clock.advance(-3600)  # the client signs an hour ago, by the ledger's clock
    old = ledger.signed("POST", "/v1/nodes", node_key, REGISTRATION)
    ledger.clock.advance(3600)
    response = httpx.post(f"{ledger.url}/v1/nodes", content=old.request.content, headers=dict(old.request.headers))
    assert (response.status_code, response.json()["reason"]) == (401, "expired")
    signed = ledger.signed("POST", "/v1/nodes", node_key, REGISTRATION).request.headers
    tampered = {name: signed[name] for name in (KEY_HEADER, TIMESTAMP_HEADER, SIGNATURE_HEADER)}
    response = httpx.post(f"{ledger.url}/v1/nodes", content=json.dumps(registration(farm="other")), headers=tampered)
    assert (response.status_code, response.json()["reason"]) == (401, "bad_signature")


BAD_REGISTRATIONS = [
    (b"{not json", 400, "invalid_json"),
    (registration(capacity={"vcpus": "8", "memory": 1, "disk": 1}), 422, "malformed"),  # strict: "8" is not 8
    (registration(capacity={"vcpus": 0, "memory": 1, "disk": 1}), 422, "malformed"),
    (registration(farm="no spaces allowed"), 422, "malformed"),
    (registration(mycelium_address="10.0.0.1"), 422, "malformed"),
    (registration(supervisor_url="ftp://x"), 422, "forbidden_destination"),
    (registration(supervisor_url="http://10.0.0.7:8300"), 422, "forbidden_destination"),  # not in its subnet
    ({**REGISTRATION, "is_admin": True}, 422, "malformed"),
    ({k: v for k, v in REGISTRATION.items() if k != "capacity"}, 422, "malformed"),
    (registration(capabilities={"hypervisor": {"driver": "Cloud Hypervisor"}}), 422, "malformed"),
    (registration(capabilities={"storage": {"driver": "btrfs", "simulated": "no"}}), 422, "malformed"),
    (registration(capabilities={"gpu": {"driver": "nvidia"}}), 422, "malformed"),
]


def test_bad_registrations_are_4xx_with_a_reason(ledger, node_key):
    for body, status, reason in BAD_REGISTRATIONS:
        response = ledger.signed("POST", "/v1/nodes", node_key, body if isinstance(body, bytes) else json.dumps(body).encode())
        assert response.status_code == status, (body, response.text)
        assert response.json()["reason"] == reason, body
    assert ledger.get("/v1/nodes").json() == []


def test_nodes_are_filtered_by_status_farm_and_capacity_and_paged(ledger):
    def add(farm: str, vcpus: int, memory_gib: int, disk_gib: int, report: bool) -> str:
        key = nacl.signing.SigningKey.generate()
        body = registration(farm=farm, capacity={"vcpus": vcpus, "memory": memory_gib << 30, "disk": disk_gib << 30})
        node_id = ledger.signed("POST", "/v1/nodes", key, body).json()["node_id"]
        if report:
            assert ledger.report(key, uptime=100).status_code == 200
        return node_id

    small = add("farm-a", 2, 4, 100, report=True)
    big = add("farm-a", 32, 128, 2000, report=False)
    other = add("farm-b", 16, 64, 1000, report=True)

    def ids(**params) -> set[str]:
        response = ledger.get("/v1/nodes", params=params)
        assert response.status_code == 200, response.text
        return {node["node_id"] for node in response.json()}

    assert ids() == {small, big, other}
    assert ids(status="online") == {small, other}
    assert ids(status="offline") == {big}
    assert ids(farm="farm-a") == {small, big}
    assert ids(min_vcpus=16) == {big, other}
    assert ids(min_memory=100 << 30) == {big}
    assert ids(min_disk=1000 << 30, status="online") == {other}
    first, second, third = sorted([small, big, other])
    assert [n["node_id"] for n in ledger.get("/v1/nodes", params={"limit": 2}).json()] == [first, second]
    assert [n["node_id"] for n in ledger.get("/v1/nodes", params={"after": second}).json()] == [third]
    for bad in ({"status": "sleeping"}, {"limit": 0}, {"limit": 5000}, {"min_vcpus": -1}, {"farm": "a b"}):
        response = ledger.get("/v1/nodes", params=bad)
        assert (response.status_code, response.json()["reason"]) == (422, "malformed"), bad


def test_unknown_and_malformed_node_ids(ledger):
    unknown = ledger.get(f"/v1/nodes/{'a' * 26}")
    assert (unknown.status_code, unknown.json()["reason"]) == (404, "unknown_node")
    malformed = ledger.get("/v1/nodes/NOT-AN-ID")
    assert (malformed.status_code, malformed.json()["reason"]) == (422, "malformed")


def test_the_client_registers_and_reads_back(ledger, node_key):
    client = ledger.client(node_key)
    capacity = Capacity(vcpus=4, memory=8 << 30, disk=100 << 30)
    node = client.register(NodeRegistration(farm="farm-c", capacity=capacity, version="9.9"))
    assert node.node_id == client.node_id
    assert client.node(node.node_id).capacity == capacity
    assert [n.node_id for n in client.nodes(farm="farm-c")] == [node.node_id]
    with pytest.raises(ValidationError):  # the filters are checked before anything is sent
        client.nodes(limit=0)
    # The ledger checks them too, whoever sends them.
    refused = ledger.get("/v1/nodes", params={"limit": 0, "colour": "blue"})
    assert (refused.status_code, refused.json()["reason"]) == (422, "malformed")
    assert "colour" in refused.json()["message"]


def test_nodes_by_ids_in_one_request(ledger):
    keys_ = [nacl.signing.SigningKey.generate() for _ in range(3)]
    ids = []
    for key in keys_:
        response = ledger.signed("POST", "/v1/nodes", key, REGISTRATION)
        assert response.status_code == 201, response.text
        ids.append(response.json()["node_id"])
    unknown = "a" * 26
    found = ledger.get("/v1/nodes", params={"ids": ",".join([ids[0], ids[2], unknown]), "limit": 3}).json()
    assert sorted(node["node_id"] for node in found) == sorted([ids[0], ids[2]])
    bad = ledger.get("/v1/nodes", params={"ids": "not-a-node-id"})
    assert bad.status_code == 422


FORBIDDEN_DESTINATIONS = [
    "http://127.0.0.1:8300",  # loopback: the ledger's machine, or coord's
    "http://[::1]:8300",
    "http://[::ffff:127.0.0.1]:8300",
    "http://[4a1:2b3::7]:8300/admin/x",  # a path: coord adds /v1/jobs to the root
    "http://ops@[4a1:2b3::7]:8300",
    "http://node.example:8300",  # a name could resolve anywhere later
    "file:///etc/passwd",
    "http://[4a1:2b3::7]:8300/?to=elsewhere",
    "http://[4a1:2b3::7]:8300/#x",
    "http://[4a1:2b4::7]:8300",  # a mycelium address, but another node's /64
    "http://169.254.169.254",
]


def test_with_the_defaults_a_supervisor_url_must_be_in_the_nodes_mycelium_subnet(make_ledger, node_key):
    ledger = make_ledger(supervisor_networks=[])
    for url in FORBIDDEN_DESTINATIONS:
        response = ledger.signed("POST", "/v1/nodes", node_key, registration(supervisor_url=url))
        assert detail(response) == (422, "forbidden_destination"), url
    without_address = registration(supervisor_url="http://[4a1:2b3::7]:8300", mycelium_address=None)
    assert detail(ledger.signed("POST", "/v1/nodes", node_key, without_address)) == (422, "forbidden_destination")
    assert ledger.get("/v1/nodes").json() == []
    # Inside its own /64, stored as coord will use it: no trailing slash, the address's canonical spelling.
    accepted = ledger.signed("POST", "/v1/nodes", node_key, registration(supervisor_url="http://[04A1:2B3:0::7]:8300/"))
    assert accepted.status_code == 201, accepted.text
    assert accepted.json()["supervisor_url"] == "http://[4a1:2b3::7]:8300"
    # A forbidden one later changes nothing; none at all is allowed (a node without a supervisor).
    assert detail(ledger.signed("POST", "/v1/nodes", node_key, registration(supervisor_url="http://127.0.0.1:1"))) == (
        422, "forbidden_destination",
    )
    assert ledger.get("/v1/nodes").json()[0]["supervisor_url"] == "http://[4a1:2b3::7]:8300"
    bare = ledger.signed("POST", "/v1/nodes", node_key, registration(supervisor_url=None))
    assert (bare.status_code, bare.json()["supervisor_url"]) == (200, None)


def test_supervisor_networks_allow_more(make_ledger, node_key):
    ledger = make_ledger(supervisor_networks=["127.0.0.0/8", "10.0.0.0/24"])
    for url in ("http://127.0.0.1:8300", "http://10.0.0.7:8300", "http://[::ffff:127.0.0.2]:8300"):
        assert ledger.signed("POST", "/v1/nodes", node_key, registration(supervisor_url=url)).status_code in (200, 201), url
    for url in ("http://10.0.1.7:8300", "http://127.0.0.1:8300/admin"):
        assert detail(ledger.signed("POST", "/v1/nodes", node_key, registration(supervisor_url=url))) == (
            422, "forbidden_destination",
        ), url
