"""How often submissions may be made, counted in fixed windows in the Redis every replica shares, so a
limit holds across all replicas, not per replica:

    coord:rate:KEY:MINUTE       one signer's submissions in a minute (`submissions_per_minute`)
    coord:lookups:SECOND        everyone's submissions that went on to ask the ledger about rights, in a
                                second (`ledger_lookups_per_second`)

Each counter is incremented per submission and gone two windows after its own. A window is the
replica's clock's (coord replicas keep NTP time; a second of skew blurs the edge of a window, no more).

What each one bounds, in the order coord.routes.deployments checks them:

- Nothing is counted for a submission whose envelope does not verify (unsigned junk cannot spend
  anyone's quota), nor for the replay of an envelope coord already stored: it is answered as the
  duplicate it is, with one Redis read, before any quota is spent (a replayed envelope cannot spend its
  signer's quota).
- A signer's submissions beyond `submissions_per_minute` are refused before the ledger is asked
  anything: those cost the ledger nothing. Those within it do go on to the ledger (its user and the
  policies, cached `rights_ttl`; its targets, cached briefly by coord.nodes), and every new key brings
  a quota of its own, so the per-signer limit alone does not bound what many keys cost the ledger.
- That is what `ledger_lookups_per_second` bounds: a coarse cap on all submissions, whoever signed
  them, that reach the ledger lookups (cached or not), shared by every replica. Beyond it a
  submission is refused (429, Retry-After 1), everyone's alike: a flood of fresh keys can delay
  other signers' submissions for its duration, but not push more than the cap a second onto the ledger
  (a fixed window: up to twice the cap may fall in the one second astride two windows).
"""

from __future__ import annotations

import math
import time

import redis.asyncio as redis

from coord.store import PREFIX
from zeronode.api.errors import Refused

WINDOW = 60  # seconds: a signer's quota
LOOKUP_WINDOW = 1  # seconds: the ledger lookups' cap


class RateLimited(Refused):
    """429: too many submissions; Retry-After goes out with the JSON body."""

    def __init__(self, retry_after: int, message: str):
        super().__init__(429, "rate_limited", message, retry_after=retry_after)
        self.headers = {"Retry-After": str(retry_after)}


class FixedWindow:
    """A counter per `window` seconds under `coord:NAME:WINDOW_NUMBER`, shared by the replicas."""

    def __init__(self, connection: redis.Redis, window: int, limit: int, *, clock=time.time):
        self.redis = connection
        self.window = window
        self.limit = limit
        self.clock = clock

    async def count(self, name: str) -> int | None:
        """Count one under `name`: None when it is within the limit, else the seconds until the next window."""
        now = self.clock()
        number = int(now // self.window)
        key = f"{PREFIX}{name}:{number}"
        async with self.redis.pipeline(transaction=False) as pipe:  # one round trip
            pipe.incr(key)
            pipe.expire(key, 2 * self.window)
            count, _ = await pipe.execute()
        if count <= self.limit:
            return None
        return max(1, math.ceil((number + 1) * self.window - now))


class SubmissionRate:
    """`per_minute` submissions a signer, across replicas."""

    def __init__(self, connection: redis.Redis, per_minute: int, *, clock=time.time):
        self.per_minute = per_minute
        self._window = FixedWindow(connection, WINDOW, per_minute, clock=clock)

    async def spend(self, signer: str) -> None:
        """Count one submission by `signer`; RateLimited when that is one more than its window allows."""
        retry_after = await self._window.count(f"rate:{signer}")
        if retry_after is not None:
            raise RateLimited(
                retry_after, f"more than {self.per_minute} submissions a minute by {signer}; retry in {retry_after} s"
            )


class LedgerLookups:
    """`per_second` submissions that ask the ledger about rights, whoever signed them, across replicas."""

    def __init__(self, connection: redis.Redis, per_second: int, *, clock=time.time):
        self.per_second = per_second
        self._window = FixedWindow(connection, LOOKUP_WINDOW, per_second, clock=clock)

    async def spend(self) -> None:
        """Count one submission about to ask the ledger; RateLimited when the replicas' cap is reached."""
        retry_after = await self._window.count("lookups")
        if retry_after is not None:
            raise RateLimited(
                retry_after,
                f"coord is checking more than {self.per_second} submissions a second with the ledger; "
                f"retry in {retry_after} s",
            )
