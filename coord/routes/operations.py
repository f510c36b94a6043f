"""/health (checks the shared Redis) and /metrics."""

from __future__ import annotations

import redis.asyncio as redis
from fastapi import APIRouter
from fastapi.responses import JSONResponse, Response
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from coord.routes.dependencies import CoordDep
from zeronode.api.openapi import ERRORS

router = APIRouter(tags=["operations"], responses=ERRORS)


@router.get("/health")
async def health(coord: CoordDep) -> JSONResponse:
    """200 with the number of tasks due while the store's Redis answers, 503 when it does not."""
    try:
        await coord.store.redis.ping()
    except redis.RedisError as exc:
        return JSONResponse({"status": f"store unavailable: {exc}"}, status_code=503)
    return JSONResponse({"status": "ok", "due": await coord.store.due_count()})


@router.get("/metrics")
async def scrape(coord: CoordDep) -> Response:
    return Response(generate_latest(coord.metrics.registry), media_type=CONTENT_TYPE_LATEST)
