"""`POST /v1/nodes/{id}/uptime`, the ledger's hot path, answered beneath FastAPI's routing.

Every node sends one of these a minute: at 300,000 nodes, 5,000 a second.
FastAPI's route for it (ledger.routes.uptime) is what the OpenAPI document
shows; this plain ASGI layer, inside the request middleware (request ids,
metrics), answers the same requests with the same function (`answer`) before
they reach FastAPI's middleware, router and dependency solving, which cost a
report more than its signature check (py-spy, bench/ledger.py). Any other
request goes on to FastAPI.

The checks are the route's, in its order: a declared length within MAX_BODY
(411, 413), the signature (401), the signer's own node (403), the body as
strict JSON (400, 422), then the report itself (ledger.uptime: 404, 409, 422).
A refusal, or the database away (503), is answered and logged as
zeronode.api.handlers does.
"""

from __future__ import annotations

import json
import logging
import re
from collections.abc import Mapping
from types import SimpleNamespace

from ledger import reports
from ledger.routes.dependencies import Ledger, declared_length
from zeronode.api.auth import SignedRequest
from zeronode.api.errors import Refused
from zeronode.api.handlers import RETRY_AFTER, foreign_answer, log_back_end_away, log_refusal, refusal_headers
from zeronode.api.middleware import ASGIApp, Message, Scope
from zeronode.protocol.errors import VerificationError
from zeronode.protocol.signed_requests import verify_request

log = logging.getLogger("zeronode.ledger")

TEMPLATE = "/v1/nodes/{node_id}/uptime"
PATH = re.compile(r"/v1/nodes/([^/]+)/uptime")
ROUTE = SimpleNamespace(path=TEMPLATE)  # what the request middleware labels the metrics with: the template
JSON_HEADERS = [(b"content-type", b"application/json")]


async def answer(
    ledger: Ledger, check: SignedRequest, node_id: str, target: str, headers: Mapping[str, str], body: bytes
) -> bytes:
    """The 200 answer's body to a report received with its length checked (`target`: path and ?query), or Refused."""
    try:
        signer = verify_request("POST", target, headers, body, audience=check.audience, window=check.window, now=check.clock())
    except VerificationError as exc:
        raise Refused(401, exc.reason, str(exc)) from None
    received = await ledger.reports.submit(reports.single(signer, node_id, body))  # stored with others: ledger.gathering
    ledger.metrics.count(received)
    if isinstance(received, Refused):
        raise received
    return received.model_dump_json(exclude_none=True).encode()


class ReportRoute:
    """ASGI middleware: answers POST /v1/nodes/{id}/uptime itself, passes everything else on to `app`."""

    def __init__(self, app: ASGIApp):
        self.app = app

    async def __call__(self, scope: Scope, receive, send) -> None:
        matched = PATH.fullmatch(scope["path"]) if scope["type"] == "http" and scope["method"] == "POST" else None
        if matched is None:
            await self.app(scope, receive, send)
            return
        scope["route"] = ROUTE
        headers = {name.decode("latin-1"): value.decode("latin-1") for name, value in scope["headers"]}
        try:
            declared = declared_length(headers)
            body = await read_body(receive, declared)
            if body is None:
                return  # the client went away
            target = (scope.get("raw_path") or scope["path"].encode()).decode("ascii", errors="replace")
            if scope.get("query_string"):
                target += "?" + scope["query_string"].decode("ascii", errors="replace")
            status, extra, content = 200, None, await answer(
                scope["app"].state.ledger, scope["app"].state.signed_request, matched[1], target, headers, body
            )
        except Refused as refusal:
            log_refusal(log, scope["path"], refusal)
            status, extra, content = refusal.status or 500, refusal_headers(refusal), json.dumps(refusal.body()).encode()
        except Exception as exc:  # the database away is 503, as zeronode.api.handlers answers it; anything else, 500
            away = foreign_answer(exc)
            if away is None:
                raise
            status, reason, message = away
            log_back_end_away(log, scope["path"], exc, reason)
            extra, content = RETRY_AFTER, json.dumps({"reason": reason, "message": message}).encode()
        response_headers = [*JSON_HEADERS, (b"content-length", str(len(content)).encode())]
        response_headers += [(name.encode("latin-1"), value.encode("latin-1")) for name, value in (extra or {}).items()]
        await send({"type": "http.response.start", "status": status, "headers": response_headers})
        await send({"type": "http.response.body", "body": content})


async def read_body(receive, declared: int) -> bytes | None:
    """The request's body, at most `declared` bytes (a longer one is refused, 413), or None if the client left."""
    chunks, size = [], 0
    while True:
        message: Message = await receive()
        if message["type"] == "http.disconnect":
            return None
        chunk = message.get("body", b"")
        size += len(chunk)
        if size > declared:
            raise Refused(413, "too_large", f"request body over its declared {declared} bytes")
        chunks.append(chunk)
        if not message.get("more_body", False):
            return b"".join(chunks)
