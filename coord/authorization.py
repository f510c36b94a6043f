"""Whether a verified envelope may run on its targets, asked of the ledger before any task exists.

For each target the ledger's records give the signer's roles there
(zeronode.api.rights.roles_on: the user's roles, nodes and farms, and the
node's farm) and the signature policies that cover it; zeronode.api.rights.authorize
decides, as the supervisor and the runner decide again later. A target the
ledger does not know is refused too. One refused target refuses the whole
deployment, and nothing is stored.

Users and policies are cached for `ttl` seconds (bounded), so a deployment to a
thousand nodes costs a handful of ledger requests (its nodes come from
coord.nodes, 200 a request) and a revocation applies within `ttl`.

Only two answers are taken as the ledger's word: 200 in the expected shape,
and 404 for a user (GET /v1/users/KEY: a key the ledger has no record of, which
has no rights). Anything else, a 404 for the policies included (the ledger
always serves GET /v1/policies: a 404 there means coord is asking something
that is not the ledger), leaves the rights unknown: Unavailable, 503
ledger_unavailable, and nothing is stored. Unknown rights grant nothing.
"""

from __future__ import annotations

import itertools
import time
from collections.abc import Callable
from typing import Any

import httpx
from pydantic import TypeAdapter, ValidationError

from coord.nodes import NodeDirectory, NodeRecord
from zeronode.api import rights
from zeronode.api.errors import Refused, Unavailable, detail_of, unreachable
from zeronode.api.ledger import UserView
from zeronode.api.rights import SignaturePolicy
from zeronode.protocol.envelope import Verified
from zeronode.protocol.errors import NotAuthorized, PolicyNotMet

MAX_USERS = 10_000  # users cached at once; the oldest goes beyond that
MAX_LISTED = 100  # refused targets a refusal lists (it counts them all)
POLICIES = TypeAdapter(list[SignaturePolicy])


class Cache:
    """Values kept `ttl` seconds, at most `size` of them (the oldest goes first)."""

    def __init__(self, ttl: float, size: int):
        self.ttl, self.size = ttl, size
        self._entries: dict[str, tuple[float, Any]] = {}

    async def get(self, key: str, load: Callable[[], Any]) -> Any:
        entry = self._entries.get(key)
        if entry is not None and entry[0] > time.monotonic():
            return entry[1]
        value = await load()
        self._entries.pop(key, None)
        if len(self._entries) >= self.size:
            self._entries.pop(next(iter(self._entries)))
        self._entries[key] = (time.monotonic() + self.ttl, value)
        return value


class LedgerRights:
    """The ledger's users (GET /v1/users/KEY) and signature policies (GET /v1/policies), cached briefly."""

    def __init__(self, ledger_url: str, http: httpx.AsyncClient, *, token: str | None = None, ttl: float = 5.0):
        self.ledger_url = ledger_url.rstrip("/")
        self.http = http
        self.headers = {"authorization": f"Bearer {token}"} if token else {}
        self._users = Cache(ttl, MAX_USERS)
        self._policies = Cache(ttl, 1)

    async def user(self, public_key: str) -> UserView | None:
        """The user's record, or None when the ledger has none (no rights at all)."""
        return await self._users.get(public_key, lambda: self._load_user(public_key))

    async def policies(self) -> list[SignaturePolicy]:
        return await self._policies.get("", self._load_policies)

    async def _load_user(self, public_key: str) -> UserView | None:
        response = await self._get(f"/v1/users/{public_key}")
        if response.status_code == 404:
            return None
        return self._parse(response, lambda body: UserView.model_validate_json(body))

    async def _load_policies(self) -> list[SignaturePolicy]:
        # No 404 exception here: every ledger serves GET /v1/policies, so a 404 means ledger_url (or a proxy
        # before it) sends coord somewhere else, and reading that as "no policies" would skip them all.
        return self._parse(await self._get("/v1/policies"), POLICIES.validate_json)

    async def _get(self, path: str) -> httpx.Response:
        try:
            return await self.http.get(f"{self.ledger_url}{path}", headers=self.headers)
        except httpx.HTTPError as exc:
            raise unreachable(exc, "the ledger", self.ledger_url) from exc

    @staticmethod
    def _parse(response: httpx.Response, parse: Callable[[bytes], Any]) -> Any:
        # Any other answer leaves the rights unknown, and unknown rights grant nothing: refused for now.
        if response.status_code != 200:
            raise Unavailable(f"the ledger answered {response.status_code}: {detail_of(response)[1]}"[:300])
        try:
            return parse(response.content)
        except ValidationError as exc:
            raise Unavailable(f"the ledger answered something unexpected: {exc.error_count()} problems") from None


class Authorizer:
    def __init__(self, rights_source: LedgerRights, nodes: NodeDirectory):
        self.rights = rights_source
        self.nodes = nodes

    async def check(self, verified: Verified) -> None:
        """Return when the envelope's signer may run it on every target; else Refused(403) naming the
        refused targets, or Unavailable(503) when the ledger cannot say."""
        envelope = verified.envelope
        try:
            user = await self.rights.user(envelope.signer)
            policies = await self.rights.policies()
            records = await self.nodes.records(envelope.targets)
        except Unavailable as exc:
            raise Unavailable(f"cannot check the signer's rights: {exc}", reason="ledger_unavailable") from None
        refused = refusals(user, records, policies, verified)
        if refused:
            raise refusal(refused, len(envelope.targets))


def refusals(
    user: UserView | None, records: dict[str, NodeRecord | None], policies: list[SignaturePolicy], verified: Verified
) -> dict[str, tuple[str, str]]:
    """The targets the envelope may not run on, each with (reason, message)."""
    signer = verified.envelope.signer
    refused: dict[str, tuple[str, str]] = {}
    for node_id, record in records.items():
        if record is None:
            refused[node_id] = ("unknown_node", f"node {node_id} is not in the ledger")
            continue
        roles = rights.roles_on(user.roles, user.nodes, user.farms, node_id, record.farm) if user else rights.NONE
        covering = [policy for policy in policies if policy.covers(node_id, record.farm)]
        try:
            rights.authorize(roles, covering, verified.signers, signer)
        except (NotAuthorized, PolicyNotMet) as exc:
            refused[node_id] = (exc.reason, str(exc))
    return refused


def refusal(refused: dict[str, tuple[str, str]], targets: int) -> Refused:
    """One 403 for the whole deployment: policy_not_met when that is all that failed, else not_authorized."""
    reasons = {reason for reason, _ in refused.values()}
    reason = "policy_not_met" if reasons == {"policy_not_met"} else "not_authorized"
    first, (_, why) = next(iter(refused.items()))
    listed = {node: {"reason": r, "message": m} for node, (r, m) in itertools.islice(refused.items(), MAX_LISTED)}
    return Refused(
        403, reason, f"refused on {len(refused)} of the {targets} target nodes (first, {first}: {why})",
        nodes=listed, refused=len(refused),
    )
