"""The supervisor's HTTP API (FastAPI). The decisions live in supervisor.service.

    POST /v1/jobs                 a signed envelope   -> 202 {job_id, status, duplicate}
    POST /v1/jobs/batch           [envelopes]         -> 200 [{status_code, job_id, status} | {status_code, error}]
    GET  /v1/jobs/{id}            the job: status, timestamps, result, output, error
    GET  /v1/jobs?status=&limit=  jobs by status (without one: started, queued, then ended ones)
    POST /v1/jobs/{id}/cancel     signed request by the job's signer or an admin
    GET  /health, GET /metrics

Errors are JSON: {"detail": {"reason": ..., "message": ...}} with a 4xx status
for the client's faults, never a traceback. The service's work (verification,
Redis, compiling) runs in FastAPI's thread pool, not on the event loop, so a
large batch does not hold up /health.
"""

from __future__ import annotations

import json
import logging
from typing import Any

from fastapi import Depends, FastAPI, Query, Request
from fastapi.responses import JSONResponse, Response
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from prometheus_client.core import GaugeMetricFamily
from starlette.concurrency import run_in_threadpool

from supervisor.service import Supervisor
from zeronode.api.auth import SignedRequest
from zeronode.api.errors import Refused, ServiceError
from zeronode.api.jobs import JobView, Status

log = logging.getLogger("zeronode.supervisor")

MAX_BODY = 8 * 1024 * 1024
MAX_BATCH = 1000


class QueueDepth:
    """Reads the queue's depth when Prometheus scrapes, not on every job."""

    def __init__(self, supervisor: Supervisor):
        self.supervisor = supervisor

    def collect(self):
        depth = GaugeMetricFamily("zeronode_queue_depth", "Jobs waiting in the node's queue")
        try:
            depth.add_metric([], self.supervisor.queue_depth())
        except Exception:  # Redis away: report nothing rather than fail the scrape
            return
        yield depth


def create_app(supervisor: Supervisor) -> FastAPI:
    app = FastAPI(title="zeronode supervisor", version="1")
    supervisor.metrics.registry.register(QueueDepth(supervisor))
    signed = SignedRequest(window=60)

    @app.exception_handler(Refused)
    async def rejected(_request: Request, exc: Refused) -> JSONResponse:
        return JSONResponse(status_code=exc.status, content={"detail": exc.body()})

    @app.exception_handler(Exception)
    async def unexpected(request: Request, exc: Exception) -> JSONResponse:
        log.exception("request failed", extra={"path": request.url.path})
        return JSONResponse(status_code=500, content={"detail": {"reason": "internal", "message": "internal error"}})

    async def body_of(request: Request) -> bytes:
        """The body, refused as soon as it grows past MAX_BODY (never read whole first)."""
        too_large = Refused(413, "too_large", f"request body over {MAX_BODY} bytes")
        declared = request.headers.get("content-length", "")
        if declared.isdigit() and int(declared) > MAX_BODY:
            raise too_large
        chunks, size = [], 0
        async for chunk in request.stream():
            size += len(chunk)
            if size > MAX_BODY:
                raise too_large
            chunks.append(chunk)
        return b"".join(chunks)

    @app.post("/v1/jobs", status_code=202)
    async def submit(request: Request) -> JSONResponse:
        accepted = await run_in_threadpool(supervisor.submit, await body_of(request))
        return JSONResponse(
            status_code=200 if accepted.duplicate else 202,
            content={"job_id": accepted.job_id, "status": accepted.status, "duplicate": accepted.duplicate},
        )

    @app.post("/v1/jobs/batch")
    async def submit_batch(request: Request) -> list[dict[str, Any]]:
        try:
            envelopes = json.loads(await body_of(request))
        except ValueError as exc:
            raise Refused(400, "invalid_json", f"not JSON: {exc}") from None
        if not isinstance(envelopes, list) or len(envelopes) > MAX_BATCH:
            raise Refused(422, "malformed", f"expected a JSON array of at most {MAX_BATCH} envelopes")
        answers = await run_in_threadpool(supervisor.submit_many, [json.dumps(envelope) for envelope in envelopes])
        return [
            {"status_code": a.status, "error": a.body()}
            if isinstance(a, ServiceError)
            else {"status_code": 200 if a.duplicate else 202, "job_id": a.job_id, "status": a.status, "duplicate": a.duplicate}
            for a in answers
        ]

    # Plain `def` handlers: FastAPI runs them in its thread pool.
    @app.get("/v1/jobs/{job_id}")
    def get_job(job_id: str) -> JobView:
        return supervisor.job(job_id)

    @app.get("/v1/jobs")
    def list_jobs(status: Status | None = None, limit: int = Query(100, ge=1, le=1000)) -> list[JobView]:
        return supervisor.jobs(status, limit)

    @app.post("/v1/jobs/{job_id}/cancel")
    def cancel(job_id: str, requester: str = Depends(signed)) -> JobView:
        return supervisor.cancel(job_id, requester)

    @app.get("/health")
    def health() -> JSONResponse:
        healthy = supervisor.healthy()
        return JSONResponse(
            status_code=200 if healthy else 503,
            content={"status": "ok" if healthy else "redis unavailable", "node": supervisor.node_id},
        )

    @app.get("/metrics")
    async def metrics() -> Response:
        return Response(generate_latest(supervisor.metrics.registry), media_type=CONTENT_TYPE_LATEST)

    return app
