"""The coordinator's HTTP API, and the dispatcher loop it runs beside it.

    POST /v1/deployments              a signed envelope → 202 {id, targets, placed, duplicate}, once the ledger
                                      says its signer may deploy on every target (and coord chose the nodes
                                      its selector asks for: coord.placement)
    GET  /v1/deployments/ID           per-node progress; ?wait=S&version=V long-polls for a change past V
    GET  /v1/deployments/ID/events    the same, as server-sent events until the deployment ends
    GET  /v1/deployments              newest first; ?status=, ?signer= (admins), ?limit=
    POST /v1/deployments/ID/cancel
    GET  /health, /metrics            open; no deployment's data
    /dashboard/                       the fleet dashboard, read-only, signed in with a read token (coord.dashboard)

Every /v1/deployments request but the submission (whose envelope is signed) is
a signed request for audience "coord", by the deployment's signer or a coord
admin. The routes are in coord.routes, one router per resource. Beside the dispatcher
runs coord.failover, which keeps service deployments on live nodes. Errors are
{"reason", "message"} with a 4xx status for the client's faults.
A submission's X-Request-Id (given, or made: zeronode.api.middleware) is stored
with its deployment and sent to each node with its envelope.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time

import httpx
import nacl.signing
import redis.asyncio as redis
from fastapi import FastAPI

from coord.authorization import Authorizer, LedgerRights
from coord.dashboard import routes as dashboard
from coord.dashboard.fleet import Fleet
from coord.dispatcher import Dispatcher
from coord.failover import Failover
from coord.limits import LedgerLookups, SubmissionRate
from coord.metrics import Metrics
from coord.nodes import NodeDirectory
from coord.placement import Placer
from coord.routes import deployments, operations
from coord.routes.dependencies import Coord
from coord.settings import CoordSettings
from coord.store import Store
from coord.supervisors import SupervisorClients
from zeronode.api import handlers
from zeronode.api.auth import SignedRequest
from zeronode.api.routing import add_routers
from zeronode.api.service import service_app
from zeronode.protocol.signed_requests import COORD

log = logging.getLogger("zeronode.coord")


def create_app(settings: CoordSettings, connection: redis.Redis, key: nacl.signing.SigningKey, *, clock=time.time) -> FastAPI:
    """The app; `clock` tells the window submissions are counted in (a test's fixed one in the tests)."""
    store = Store(connection)
    metrics = Metrics()
    ledger_http = httpx.AsyncClient(timeout=settings.request_timeout, limits=httpx.Limits(max_connections=16))
    nodes = NodeDirectory(settings.ledger_url, ledger_http, token=settings.ledger_token)
    supervisors = SupervisorClients(key, timeout=settings.request_timeout)
    rights = LedgerRights(settings.ledger_url, ledger_http, token=settings.ledger_token, ttl=settings.rights_ttl)
    dispatcher = Dispatcher(
        store, nodes, supervisors, settings, key, on_final=lambda task: metrics.tasks_ended.labels(task.state.value).inc()
    )
    authorizer = Authorizer(rights, nodes)
    placer = Placer(settings.ledger_url, ledger_http, nodes, authorizer, token=settings.ledger_token)
    failover = Failover(store, nodes, placer, settings, metrics, dispatcher.wake)

    @contextlib.asynccontextmanager
    async def lifespan(_app: FastAPI):
        stop = asyncio.Event()
        loops = [asyncio.create_task(dispatcher.run(stop)), asyncio.create_task(failover.run(stop))]
        log.info("coord started", extra={"ledger": settings.ledger_url, "concurrency": settings.concurrency})
        try:
            yield
        finally:
            stop.set()
            await asyncio.gather(*loops)
            await ledger_http.aclose()
            await supervisors.aclose()

    app = service_app("zeronode coordinator", "coord", metrics.registry, lifespan=lifespan)
    app.state.coord = Coord(
        store=store, dispatcher=dispatcher, settings=settings, metrics=metrics, authorizer=authorizer, placer=placer,
        rate=SubmissionRate(connection, settings.submissions_per_minute, clock=clock),
        lookups=LedgerLookups(connection, settings.ledger_lookups_per_second, clock=clock),
    )
    app.state.signed_request = SignedRequest(COORD)  # the protocol's window: the coordinator's settings have none of their own
    # The routes' refusals, counted by reason as they are answered.
    handlers.install(app, log, on_error=lambda refusal: metrics.refused.labels(refusal.reason).inc())
    app.state.fleet = Fleet(settings, ledger_http, supervisors, store)  # what the dashboard reads beyond deployments
    add_routers(app, deployments.router, operations.router, dashboard.router)
    return app
