"""/health and /metrics: what an operator's probes and Prometheus read."""

from __future__ import annotations

from fastapi import APIRouter
from fastapi.responses import JSONResponse, Response
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from supervisor.routes.dependencies import SupervisorDep

router = APIRouter(tags=["operations"])


@router.get("/health")
def health(supervisor: SupervisorDep) -> JSONResponse:
    """200 while the node's Redis answers, 503 when it does not; and where the node's rights come from
    (zeronode.node.authorizer: ledger, stale, local or unreadable), which a probe may alert on."""
    healthy = supervisor.healthy()
    return JSONResponse(
        status_code=200 if healthy else 503,
        content={"status": "ok" if healthy else "redis unavailable", "node": supervisor.node_id,
                 "rights": supervisor.authorizer.rights_state},
    )


# A plain `def`, run in the thread pool: a scrape reads the queue's depth from Redis (app.QueueDepth).
@router.get("/metrics")
def metrics(supervisor: SupervisorDep) -> Response:
    return Response(generate_latest(supervisor.metrics.registry), media_type=CONTENT_TYPE_LATEST)
