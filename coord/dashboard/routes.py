"""/dashboard: the page, its files, signing in and out, and the reads the page makes.

    GET    /dashboard/                         the page (open: it holds no data; its script asks the API)
    GET    /dashboard/static/NAME              its script and style sheet, from the package (no CDN)
    POST   /dashboard/session                  {"token": ...} → 204 and the session cookie, or 401 bad_token
    DELETE /dashboard/session                  signs the browser out (the cookie cleared)
    GET    /dashboard/api/nodes                the ledger's nodes
    GET    /dashboard/api/nodes/ID             one node: the ledger's detail, its supervisor (runner pool, jobs),
                                               the tasks coord gave it
    GET    /dashboard/api/deployments          newest first (?status=, ?limit=), every signer's
    GET    /dashboard/api/deployments/ID       with each node's task
    GET    /dashboard/api/deployments/ID/events    the same, as server-sent events until it ends
    GET    /dashboard/api/failures             the newest failed tasks, with why

Every /dashboard/api read answers 401 not_signed_in without the session cookie
(coord.dashboard.auth). Every answer of these routes carries a Content-Security-
Policy that lets the page load and fetch only from coord itself and run no inline
script, and is neither framed nor sniffed; the page puts what it reads into the
document as text, never as markup.
"""

from __future__ import annotations

import json
import logging
from importlib import resources
from typing import Annotated

from fastapi import APIRouter, Depends, Query, Request
from fastapi.responses import Response, StreamingResponse
from fastapi.routing import APIRoute
from pydantic import BaseModel

from coord.dashboard.auth import COOKIE, COOKIE_PATH, SESSION_SECONDS, SignedIn, accepted, token_hash
from coord.dashboard.fleet import Failure, Fleet, NodePanel
from coord.routes.dependencies import CoordDep
from coord.routes.deployments import existing, newest, progress_events
from coord.views import DeploymentView, Overall, view
from zeronode.api.bodies import read_bounded
from zeronode.api.errors import Refused
from zeronode.api.ledger import NodeId, NodeView
from zeronode.api.openapi import ERRORS, request_body

log = logging.getLogger("zeronode.coord")

SECURITY_HEADERS = {
    "content-security-policy": "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self'; "
    "connect-src 'self'; object-src 'none'; base-uri 'none'; form-action 'self'; frame-ancestors 'none'",
    "x-content-type-options": "nosniff",
    "x-frame-options": "DENY",
    "referrer-policy": "no-referrer",
    "cache-control": "no-store",
}
ASSETS = {  # name: content type; nothing else is served
    "dashboard.js": "text/javascript; charset=utf-8",
    "dashboard.css": "text/css; charset=utf-8",
    "favicon.svg": "image/svg+xml",
}
MAX_SIGN_IN = 1024  # bytes of a sign-in body


class SecuredRoute(APIRoute):
    """A route whose answers carry SECURITY_HEADERS."""

    def get_route_handler(self):
        handler = super().get_route_handler()

        async def secured(request: Request) -> Response:
            response = await handler(request)
            response.headers.update(SECURITY_HEADERS)
            return response

        return secured


router = APIRouter(prefix="/dashboard", tags=["dashboard"], route_class=SecuredRoute, responses=ERRORS)


class SignIn(BaseModel):
    """The sign-in's body."""

    token: str


def _static(name: str) -> bytes:
    return (resources.files("coord.dashboard") / "static" / name).read_bytes()


PAGE = _static("index.html")
FILES = {name: _static(name) for name in ASSETS}


async def _fleet(request: Request) -> Fleet:
    return request.app.state.fleet


FleetDep = Annotated[Fleet, Depends(_fleet)]


@router.get("/", include_in_schema=False)
async def page() -> Response:
    return Response(PAGE, media_type="text/html; charset=utf-8")


@router.get("/static/{name}", include_in_schema=False)
async def asset(name: str) -> Response:
    if name not in ASSETS:
        raise Refused(404, "not_found", f"no file {name[:80]!r} in the dashboard")
    return Response(FILES[name], media_type=ASSETS[name])


@router.post("/session", status_code=204, openapi_extra=request_body(SignIn))
async def sign_in(request: Request, coord: CoordDep) -> Response:
    """Sign in with a read token, sent as JSON: a cross-site HTML form cannot post that content type."""
    if request.headers.get("content-type", "").split(";")[0].strip().lower() != "application/json":
        raise Refused(415, "unsupported_media_type", "send the token as JSON: {\"token\": \"...\"}")
    try:
        token = json.loads(await read_bounded(request, MAX_SIGN_IN)).get("token")
    except (ValueError, AttributeError):
        token = None
    if not isinstance(token, str):
        raise Refused(422, "malformed_body", "send the token as JSON: {\"token\": \"...\"}")
    token = token.strip()
    if not accepted(token, coord.settings.dashboard_tokens):
        raise Refused(401, "bad_token", "that is not one of this coord's dashboard tokens")
    # Which token (its hash's start: the token cannot be learnt from it), for the operator's audit.
    log.info("dashboard signed in", extra={"token": token_hash(token)[:19],
                                           "client": request.client.host if request.client else None})
    response = Response(status_code=204)
    response.set_cookie(COOKIE, token, max_age=SESSION_SECONDS, path=COOKIE_PATH, httponly=True,
                        samesite="strict", secure=request.url.scheme == "https")
    return response


@router.delete("/session", status_code=204)
async def sign_out(request: Request) -> Response:
    response = Response(status_code=204)
    response.delete_cookie(COOKIE, path=COOKIE_PATH, httponly=True, samesite="strict", secure=request.url.scheme == "https")
    return response


@router.get("/api/nodes")
async def nodes(_: SignedIn, fleet: FleetDep) -> list[NodeView]:
    return await fleet.nodes()


@router.get("/api/nodes/{node_id}")
async def node(node_id: NodeId, _: SignedIn, fleet: FleetDep) -> NodePanel:
    return await fleet.node(node_id)


@router.get("/api/deployments")
async def deployments(
    _: SignedIn, coord: CoordDep, status: Overall | None = None, limit: Annotated[int, Query(ge=1, le=200)] = 50,
) -> list[DeploymentView]:
    return await newest(coord.store, limit, status=status)


@router.get("/api/deployments/{deployment_id}")
async def deployment(deployment_id: str, _: SignedIn, coord: CoordDep) -> DeploymentView:
    found = await existing(coord.store, deployment_id)
    return view(found, await coord.store.tasks(found))


@router.get("/api/deployments/{deployment_id}/events")
async def events(deployment_id: str, _: SignedIn, coord: CoordDep) -> StreamingResponse:
    await existing(coord.store, deployment_id)
    return progress_events(coord.store, deployment_id)


@router.get("/api/failures")
async def failures(_: SignedIn, fleet: FleetDep) -> list[Failure]:
    return await fleet.failures()
