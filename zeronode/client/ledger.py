"""A client of the ledger's HTTP API (docs/ledger.md), with typed errors.

    with LedgerClient("http://ledger:8400", node_key) as ledger:
        ledger.register(registration)
        ledger.report_uptime(uptime=3600)

Writes are signed with the client's key (docs/protocol.md), and so is the one
read that needs it (node_rights). Failures are
zeronode.api.errors' Unavailable (unreachable, timed out, 5xx: worth retrying)
or Refused (4xx, with the ledger's reason: retrying the same will not help;
NotFound and Conflict are two of them).
"""

from __future__ import annotations

import functools
import time
from pathlib import Path
from typing import Any, TypeVar

import httpx
import nacl.signing
from pydantic import BaseModel, TypeAdapter, ValidationError

from zeronode.api.errors import Unavailable, from_response, unreachable
from zeronode.api.ledger import (
    NewUser,
    NodeDetail,
    NodeFilters,
    NodeRegistration,
    NodeSchedule,
    NodeView,
    ScheduleChange,
    SignedRequestCopy,
    UptimeAccepted,
    UptimeReport,
    Usage,
    UserView,
)
from zeronode.api.releases import ReleaseNew, ReleaseView, UpdateResult
from zeronode.api.rights import NodeRights, PolicyChange, PolicyFilters, PolicyRemoved, SignaturePolicy
from zeronode.api.rollouts import ChannelChange, ChannelView, FollowChange, FollowView
from zeronode.protocol import keys
from zeronode.protocol.signed_requests import (
    AUDIENCE_HEADER,
    KEY_HEADER,
    LEDGER,
    SIGNATURE_HEADER,
    TIMESTAMP_HEADER,
    SignedRequestAuth,
)

Answer = TypeVar("Answer")
JSON = {"content-type": "application/json"}


@functools.cache
def _adapter(kind: Any) -> TypeAdapter:
    return TypeAdapter(kind)  # once per answer type, not once per request


