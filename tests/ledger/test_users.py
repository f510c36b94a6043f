"""Users and rights: admins from the settings bootstrap the rest; supervisors and coord read who may deploy where."""

import concurrent.futures
import itertools
import json

import httpx
import nacl.signing
import pytest

from tests.support.answers import detail
from zeronode.api.errors import Conflict, NotFound, Refused
from zeronode.api.ledger import NewUser
from zeronode.protocol import keys
from zeronode.protocol.signed_requests import LEDGER, SignedRequestAuth

from .conftest import REGISTRATION, registration


def public(key: nacl.signing.SigningKey) -> str:
    return keys.public_key_text(key)


SEQUENCES = itertools.count(1)


def user(key: nacl.signing.SigningKey, name: str = "dana", **rights) -> dict:
    """A POST /v1/users body, with a sequence greater than every one before it unless `rights` has one."""
    return {"public_key": public(key), "name": name, "sequence": next(SEQUENCES), **rights}


def test_an_admin_from_the_settings_creates_and_updates_users(ledger):
    dana = nacl.signing.SigningKey.generate()
    created = ledger.signed("POST", "/v1/users", ledger.admin, user(dana, roles=["deployer"], farms=["farm-a"]))
    assert created.status_code == 201, created.text
    assert created.json()["source"] == "ledger"
    updated = ledger.signed("POST", "/v1/users", ledger.admin, user(dana, "dana b", roles=["deployer", "deployer"], farms=[]))
    assert updated.status_code == 200
    shown = ledger.get(f"/v1/users/{public(dana)}").json()
    assert (shown["name"], shown["roles"], shown["farms"]) == ("dana b", ["deployer"], [])
    assert shown["created_at"] <= shown["updated_at"]


def test_only_admins_manage_users(ledger):
    deployer, admin, stranger, newcomer = (nacl.signing.SigningKey.generate() for _ in range(4))
    assert ledger.signed("POST", "/v1/users", ledger.admin, user(deployer, roles=["deployer"])).status_code == 201
    for signer in (deployer, stranger):
        response = ledger.signed("POST", "/v1/users", signer, user(newcomer, roles=["admin"]))
        assert (response.status_code, response.json()["reason"]) == (403, "not_admin")
        # Nobody raises themself either.
        assert ledger.signed("POST", "/v1/users", signer, user(signer, roles=["admin"])).status_code == 403
    assert ledger.get(f"/v1/users/{public(newcomer)}").status_code == 404
    assert ledger.get(f"/v1/users/{public(deployer)}").json()["roles"] == ["deployer"]
    # An admin kept in the ledger may manage users as the settings' admins do.
    assert ledger.signed("POST", "/v1/users", ledger.admin, user(admin, roles=["admin"])).status_code == 201
    assert ledger.signed("POST", "/v1/users", admin, user(newcomer, roles=["deployer"])).status_code == 201


def test_rights_say_who_may_deploy_on_which_node(ledger, node_key, registered):
    other_farm_node = nacl.signing.SigningKey.generate()
    elsewhere = ledger.signed("POST", "/v1/nodes", other_farm_node, registration(farm="farm-b")).json()["node_id"]
    by_farm, by_node, operator, admin_only = (nacl.signing.SigningKey.generate() for _ in range(4))
    for key, rights in (
        (by_farm, {"roles": ["deployer"], "farms": [REGISTRATION["farm"]]}),
        (by_node, {"roles": ["deployer"], "nodes": [elsewhere]}),
        (operator, {"roles": ["operator"], "farms": [REGISTRATION["farm"]]}),
        (admin_only, {"roles": ["admin"], "farms": [REGISTRATION["farm"]]}),
    ):
        assert ledger.signed("POST", "/v1/users", ledger.admin, user(key, **rights)).status_code == 201

    def may_deploy(key, node_id) -> bool:
        response = ledger.get(f"/v1/users/{public(key)}", params={"node": node_id})
        assert response.status_code == 200, response.text
        return response.json()["may_deploy"]

    assert may_deploy(by_farm, registered) and not may_deploy(by_farm, elsewhere)
    assert may_deploy(by_node, elsewhere) and not may_deploy(by_node, registered)
    assert may_deploy(operator, registered) and not may_deploy(operator, elsewhere)  # in scope only
    assert not may_deploy(admin_only, registered)  # managing the ledger grants no deployment
    assert not may_deploy(ledger.admin, registered)  # nor does being an admin of the settings
    assert not may_deploy(by_farm, "a" * 26)  # an unknown node is in no farm
    assert ledger.get(f"/v1/users/{public(by_farm)}").json()["may_deploy"] is None


