"""Releases and rollouts in the ledger (ledger.releases, ledger.rollouts), on SQLite and PostgreSQL: publishing
under the release policy, the artifact's upload and download, and what each node is told to run as a
rollout goes through its canary, halts, or is rolled back."""

from __future__ import annotations

import hashlib
import time

import nacl.signing
import pytest

from tests.support.answers import detail
from zeronode.protocol import keys
from zeronode.release.manifest import sign

from .conftest import registration

ARTIFACT = b"not really a tar, but bytes with a digest " * 1000
SHA256 = hashlib.sha256(ARTIFACT).hexdigest()


@pytest.fixture
def release_keys() -> list[nacl.signing.SigningKey]:
    return [nacl.signing.SigningKey.generate() for _ in range(3)]


@pytest.fixture
def ledger(make_ledger, release_keys):
    return make_ledger(release_keys=[keys.public_key_text(key) for key in release_keys], release_threshold=2)


def release(version: str, signers, *, sha256: str = SHA256, size: int = len(ARTIFACT), url: str | None = None) -> dict:
    body = {"version": version, "sha256": sha256, "size": size,
            "signatures": [sign(key, version, sha256, size).model_dump() for key in signers]}
    return body | ({"url": url} if url else {})


def publish(ledger, version: str, release_keys) -> None:
    answer = ledger.signed("POST", "/v1/releases", ledger.admin, release(version, release_keys[:2]))
    assert answer.status_code == 201, answer.text
    assert ledger.http.put(f"/v1/releases/{version}/artifact", content=ARTIFACT).status_code == 200


def register(ledger, farm: str) -> nacl.signing.SigningKey:
    key = nacl.signing.SigningKey.generate()
    assert ledger.signed("POST", "/v1/nodes", key, registration(farm=farm, supervisor_url=None)).status_code == 201
    return key


def report(ledger, key, version: str = "0.1.0", update: dict | None = None) -> dict:
    """The node's report (with its running version and last update); the ledger's answer."""
    node_id = keys.node_id(keys.public_key_text(key))
    ledger.clock.advance(1)
    body = {"uptime": int(ledger.clock() - 1_000_000), "timestamp": int(ledger.clock()), "version": version}
    answer = ledger.signed("POST", f"/v1/nodes/{node_id}/uptime", key, body | ({"update": update} if update else {}))
    assert answer.status_code == 200, answer.text
    return answer.json()


def told(ledger, key, version: str = "0.1.0", update: dict | None = None) -> str | None:
    answer = report(ledger, key, version, update)
    return answer["release"]["version"] if "release" in answer else None


