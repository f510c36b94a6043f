"""Signed HTTP requests, for the ledger's and the services' write endpoints (zeronode.api.auth checks them).

A request carries four headers:

    X-Zeronode-Key        the signer's public key (base64url)
    X-Zeronode-Audience   who the request is for: a node's id, "ledger" or "coord"
    X-Zeronode-Timestamp  Unix seconds when it was signed
    X-Zeronode-Signature  Ed25519 signature (base64url) over

        b"zeronode-request-v2\\n" + METHOD + "\\n" + PATH[?QUERY] + "\\n" + AUDIENCE + "\\n"
            + TIMESTAMP + "\\n" + hex(SHA-256(body))

A server refuses a request addressed to anyone else (so a cancel signed for
one node cannot be replayed at another), and one whose timestamp is further
than its window (default 60 s) from its own clock. Within the window a
captured request could be sent again to the same audience, so endpoints keep
their writes idempotent or monotonic (user grants carry a sequence).
"""

from __future__ import annotations

import hashlib
import re
import time
from collections.abc import Generator

import httpx
import nacl.signing

from zeronode.protocol import keys
from zeronode.protocol.errors import BadSignature, Expired, MalformedEnvelope, NotYetValid, WrongAudience

DOMAIN = b"zeronode-request-v2\n"
KEY_HEADER = "X-Zeronode-Key"
AUDIENCE_HEADER = "X-Zeronode-Audience"
TIMESTAMP_HEADER = "X-Zeronode-Timestamp"
SIGNATURE_HEADER = "X-Zeronode-Signature"
DEFAULT_WINDOW = 60.0
# A node id (base32, 26 characters) or a service's name: no separator can be forged into it.
AUDIENCE = re.compile(r"[a-z0-9][a-z0-9-]{0,63}")
LEDGER = "ledger"
COORD = "coord"


def request_signing_bytes(method: str, target: str, audience: str, timestamp: int, body: bytes) -> bytes:
    """The bytes a request signature covers. `target` is the path plus '?query' if any."""
    digest = hashlib.sha256(body).hexdigest()
    return DOMAIN + f"{method.upper()}\n{target}\n{audience}\n{timestamp}\n{digest}".encode()


class SignedRequestAuth(httpx.Auth):
    """httpx auth that signs each request with `key` for `audience`:
    `httpx.Client(auth=SignedRequestAuth(key, audience="ledger"))`. A request that
    already carries an X-Zeronode-Audience header is signed for that audience
    instead (one coordinator key, many nodes)."""

    requires_request_body = True

    def __init__(self, key: nacl.signing.SigningKey, audience: str | None = None, *, clock=time.time):
        self.key = key
        self.public_key = keys.public_key_text(key)
        self.audience = audience
        self.clock = clock

    def auth_flow(self, request: httpx.Request) -> Generator[httpx.Request, httpx.Response, None]:
        audience = request.headers.get(AUDIENCE_HEADER) or self.audience
        request.headers.update(self.headers(request.method, request.url.raw_path.decode("ascii"), audience, request.content))
        yield request

    def headers(self, method: str, target: str, audience: str | None, body: bytes) -> dict[str, str]:
        """The four headers that sign this request (`target`: the path and '?query' as sent), for any client."""
        if audience is None or not AUDIENCE.fullmatch(audience):
            raise ValueError(f"a signed request needs an audience (a node id, 'ledger' or 'coord'), got {audience!r}")
        timestamp = int(self.clock())
        message = request_signing_bytes(method, target, audience, timestamp, body)
        return {
            KEY_HEADER: self.public_key, AUDIENCE_HEADER: audience, TIMESTAMP_HEADER: str(timestamp),
            SIGNATURE_HEADER: keys.sign(self.key, message),
        }


def verify_request(
    method: str,
    target: str,
    headers: dict[str, str],
    body: bytes,
    *,
    audience: str,
    window: float = DEFAULT_WINDOW,
    now: float | None = None,
) -> str:
    """The public key that signed this request for `audience` (this server), or the VerificationError that says why not."""
    lowered = {name.lower(): value for name, value in headers.items()}
    try:
        public_key = lowered[KEY_HEADER.lower()]
        addressed_to = lowered[AUDIENCE_HEADER.lower()]
        timestamp_text = lowered[TIMESTAMP_HEADER.lower()]
        signature = lowered[SIGNATURE_HEADER.lower()]
    except KeyError as missing:
        raise BadSignature(f"request is not signed: header {missing.args[0]} missing") from None
    if addressed_to != audience:
        raise WrongAudience(f"request is addressed to {addressed_to[:64]!r}, not to {audience!r}")
    if not timestamp_text.isascii() or not timestamp_text.isdigit() or len(timestamp_text) > 16:
        raise MalformedEnvelope(f"{TIMESTAMP_HEADER} must be Unix seconds, got {timestamp_text!r}")
    timestamp = int(timestamp_text)
    now = time.time() if now is None else now
    if timestamp < now - window:
        raise Expired(f"request was signed {now - timestamp:.0f} s ago (window {window:.0f} s)")
    if timestamp > now + window:
        raise NotYetValid(f"request is dated {timestamp - now:.0f} s in the future (window {window:.0f} s)")
    if not keys.verify_signature(public_key, request_signing_bytes(method, target, audience, timestamp, body), signature):
        raise BadSignature("request signature does not match")
    return public_key
