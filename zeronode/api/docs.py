"""/docs (Swagger UI) and /redoc from files on the node, never from a CDN.

FastAPI's own pages load their scripts and styles from a CDN, so on a node
without the internet (most edge nodes, an air-gapped farm) they stay blank.
Here both pages name only this service's own paths: the assets come from the
`fastapi-offline` package (Swagger UI 5, which reads OpenAPI 3.1 documents as
FastAPI writes them, and ReDoc), served under /docs/assets/ from a fixed list
of names, and Swagger UI's validator badge, which would call an outside
service, is off.
"""

from __future__ import annotations

from pathlib import Path

import fastapi_offline
from fastapi import FastAPI, Request
from fastapi.openapi.docs import get_redoc_html, get_swagger_ui_html
from fastapi.responses import FileResponse, HTMLResponse
from starlette.routing import Route

from zeronode.api.errors import Refused

ASSETS = Path(fastapi_offline.__file__).parent / "static"
ASSET_NAMES = frozenset({"swagger-ui-bundle.js", "swagger-ui.css", "redoc.standalone.js", "favicon.png"})
ASSETS_PATH = "/docs/assets"
CACHE = {"Cache-Control": "public, max-age=86400"}  # they change only with the installed package


def install(app: FastAPI) -> None:
    """/docs, /redoc and their assets on `app` (made with docs_url and redoc_url None)."""

    def base(request: Request) -> str:
        return request.scope.get("root_path", "").rstrip("/")

    async def swagger_ui(request: Request) -> HTMLResponse:
        root = base(request)
        return get_swagger_ui_html(
            openapi_url=root + app.openapi_url, title=f"{app.title}: API",
            swagger_js_url=f"{root}{ASSETS_PATH}/swagger-ui-bundle.js", swagger_css_url=f"{root}{ASSETS_PATH}/swagger-ui.css",
            swagger_favicon_url=f"{root}{ASSETS_PATH}/favicon.png", swagger_ui_parameters={"validatorUrl": None},
        )

    async def redoc(request: Request) -> HTMLResponse:
        root = base(request)
        return get_redoc_html(
            openapi_url=root + app.openapi_url, title=f"{app.title}: API", redoc_js_url=f"{root}{ASSETS_PATH}/redoc.standalone.js",
            redoc_favicon_url=f"{root}{ASSETS_PATH}/favicon.png", with_google_fonts=False,
        )

    async def asset(request: Request) -> FileResponse:
        name = request.path_params["name"]
        if name not in ASSET_NAMES:
            raise Refused(404, "not_found", f"no asset {name}")
        return FileResponse(ASSETS / name, headers=CACHE)

    app.router.routes.extend([
        Route("/docs", swagger_ui, methods=["GET"], include_in_schema=False),
        Route("/redoc", redoc, methods=["GET"], include_in_schema=False),
        Route(ASSETS_PATH + "/{name}", asset, methods=["GET"], include_in_schema=False),
    ])
