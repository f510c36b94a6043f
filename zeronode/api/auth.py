"""The signed-request check as a FastAPI dependency (the protocol is in zeronode.protocol.signed_requests)."""

from __future__ import annotations

import time

from fastapi import HTTPException, Request

from zeronode.protocol.errors import VerificationError
from zeronode.protocol.signed_requests import DEFAULT_WINDOW, verify_request


class SignedRequest:
    """FastAPI dependency: the public key that signed the request, or a 401 with a JSON reason.

        @app.post("/v1/users")
        async def create_user(signer: str = Depends(SignedRequest())): ...
    """

    def __init__(self, *, window: float = DEFAULT_WINDOW, clock=time.time):
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
                window=self.window,
                now=self.clock(),
            )
        except VerificationError as exc:
            raise HTTPException(status_code=401, detail={"reason": exc.reason, "message": str(exc)}) from None
