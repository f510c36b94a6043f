"""Uptime reports: one node's own (signed by it), or a batch of such signed reports forwarded by a relay."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Depends, Request
from fastapi.responses import JSONResponse
from starlette.concurrency import run_in_threadpool

from ledger import reports
from ledger.routes.dependencies import LedgerDep, ledger_of, require_declared_length, write_signer
from zeronode.api.errors import Refused
from zeronode.api.ledger import UptimeBatch, UptimeReport
from zeronode.api.openapi import ERRORS, request_body

router = APIRouter(tags=["uptime"], responses=ERRORS)


@router.post("/v1/nodes/{node_id}/uptime", openapi_extra=request_body(UptimeReport))
async def report_uptime(node_id: str, request: Request) -> JSONResponse:
    # The ledger's hot path takes no dependencies from FastAPI: each one resolved costs a request tens of
    # microseconds. The signature is checked here, as WriteSigner would, before anything else is read.
    public_key = await write_signer(request)
    ledger = ledger_of(request)
    report = reports.single(public_key, node_id, await request.body())
    answer = await ledger.reports.submit(report)  # stored with the reports that came with it (ledger.gathering)
    ledger.metrics.count(answer)
    if isinstance(answer, Refused):
        raise answer
    return JSONResponse(answer.model_dump(exclude_none=True))


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
