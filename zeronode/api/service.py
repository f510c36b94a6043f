"""What every zeronode service's app is made with, whatever it serves.

    app = service_app("zeronode ledger", "ledger", metrics.registry)

- the middleware (zeronode.api.middleware): request ids, and HTTP requests
  counted and timed in the service's registry as `zeronode_<service>_http_...`;
- `zeronode_build_info{version, rhai, python} 1` in the same registry: what
  this process runs, for a dashboard to tell a fleet's versions apart;
- /docs and /redoc served from the package (zeronode.api.docs), and the
  request bodies and error answers in the OpenAPI document (zeronode.api.openapi).

The error handlers (zeronode.api.handlers) are installed by each service, which
says how its refusals are counted and logged.
"""

from __future__ import annotations

import importlib.metadata
import platform
from typing import Any

from fastapi import FastAPI
from prometheus_client import CollectorRegistry, Gauge

import zeronode
from zeronode.api import docs, openapi
from zeronode.api.middleware import HttpMetrics, RequestMiddleware

RHAI_DISTRIBUTION = "zeronode-rhai"  # read from its metadata: the ledger and coord never import the engine


def service_app(title: str, service: str, registry: CollectorRegistry, **fastapi: Any) -> FastAPI:
    """A FastAPI app for `service` (supervisor, coord, ledger: the metric names' second word)."""
    app = FastAPI(title=title, version="1", docs_url=None, redoc_url=None, **fastapi)
    docs.install(app)
    openapi.install(app)
    build_info(registry)
    app.add_middleware(RequestMiddleware, metrics=HttpMetrics(service, registry))
    return app


def build_info(registry: CollectorRegistry) -> None:
    info = Gauge("zeronode_build_info", "What this process runs: always 1, its labels say",
                 ["version", "rhai", "python"], registry=registry)
    info.labels(zeronode.__version__, rhai_version(), platform.python_version()).set(1)


def rhai_version() -> str:
    try:
        return importlib.metadata.version(RHAI_DISTRIBUTION)
    except importlib.metadata.PackageNotFoundError:
        return "unknown"
