"""POST /v1/jobs: every way an envelope is refused, with its status code; idempotency; reads."""

import json
import logging
import time
import zlib

import httpx
import nacl.signing
import pytest

import zeronode

from zeronode.api.rights import Grant, NodeRights, SignaturePolicy
from zeronode.node import rights as snapshots
from zeronode.protocol import keys
from zeronode.protocol.envelope import Selector, new_envelope
from zeronode.protocol.signed_requests import SignedRequestAuth
from zeronode.protocol import ticket
from rq.job import Job


def reason(response):
    return response.json()["reason"]


def test_accepted_envelope_is_queued(node):
    envelope = node.sign("40 + 2")
    response = node.post(envelope)
    assert response.status_code == 202
    assert response.json() == {"job_id": envelope.id, "status": "queued", "duplicate": False}
    job = node.job(envelope.id)
    assert (job.status, job.node, job.signer, job.attempts) == ("queued", node.node_id, envelope.signer, 0)
    assert node.supervisor.queue.count == 1


def test_same_envelope_twice_is_one_job(node):
    envelope = node.sign("1")
    assert node.post(envelope).status_code == 202
    again = node.post(envelope)
    assert again.status_code == 200
    assert again.json() == {"job_id": envelope.id, "status": "queued", "duplicate": True}
    assert node.supervisor.queue.count == 1


@pytest.mark.parametrize(
    ("body", "status", "expected_reason"),
    [
        (b"{not json", 400, "invalid_json"),
        (b"[1, 2]", 422, "malformed"),
        (json.dumps({"version": 2}).encode(), 422, "unsupported_version"),
    ],
)
def test_unparseable_envelopes(node, body, status, expected_reason):
    response = node.post(body)
    assert response.status_code == status
    assert reason(response) == expected_reason
    assert "message" in response.json()


def test_bad_signature_is_401(node):
    data = json.loads(node.sign("1").to_json())
    data["script"] = "2"
    response = node.post(json.dumps(data))
    assert (response.status_code, reason(response)) == (401, "bad_signature")


def test_expired_is_401(node):
    response = node.post(node.sign("1", ttl=60, now=time.time() - 3600))
    assert (response.status_code, reason(response)) == (401, "expired")


def test_oversize_script_is_413(node):
    response = node.post(node.sign("1;" * (150 * 1024)))
    assert (response.status_code, reason(response)) == (413, "too_large")


def test_other_node_is_403(node):
    envelope = node.sign("1").model_copy(update={"targets": ["some-other-node"], "signatures": []}).signed_by(node.client)
    response = node.post(envelope)
    assert (response.status_code, reason(response)) == (403, "wrong_node")


def test_unauthorised_signer_is_403(node):
    response = node.post(node.sign("1", key=node.stranger))
    assert (response.status_code, reason(response)) == (403, "not_authorized")


def test_allowlist_changes_apply_without_restart(node):
    assert node.post(node.sign("1", key=node.stranger)).status_code == 403
    with node.settings.authorized_keys_path.open("a") as file:
        file.write(f"{keys.public_key_text(node.stranger)}\n")
    assert node.post(node.sign("1", key=node.stranger)).status_code == 202


def test_reused_nonce_is_409(node):
    first = node.sign("1")
    assert node.post(first).status_code == 202
    # Same signer and nonce, another envelope (new id): a replay of the nonce.
    second = first.model_copy(update={"id": "00000000-0000-4000-8000-0000000000ab", "signatures": []}).signed_by(node.client)
    response = node.post(second)
    assert (response.status_code, reason(response)) == (409, "replayed")


def test_id_of_another_envelope_is_409(node):
    first = node.sign("1")
    assert node.post(first).status_code == 202
    thief = node.sign("2", key=node.admin).model_copy(update={"id": first.id, "signatures": []}).signed_by(node.admin)
    response = node.post(thief)
    assert (response.status_code, reason(response)) == (409, "id_in_use")
    assert node.job(first.id).signer == first.signer  # the first job is untouched


