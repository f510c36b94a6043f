"""Batches of uptime reports: each one a copy of a single signed request, verified and judged on its own."""

import json

import httpx
import nacl.signing

from zeronode.api.ledger import SignedRequestCopy
from zeronode.protocol import keys
from zeronode.protocol.signed_requests import (
    AUDIENCE_HEADER,
    KEY_HEADER,
    LEDGER,
    SIGNATURE_HEADER,
    TIMESTAMP_HEADER,
    SignedRequestAuth,
)

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
    assert (too_many.status_code, too_many.json()["reason"]) == (422, "too_many")
    good = json.dumps(copies[0].model_dump()).encode()
    for body, status, reason in (
        (b"[", 400, "invalid_json"),
        (b"[]", 422, "malformed"),  # not the batch's shape
        (b'{"reports": {}}', 422, "malformed"),
        (b'{"reports": [' + good + b'], "more": 1}', 422, "malformed"),
        (b'{"reports": [' + good + b'], "reports": []}', 400, "invalid_json"),  # a duplicate key, of the batch's own
        (b'{"reports": [' + good, 400, "invalid_json"),  # never closed
        (b'{"reports": [' + good + b",]}", 400, "invalid_json"),  # an empty item
    ):
        response = ledger.http.post("/v1/uptime/batch", content=body)
        assert (response.status_code, response.json()["reason"]) == (status, reason), body
    too_large = ledger.http.post("/v1/uptime/batch", content=b'{"reports": [' + b" " * (4 * 1024 * 1024) + b"]}")
    assert (too_large.status_code, too_large.json()["reason"]) == (413, "too_large")
    assert ledger.get("/v1/nodes").json()[0]["last_report_at"] is None


def signed_copy(ledger, key: nacl.signing.SigningKey, body: bytes) -> SignedRequestCopy:
    """A report request with any body, signed by `key` as its node would sign it."""
    node_id = keys.node_id(keys.public_key_text(key))
    request = httpx.Request("POST", f"{ledger.url}/v1/nodes/{node_id}/uptime", content=body)
    next(SignedRequestAuth(key, LEDGER, clock=ledger.clock).auth_flow(request))
    return SignedRequestCopy(
        method="POST", target=request.url.raw_path.decode(), body=body.decode(),
        headers={name: request.headers[name] for name in (KEY_HEADER, AUDIENCE_HEADER, TIMESTAMP_HEADER, SIGNATURE_HEADER)},
    )


def test_each_item_is_answered_alone_whatever_the_others_hold(ledger):
    """Items poisoned every way a text can be, between good ones: each poison is answered alone."""
    alice, bob, carol, dave = (new_node(ledger) for _ in range(4))
    now = int(ledger.clock())
    report = ledger.client(alice).signed_report(100, now).model_dump()

    def item(**changes) -> bytes:
        return json.dumps({**report, **changes}).encode()

    raws = [
        json.dumps(ledger.client(alice).signed_report(100, now).model_dump()).encode(),  # 0: accepted
        b"[" * 100_000 + b"]" * 100_000,  # 1: nested 100,000 deep (and larger than any item)
        b'{"reports": ' + b'{"a": ' * 3000 + b"1" + b"}" * 3001,  # 2: nested 3,000 deep, under the batch's own key
        item(body="x" * 5000),  # 3: a body longer than any report
        b'{"method": "POST", "target": "' + b"x" * (40 * 1024) + b'"}',  # 4: an item larger than any
        item()[:-1] + b', "method": "GET"}',  # 5: a duplicate key in the item
        json.dumps(signed_copy(ledger, carol, b'{"uptime": 1, "uptime": 99999, "timestamp": %d}' % now).model_dump()).encode(),  # 6: in its signed body
        json.dumps(signed_copy(ledger, carol, b'{"uptime": 100.0, "timestamp": %d}' % now).model_dump()).encode(),  # 7: a float
        json.dumps(signed_copy(ledger, carol, b'{"uptime": 1, "timestamp": %de0}' % now).model_dump()).encode(),  # 8: 1e0 style
        item(headers=["not", "a", "map"]),  # 9: a wrong type
        b'{"method": "POST",}',  # 10: bad JSON inside the item
        b"17",  # 11: not an object
        json.dumps(ledger.client(bob).signed_report(50, now).model_dump()).encode(),  # 12: accepted
        json.dumps(signed_copy(ledger, dave, b'{"uptime": 7, "timestamp": %d}' % now).model_dump()).encode(),  # 13: accepted
    ]
    response = ledger.http.post("/v1/uptime/batch", content=b'{"reports": [' + b",".join(raws) + b"]}")
    assert response.status_code == 200, response.text
    answers = response.json()
    assert [(answer["status_code"], answer.get("error", {}).get("reason")) for answer in answers] == [
        (200, None), (413, "too_large"), (400, "invalid_json"), (422, "malformed"), (413, "too_large"),
        (400, "invalid_json"), (400, "invalid_json"), (422, "malformed"), (422, "malformed"), (422, "malformed"),
        (400, "invalid_json"), (422, "malformed"), (200, None), (200, None),
    ]
    assert "duplicate key 'uptime'" in answers[6]["error"]["message"]
    assert "nested deeper" in answers[2]["error"]["message"]
    assert [answers[i]["node_id"] for i in (0, 12, 13)] == [keys.node_id(keys.public_key_text(k)) for k in (alice, bob, dave)]
    assert ledger.get(f"/v1/nodes/{keys.node_id(keys.public_key_text(carol))}").json()["last_report_at"] is None
    assert ledger.get(f"/v1/nodes/{keys.node_id(keys.public_key_text(dave))}").json()["last_uptime"] == 7


def test_a_single_report_is_parsed_as_strictly(ledger, node_key, registered):
    now = int(ledger.clock())
    path = f"/v1/nodes/{registered}/uptime"
    for body, status, reason in (
        (b'{"uptime": 1, "timestamp": %d, "uptime": 99999}' % now, 400, "invalid_json"),
        (b'{"uptime": 1.0, "timestamp": %d}' % now, 422, "malformed"),
        (b'{"uptime": true, "timestamp": %d}' % now, 422, "malformed"),
        (b'{"uptime": 1, "timestamp": %d.0}' % now, 422, "malformed"),
        (b'{"uptime": ' + b"[" * 100_000, 400, "invalid_json"),
    ):
        response = ledger.signed("POST", path, node_key, body)
        assert (response.status_code, response.json()["reason"]) == (status, reason), body
    assert ledger.get(f"/v1/nodes/{registered}").json()["last_report_at"] is None
    assert ledger.signed("POST", path, node_key, b'{"uptime": 1, "timestamp": %d}' % now).status_code == 200
