"""Putting a service's routers into its app.

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

from fastapi import APIRouter, FastAPI


def add_routers(app: FastAPI, *routers: APIRouter) -> None:
    for router in routers:
        if router.dependencies or router.on_startup or router.on_shutdown:
            raise ValueError("a router with dependencies or event handlers of its own needs app.include_router")
        app.router.routes.extend(router.routes)