def test_compile_error_is_422_with_position_and_logged_with_its_reason(node, caplog):
    caplog.set_level(logging.INFO, logger="zeronode.supervisor")
    response = node.post(node.sign("let a = 1;\nlet b = a +;"))
    assert response.status_code == 422
    detail = response.json()
    assert (detail["reason"], detail["line"], detail["column"]) == ("compile_error", 2, 12)
    assert node.post(node.sign("1", key=node.stranger)).status_code == 403
    refused = [(record.reason, record.status) for record in caplog.records if record.getMessage() == "envelope refused"]
    assert refused == [("compile_error", 422), ("not_authorized", 403)]


def test_batch_submission_answers_each_envelope(node):
    good, bad = node.sign("1"), node.sign("1", key=node.stranger)
    response = node.http.post("/v1/jobs/batch", json=[json.loads(good.to_json()), json.loads(bad.to_json()), {"x": 1}])
    assert response.status_code == 200
    answers = response.json()
    assert answers[0] == {"status_code": 202, "job_id": good.id, "status": "queued", "duplicate": False}
    assert (answers[1]["status_code"], answers[1]["error"]["reason"]) == (403, "not_authorized")
    assert answers[2]["status_code"] == 422
    assert node.http.post("/v1/jobs/batch", content=b"nope").status_code == 400


def test_unknown_job_is_404(node):
    response = node.http.get("/v1/jobs/00000000-0000-4000-8000-000000000000")
    assert (response.status_code, reason(response)) == (404, "not_found")


def test_list_jobs_by_status(node):
    envelopes = [node.sign(str(i)) for i in range(3)]
    for envelope in envelopes:
        node.post(envelope)
    listed = node.http.get("/v1/jobs", params={"status": "queued"}).json()
    assert {job["id"] for job in listed} == {e.id for e in envelopes}
    assert node.http.get("/v1/jobs", params={"status": "finished"}).json() == []
    assert node.http.get("/v1/jobs", params={"status": "bogus"}).status_code == 422


def test_cancel_a_queued_job(node):
    envelope = node.sign("1")
    node.post(envelope)
    assert node.cancel(envelope.id, node.stranger).status_code == 404  # as for a job that is not there
    response = node.cancel(envelope.id, node.client)
    assert response.status_code == 200
    assert response.json()["status"] == "canceled"
    assert node.supervisor.queue.count == 0
    assert 0 < node.connection.ttl(f"rq:job:{envelope.id}") <= node.settings.result_ttl  # not kept forever
    again = node.cancel(envelope.id, node.client)  # idempotent
    assert (again.status_code, again.json()["status"]) == (200, "canceled")


def test_cancel_of_an_ended_job_changes_nothing(node):
    from runner.pool import run_runner

    envelope = node.sign("1")
    node.post(envelope)
    run_runner(node.settings, burst=True)
    response = node.cancel(envelope.id, node.client)
    assert (response.status_code, reason(response)) == (409, "already_ended")
    assert node.job(envelope.id).status == "finished"
    assert envelope.id in node.supervisor.queue.finished_job_registry.get_job_ids()


def test_admin_may_cancel_others_jobs(node):
    envelope = node.sign("1")
    node.post(envelope)
    assert node.cancel(envelope.id, node.admin).json()["status"] == "canceled"


def test_cancel_must_be_signed(node):
    envelope = node.sign("1")
    node.post(envelope)
    response = node.http.post(f"/v1/jobs/{envelope.id}/cancel", auth=None)  # without the client's default signer
    assert (response.status_code, reason(response)) == (401, "bad_signature")


def test_health_and_metrics(node):
    health = node.http.get("/health")
    assert health.status_code == 200
    # No ledger rights yet; the tests' Redis is append-only, as a node's must be.
    assert health.json() == {"status": "ok", "node": node.node_id, "version": zeronode.__version__,
                             "queue_persistence": "aof", "rights": "local",
                             "runners": {"registered": 0, "running": 0, "queued": 0}}  # no runner in this test
    node.post(node.sign("1"))
    node.post(node.sign("1", key=node.stranger))
    node.post(b"{")
    metrics = node.http.get("/metrics").text
    assert "zeronode_supervisor_jobs_accepted_total 1.0" in metrics
    assert 'zeronode_supervisor_jobs_refused_total{reason="not_authorized"} 1.0' in metrics
    assert 'zeronode_supervisor_jobs_refused_total{reason="invalid_json"} 1.0' in metrics
    assert "zeronode_supervisor_queued_jobs 1.0" in metrics
    assert "zeronode_supervisor_verify_duration_seconds_count 1.0" in metrics