def test_a_grant_replayed_after_a_revocation_is_stale(ledger, registered):
    dana = nacl.signing.SigningKey.generate()
    grant = ledger.signed("POST", "/v1/users", ledger.admin, user(dana, roles=["deployer"], farms=["farm-a"], sequence=100))
    assert grant.status_code == 201 and grant.json()["sequence"] == 100
    revoked = ledger.signed("POST", "/v1/users", ledger.admin, user(dana, roles=[], farms=["farm-a"], sequence=101))
    assert revoked.status_code == 200, revoked.text
    # The captured grant, sent again as it was signed (within the signed-request window).
    replayed = ledger.http.post("/v1/users", content=grant.request.content, headers=dict(grant.request.headers))
    assert detail(replayed) == (409, "stale_sequence")
    assert "sequence 101" in replayed.json()["message"]
    for same_or_older in (101, 50):
        again = ledger.signed("POST", "/v1/users", ledger.admin, user(dana, roles=["deployer"], sequence=same_or_older))
        assert detail(again) == (409, "stale_sequence")
    shown = ledger.get(f"/v1/users/{public(dana)}", params={"node": registered}).json()
    assert (shown["roles"], shown["sequence"], shown["may_deploy"]) == ([], 101, False)
    # A newer grant restores them.
    regrant = ledger.signed("POST", "/v1/users", ledger.admin, user(dana, roles=["deployer"], farms=["farm-a"], sequence=102))
    assert regrant.status_code == 200
    assert ledger.get(f"/v1/users/{public(dana)}", params={"node": registered}).json()["may_deploy"] is True


def test_concurrent_grants_for_a_new_user_apply_in_sequence_order(ledger):
    dana = nacl.signing.SigningKey.generate()

    def grant(sequence: int) -> int:
        body = json.dumps(user(dana, roles=["deployer"], nodes=[], farms=[f"farm-{sequence}"], sequence=sequence)).encode()
        with httpx.Client(base_url=ledger.url, timeout=30) as http:
            return http.post("/v1/users", content=body, auth=SignedRequestAuth(ledger.admin, LEDGER, clock=ledger.clock)).status_code

    with concurrent.futures.ThreadPoolExecutor(8) as pool:
        statuses = dict(zip(range(1, 9), pool.map(grant, range(1, 9)), strict=True))
    assert set(statuses.values()) <= {200, 201, 409}, statuses  # never a 5xx: one creates it, the others follow
    assert list(statuses.values()).count(201) == 1
    latest = max(sequence for sequence, status in statuses.items() if status != 409)
    shown = ledger.get(f"/v1/users/{public(dana)}").json()
    assert (shown["sequence"], shown["farms"]) == (latest, [f"farm-{latest}"])


def test_a_sequence_is_required_and_bounded(ledger):
    dana = nacl.signing.SigningKey.generate()
    body = user(dana, roles=["deployer"])
    del body["sequence"]
    for bad in (body, user(dana, sequence=0), user(dana, sequence=2**53 + 1), user(dana, sequence="7"), user(dana, sequence=1.5)):
        assert detail(ledger.signed("POST", "/v1/users", ledger.admin, bad)) == (422, "malformed"), bad
    assert ledger.signed("POST", "/v1/users", ledger.admin, user(dana, sequence=2**53)).status_code == 201
    assert ledger.get(f"/v1/users/{public(ledger.admin)}").json()["sequence"] == 0  # an admin from the settings


