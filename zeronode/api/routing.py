"""Putting a service's routers into its app; the plain route for a service's hot endpoint.

Each resource has its router (supervisor/routes/, ledger/routes/, coord/routes/),
but the app gets their routes themselves, as if declared on it. FastAPI keeps an
included router live and walks it on every request (`app.include_router`): on
the ledger's no-op /ping that is a quarter of the time an in-process request
takes (18.9k against 13.9k requests/s), and 9% fewer signed reports a second
over HTTP (bench/ledger.py). A router's own prefix is in its routes' paths
already; ours have no dependencies or event handlers of their own, so their
routes can stand in the app's table directly.
"""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, FastAPI
from starlette.routing import Match, Route


def add_routers(app: FastAPI, *routers: APIRouter) -> None:
    for router in routers:
        if router.dependencies or router.on_startup or router.on_shutdown:
            raise ValueError("a router with dependencies or event handlers of its own needs app.include_router")
        app.router.routes.extend(router.routes)


class PlainRoute(Route):
    """A Starlette route, leaner than FastAPI's (no request handler of FastAPI's around the endpoint: no
    dependencies to solve, no exit stack), for an endpoint on a service's hot path. It names itself in
    the request's scope as FastAPI's routes do, so that the middleware counts its requests by its path
    (zeronode.api.middleware). FastAPI's OpenAPI document lists FastAPI's routes only: declare the
    endpoint there too, on a FastAPI route after this one (it is then never reached)."""

    def matches(self, scope: dict[str, Any]) -> tuple[Match, dict[str, Any]]:
        match, child_scope = super().matches(scope)
        if match is not Match.NONE:
            child_scope["route"] = self
        return match, child_scope
