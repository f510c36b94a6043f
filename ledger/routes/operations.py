"""/health (checks the database), /ping (does nothing: a liveness probe) and /metrics."""

from __future__ import annotations

from fastapi import APIRouter
from fastapi.responses import JSONResponse, Response
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from ledger.routes.dependencies import LedgerDep
from zeronode.api.openapi import ERRORS

router = APIRouter(tags=["operations"], responses=ERRORS)


@router.get("/health")
def health(ledger: LedgerDep) -> JSONResponse:
    healthy = ledger.db.ping()
    return JSONResponse(status_code=200 if healthy else 503, content={"status": "ok" if healthy else "database unavailable"})


@router.get("/ping")
async def ping() -> dict[str, str]:
    return {"status": "ok"}


# A plain `def`, run in the thread pool: a scrape counts the nodes in the database (metrics.NodeCounts).
@router.get("/metrics")
def scrape(ledger: LedgerDep) -> Response:
    return Response(generate_latest(ledger.metrics.registry), media_type=CONTENT_TYPE_LATEST)