def test_health_is_503_without_redis(node):
    node.supervisor.connection = type(node.connection)(unix_socket_path="/nonexistent/redis.sock")
    response = node.http.get("/health")
    assert response.status_code == 503


# -- reads need a key: a job is its signer's and the node admins' --------------------


def test_reads_without_a_signature_are_401(node):
    envelope = node.sign("1")
    node.post(envelope)
    with httpx.Client(base_url=str(node.http.base_url), timeout=10) as anonymous:
        for path in (f"/v1/jobs/{envelope.id}", "/v1/jobs"):
            response = anonymous.get(path)
            assert (response.status_code, reason(response)) == (401, "bad_signature")
        # Health and metrics stay open, and say nothing of jobs.
        assert anonymous.get("/health").status_code == 200
        assert envelope.id not in anonymous.get("/metrics").text


def test_a_job_is_readable_by_its_signer_and_admins_only(node):
    mine, theirs = node.sign('print("secret of the client")'), node.sign("2", key=node.admin)
    node.post(mine)
    node.post(theirs)
    as_client = SignedRequestAuth(node.client, node.node_id)
    assert node.http.get(f"/v1/jobs/{mine.id}", auth=as_client).status_code == 200
    # Another tenant's job looks like no job at all.
    response = node.http.get(f"/v1/jobs/{theirs.id}", auth=as_client)
    assert (response.status_code, reason(response)) == (404, "not_found")
    response = node.http.get(f"/v1/jobs/{mine.id}", auth=SignedRequestAuth(node.stranger, node.node_id))
    assert (response.status_code, reason(response)) == (404, "not_found")
    # The list shows a deployer its own jobs; the node's admin sees every job.
    assert [job["id"] for job in node.http.get("/v1/jobs", auth=as_client).json()] == [mine.id]
    assert {job["id"] for job in node.http.get("/v1/jobs").json()} == {mine.id, theirs.id}
    assert node.http.get(f"/v1/jobs/{mine.id}").status_code == 200


def test_a_read_or_cancel_signed_for_another_node_is_refused(node):
    envelope = node.sign("1")
    node.post(envelope)
    elsewhere = keys.node_id(keys.public_key_text(nacl.signing.SigningKey.generate()))
    for response in (
        node.http.get(f"/v1/jobs/{envelope.id}", auth=SignedRequestAuth(node.admin, elsewhere)),
        node.http.post(f"/v1/jobs/{envelope.id}/cancel", auth=SignedRequestAuth(node.admin, elsewhere)),
    ):
        assert (response.status_code, reason(response)) == (401, "wrong_audience")
    assert node.job(envelope.id).status == "queued"


def test_rights_from_the_ledger_snapshot_let_a_deployer_in_and_revoke_it(node):
    """The node's copy of its ledger rights (what the identity manager saves) counts from the next envelope."""
    newcomer = nacl.signing.SigningKey.generate()
    assert reason(node.post(node.sign("1", key=newcomer))) == "not_authorized"
    save_rights(node, {keys.public_key_text(newcomer): ["deployer"]})
    assert node.post(node.sign("1", key=newcomer)).status_code == 202
    save_rights(node, {})
    assert reason(node.post(node.sign("1", key=newcomer))) == "not_authorized"
    assert node.http.get("/health").json()["rights"] == "ledger"
    node.settings.rights_path.write_text("not a snapshot")  # or one the supervisor's user may not read
    assert node.http.get("/health").json()["rights"] == "unreadable"
    assert reason(node.post(node.sign("1", key=newcomer))) == "not_authorized"  # the last good rights still hold


def test_a_policy_on_the_node_needs_its_cosigners(node):
    second, third = nacl.signing.SigningKey.generate(), nacl.signing.SigningKey.generate()
    policy = SignaturePolicy(scope="node", target=node.node_id, threshold=2,
                             keys=frozenset(keys.public_key_text(k) for k in (node.client, second, third)))
    save_rights(node, {}, [policy])
    alone = node.sign("1")
    response = node.post(alone)
    assert (response.status_code, reason(response)) == (403, "policy_not_met")
    assert node.post(node.sign("1").signed_by(third)).status_code == 202


