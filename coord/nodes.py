"""Where the target nodes are, as the ledger says: their farm, status and supervisor URL, cached briefly.

A deployment's targets are fetched together when it is submitted (`records`:
the ledger's list endpoint, 200 ids a request) and again when its first task is
stepped (`prefetch`), so dispatch decides on what the ledger said when the
deployment started; retries within `ttl` use the cache. Nodes missing from it
(expired: a dispatch to thousands of nodes outlasts `ttl`) are asked for
together: the misses of the steps running at once wait a moment (BATCH_WAIT) and
go in list requests of 200, where asking for each alone cost the ledger 1 ms a
node at 3,000 nodes. Jobs are followed at the supervisor URL they were handed
to, without the ledger. A target that is not even a node id is unknown without
asking: a thousand made-up names cost no request.
"""

from __future__ import annotations

import asyncio
import re
import time
from dataclasses import dataclass

import httpx

from zeronode.api.errors import Unavailable, detail_of, unreachable


@dataclass(frozen=True)
class NodeRecord:
    node_id: str
    online: bool
    supervisor_url: str | None
    farm: str | None = None
    mycelium_address: str | None = None
    schedule: str = "active"  # active, cordoned or draining (coord.failover moves services off a draining node)
    last_seen: int | None = None  # the node's last report, by the ledger's clock


PREFETCH_CHUNK = 200  # the ledger's limit for `ids`
BATCH_WAIT = 0.002  # seconds a cache miss waits for others to share its request
NODE_ID = re.compile(r"[a-z2-7]{26}")  # zeronode.protocol.keys.node_id


def record_of(node_id: str, data: dict) -> NodeRecord:
    # A degraded node answers (some part of it is failing): it gets no new placement, but what names it is sent.
    return NodeRecord(
        node_id, data["status"] in ("online", "degraded"), data.get("supervisor_url"), data.get("farm"),
        data.get("mycelium_address"), data.get("schedule", "active"), data.get("last_report_at"),
    )


def _parsed(parse):
    """What `parse` makes of a ledger answer, or Unavailable if the answer is not the ledger's shape."""
    try:
        return parse()
    except (ValueError, KeyError, TypeError) as exc:
        raise Unavailable(f"the ledger answered something unexpected: {exc!r}"[:300]) from None


class NodeDirectory:
    def __init__(self, ledger_url: str, http: httpx.AsyncClient, *, token: str | None = None, ttl: float = 2.0):
        self.ledger_url = ledger_url.rstrip("/")
        self.http = http
        self.headers = {"authorization": f"Bearer {token}"} if token else {}
        self.ttl = ttl
        self._cache: dict[str, tuple[float, NodeRecord | None]] = {}
        self._misses: dict[str, asyncio.Future[NodeRecord | None]] = {}  # node → its waiters' answer, to be asked
        self._sending: set[asyncio.Future] = set()  # batches in flight (held: the loop keeps only weak references)

    async def get(self, node_id: str) -> NodeRecord | None:
        """The node's record, or None when the ledger does not know it; Unavailable when the ledger cannot say."""
        if not NODE_ID.fullmatch(node_id):
            return None
        cached = self._cache.get(node_id)
        if cached and cached[0] > time.monotonic():
            return cached[1]
        waiting = self._misses.get(node_id)
        if waiting is None:
            waiting = self._misses[node_id] = asyncio.get_running_loop().create_future()
            if len(self._misses) == 1:  # the first miss of a batch sends it, a moment later
                asyncio.get_running_loop().call_later(BATCH_WAIT, self._send_soon)
        return await asyncio.shield(waiting)

    def _send_soon(self) -> None:
        sending = asyncio.ensure_future(self._send())
        self._sending.add(sending)
        sending.add_done_callback(self._sending.discard)

    async def _send(self) -> None:
        """Ask the ledger for every node missed since the last batch, 200 a request, and answer their waiters."""
        misses, self._misses = self._misses, {}
        ids = list(misses)
        chunks = [ids[i : i + PREFETCH_CHUNK] for i in range(0, len(ids), PREFETCH_CHUNK)]
        answers = await asyncio.gather(*(self._prefetch_chunk(chunk, strict=True) for chunk in chunks), return_exceptions=True)
        for chunk, answer in zip(chunks, answers, strict=True):
            for node_id in chunk:
                cached = self._cache.get(node_id)
                if isinstance(answer, BaseException) or cached is None:  # refused, or the ledger away
                    failed = answer if isinstance(answer, Unavailable) else Unavailable("the ledger did not list the nodes asked")
                    misses[node_id].set_exception(failed)
                    misses[node_id].exception()  # retrieved: a waiter canceled meanwhile leaves no warning behind
                else:
                    misses[node_id].set_result(cached[1])

    async def records(self, node_ids: list[str]) -> dict[str, NodeRecord | None]:
        """Every one of these nodes' records (None: unknown), or Unavailable when the ledger cannot say."""
        await self.prefetch(node_ids, strict=True)
        found = await asyncio.gather(*(self.get(node_id) for node_id in node_ids))
        return dict(zip(node_ids, found, strict=True))

    async def prefetch(self, node_ids: list[str], *, strict: bool = False) -> None:
        """Fill the cache for these nodes with a few list requests. A failure leaves them to get(), or
        with `strict` raises Unavailable when the ledger is away (asking each node alone would not help)."""
        wanted = [node_id for node_id in node_ids if NODE_ID.fullmatch(node_id)]
        chunks = [wanted[i : i + PREFETCH_CHUNK] for i in range(0, len(wanted), PREFETCH_CHUNK)]
        await asyncio.gather(*(self._prefetch_chunk(chunk, strict) for chunk in chunks))

    async def _prefetch_chunk(self, node_ids: list[str], strict: bool) -> None:
        params = {"ids": ",".join(node_ids), "limit": len(node_ids)}
        try:
            response = await self.http.get(f"{self.ledger_url}/v1/nodes", params=params, headers=self.headers)
        except httpx.HTTPError as exc:
            if strict:
                raise unreachable(exc, "the ledger", self.ledger_url) from exc
            return
        if response.status_code >= 500 and strict:
            raise Unavailable(f"the ledger answered {response.status_code}: {detail_of(response)[1]}", status=response.status_code)
        if response.status_code != 200:  # e.g. a refusal of the whole list: each is asked for alone
            return
        found = _parsed(lambda: {node["node_id"]: record_of(node["node_id"], node) for node in response.json()})
        for node_id in node_ids:
            self._remember(node_id, found.get(node_id))

    def remember(self, record: NodeRecord) -> None:
        """Keep a record read elsewhere (placement's listing), so dispatch decides on what it saw."""
        self._remember(record.node_id, record)

    def _remember(self, node_id: str, record: NodeRecord | None) -> None:
        self._cache[node_id] = (time.monotonic() + self.ttl, record)
        if len(self._cache) > 100_000:  # bounded: forget everything rather than grow without end
            self._cache.clear()