def change(ledger, channel: str, **fields) -> dict:
    answer = ledger.signed("POST", f"/v1/channels/{channel}", ledger.admin, {"sequence": time.time_ns() // 1000, **fields})
    assert answer.status_code == 200, answer.text
    return answer.json()


def test_a_release_needs_the_threshold_of_release_keys_and_an_admin(ledger, release_keys):
    one = ledger.signed("POST", "/v1/releases", ledger.admin, release("1.0.0", release_keys[:1]))
    assert detail(one) == (422, "release_signatures")
    stranger = nacl.signing.SigningKey.generate()
    twice = ledger.signed("POST", "/v1/releases", ledger.admin, release("1.0.0", [release_keys[0], stranger]))
    assert twice.status_code == 422  # a key the ledger does not trust counts for nothing
    not_admin = ledger.signed("POST", "/v1/releases", stranger, release("1.0.0", release_keys[1:]))
    assert detail(not_admin) == (403, "not_admin")
    forged = release("1.0.0", release_keys[1:]) | {"size": len(ARTIFACT) + 1}  # signatures over another size
    assert ledger.signed("POST", "/v1/releases", ledger.admin, forged).status_code == 422
    elsewhere = ledger.signed("POST", "/v1/releases", ledger.admin, release("1.0.0", release_keys[1:], url="http://169.254.169.254/x"))
    assert detail(elsewhere) == (422, "forbidden_destination")

    assert ledger.signed("POST", "/v1/releases", ledger.admin, release("1.0.0", release_keys[1:])).status_code == 201
    assert ledger.signed("POST", "/v1/releases", ledger.admin, release("1.0.0", release_keys[:2])).status_code == 200
    other = ledger.signed("POST", "/v1/releases", ledger.admin, release("1.0.0", release_keys[1:], sha256="0" * 64))
    assert detail(other) == (409, "release_exists")


def test_the_artifact_is_kept_only_with_its_published_digest_and_served_in_ranges(ledger, release_keys):
    assert ledger.signed("POST", "/v1/releases", ledger.admin, release("1.0.0", release_keys[:2])).status_code == 201
    assert ledger.get("/v1/releases/1.0.0/artifact").status_code == 404  # not uploaded yet
    bad = ledger.http.put("/v1/releases/1.0.0/artifact", content=ARTIFACT[:-1] + b"!")
    assert detail(bad) == (422, "digest_mismatch")
    longer = ledger.http.put("/v1/releases/1.0.0/artifact", content=ARTIFACT + b"!")
    assert longer.status_code == 422
    assert ledger.get("/v1/releases/1.0.0").json()["hosted"] is False
    assert list(ledger.settings.artifacts.iterdir()) == []  # nothing of the bad uploads is kept
    assert ledger.http.put("/v1/releases/1.0.0/artifact", content=ARTIFACT).status_code == 200
    whole = ledger.get("/v1/releases/1.0.0/artifact")
    assert whole.status_code == 200 and whole.content == ARTIFACT
    rest = ledger.get("/v1/releases/1.0.0/artifact", headers={"range": "bytes=100-"})
    assert rest.status_code == 206 and rest.content == ARTIFACT[100:]  # a download resumes
    assert ledger.get("/v1/releases/..%2f..%2fetc/artifact").status_code in (404, 422)


def test_a_staged_rollout_gives_the_canary_the_release_then_everyone_after_the_window(ledger, release_keys):
    publish(ledger, "1.0.0", release_keys)
    publish(ledger, "1.1.0", release_keys)
    a, b, c = register(ledger, "farm-a"), register(ledger, "farm-a"), register(ledger, "farm-b")
    assert told(ledger, a) is None  # no channel yet
    change(ledger, "stable", action="promote", version="1.0.0")
    assert [told(ledger, node) for node in (a, b, c)] == ["1.0.0"] * 3
    answer = report(ledger, a, "1.0.0")
    assert answer["release"]["url"] == "/v1/releases/1.0.0/artifact" and answer["release"]["rollback"] is False

    channel = change(ledger, "stable", action="promote", version="1.1.0", canary={"farms": ["farm-b"]}, window=60)
    assert channel["stage"] == "canary" and channel["previous"] == "1.0.0"
    assert [told(ledger, a, "1.0.0"), told(ledger, b, "1.0.0"), told(ledger, c, "1.0.0")] == ["1.0.0", "1.0.0", "1.1.0"]
    success = {"version": "1.1.0", "result": "succeeded", "at": int(ledger.clock()) + 1}
    assert told(ledger, c, "1.1.0", success) == "1.1.0"
    assert ledger.get("/v1/channels/stable").json()["stage"] == "canary"  # the window is not over
    assert told(ledger, a, "1.0.0") == "1.0.0"
    ledger.clock.advance(61)
    status = ledger.get("/v1/channels/stable").json()
    assert status["stage"] == "all"
    assert status["progress"]["versions"] == {"1.0.0": 2, "1.1.0": 1} and status["progress"]["succeeded"] == 1
    assert status["progress"]["updating"] == 2 and status["progress"]["target"] == 3
    assert told(ledger, a, "1.0.0") == "1.1.0" and told(ledger, b, "1.0.0") == "1.1.0"

    node = ledger.get(f"/v1/nodes/{keys.node_id(keys.public_key_text(c))}").json()
    assert node["version"] == "1.1.0" and node["update"]["result"] == "succeeded"


def test_a_failed_canary_halts_the_rollout_and_a_rollback_sends_everyone_back(ledger, release_keys):
    for version in ("1.0.0", "1.1.0"):
        publish(ledger, version, release_keys)
    canary, other = register(ledger, "farm-a"), register(ledger, "farm-a")
    change(ledger, "stable", action="promote", version="1.0.0")
    canary_id = keys.node_id(keys.public_key_text(canary))
    change(ledger, "stable", action="promote", version="1.1.0", canary={"nodes": [canary_id]}, window=0)
    assert told(ledger, canary, "1.0.0") == "1.1.0"
    failure = {"version": "1.1.0", "result": "rolled_back", "reason": "supervisor: /health answered 503", "at": int(ledger.clock())}
    assert told(ledger, canary, "1.0.0", failure) is None  # halted: held where it is
    status = ledger.get("/v1/channels/stable").json()
    assert status["paused"] and status["stage"] == "canary" and canary_id in status["halted"] and "503" in status["halted"]
    assert status["progress"]["failed"] == status["progress"]["rolled_back"] == 1 and canary_id in status["progress"]["failures"]
    ledger.clock.advance(5)
    assert told(ledger, other, "1.0.0") is None and ledger.get("/v1/channels/stable").json()["stage"] == "canary"

    rolled = change(ledger, "stable", action="rollback")
    assert rolled["stage"] == "rolled_back"
    answer = report(ledger, other, "1.1.0")
    assert answer["release"]["version"] == "1.0.0" and answer["release"]["rollback"] is True
    assert change(ledger, "stable", action="resume")["paused"] is False


def test_follows_pin_a_version_or_choose_a_channel_for_a_farm_or_a_node(ledger, release_keys):
    for version in ("1.0.0", "2.0.0"):
        publish(ledger, version, release_keys)
    a, b = register(ledger, "farm-a"), register(ledger, "farm-a")
    change(ledger, "stable", action="promote", version="1.0.0")
    change(ledger, "beta", action="promote", version="2.0.0")
    sequence = time.time_ns() // 1000
    assert ledger.signed("POST", "/v1/follows", ledger.admin, {"farm": "farm-a", "channel": "beta", "sequence": sequence}).status_code == 200
    assert told(ledger, a) == "2.0.0" and told(ledger, b) == "2.0.0"
    node_b = keys.node_id(keys.public_key_text(b))
    pin = {"node": node_b, "version": "1.0.0", "sequence": sequence + 1}
    assert ledger.signed("POST", "/v1/follows", ledger.admin, pin).status_code == 200
    answer = report(ledger, b, "2.0.0")
    assert answer["release"]["version"] == "1.0.0" and answer["release"]["channel"] == "pinned"
    replayed = ledger.signed("POST", "/v1/follows", ledger.admin, pin)
    assert replayed.status_code == 409  # a captured change cannot be played again
    unknown = ledger.signed("POST", "/v1/follows", ledger.admin, {"node": node_b, "version": "9.9.9", "sequence": sequence + 2})
    assert detail(unknown) == (404, "unknown_release")
    both = ledger.signed("POST", "/v1/follows", ledger.admin, {"farm": "farm-a", "node": node_b, "sequence": sequence + 3})
    assert both.status_code == 422
    missing = ledger.signed("POST", "/v1/channels/stable", ledger.admin, {"action": "promote", "version": "3.0.0", "sequence": sequence})
    assert detail(missing) == (404, "unknown_release")
