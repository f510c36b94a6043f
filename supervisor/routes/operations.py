"""/health and /metrics: what an operator's probes and Prometheus read."""

from __future__ import annotations

import redis

import zeronode
from fastapi import APIRouter
from fastapi.responses import JSONResponse, Response
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from supervisor.routes.dependencies import SupervisorDep
from zeronode.api.openapi import ERRORS
from zeronode.node.queue.durability import UNKNOWN

router = APIRouter(tags=["operations"], responses=ERRORS)


@router.get("/health")
def health(supervisor: SupervisorDep) -> JSONResponse:
    """200 while the node's Redis answers and is one the node may run on (append-only, or
    allow_volatile_queue), 503 otherwise; its persistence, read again ("aof", "rdb", "none", "unknown");
    the version it runs (an update checks it); its runner pool (supervisor.service.runner_pool: runners, jobs
    running and queued, counts only; null while Redis is away); and where the node's rights come from (zeronode.node.authorizer: ledger, stale, local or unreadable),
    which a probe may alert on."""
    status, persistence, runners = "redis unavailable", supervisor.durability.mode or UNKNOWN, None
    if supervisor.healthy():
        try:
            persistence = supervisor.durability.read()
            status = "ok" if supervisor.durability.acceptable else "queue not append-only"
            runners = supervisor.runner_pool()
        except redis.RedisError:
            pass
    return JSONResponse(
        status_code=200 if status == "ok" else 503,
        content={"status": status, "node": supervisor.node_id, "version": zeronode.__version__,
                 "queue_persistence": persistence, "rights": supervisor.authorizer.rights_state, "runners": runners},
    )


# A plain `def`, run in the thread pool: a scrape reads the queue's depth from Redis (app.QueueDepth).
@router.get("/metrics")
def metrics(supervisor: SupervisorDep) -> Response:
    return Response(generate_latest(supervisor.metrics.registry), media_type=CONTENT_TYPE_LATEST)
