"""Signed HTTP requests: the httpx client side against the FastAPI dependency."""

import hashlib
import logging

import httpx
import nacl.signing
import pytest
from fastapi import Depends, FastAPI

from zeronode.api import handlers
from zeronode.api.auth import SignedRequest
from zeronode.protocol import keys
from zeronode.protocol.signed_requests import SignedRequestAuth, request_signing_bytes

NOW = 1_800_000_000.0
AUDIENCE = "abcdefghijklmnopqrstuvwxyz"  # a node id's shape


def make_app(clock):
    app = FastAPI()
    handlers.install(app, logging.getLogger("test"))  # what every service does: refusals become JSON
    signed = SignedRequest(AUDIENCE, clock=clock)

    @app.post("/v1/things/{name}")
    async def write(name: str, signer: str = Depends(signed)):
        return {"signer": signer, "name": name}

    @app.get("/v1/things")
    async def read(signer: str = Depends(signed)):
        return {"signer": signer}

    return app


@pytest.fixture
def key():
    return nacl.signing.SigningKey.generate()


@pytest.fixture
def server(serve_app):
    clock = {"now": NOW}
    with httpx.Client(base_url=serve_app(make_app(lambda: clock["now"])), timeout=10) as client:
        yield client, clock


def test_signed_request_is_accepted_and_names_its_signer(server, key):
    client, _ = server
    auth = SignedRequestAuth(key, AUDIENCE, clock=lambda: NOW)
    response = client.post("/v1/things/vm1?dry=1", json={"vcpus": 2}, auth=auth)
    assert response.status_code == 200, response.text
    assert response.json() == {"signer": keys.public_key_text(key), "name": "vm1"}
    response = client.get("/v1/things?filter=a%20b", auth=auth)
    assert response.json()["signer"] == keys.public_key_text(key)


@pytest.mark.parametrize(("skew", "reason"), [(-61, "expired"), (61, "not_yet_valid")])
def test_outside_the_window_is_refused(server, key, skew, reason):
    client, _ = server
    response = client.post("/v1/things/x", content=b"{}", auth=SignedRequestAuth(key, AUDIENCE, clock=lambda: NOW + skew))
    assert response.status_code == 401
    assert response.json()["reason"] == reason


@pytest.mark.parametrize("skew", [-60, 0, 60])
def test_inside_the_window_is_accepted(server, key, skew):
    client, _ = server
    response = client.post("/v1/things/x", content=b"{}", auth=SignedRequestAuth(key, AUDIENCE, clock=lambda: NOW + skew))
    assert response.status_code == 200


def signed_headers(key, method, target, body, timestamp=int(NOW), audience=AUDIENCE):
    return {
        "X-Zeronode-Key": keys.public_key_text(key),
        "X-Zeronode-Audience": audience,
        "X-Zeronode-Timestamp": str(timestamp),
        "X-Zeronode-Signature": keys.sign(key, request_signing_bytes(method, target, audience, timestamp, body)),
    }


@pytest.mark.parametrize(
    ("what", "method", "target", "body"),
    [
        ("body", "POST", "/v1/things/x", b'{"vcpus": 64}'),
        ("path", "POST", "/v1/things/y", b"{}"),
        ("query", "POST", "/v1/things/x?force=1", b"{}"),
        ("method", "PUT", "/v1/things/x", b"{}"),
    ],
)
def test_signature_covers_method_path_query_and_body(server, key, what, method, target, body):
    client, _ = server
    headers = signed_headers(key, method, target, body)
    response = client.post("/v1/things/x", content=b"{}", headers=headers)
    assert response.status_code == 401, what
    assert response.json()["reason"] == "bad_signature"


def test_unsigned_and_garbled_headers_are_refused(server, key):
    client, _ = server
    assert client.post("/v1/things/x", content=b"{}").json()["reason"] == "bad_signature"
    headers = signed_headers(key, "POST", "/v1/things/x", b"{}")
    for name, value, reason in [
        ("X-Zeronode-Timestamp", "soon", "malformed"),
        ("X-Zeronode-Key", "nope", "malformed_key"),
        ("X-Zeronode-Signature", "A" * 86, "bad_signature"),
    ]:
        response = client.post("/v1/things/x", content=b"{}", headers={**headers, name: value})
        assert response.status_code == 401
        assert response.json()["reason"] == reason


def test_another_keys_signature_is_refused(server, key):
    client, _ = server
    headers = signed_headers(key, "POST", "/v1/things/x", b"{}")
    headers["X-Zeronode-Key"] = keys.public_key_text(nacl.signing.SigningKey.generate())
    assert client.post("/v1/things/x", content=b"{}", headers=headers).status_code == 401


def test_client_auth_signs_exactly_what_it_sends(key):
    seen = {}

    def handler(request: httpx.Request) -> httpx.Response:
        seen["headers"] = request.headers
        seen["body"] = request.content
        return httpx.Response(204)

    with httpx.Client(transport=httpx.MockTransport(handler), auth=SignedRequestAuth(key, AUDIENCE, clock=lambda: NOW)) as client:
        client.post("http://node/v1/jobs?x=1", content=b"payload")
    timestamp = int(seen["headers"]["x-zeronode-timestamp"])
    message = request_signing_bytes("POST", "/v1/jobs?x=1", AUDIENCE, timestamp, seen["body"])
    assert keys.verify_signature(seen["headers"]["x-zeronode-key"], message, seen["headers"]["x-zeronode-signature"])
    assert message.endswith(hashlib.sha256(b"payload").hexdigest().encode())


def test_a_request_signed_for_another_audience_is_refused(server, key):
    """A cancel signed for one node, replayed at another: the audience is signed, and checked."""
    client, _ = server
    other = "zyxwvutsrqponmlkjihgfedcba"
    response = client.post("/v1/things/x", content=b"{}", headers=signed_headers(key, "POST", "/v1/things/x", b"{}", audience=other))
    assert response.status_code == 401
    assert response.json()["reason"] == "wrong_audience"
    # Relabelled to this server's audience, the signature no longer matches.
    headers = {**signed_headers(key, "POST", "/v1/things/x", b"{}", audience=other), "X-Zeronode-Audience": AUDIENCE}
    assert client.post("/v1/things/x", content=b"{}", headers=headers).json()["reason"] == "bad_signature"
    headers.pop("X-Zeronode-Audience")
    assert client.post("/v1/things/x", content=b"{}", headers=headers).json()["reason"] == "bad_signature"


def test_a_client_without_an_audience_does_not_sign(key):
    with httpx.Client(transport=httpx.MockTransport(lambda request: httpx.Response(204))) as client:
        with pytest.raises(ValueError, match="audience"):
            client.post("http://node/v1/jobs", content=b"", auth=SignedRequestAuth(key))
        # A per-request audience header is what one key signing for many nodes uses.
        response = client.post("http://node/v1/jobs", content=b"", auth=SignedRequestAuth(key), headers={"X-Zeronode-Audience": AUDIENCE})
        assert response.status_code == 204