class LedgerClient:
    def __init__(
        self,
        base_url: str,
        key: nacl.signing.SigningKey | None = None,
        *,
        token: str | None = None,
        timeout: float = 10.0,
        transport: httpx.BaseTransport | None = None,
    ):
        """`key` signs writes (a node's key, an admin's); `token` is the ledger's read token, if it has one."""
        headers = {"authorization": f"Bearer {token}"} if token else {}
        self.http = httpx.Client(base_url=base_url, timeout=timeout, transport=transport, headers=headers)
        self.key = key
        self.auth = SignedRequestAuth(key, LEDGER) if key is not None else None

    @property
    def node_id(self) -> str:
        """The id of the node whose key this client signs with."""
        return keys.node_id(self._signer().public_key)

    def _signer(self) -> SignedRequestAuth:
        if self.auth is None:
            raise ValueError("this ledger client has no key to sign with")
        return self.auth

    def _send(
        self, method: str, path: str, answer: type[Answer] | Any, *, body: BaseModel | None = None, signed: bool = False,
        **kwargs,
    ) -> Answer:
        """The answer as `answer`; `body`, when given, is sent signed by this client's key, and so is
        a request without one when `signed` (a signed GET: the signature covers its empty body)."""
        if body is not None:
            kwargs.update(content=body.model_dump_json().encode(), headers=JSON, auth=self._signer())
        elif signed:
            kwargs.update(auth=self._signer())
        try:
            response = self.http.request(method, path, **kwargs)
        except httpx.TransportError as exc:  # refused, reset, DNS failure, timeout
            raise unreachable(exc, "the ledger", self.http.base_url) from exc
        if response.status_code >= 400:
            raise from_response(response, "the ledger")
        try:
            return _adapter(answer).validate_json(response.content)
        except ValidationError as exc:
            raise Unavailable(f"unexpected answer from the ledger: {exc}") from None

    # -- nodes -------------------------------------------------------------

    def register(self, registration: NodeRegistration) -> NodeView:
        """Register this client's node, or update its record."""
        return self._send("POST", "/v1/nodes", NodeView, body=registration)

    def report_uptime(
        self, uptime: int, timestamp: int | None = None, *, reserved: Usage | None = None, free: Usage | None = None,
        health: dict[str, bool] | None = None, version: str | None = None, update: UpdateResult | None = None,
    ) -> UptimeAccepted:
        """Report this client's node's uptime (seconds since boot) at `timestamp` (default: now), with what its
        VMs and volumes hold, what is free, its parts' health, the version it runs and its last update's result.
        The answer names the release the node should run, if the ledger has one for it."""
        report = UptimeReport(
            uptime=uptime, timestamp=int(time.time()) if timestamp is None else timestamp,
            reserved=reserved, free=free, health=health, version=version, update=update,
        )
        return self._send("POST", f"/v1/nodes/{self.node_id}/uptime", UptimeAccepted, body=report)

    def signed_report(self, uptime: int, timestamp: int) -> SignedRequestCopy:
        """A report request signed now but not sent: what report_batch (or a relay) forwards."""
        body = UptimeReport(uptime=uptime, timestamp=timestamp).model_dump_json().encode()
        request = self.http.build_request("POST", f"/v1/nodes/{self.node_id}/uptime", content=body, headers=JSON)
        next(self._signer().auth_flow(request))
        return SignedRequestCopy(
            method="POST",
            target=request.url.raw_path.decode("ascii"),
            headers={name: request.headers[name] for name in (KEY_HEADER, AUDIENCE_HEADER, TIMESTAMP_HEADER, SIGNATURE_HEADER)},
            body=body.decode(),
        )

    def report_batch(self, copies: list[SignedRequestCopy]) -> list[dict[str, Any]]:
        """Forward signed reports (anyone's) in one request; one {status_code, ...} per report, in order."""
        batch = {"reports": [copy.model_dump() for copy in copies]}
        return self._send("POST", "/v1/uptime/batch", list[dict[str, Any]], json=batch)

    def set_schedule(self, node_id: str, change: ScheduleChange) -> NodeSchedule:
        """Cordon, drain or reactivate a node (an admin's signed change)."""
        return self._send("POST", f"/v1/nodes/{node_id}/schedule", NodeSchedule, body=change)

    def node(self, node_id: str) -> NodeDetail:
        return self._send("GET", f"/v1/nodes/{node_id}", NodeDetail)

    def nodes(self, filters: NodeFilters | None = None, **criteria: Any) -> list[NodeView]:
        """One page of nodes in id order, by NodeFilters or its fields: `nodes(status="online", farm="f1")`."""
        filters = filters or NodeFilters(**criteria)
        return self._send("GET", "/v1/nodes", list[NodeView], params=filters.model_dump(exclude_none=True))

    def node_rights(self, node_id: str | None = None) -> NodeRights:
        """Who has which roles on a node (default: this client's), and the policies that cover it.
        Signed: the ledger answers the node itself and its admins only."""
        return self._send("GET", f"/v1/nodes/{node_id or self.node_id}/rights", NodeRights, signed=True)

    # -- releases and rollouts ---------------------------------------------

    def publish_release(self, release: ReleaseNew) -> ReleaseView:
        """Publish a release (an admin's signed request); publishing the same one again is harmless."""
        return self._send("POST", "/v1/releases", ReleaseView, body=release)

    def upload_artifact(self, version: str, path: Path) -> ReleaseView:
        """Upload a published release's artifact to the ledger, streamed; it keeps it only if its digest is the one published."""
        with open(path, "rb") as file:
            headers = {"content-type": "application/x-tar", "content-length": str(path.stat().st_size)}
            return self._send("PUT", f"/v1/releases/{version}/artifact", ReleaseView, content=file, headers=headers,
                              timeout=httpx.Timeout(self.http.timeout.connect, read=300.0, write=300.0, pool=10.0))

    def releases(self) -> list[ReleaseView]:
        return self._send("GET", "/v1/releases", list[ReleaseView])

    def release(self, version: str) -> ReleaseView:
        return self._send("GET", f"/v1/releases/{version}", ReleaseView)

    def change_channel(self, name: str, change: ChannelChange) -> ChannelView:
        """Promote a release to a channel, pause, resume or roll it back (an admin's signed change)."""
        return self._send("POST", f"/v1/channels/{name}", ChannelView, body=change)

    def channels(self) -> list[ChannelView]:
        return self._send("GET", "/v1/channels", list[ChannelView])

    def channel(self, name: str) -> ChannelView:
        return self._send("GET", f"/v1/channels/{name}", ChannelView)

    def follow(self, change: FollowChange) -> FollowView:
        """Set what a farm or a node follows: a channel, a pinned version, or (neither) the default."""
        return self._send("POST", "/v1/follows", FollowView, body=change)

    def follows(self) -> list[FollowView]:
        return self._send("GET", "/v1/follows", list[FollowView])

    # -- signature policies ------------------------------------------------

    def policies(self, scope: str | None = None, target: str | None = None) -> list[SignaturePolicy]:
        """The signature policies, all of them or those of one scope or target."""
        filters = PolicyFilters(scope=scope, target=target)
        return self._send("GET", "/v1/policies", list[SignaturePolicy], params=filters.model_dump(exclude_none=True))

    def set_policy(self, change: PolicyChange) -> SignaturePolicy | PolicyRemoved:
        """Set a policy (the answer: the policy now in force), or remove it (threshold 0: PolicyRemoved);
        this client's key must be an admin's, and `change.sequence` greater than the policy's last one."""
        return self._send("POST", "/v1/policies", SignaturePolicy | PolicyRemoved, body=change)

    # -- users -------------------------------------------------------------

    def user(self, public_key: str, node: str | None = None) -> UserView:
        """A user's roles and rights; with `node`, whether they may deploy there (`may_deploy`)."""
        return self._send("GET", f"/v1/users/{public_key}", UserView, params={"node": node} if node else {})

    def create_user(self, user: NewUser) -> UserView:
        """Create a user or replace their rights (empty roles revoke them); this client's key must be an admin's,
        and `user.sequence` greater than the user's last one (Conflict, stale_sequence, if not)."""
        return self._send("POST", "/v1/users", UserView, body=user)

    def close(self) -> None:
        self.http.close()

    def __enter__(self) -> LedgerClient:
        return self

    def __exit__(self, *_exc) -> None:
        self.close()
