"""Batches of uptime reports: each one a copy of a single signed request, verified and judged on its own."""

import json

import nacl.signing

from zeronode.api.ledger import SignedRequestCopy
from zeronode.protocol.signed_requests import SIGNATURE_HEADER

from .conftest import REGISTRATION


def new_node(ledger) -> nacl.signing.SigningKey:
    key = nacl.signing.SigningKey.generate()
    assert ledger.signed("POST", "/v1/nodes", key, REGISTRATION).status_code == 201
    return key


def post_batch(ledger, copies: list[SignedRequestCopy]) -> list[dict]:
    response = ledger.http.post("/v1/uptime/batch", json={"reports": [copy.model_dump() for copy in copies]})
    assert response.status_code == 200, response.text
    return response.json()


def test_each_report_in_a_batch_stands_alone(ledger):
    alice, bob, carol = new_node(ledger), new_node(ledger), new_node(ledger)
    unregistered = nacl.signing.SigningKey.generate()
    now = int(ledger.clock())
    a, b, c = (ledger.client(key) for key in (alice, bob, carol))
    assert a.report_uptime(500, timestamp=now - 5).restarts == 0  # alice was last heard of 5 s ago

    forged = b.signed_report(100, now)  # bob's report, re-signed by someone else
    forged.headers[SIGNATURE_HEADER] = ledger.client(unregistered).signed_report(100, now).headers[SIGNATURE_HEADER]
    tampered = c.signed_report(100, now)
    tampered.body = json.dumps({"uptime": 999999, "timestamp": now})
    misdirected = a.signed_report(100, now).model_copy(update={"target": f"/v1/nodes/{b.node_id}"})

    copies = [
        a.signed_report(510, now),  # 0: accepted
        a.signed_report(520, now + 1),  # 1: the same node again, later: accepted in order
        a.signed_report(400, now - 10),  # 2: older than alice's last: stale
        b.signed_report(50, now),  # 3: accepted
        forged,  # 4
        tampered,  # 5
        misdirected,  # 6
        ledger.client(unregistered).signed_report(1, now),  # 7: not registered
        c.signed_report(100, now + 10_000),  # 8: far in the future
        c.signed_report(100, now),  # 9: accepted
        a.signed_report(520, now + 1),  # 10: the same as 1: a duplicate
    ]
    answers = post_batch(ledger, copies)
    summary = [(answer["status_code"], answer.get("error", {}).get("reason")) for answer in answers]
    assert summary == [
        (200, None), (200, None), (409, "stale_report"), (200, None), (401, "bad_signature"), (401, "bad_signature"),
        (422, "malformed"), (404, "unknown_node"), (422, "clock_skew"), (200, None), (200, None),
    ]
    assert answers[10]["duplicate"] is True and answers[1]["duplicate"] is False
    assert ledger.get(f"/v1/nodes/{a.node_id}").json()["last_uptime"] == 520
    assert ledger.get(f"/v1/nodes/{b.node_id}").json()["last_uptime"] == 50
    assert ledger.get(f"/v1/nodes/{c.node_id}").json()["last_uptime"] == 100


def test_a_batch_item_is_exactly_the_single_request(ledger):
    key = new_node(ledger)
    copy = ledger.client(key).signed_report(100, int(ledger.clock()))
    single = ledger.http.post(copy.target, content=copy.body.encode(), headers=copy.headers)
    assert single.status_code == 200, single.text
    [again] = post_batch(ledger, [copy])  # a relay forwarding what the node already sent
    assert (again["status_code"], again["duplicate"]) == (200, True)


def test_a_malformed_or_oversized_batch_is_refused_whole(make_ledger):
    ledger = make_ledger(max_batch=2)
    key = new_node(ledger)
    copies = [ledger.client(key).signed_report(100 + i, int(ledger.clock())) for i in range(3)]
    too_many = ledger.http.post("/v1/uptime/batch", json={"reports": [c.model_dump() for c in copies]})
    assert (too_many.status_code, too_many.json()["detail"]["reason"]) == (422, "too_many")
    for body, reason in ((b"[", "invalid_json"), (b"[]", "malformed"), (b'{"reports": [{"method": "POST"}]}', "malformed")):
        response = ledger.http.post("/v1/uptime/batch", content=body)
        assert response.json()["detail"]["reason"] == reason, body
    assert ledger.get("/v1/nodes").json()[0]["last_report_at"] is None
