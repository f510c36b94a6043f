"""How often one signer may submit: a fixed one-minute window per signer, counted in the Redis every
replica shares, so a signer gets `submissions_per_minute` across all replicas, not per replica.

    coord:rate:KEY:MINUTE     counter, incremented per submission, gone two minutes after its window

Only submissions whose envelope verified are counted (unsigned junk cannot spend anyone's quota),
before the ledger is asked anything (an over-eager signer costs the ledger nothing).
"""

from __future__ import annotations

import math
import time

import redis.asyncio as redis

from coord.store import PREFIX
from zeronode.api.errors import Refused

WINDOW = 60  # seconds


class RateLimited(Refused):
    """429: too many submissions; Retry-After goes out with the JSON body."""

    def __init__(self, retry_after: int, message: str):
        super().__init__(429, "rate_limited", message, retry_after=retry_after)
        self.headers = {"Retry-After": str(retry_after)}


class SubmissionRate:
    def __init__(self, connection: redis.Redis, per_minute: int, *, clock=time.time):
        self.redis = connection
        self.per_minute = per_minute
        self.clock = clock

    async def spend(self, signer: str) -> None:
        """Count one submission by `signer`; RateLimited when that is one more than its window allows."""
        now = self.clock()
        window = int(now // WINDOW)
        key = f"{PREFIX}rate:{signer}:{window}"
        async with self.redis.pipeline(transaction=False) as pipe:  # one round trip
            pipe.incr(key)
            pipe.expire(key, 2 * WINDOW)
            count, _ = await pipe.execute()
        if count > self.per_minute:
            retry_after = max(1, math.ceil((window + 1) * WINDOW - now))
            raise RateLimited(
                retry_after, f"more than {self.per_minute} submissions a minute by {signer}; retry in {retry_after} s"
            )
