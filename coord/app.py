"""The coordinator's HTTP API, and the dispatcher loop it runs beside it.

    POST /v1/deployments              a signed envelope → 202 {id, targets, status}
    GET  /v1/deployments/ID           per-node progress; ?wait=S&version=V long-polls for a change past V
    GET  /v1/deployments/ID/events    the same, as server-sent events until the deployment ends
    GET  /v1/deployments              newest first; ?status=, ?signer=, ?limit=
    POST /v1/deployments/ID/cancel    signed by the deployment's signer or a coord admin
    GET  /health, /metrics

Errors are {"detail": {"reason", "message"}} with a 4xx status for the client's faults.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from enum import StrEnum

import httpx
import nacl.signing
import redis.asyncio as redis
from fastapi import Depends, FastAPI, Query, Request
from fastapi.responses import JSONResponse, Response, StreamingResponse
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, Counter, generate_latest
from pydantic import BaseModel

from coord.dispatcher import Dispatcher
from coord.nodes import NodeDirectory
from coord.settings import CoordSettings
from coord.store import Deployment, Store, Task, TaskState
from coord.supervisors import SupervisorClients
from zeronode.api.auth import SignedRequest
from zeronode.protocol.envelope import verify
from zeronode.protocol.errors import VerificationError

log = logging.getLogger("zeronode.coord")
MAX_BODY = 4 * 1024 * 1024
MAX_WAIT = 60.0


class Refused(Exception):
    def __init__(self, status: int, reason: str, message: str):
        super().__init__(message)
        self.status, self.reason = status, reason


class Overall(StrEnum):
    PENDING = "pending"
    RUNNING = "running"
    SUCCEEDED = "succeeded"
    FAILED = "failed"
    CANCELED = "canceled"


def overall(counts: dict[str, int]) -> Overall:
    states = {TaskState(state) for state, count in counts.items() if count > 0}
    if not all(state.final for state in states):
        return Overall.PENDING if states == {TaskState.PENDING} else Overall.RUNNING
    if TaskState.FAILED in states:
        return Overall.FAILED
    return Overall.CANCELED if TaskState.CANCELED in states else Overall.SUCCEEDED


class DeploymentView(BaseModel):
    id: str
    signer: str
    created: float
    expires_at: int
    status: Overall
    counts: dict[str, int]
    canceled_by: str | None
    version: int
    tasks: list[Task] | None = None


def view(deployment: Deployment, tasks: list[Task] | None = None) -> DeploymentView:
    return DeploymentView(
        id=deployment.id, signer=deployment.signer, created=deployment.created, expires_at=deployment.expires_at,
        status=overall(deployment.counts), counts=deployment.counts, canceled_by=deployment.canceled_by,
        version=deployment.version, tasks=tasks,
    )


class Metrics:
    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        self.accepted = Counter("zeronode_coord_deployments_accepted", "Deployments accepted", registry=self.registry)
        self.rejected = Counter("zeronode_coord_deployments_rejected", "Deployments refused", ["reason"], registry=self.registry)
        self.tasks_ended = Counter("zeronode_coord_tasks_ended", "Tasks that reached a final state", ["state"], registry=self.registry)


def create_app(settings: CoordSettings, connection: redis.Redis, key: nacl.signing.SigningKey) -> FastAPI:
    store = Store(connection)
    metrics = Metrics()
    ledger_http = httpx.AsyncClient(timeout=settings.request_timeout, limits=httpx.Limits(max_connections=16))
    nodes = NodeDirectory(settings.ledger_url, ledger_http, token=settings.ledger_token)
    supervisors = SupervisorClients(timeout=settings.request_timeout)
    dispatcher = Dispatcher(
        store, nodes, supervisors, settings, key, on_final=lambda task: metrics.tasks_ended.labels(task.state.value).inc()
    )

    @contextlib.asynccontextmanager
    async def lifespan(_app: FastAPI):
        stop = asyncio.Event()
        loop = asyncio.create_task(dispatcher.run(stop))
        log.info("coord started", extra={"ledger": settings.ledger_url, "concurrency": settings.concurrency})
        try:
            yield
        finally:
            stop.set()
            await loop
            await ledger_http.aclose()
            await supervisors.aclose()

    app = FastAPI(title="zeronode coordinator", version="1", lifespan=lifespan)
    app.state.store, app.state.dispatcher = store, dispatcher
    signed = SignedRequest(window=60)

    @app.exception_handler(Refused)
    async def refused(_request: Request, exc: Refused) -> JSONResponse:
        metrics.rejected.labels(exc.reason).inc()
        return JSONResponse(status_code=exc.status, content={"detail": {"reason": exc.reason, "message": str(exc)}})

    @app.exception_handler(redis.RedisError)
    async def store_away(request: Request, exc: redis.RedisError) -> JSONResponse:
        log.warning("store unavailable", extra={"path": request.url.path, "error": str(exc)})
        return JSONResponse(status_code=503, content={"detail": {"reason": "store_unavailable", "message": str(exc)}})

    @app.exception_handler(Exception)
    async def unexpected(request: Request, exc: Exception) -> JSONResponse:
        log.exception("request failed", extra={"path": request.url.path})
        return JSONResponse(status_code=500, content={"detail": {"reason": "internal", "message": "internal error"}})

    async def body_of(request: Request) -> bytes:
        chunks, size = [], 0
        async for chunk in request.stream():
            size += len(chunk)
            if size > MAX_BODY:
                raise Refused(413, "too_large", f"request body over {MAX_BODY} bytes")
            chunks.append(chunk)
        return b"".join(chunks)

    async def existing(deployment_id: str) -> Deployment:
        deployment = await store.deployment(deployment_id)
        if deployment is None:
            raise Refused(404, "not_found", f"no deployment {deployment_id}")
        return deployment

    @app.post("/v1/deployments", status_code=202)
    async def submit(request: Request) -> JSONResponse:
        raw = await body_of(request)
        try:
            envelope = verify(raw, options=settings.verify).envelope
        except VerificationError as exc:
            raise Refused(exc.http_status, exc.reason, str(exc)) from None
        deployment = Deployment(
            id=envelope.id, signer=envelope.signer, created=time.time(), envelope=raw.decode(),
            expires_at=envelope.expires_at, targets=envelope.targets,
        )
        if not await store.create(deployment):
            stored = await existing(envelope.id)
            if stored.envelope != deployment.envelope:
                raise Refused(409, "id_in_use", f"deployment {envelope.id} exists with another envelope")
            return JSONResponse({"id": stored.id, "targets": stored.targets, "duplicate": True}, status_code=200)
        metrics.accepted.inc()
        dispatcher.wake.set()
        log.info("deployment accepted", extra={"deployment": deployment.id, "signer": deployment.signer,
                                               "targets": len(deployment.targets)})
        return JSONResponse({"id": deployment.id, "targets": deployment.targets, "duplicate": False}, status_code=202)

    @app.get("/v1/deployments/{deployment_id}")
    async def get_deployment(
        deployment_id: str,
        wait: float = Query(0, ge=0, le=MAX_WAIT, description="seconds to wait for a change past `version`"),
        version: int = Query(-1, description="the version the caller has seen"),
        tasks: bool = Query(True, description="false: status and counts only (cheap for big deployments)"),
    ) -> DeploymentView:
        deployment = await existing(deployment_id)
        deadline = time.monotonic() + wait
        if deployment.version <= version:  # wait on the version alone, one HGET a tick; then read it all
            while await store.version(deployment_id) <= version and time.monotonic() < deadline:
                await asyncio.sleep(0.05)
            deployment = await existing(deployment_id)
        return view(deployment, await store.tasks(deployment) if tasks else None)

    @app.get("/v1/deployments/{deployment_id}/events")
    async def events(deployment_id: str) -> StreamingResponse:
        await existing(deployment_id)

        async def stream():
            seen = -1
            while True:
                if await store.version(deployment_id) != seen:
                    deployment = await existing(deployment_id)
                    seen = deployment.version
                    current = view(deployment, await store.tasks(deployment))
                    yield f"data: {current.model_dump_json()}\n\n"
                    if current.status not in (Overall.PENDING, Overall.RUNNING):
                        return
                await asyncio.sleep(0.1)

        return StreamingResponse(stream(), media_type="text/event-stream")

    @app.get("/v1/deployments")
    async def list_deployments(
        status: Overall | None = None, signer: str | None = None, limit: int = Query(50, ge=1, le=1000),
    ) -> list[DeploymentView]:
        found: list[DeploymentView] = []
        for deployment_id in await store.recent(min(limit * 4, 4000)):
            deployment = await store.deployment(deployment_id)
            if deployment is None or (signer and deployment.signer != signer):
                continue
            current = view(deployment)
            if status is None or current.status == status:
                found.append(current)
            if len(found) >= limit:
                break
        return found

    @app.post("/v1/deployments/{deployment_id}/cancel")
    async def cancel(deployment_id: str, requester: str = Depends(signed)) -> DeploymentView:
        deployment = await existing(deployment_id)
        if requester != deployment.signer and requester not in settings.admins:
            raise Refused(403, "not_authorized", "only the deployment's signer or a coord admin may cancel it")
        await store.cancel(deployment, requester)
        dispatcher.wake.set()
        log.info("deployment canceled", extra={"deployment": deployment_id, "by": requester})
        deployment = await existing(deployment_id)
        return view(deployment, await store.tasks(deployment))

    @app.get("/health")
    async def health() -> JSONResponse:
        try:
            await connection.ping()
        except redis.RedisError as exc:
            return JSONResponse({"status": f"store unavailable: {exc}"}, status_code=503)
        return JSONResponse({"status": "ok", "due": await store.due_count()})

    @app.get("/metrics")
    async def scrape() -> Response:
        return Response(generate_latest(metrics.registry), media_type=CONTENT_TYPE_LATEST)

    return app

