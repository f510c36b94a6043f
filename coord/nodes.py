"""Where the target nodes are, as the ledger says: their status and supervisor URL, cached briefly.

A deployment's targets are fetched together when its first task is stepped
(`prefetch`: the ledger's list endpoint, 200 ids a request), so dispatch
decides on what the ledger said when the deployment started; retries within
`ttl` use the cache, and a node missing from it is asked for alone. Jobs are
followed at the supervisor URL they were handed to, without the ledger.
"""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass

import httpx

from zeronode.api.errors import Unavailable, detail_of, unreachable


@dataclass(frozen=True)
class NodeRecord:
    node_id: str
    online: bool
    supervisor_url: str | None


PREFETCH_CHUNK = 200  # the ledger's limit for `ids`


class NodeDirectory:
    def __init__(self, ledger_url: str, http: httpx.AsyncClient, *, token: str | None = None, ttl: float = 2.0):
        self.ledger_url = ledger_url.rstrip("/")
        self.http = http
        self.headers = {"authorization": f"Bearer {token}"} if token else {}
        self.ttl = ttl
        self._cache: dict[str, tuple[float, NodeRecord | None]] = {}

    async def get(self, node_id: str) -> NodeRecord | None:
        """The node's record, or None when the ledger does not know it."""
        cached = self._cache.get(node_id)
        if cached and cached[0] > time.monotonic():
            return cached[1]
        try:
            response = await self.http.get(f"{self.ledger_url}/v1/nodes/{node_id}", headers=self.headers)
        except httpx.HTTPError as exc:
            raise unreachable(exc, "the ledger", self.ledger_url) from exc
        if response.status_code in (404, 422):  # unknown, or not even a node id
            record = None
        elif response.status_code == 200:
            data = response.json()
            record = NodeRecord(node_id, data["status"] == "online", data.get("supervisor_url"))
        else:
            # Whatever the ledger's answer, asking again later is this lookup's only remedy.
            raise Unavailable(f"the ledger answered {response.status_code}: {detail_of(response)[1]}", status=response.status_code)
        self._remember(node_id, record)
        return record

    async def prefetch(self, node_ids: list[str]) -> None:
        """Fill the cache for these nodes with a few list requests; any failure leaves it to get()."""
        chunks = [node_ids[i : i + PREFETCH_CHUNK] for i in range(0, len(node_ids), PREFETCH_CHUNK)]
        await asyncio.gather(*(self._prefetch_chunk(chunk) for chunk in chunks))

    async def _prefetch_chunk(self, node_ids: list[str]) -> None:
        params = {"ids": ",".join(node_ids), "limit": len(node_ids)}
        try:
            response = await self.http.get(f"{self.ledger_url}/v1/nodes", params=params, headers=self.headers)
        except httpx.HTTPError:
            return
        if response.status_code != 200:  # e.g. an id that is not a node id: each is asked for alone
            return
        found = {node["node_id"]: node for node in response.json()}
        for node_id in node_ids:
            data = found.get(node_id)
            record = NodeRecord(node_id, data["status"] == "online", data.get("supervisor_url")) if data else None
            self._remember(node_id, record)

    def _remember(self, node_id: str, record: NodeRecord | None) -> None:
        self._cache[node_id] = (time.monotonic() + self.ttl, record)
        if len(self._cache) > 100_000:  # bounded: forget everything rather than grow without end
            self._cache.clear()
