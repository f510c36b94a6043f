"""The ledger's HTTP API (FastAPI). The decisions live in ledger.nodes, ledger.uptime and ledger.users.

    POST /v1/nodes                  signed by the node      register or update it -> 201 | 200 node
    POST /v1/nodes/{id}/uptime      signed by the node      {uptime, timestamp} -> 200 {restart, duplicate, ...}
    POST /v1/uptime/batch           {reports: [copies of signed single-report requests]} -> 200 [per report]
    GET  /v1/nodes?status=&farm=&min_vcpus=&min_memory=&min_disk=&after=&limit=
    GET  /v1/nodes/{id}             the node, its status, restarts, uptime % over 24 h and 30 days
    POST /v1/users                  signed by an admin      create or update a user -> 201 | 200 user
    GET  /v1/users/{key}?node=      the user's roles and rights (may_deploy on that node)
    GET  /health (checks the database), /ping (does nothing: a liveness probe), /metrics

Writes carry the signed-request headers (docs/protocol.md). Reads are open, or
need `Authorization: Bearer TOKEN` when the settings have a read_token.
Errors are JSON: {"detail": {"reason": ..., "message": ...}}, 4xx for the
client's faults, never a traceback.
"""

from __future__ import annotations

import logging
import secrets
import time
from typing import Annotated, Any

import sqlalchemy as sa
from fastapi import Depends, FastAPI, Query, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, Response
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, Counter, generate_latest
from prometheus_client.core import GaugeMetricFamily
from starlette.concurrency import run_in_threadpool
from starlette.exceptions import HTTPException as StarletteHTTPException

from ledger import nodes, reports, uptime, users
from ledger.database import Database
from ledger.settings import LedgerSettings
from zeronode.api.auth import SignedRequest
from zeronode.api.bodies import parse_body
from zeronode.api.errors import Refused, problems
from zeronode.api.ledger import (
    NewUser,
    NodeDetail,
    NodeFilters,
    NodeId,
    NodeRegistration,
    NodeView,
    UptimeBatch,
    UserView,
)
from zeronode.protocol import keys
from zeronode.protocol.errors import MalformedKey

log = logging.getLogger("zeronode.ledger")

MAX_BODY = 4 * 1024 * 1024
REASONS = {401: "unauthorized", 404: "not_found", 405: "method_not_allowed"}


class Metrics:
    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        self.accepted = Counter("zeronode_ledger_reports_accepted", "Uptime reports accepted", registry=self.registry)
        self.refused = Counter("zeronode_ledger_reports_refused", "Uptime reports refused", ["reason"], registry=self.registry)
        self.restarts = Counter("zeronode_ledger_restarts", "Node restarts detected", registry=self.registry)
        self.registrations = Counter("zeronode_ledger_registrations", "Node registrations", ["kind"], registry=self.registry)

    def count(self, answer) -> None:
        if isinstance(answer, Refused):
            self.refused.labels(answer.reason).inc()
        else:
            self.accepted.inc()
            if answer.restart:
                self.restarts.inc()


class NodeCounts:
    """Counts nodes by status when Prometheus scrapes, not on every report."""

    def __init__(self, db: Database, settings: LedgerSettings, clock):
        self.db, self.settings, self.clock = db, settings, clock

    def collect(self):
        gauge = GaugeMetricFamily("zeronode_ledger_nodes", "Nodes in the ledger", labels=["status"])
        try:
            counted = nodes.counts(self.db, self.clock(), self.settings.offline_after)
        except sa.exc.SQLAlchemyError:  # database away: report nothing rather than fail the scrape
            return
        for status, count in counted.items():
            gauge.add_metric([status], count)
        yield gauge


