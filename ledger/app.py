"""The ledger's HTTP API (FastAPI). The decisions live in ledger.nodes, ledger.uptime, ledger.users,
ledger.policies and ledger.rights.

    POST /v1/nodes                  signed by the node      register or update it -> 201 | 200 node
    POST /v1/nodes/{id}/uptime      signed by the node      {uptime, timestamp} -> 200 {restart, duplicate, ...}
    POST /v1/uptime/batch           {reports: [copies of signed single-report requests]} -> 200 [per report]
    GET  /v1/nodes?status=&farm=&min_vcpus=&min_memory=&min_disk=&after=&limit=
    GET  /v1/nodes/{id}             the node, its status, restarts, uptime % over 24 h and 30 days
    GET  /v1/nodes/{id}/rights      signed by the node or an admin: who has which roles on it, its policies
    POST /v1/users                  signed by an admin      create, update or revoke a user -> 201 | 200 user
    GET  /v1/users/{key}?node=      the user's roles and rights (may_deploy on that node)
    POST /v1/policies               signed by an admin      set or remove a signature policy -> 201 | 200
    GET  /v1/policies?scope=&target=  the signature policies
    POST /v1/releases               signed by an admin      publish a release (digest, size, release keys' signatures)
    PUT  /v1/releases/{v}/artifact  its artifact, checked against the published digest; GET it (Range)
    GET  /v1/releases[/{v}]         the releases
    POST /v1/channels/{name}        signed by an admin      promote | pause | resume | rollback -> the channel
    GET  /v1/channels[/{name}]      channels with their rollout's progress
    POST /v1/follows                signed by an admin      what a farm or node follows (a channel or a version)
    GET  /health (checks the database), /ping (does nothing: a liveness probe), /metrics

The routes are in ledger.routes, one router per resource. Writes carry the
signed-request headers (docs/protocol.md) and declare their Content-Length.
Reads are open, or need `Authorization: Bearer TOKEN` when the settings have a
read_token. Errors are JSON: {"reason": ..., "message": ...}, 4xx
for the client's faults, never a traceback. Every answer carries its request's
X-Request-Id; /docs is Swagger UI, served from the package (zeronode.api.service).
"""

from __future__ import annotations

import logging
import time

from fastapi import FastAPI
from starlette.middleware import Middleware

from ledger.database import Database
from ledger.gathering import report_gatherer
from ledger.metrics import Metrics, NodeCounts
from ledger.routes.report_route import ReportRoute
from ledger.routes import nodes, operations, releases, rights, uptime, users
from ledger.routes.dependencies import Ledger
from ledger.settings import LedgerSettings
from zeronode.api import handlers
from zeronode.api.auth import SignedRequest
from zeronode.api.routing import add_routers
from zeronode.api.service import service_app
from zeronode.protocol.signed_requests import LEDGER

log = logging.getLogger("zeronode.ledger")


def create_app(settings: LedgerSettings, db: Database, *, clock=time.time) -> FastAPI:
    """The API over a migrated database. `clock` is the ledger's time, for signatures, reports and status."""
    metrics = Metrics()
    # No OpenTelemetry here (metrics are Prometheus's): FastAPI's own check for it, made on every request, was 5% of
    # the ledger's CPU under single reports (py-spy, bench/ledger.py) until told there is none to look for.
    app = service_app("zeronode ledger", "ledger", metrics.registry, telemetry={"tracing": False, "metrics": False, "logs": False})
    metrics.registry.register(NodeCounts(db, settings, clock))
    gatherer = report_gatherer(db, skew=settings.skew, clock=clock, most=settings.max_batch)
    app.state.ledger = Ledger(settings, db, clock, metrics, gatherer)
    app.state.signed_request = SignedRequest(LEDGER, window=settings.request_window, clock=clock)
    handlers.install(app, log)  # refused reports are counted by the routes, which see batches' too
    # Inside the request middleware (service_app's, added first), before FastAPI's: the hot path's shortcut.
    app.user_middleware.append(Middleware(ReportRoute))
    add_routers(app, nodes.router, rights.router, uptime.router, users.router, releases.router, operations.router)
    return app