def test_config_admins_unknown_and_malformed_users(ledger):
    shown = ledger.get(f"/v1/users/{public(ledger.admin)}").json()
    assert (shown["source"], shown["roles"]) == ("config", ["admin"])
    unknown = ledger.get(f"/v1/users/{public(nacl.signing.SigningKey.generate())}")
    assert (unknown.status_code, unknown.json()["reason"]) == (404, "unknown_user")
    malformed = ledger.get("/v1/users/not-a-key")
    assert (malformed.status_code, malformed.json()["reason"]) == (422, "malformed_key")
    dana = nacl.signing.SigningKey.generate()
    for bad in (
        user(dana, roles=["root"]),
        user(dana, nodes=["NOT-A-NODE-ID"]),
        user(dana, name=""),
        {**user(dana), "public_key": public(dana)[:-1] + "B"},  # not the canonical spelling of any key
    ):
        response = ledger.signed("POST", "/v1/users", ledger.admin, bad)
        assert (response.status_code, response.json()["reason"]) == (422, "malformed"), bad


def key_starting_with(prefix: str) -> nacl.signing.SigningKey:
    while not public(key := nacl.signing.SigningKey.generate()).startswith(prefix):
        pass
    return key


def test_the_client_manages_users(ledger):
    dana = nacl.signing.SigningKey.generate()
    client = ledger.client(ledger.admin)
    assert client.create_user(NewUser(public_key=public(dana), name="dana", roles=["admin"], sequence=1)).roles == ["admin"]
    assert client.user(public(dana)).roles == ["admin"]
    with pytest.raises(Conflict) as stale:
        client.create_user(NewUser(public_key=public(dana), name="dana", roles=["deployer"], sequence=1))
    assert stale.value.reason == "stale_sequence"
    with pytest.raises(NotFound):
        client.user(public(nacl.signing.SigningKey.generate()))
    with pytest.raises(Refused) as refused_by_client:
        ledger.client(nacl.signing.SigningKey.generate()).create_user(NewUser(public_key=public(dana), name="x", sequence=9))
    assert refused_by_client.value.status == 403


def test_the_cli_manages_users(ledger, tmp_path, zn):
    admin_key = tmp_path / "admin.key"
    keys.save_private_key(ledger.admin, admin_key)
    dana = key_starting_with("-")  # which a command line must not take for an option
    added = zn("users", "add", "--public-key", public(dana), "--name", "dana", "--role", "deployer", "--farm", "farm-a",
               "--key", admin_key, "--ledger", ledger.url)
    assert added.returncode == 0, added.stderr
    assert json.loads(added.stdout)["farms"] == ["farm-a"]
    shown = zn("users", "show", "--public-key", public(dana), env={"ZERONODE_LEDGER_URL": ledger.url, "PATH": "/usr/bin:/bin"})
    assert json.loads(shown.stdout)["roles"] == ["deployer"]
    # A second change later carries a greater sequence (the CLI's signing time, in milliseconds).
    revoked = zn("users", "add", "--public-key", public(dana), "--name", "dana", "--key", admin_key, "--ledger", ledger.url)
    assert revoked.returncode == 0, revoked.stderr
    assert json.loads(revoked.stdout)["roles"] == []

    stranger_key = tmp_path / "stranger.key"
    keys.save_private_key(nacl.signing.SigningKey.generate(), stranger_key)
    refused = zn("users", "add", "--public-key", public(dana), "--name", "x", "--key", stranger_key, "--ledger", ledger.url)
    assert refused.returncode == 1 and "not_admin" in refused.stderr and "Traceback" not in refused.stderr
    bad_role = zn("users", "add", "--public-key", public(dana), "--name", "x", "--role", "root",
                  "--key", admin_key, "--ledger", ledger.url)
    assert bad_role.returncode == 1 and bad_role.stderr.startswith("error: roles.0:")
