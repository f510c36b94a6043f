"""Replay protection: each (signer, nonce) is accepted once, until the envelope expires.

Backed by Redis `SET NX EX`, so every process that shares the Redis (a node's
supervisor replicas, say) shares the memory, and Redis forgets each entry
once the envelope could no longer be accepted anyway.
"""

from __future__ import annotations

import math
import time

import redis

from zeronode.protocol.envelope import DEFAULT_OPTIONS, Envelope, VerifyOptions
from zeronode.protocol.errors import Replayed


class ReplayGuard:
    def __init__(self, client: redis.Redis, *, prefix: str = "zeronode:replay", options: VerifyOptions | None = None):
        self.client = client
        self.prefix = prefix
        self.options = options or DEFAULT_OPTIONS

    def key(self, envelope: Envelope) -> str:
        # Key and nonce are base64url: no separator can be forged into them.
        return f"{self.prefix}:{envelope.signer}:{envelope.nonce}"

    def ttl(self, envelope: Envelope, now: float | None = None) -> int:
        """How long to remember an envelope: as long as a verifier could still accept it."""
        now = time.time() if now is None else now
        return max(1, math.ceil(envelope.expires_at + self.options.skew - now))

    def claim(self, envelope: Envelope, *, now: float | None = None) -> None:
        """Accept `envelope` once; raise Replayed if its (signer, nonce) was seen before.

        Call it after verification: an unverified envelope must not use up a nonce.
        """
        if not self.client.set(self.key(envelope), envelope.id, nx=True, ex=self.ttl(envelope, now)):
            raise Replayed(f"nonce {envelope.nonce} of signer {envelope.signer} was already used")
