"""Uptime reports: one node's own (signed by it), or a batch of such signed reports forwarded by a relay."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Depends, Request
from fastapi.responses import JSONResponse
from starlette.concurrency import run_in_threadpool

from ledger import reports, rollouts, uptime
from ledger.routes.dependencies import LedgerDep, WriteSigner, ledger_of, require_declared_length
from zeronode.api.errors import Refused
from zeronode.api.ledger import UptimeAccepted, UptimeBatch, UptimeReport
from zeronode.api.openapi import ERRORS, request_body

router = APIRouter(tags=["uptime"], responses=ERRORS)


@router.post("/v1/nodes/{node_id}/uptime", openapi_extra=request_body(UptimeReport))
async def report_uptime(node_id: str, request: Request, public_key: WriteSigner) -> JSONResponse:
    ledger = ledger_of(request)
    report = reports.single(public_key, node_id, await request.body())
    db, settings, clock = ledger.db, ledger.settings, ledger.clock
    if db.is_sqlite:
        # Inline: SQLite writes one at a time anyway, and this one takes a fraction of a millisecond,
        # less than the hop to a worker thread and its GIL hand-offs (40% more reports/s, bench/ledger.py).
        answer = _ingest(db, report, clock(), settings.skew)
    else:  # PostgreSQL: the write waits on the network, so it waits in a thread
        answer = await run_in_threadpool(_ingest, db, report, clock(), settings.skew)
    ledger.metrics.count(answer)
    if isinstance(answer, Refused):
        raise answer
    return JSONResponse(answer.model_dump(exclude_none=True))


def _ingest(db, report: tuple[str, UptimeReport], now: float, skew: float) -> UptimeAccepted | Refused:
    """One report stored, answered with the release the node should run (ledger.rollouts)."""
    farms: dict[str, str] = {}
    [answer] = uptime.ingest(db, [report], now=now, skew=skew, farms=farms)
    if isinstance(answer, Refused):
        return answer
    release = rollouts.after_report(db, report[0], farms[report[0]], report[1], now)
    return answer if release is None else answer.model_copy(update={"release": release})


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
