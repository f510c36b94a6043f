"""The signed-request check as a FastAPI dependency (the protocol is in zeronode.protocol.signed_requests).

An app's factory configures the check once, with the app's window and clock,
and handlers take the key that signed through the `Signer` type:

    app.state.signed_request = SignedRequest(audience="ledger", window=settings.request_window)

    @router.post("/v1/users")
    async def create_user(signer: Signer): ...
"""

from __future__ import annotations

import time
from typing import Annotated

from fastapi import Depends, Request

from zeronode.api.errors import Refused
from zeronode.protocol.errors import VerificationError
from zeronode.protocol.signed_requests import DEFAULT_WINDOW, verify_request


class SignedRequest:
    """FastAPI dependency: the public key that signed the request for `audience` (this service: a node's
    id, "ledger", "coord"), or Refused (401, with the reason)."""

    def __init__(self, audience: str, *, window: float = DEFAULT_WINDOW, clock=time.time):
        self.audience = audience
        self.window = window
        self.clock = clock

    async def __call__(self, request: Request) -> str:
        target = request.scope.get("raw_path") or request.url.path.encode()
        query = request.scope.get("query_string", b"")
        if query:
            target += b"?" + query
        try:
            return verify_request(
                request.method,
                target.decode("ascii", errors="replace"),
                dict(request.headers),
                await request.body(),
                audience=self.audience,
                window=self.window,
                now=self.clock(),
            )
        except VerificationError as exc:
            raise Refused(401, exc.reason, str(exc)) from None


async def signer(request: Request) -> str:
    """The public key that signed `request`, as checked by the SignedRequest of its app (app.state.signed_request)."""
    check: SignedRequest = request.app.state.signed_request
    return await check(request)


Signer = Annotated[str, Depends(signer)]
