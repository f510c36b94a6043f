"""The client side of the coordinator: submit a signed envelope, follow it, cancel it.

    coord = CoordClient("http://127.0.0.1:8200", key=signing_key)
    coord.submit(envelope)
    for progress in coord.follow(envelope.id):   # each change, until every node is done
        print(progress["status"], progress["counts"])

Reads and cancels are signed requests (audience "coord") with the client's
`key`: coord shows a deployment to its signer and to its admins only. Without
a key a client can still submit (the envelope is signed), but its reads are
refused (Refused, 401).
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from typing import Any

import httpx
import nacl.signing

from zeronode.api.errors import ServiceError, from_response, unreachable
from zeronode.protocol.envelope import Envelope
from zeronode.protocol.signed_requests import COORD, SignedRequestAuth

DEFAULT_URL = "http://127.0.0.1:8200"
FINAL = ("succeeded", "failed", "canceled")


class CoordClient:
    def __init__(
        self,
        base_url: str = DEFAULT_URL,
        key: nacl.signing.SigningKey | None = None,
        *,
        timeout: float = 30.0,
        transport: httpx.BaseTransport | None = None,
    ):
        """`key` signs reads and cancels: the deployments' signer's, or a coord admin's."""
        self.http = httpx.Client(base_url=base_url, timeout=timeout, transport=transport)
        self.auth = SignedRequestAuth(key, COORD) if key is not None else None

    def _send(self, method: str, path: str, *, signed: bool = True, **kwargs: Any) -> Any:
        if signed and self.auth is not None:
            kwargs.setdefault("auth", self.auth)
        try:
            response = self.http.request(method, path, **kwargs)
        except httpx.HTTPError as exc:  # refused, reset, timeout, and answers httpx cannot decode
            raise unreachable(exc, "the coordinator", self.http.base_url) from exc
        if response.status_code >= 400:
            raise from_response(response, "the coordinator")
        return response.json()

    def submit(self, envelope: Envelope | str) -> dict[str, Any]:
        """{id, targets, duplicate}"""
        body = envelope.to_json() if isinstance(envelope, Envelope) else envelope
        return self._send("POST", "/v1/deployments", signed=False, content=body, headers={"content-type": "application/json"})

    def deployment(self, deployment_id: str, *, wait: float = 0, version: int = -1, tasks: bool = True) -> dict[str, Any]:
        """Its status, counts and per-node tasks (unless `tasks` is false); with `wait`, returns at the
        first change past `version`."""
        params: dict[str, Any] = {"wait": wait, "version": version} if wait else {}
        if not tasks:
            params["tasks"] = "false"
        return self._send("GET", f"/v1/deployments/{deployment_id}", params=params, timeout=wait + self.http.timeout.read)

    def deployments(self, *, status: str | None = None, signer: str | None = None, limit: int = 50) -> list[dict]:
        """Newest first: the key's own deployments, or anyone's (`signer`: one signer's) for a coord admin."""
        params = {key: value for key, value in {"status": status, "signer": signer, "limit": limit}.items() if value}
        return self._send("GET", "/v1/deployments", params=params)

    def follow(self, deployment_id: str, *, timeout: float | None = None, tasks: bool = True) -> Iterator[dict[str, Any]]:
        """Each new state of the deployment (long-polling), ending with its final one, which always has
        its tasks; the others have them only when `tasks` is true (costly for thousands of nodes)."""
        deadline = None if timeout is None else time.monotonic() + timeout
        version = -1
        while True:
            # Each long poll ends by the deadline: a caller's timeout is kept to within a round trip.
            wait = 20.0 if deadline is None else min(20.0, max(0.0, deadline - time.monotonic()))
            current = self.deployment(deployment_id, wait=wait, version=version, tasks=tasks)
            if current["status"] in FINAL:
                yield current if tasks else self.deployment(deployment_id)
                return
            if current["version"] != version:
                version = current["version"]
                yield current
            if deadline is not None and time.monotonic() >= deadline:
                raise ServiceError(f"deployment {deployment_id} did not finish within {timeout:.0f} s", reason="timed_out")

    def cancel(self, deployment_id: str, key: nacl.signing.SigningKey | None = None) -> dict[str, Any]:
        """Cancel it, signed by `key` (default: the client's key)."""
        auth = SignedRequestAuth(key, COORD) if key is not None else self.auth
        return self._send("POST", f"/v1/deployments/{deployment_id}/cancel", auth=auth)

    def close(self) -> None:
        self.http.close()

    def __enter__(self) -> CoordClient:
        return self

    def __exit__(self, *_exc: Any) -> None:
        self.close()
