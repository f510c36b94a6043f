"""Choosing the nodes of a deployment whose envelope carries a selector (docs/operators.md, "Placement").

Feasibility first, then scoring, as Nomad's scheduler does:

1. Candidates come from the ledger's indexed filters: status `online` (heard from
   within offline_after, and no part failing: a `degraded` node gets nothing
   new), schedule `active` (not cordoned or draining), in one of the selector's
   farms, with at least the selector's free vCPUs, memory and disk. Then, here:
   every label of the selector, no named target of the envelope (it runs there
   anyway), and the signer's right to deploy there (coord.authorization's same
   check as for named targets: a node the signer may not use is never chosen).
2. Each candidate is scored on what would be left after placement, memory and
   vCPUs weighted alike:

       used(node) = 1 - mean(free_after_vcpus / total_vcpus, free_after_memory / total_memory)

   `binpack` (the default) takes the highest score first: fill nodes up, keep
   others empty for big deployments. `spread` takes the lowest. Ties go to the
   lower node id, so the same fleet gives the same choice.
3. Taken in that order, at most `max_per_farm` per farm, until `count`. Fewer
   feasible nodes than `count` refuses the deployment (422 no_capacity, with
   what was found), and nothing is stored.

Not every node of a large fleet is scored: the ledger's pages are read, in node
id order from a random id round to it again, until there are max(4 × count,
1,000) feasible nodes from which `count` can be taken (as Nomad scores a sample
rather than every node), so placing 100 nodes in a fleet of 100,000 reads a page
or two, and every node may be in the sample.

The choice is recorded with the deployment (`placed`), and each chosen node gets
a placement ticket signed by coord (zeronode.protocol.ticket) with the envelope.
"""

from __future__ import annotations

import secrets
from collections.abc import AsyncIterator, Collection
from dataclasses import dataclass

import httpx

from coord.authorization import Authorizer, refusals
from coord.nodes import NodeDirectory, NodeRecord, record_of
from zeronode.api.errors import Refused, Unavailable, detail_of, unreachable
from zeronode.protocol import keys
from zeronode.protocol.envelope import Selector, Verified

MIB = 1024 * 1024
GIB = 1024 * MIB
PAGE = 1000  # the ledger's largest page
# Nodes scored for a placement: enough feasible ones, not the whole fleet (Nomad, too, scores a sample).
SCORED_PER_NODE = 4
MIN_SCORED = 1000


@dataclass(frozen=True)
class Candidate:
    record: NodeRecord
    labels: frozenset[str]
    total: tuple[int, int]  # vCPUs, memory bytes
    free: tuple[int, int]

    def used_after(self, selector: Selector) -> float:
        """The share of the node held once this deployment's minimums are placed on it."""
        left_vcpus = max(0, self.free[0] - selector.min_vcpus) / max(1, self.total[0])
        left_memory = max(0, self.free[1] - selector.min_memory_mib * MIB) / max(1, self.total[1])
        return 1.0 - (left_vcpus + left_memory) / 2