def save_rights(node, grants: dict[str, list[str]], policies=()) -> None:
    rights = NodeRights(
        node_id=node.node_id, farm="default", generated_at=int(time.time()),
        grants=[Grant(public_key=key, roles=roles) for key, roles in grants.items()], policies=list(policies),
    )
    snapshots.save(node.settings.rights_path, snapshots.RightsSnapshot(rights, time.time()))


# -- strict JSON, and batches whose items stand alone (zeronode.protocol.strict_json) ----------


def test_a_duplicate_script_key_is_refused(node):
    envelope = node.sign("1")
    text = envelope.to_json()
    for raw in (text.replace('"script":"1"', '"script":"2","script":"1"'),  # the signed value last
                text.replace('"script":"1"', '"script":"1","script":"2"')):  # or first
        response = node.post(raw)
        assert (response.status_code, reason(response)) == (400, "invalid_json")
        assert "duplicate key 'script'" in response.json()["message"]
    assert node.supervisor.queue.count == 0
    assert node.post(text).status_code == 202  # the envelope itself, spelled once, is fine


@pytest.mark.parametrize("spelling", ["1.0", "1e0", "true"])
def test_a_version_that_is_not_the_integer_1_is_refused(node, spelling):
    raw = node.sign("1").to_json().replace('"version":1', f'"version":{spelling}')
    response = node.post(raw)
    assert (response.status_code, reason(response)) == (422, "unsupported_version")


@pytest.mark.parametrize(("field", "spelling"), [("timeout", "60.0"), ("retries", "0e0"), ("created_at", "{}.0")])
def test_integer_fields_given_as_floats_are_refused(node, field, spelling):
    envelope = node.sign("1")
    value = getattr(envelope, field)
    raw = envelope.to_json().replace(f'"{field}":{value}', f'"{field}":{spelling.format(value)}')
    response = node.post(raw)
    assert (response.status_code, reason(response)) == (422, "malformed")
    assert field in response.json()["message"]


def test_what_is_queued_is_the_envelope_verified_in_canonical_json(node):
    envelope = node.sign("40 + 2", env={"B": "2", "A": "1"})
    spelled_otherwise = json.dumps(dict(reversed(json.loads(envelope.to_json()).items())), indent=2)
    assert node.post(spelled_otherwise).status_code == 202
    payload = node.supervisor.queue.fetch_job(envelope.id).args[0]
    # The model's own dump, from the one parse that was verified: not the bytes that came in.
    assert payload.encode() == envelope.canonical_json()


def poisoned_batch(node) -> tuple[list[bytes], list[tuple[int, str | None]], list]:
    """Good envelopes between items that each carry one poison; the answers each should get."""
    goods = [node.sign(str(i)) for i in range(4)]
    duplicated = node.sign("1").to_json().replace('"script":"1"', '"script":"2","script":"1"')
    float_version = node.sign("1").to_json().replace('"version":1', '"version":1.0')
    items = [
        (goods[0].to_json().encode(), (202, None)),
        (b"[" * 100_000 + b"]" * 100_000, (400, "invalid_json")),  # nested 100,000 deep
        (duplicated.encode(), (400, "invalid_json")),
        (goods[1].to_json().encode(), (202, None)),
        (float_version.encode(), (422, "unsupported_version")),
        (node.sign("1;" * (150 * 1024)).to_json().encode(), (413, "too_large")),  # oversized
        (b'{"script": 1}', (422, "malformed")),  # wrong types
        (b'{"version": 1,}', (400, "invalid_json")),  # bad JSON inside the item
        (b'"a string"', (422, "malformed")),
        (b"  " + goods[2].to_json().encode() + b"\n", (202, None)),
        (b'{"x": ' + b'{"y": ' * 5000 + b"1" + b"}" * 5001, (400, "invalid_json")),
        (goods[3].to_json().encode(), (202, None)),
    ]
    return [raw for raw, _ in items], [answer for _, answer in items], goods


