"""Uptime reports: one node's own (signed by it), or a batch of such signed reports forwarded by a relay."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Depends, Request
from fastapi.responses import JSONResponse, Response
from starlette.concurrency import run_in_threadpool

from ledger import reports
from ledger.routes.report_route import answer
from ledger.routes.dependencies import LedgerDep, ledger_of, require_declared_length, write_signer
from zeronode.api.errors import Refused
from zeronode.api.ledger import UptimeAccepted, UptimeBatch, UptimeReport
from zeronode.api.openapi import ERRORS, request_body

router = APIRouter(tags=["uptime"], responses=ERRORS)


# ledger.routes.report_route answers these requests before FastAPI routes them, with the same `answer`: this
# route is what the OpenAPI document shows, and serves them where that layer is not installed.
@router.post("/v1/nodes/{node_id}/uptime", openapi_extra=request_body(UptimeReport), response_model=UptimeAccepted)
async def report_uptime(node_id: str, request: Request) -> Response:
    await require_declared_length(request)
    target = (request.scope.get("raw_path") or request.url.path.encode()).decode("ascii", errors="replace")
    if query := request.scope.get("query_string"):
        target += "?" + query.decode("ascii", errors="replace")
    ledger, check = ledger_of(request), request.app.state.signed_request
    return Response(await answer(ledger, check, node_id, target, request.headers, await request.body()), media_type="application/json")


# Not signed as a whole: each report in it is, by its node. A relay needs no key. The body is cut into
# its items' texts, each parsed and answered alone (ledger.reports); only a body that is not
# {"reports": [...]}, has more than max_batch items or is over MAX_BODY is refused whole.
@router.post("/v1/uptime/batch", dependencies=[Depends(require_declared_length)], openapi_extra=request_body(UptimeBatch))
async def report_batch(request: Request, ledger: LedgerDep) -> JSONResponse:
    db, settings, clock = ledger.db, ledger.settings, ledger.clock
    raw = await request.body()
    answers = await run_in_threadpool(
        reports.ingest_raw_batch, db, raw, limit=settings.max_batch, window=settings.request_window, now=clock(),
        skew=settings.skew,
    )
    results: list[dict[str, Any]] = []
    for answer in answers:
        ledger.metrics.count(answer)
        if isinstance(answer, Refused):
            results.append({"status_code": answer.status, "error": answer.body()})
        else:
            results.append({"status_code": 200, **answer.model_dump()})
    return JSONResponse(results)