def create_app(settings: LedgerSettings, db: Database, *, clock=time.time) -> FastAPI:
    """The API over a migrated database. `clock` is the ledger's time, for signatures, reports and status."""
    app = FastAPI(title="zeronode ledger", version="1")
    metrics = Metrics()
    metrics.registry.register(NodeCounts(db, settings, clock))
    admins = frozenset(settings.admins)
    signature = SignedRequest(window=settings.request_window, clock=clock)

    def check_size(request: Request) -> None:
        """Writes declare their length, at most MAX_BODY, before anything is read: no unbounded read."""
        declared = request.headers.get("content-length", "")
        if not declared.isdigit():
            raise Refused(411, "length_required", "a write must declare its Content-Length")
        if int(declared) > MAX_BODY:
            raise Refused(413, "too_large", f"request body over {MAX_BODY} bytes")

    async def signer(request: Request) -> str:
        check_size(request)
        return await signature(request)

    def reader(request: Request) -> None:
        if settings.read_token is None:
            return
        given = request.headers.get("authorization", "")
        if not secrets.compare_digest(given.encode(), f"Bearer {settings.read_token}".encode()):
            raise Refused(401, "bad_token", "reads need 'Authorization: Bearer TOKEN' with the ledger's read token")

    @app.exception_handler(Refused)
    async def refused(_request: Request, exc: Refused) -> JSONResponse:
        return JSONResponse(status_code=exc.status, content={"detail": exc.body()})

    @app.exception_handler(RequestValidationError)
    async def malformed(_request: Request, exc: RequestValidationError) -> JSONResponse:
        return JSONResponse(status_code=422, content={"detail": {"reason": "malformed", "message": problems(exc.errors())}})

    @app.exception_handler(StarletteHTTPException)
    async def http_error(_request: Request, exc: StarletteHTTPException) -> JSONResponse:
        detail = exc.detail
        if not isinstance(detail, dict):
            detail = {"reason": REASONS.get(exc.status_code, "refused"), "message": str(exc.detail)}
        return JSONResponse(status_code=exc.status_code, content={"detail": detail}, headers=exc.headers)

    @app.exception_handler(sa.exc.OperationalError)
    async def database_away(request: Request, exc: sa.exc.OperationalError) -> JSONResponse:
        log.warning("database unavailable", extra={"path": request.url.path, "error": str(exc.orig)})
        unavailable = {"reason": "database_unavailable", "message": "database unavailable"}
        return JSONResponse(status_code=503, content={"detail": unavailable})

    @app.exception_handler(Exception)
    async def unexpected(request: Request, exc: Exception) -> JSONResponse:
        log.exception("request failed", extra={"path": request.url.path})
        return JSONResponse(status_code=500, content={"detail": {"reason": "internal", "message": "internal error"}})

    # -- nodes -------------------------------------------------------------

    @app.post("/v1/nodes", response_model=NodeView)
    async def register(request: Request, public_key: str = Depends(signer)) -> JSONResponse:
        registration = parse_body(NodeRegistration, await request.body())
        now = clock()
        row, created = await run_in_threadpool(nodes.register, db, public_key, registration, now)
        metrics.registrations.labels("created" if created else "updated").inc()
        view = nodes.view(row, now, settings.offline_after)
        return JSONResponse(status_code=201 if created else 200, content=view.model_dump())

    @app.post("/v1/nodes/{node_id}/uptime")
    async def report_uptime(node_id: str, request: Request, public_key: str = Depends(signer)) -> JSONResponse:
        report = reports.single(public_key, node_id, await request.body())
        if db.is_sqlite:
            # Inline: SQLite writes one at a time anyway, and this one takes a fraction of a millisecond,
            # less than the hop to a worker thread and its GIL hand-offs (40% more reports/s, bench/ledger.py).
            [answer] = uptime.ingest(db, [report], now=clock(), skew=settings.skew)
        else:  # PostgreSQL: the write waits on the network, so it waits in a thread
            [answer] = await run_in_threadpool(uptime.ingest, db, [report], now=clock(), skew=settings.skew)
        metrics.count(answer)
        if isinstance(answer, Refused):
            raise answer
        return JSONResponse(answer.model_dump())

    @app.post("/v1/uptime/batch")
    async def report_batch(request: Request) -> JSONResponse:
        # Not signed as a whole: each report in it is, by its node. A relay needs no key.
        check_size(request)
        batch = parse_body(UptimeBatch, await request.body())
        if len(batch.reports) > settings.max_batch:
            raise Refused(422, "too_many", f"at most {settings.max_batch} reports in a batch")
        answers = await run_in_threadpool(
            reports.ingest_batch, db, batch.reports, window=settings.request_window, now=clock(), skew=settings.skew
        )
        results: list[dict[str, Any]] = []
        for answer in answers:
            metrics.count(answer)
            if isinstance(answer, Refused):
                results.append({"status_code": answer.status, "error": answer.body()})
            else:
                results.append({"status_code": 200, **answer.model_dump()})
        return JSONResponse(results)

    @app.get("/v1/nodes", dependencies=[Depends(reader)])
    def list_nodes(filters: Annotated[NodeFilters, Query()]) -> list[NodeView]:
        return nodes.listing(db, filters, now=clock(), offline_after=settings.offline_after)

    @app.get("/v1/nodes/{node_id}", dependencies=[Depends(reader)])
    def get_node(node_id: NodeId) -> NodeDetail:
        return nodes.detail(db, node_id, clock(), settings.offline_after)

    # -- users -------------------------------------------------------------

    @app.post("/v1/users", response_model=UserView)
    async def save_user(request: Request, public_key: str = Depends(signer)) -> JSONResponse:
        user = parse_body(NewUser, await request.body())
        saved, created = await run_in_threadpool(users.save, db, public_key, user, clock(), admins)
        return JSONResponse(status_code=201 if created else 200, content=saved.model_dump())

    @app.get("/v1/users/{public_key}", dependencies=[Depends(reader)])
    def get_user(public_key: str, node: NodeId | None = None) -> UserView:
        try:
            keys.parse_public_key(public_key)
        except MalformedKey as exc:
            raise Refused(422, exc.reason, str(exc)) from None
        return users.get(db, public_key, admins, node)

    # -- operations --------------------------------------------------------

    @app.get("/health")
    def health() -> JSONResponse:
        healthy = db.ping()
        return JSONResponse(status_code=200 if healthy else 503, content={"status": "ok" if healthy else "database unavailable"})

    @app.get("/ping")
    async def ping() -> dict[str, str]:
        return {"status": "ok"}

    @app.get("/metrics")
    def scrape() -> Response:
        return Response(generate_latest(metrics.registry), media_type=CONTENT_TYPE_LATEST)

    return app