def test_a_batch_answers_each_item_alone_whatever_the_others_hold(node):
    raws, expected, goods = poisoned_batch(node)
    response = node.http.post("/v1/jobs/batch", content=b"[" + b",".join(raws) + b"]")
    assert response.status_code == 200, response.text
    answers = response.json()
    assert [(a["status_code"], a.get("error", {}).get("reason")) for a in answers] == expected
    assert [a["job_id"] for a in answers if a["status_code"] == 202] == [g.id for g in goods]
    assert node.supervisor.queue.count == len(goods)
    assert "duplicate key 'script'" in answers[2]["error"]["message"]
    # The connection was not reset: the same client goes on.
    assert node.http.get("/health").status_code == 200
    again = node.http.post("/v1/jobs/batch", content=b"[" + b",".join(raws) + b"]").json()
    assert [a["status_code"] for a in again] == [200 if code == 202 else code for code, _ in expected]


@pytest.mark.parametrize(
    ("body", "status", "expected_reason"),
    [
        (b"nope", 400, "invalid_json"),
        (b'{"envelopes": []}', 422, "malformed"),  # not an array
        (b"[1, 2", 400, "invalid_json"),  # never closed
        (b"[1,,2]", 400, "invalid_json"),
        (b"[" + b",".join([b"1"] * 1001) + b"]", 422, "too_many"),
        (b"[" + b" " * (8 * 1024 * 1024) + b"]", 413, "too_large"),
    ],
)
def test_a_batch_that_is_not_an_array_of_items_is_refused_whole(node, body, status, expected_reason):
    response = node.http.post("/v1/jobs/batch", content=body)
    assert (response.status_code, reason(response)) == (status, expected_reason)
    assert response.json()["message"]
    assert node.http.get("/health").status_code == 200


def placed_envelope(node, farms=()):
    """An envelope that names no node: coord chose this one by its selector, and says so in a ticket."""
    return new_envelope("job.node", [], node.client, selector=Selector(count=1, farms=list(farms)))


def test_a_placed_envelope_is_accepted_with_coords_ticket_and_run(node):
    envelope = placed_envelope(node, ["edge"])
    assert (node.post(envelope).status_code, reason(node.post(envelope))) == (403, "wrong_node")  # no ticket
    response = node.post(envelope, ticket=ticket.issue(envelope, node.node_id, node.placer))
    assert response.status_code == 202, response.text
    node.pool(1)
    job = node.wait(envelope.id)
    # The runner checked the ticket again (it never trusts the queue) and ran the script here.
    assert (job.status, job.result) == ("finished", node.node_id)


@pytest.mark.parametrize(
    ("make_ticket", "farms", "expected"),
    [
        (lambda node, envelope: ticket.issue(envelope, node.node_id, node.stranger), ["edge"], "bad_ticket"),
        (lambda node, envelope: ticket.issue(envelope, "b" * 26, node.placer), ["edge"], "bad_ticket"),
        (lambda node, envelope: ticket.issue(envelope, node.node_id, node.placer), ["office"], "wrong_node"),
        (lambda node, envelope: "not a ticket", ["edge"], "bad_ticket"),
    ],
    ids=["untrusted placer", "another node's ticket", "farm not selected", "garbage"],
)
def test_placed_envelopes_refused(node, make_ticket, farms, expected):
    envelope = placed_envelope(node, farms)
    response = node.post(envelope, ticket=make_ticket(node, envelope))
    assert (response.status_code, reason(response)) == (403, expected)
    assert node.supervisor.queue.count == 0


def test_a_runner_refuses_a_placed_job_whose_ticket_was_changed_in_the_queue(node):
    envelope = placed_envelope(node)
    assert node.post(envelope, ticket=ticket.issue(envelope, node.node_id, node.placer)).status_code == 202
    # Someone with access to Redis swaps the ticket for one signed by a key the node does not trust.
    key = Job.key_for(envelope.id)
    function, instance, args, kwargs = json.loads(zlib.decompress(node.connection.hget(key, "data")))
    assert len(args) == 2  # the envelope, and the ticket that placed it
    args[1] = ticket.issue(envelope, node.node_id, node.stranger)
    node.connection.hset(key, "data", zlib.compress(json.dumps([function, instance, args, kwargs]).encode()))
    node.pool(1)
    view = node.wait(envelope.id)
    assert (view.status, view.error.type) == ("failed", "WrongNode")