class Placer:
    def __init__(self, ledger_url: str, http: httpx.AsyncClient, nodes: NodeDirectory, authorizer: Authorizer, *,
                 token: str | None = None):
        self.ledger_url = ledger_url.rstrip("/")
        self.http = http
        self.nodes = nodes
        self.authorizer = authorizer
        self.headers = {"authorization": f"Bearer {token}"} if token else {}

    async def place(self, verified: Verified, *, count: int | None = None, besides: Collection[str] = ()) -> list[str]:
        """The nodes chosen for the envelope's selector, best first: its `count` (or `count` more), none of the
        envelope's targets nor of `besides`; Refused (422 no_capacity) when too few fit."""
        envelope = verified.envelope
        selector = envelope.selector
        assert selector is not None
        count = selector.count if count is None else count
        taken = set(envelope.targets) | set(besides)
        enough = max(SCORED_PER_NODE * count, MIN_SCORED)
        feasible: list[Candidate] = []
        chosen: list[str] = []
        async for page in self._pages(selector):
            page = [c for c in page if c.record.node_id not in taken and c.labels.issuperset(selector.labels)]
            feasible += await self._permitted(verified, page)
            if len(feasible) >= enough and len(chosen := choose(feasible, selector, count)) == count:
                return chosen
        if len(chosen := choose(feasible, selector, count)) == count:
            return chosen
        spread = f", at most {selector.max_per_farm} a farm" if selector.max_per_farm else ""
        raise Refused(
            422, "no_capacity",
            f"{len(chosen)} of the {count} nodes asked for fit the selector ({len(feasible)} online, active "
            f"nodes with the free capacity and labels asked{spread}, that the signer may deploy on)",
            found=len(chosen), wanted=count,
        )

    async def _pages(self, selector: Selector) -> AsyncIterator[list[Candidate]]:
        """Pages of the nodes the ledger says are online, active and have the free capacity asked, in the
        selector's farms (each farm in turn). Each farm is read in id order from a random node id round to
        it again, so that when a large fleet is only sampled, the sample is drawn from all of it."""
        params: dict[str, object] = {
            "status": "online", "schedule": "active", "limit": PAGE,
            "min_free_vcpus": selector.min_vcpus, "min_free_memory": selector.min_memory_mib * MIB,
            "min_free_disk": selector.min_disk_gib * GIB,
        }
        start = keys.node_id(keys.b64url(secrets.token_bytes(32)))  # a random point among the node ids
        for farm in selector.farms or [None]:
            for after, upto in ((start, None), (None, start)):  # the ids after `start`, then those up to it
                while True:
                    page = await self._page({**params, **({"farm": farm} if farm else {}), **({"after": after} if after else {})})
                    wrapped = upto is not None and bool(page) and page[-1].record.node_id > upto
                    yield [c for c in page if c.record.node_id <= upto] if upto is not None else page
                    if len(page) < PAGE or wrapped:
                        break
                    after = page[-1].record.node_id

    async def _page(self, params: dict[str, object]) -> list[Candidate]:
        try:
            response = await self.http.get(f"{self.ledger_url}/v1/nodes", params=params, headers=self.headers)
        except httpx.HTTPError as exc:
            raise unreachable(exc, "the ledger", self.ledger_url) from exc
        if response.status_code != 200:
            raise Unavailable(f"the ledger answered {response.status_code}: {detail_of(response)[1]}"[:300])
        try:
            return [_candidate(node) for node in response.json()]
        except (ValueError, KeyError, TypeError) as exc:
            raise Unavailable(f"the ledger answered something unexpected: {exc!r}"[:300]) from None

    async def _permitted(self, verified: Verified, candidates: list[Candidate]) -> list[Candidate]:
        """The candidates the envelope's signer may deploy on (the others are skipped, not refused)."""
        try:
            user = await self.authorizer.rights.user(verified.envelope.signer)
            policies = await self.authorizer.rights.policies()
        except Unavailable as exc:
            raise Unavailable(f"cannot check the signer's rights: {exc}", reason="ledger_unavailable") from None
        records = {c.record.node_id: c.record for c in candidates}
        refused = refusals(user, records, policies, verified)  # type: ignore[arg-type]
        for candidate in candidates:
            self.nodes.remember(candidate.record)  # dispatch decides on what placement saw
        return [c for c in candidates if c.record.node_id not in refused]


def choose(feasible: list[Candidate], selector: Selector, count: int) -> list[str]:
    """Up to `count` of the feasible nodes, best first by the selector's strategy, at most max_per_farm a farm."""
    ranked = sorted(feasible, key=lambda c: c.record.node_id)
    ranked.sort(key=lambda c: c.used_after(selector), reverse=selector.strategy == "binpack")  # stable: ties by id
    chosen: list[str] = []
    per_farm: dict[str | None, int] = {}
    for candidate in ranked:
        farm = candidate.record.farm
        if selector.max_per_farm is not None and per_farm.get(farm, 0) >= selector.max_per_farm:
            continue
        per_farm[farm] = per_farm.get(farm, 0) + 1
        chosen.append(candidate.record.node_id)
        if len(chosen) == count:
            break
    return chosen


def _candidate(node: dict) -> Candidate:
    free = node.get("free") or {"vcpus": 0, "memory": 0}
    record = record_of(node["node_id"], node)
    return Candidate(
        record=record, labels=frozenset(node.get("labels") or ()),
        total=(node["capacity"]["vcpus"], node["capacity"]["memory"]), free=(free["vcpus"], free["memory"]),
    )

