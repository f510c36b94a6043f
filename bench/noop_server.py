"""The HTTP ceiling for bench/supervisor.py: a no-op POST on the supervisor's own stack.

    .venv/bin/python bench/noop_server.py PORT

The same app factory (zeronode.api.service.service_app: its middleware, request
ids and metrics) and the same uvicorn.run call as `zeronode supervisor`
(zeronode/cli/node.py), with a route that reads the body and answers 202 with
a body the shape of a submit's: what serving a request costs before any work.
Two of them: POST /noop is a plain Starlette route, as the supervisor's
POST /v1/jobs is (supervisor/routes/jobs.py): the ceiling; POST /noop-fastapi
is a FastAPI route, for comparison.
"""

from __future__ import annotations

import sys
from pathlib import Path

import uvicorn
from fastapi import Request
from fastapi.responses import JSONResponse
from prometheus_client import CollectorRegistry

sys.path[:] = [str(Path(__file__).resolve().parents[1]), *sys.path[1:]]  # the repository, not bench/

from zeronode.api.routing import PlainRoute  # noqa: E402
from zeronode.api.service import service_app  # noqa: E402


async def noop(request: Request) -> JSONResponse:
    await request.body()
    return JSONResponse(status_code=202, content={"job_id": "noop", "status": "queued", "duplicate": False})


def noop_app():
    app = service_app("no-op", "noop", CollectorRegistry())
    app.router.routes.append(PlainRoute("/noop", noop, methods=["POST"]))
    app.post("/noop-fastapi", status_code=202)(noop)

    @app.get("/health")
    async def health() -> dict:
        return {"status": "ok"}

    return app


if __name__ == "__main__":
    uvicorn.run(noop_app(), host="127.0.0.1", port=int(sys.argv[1]), log_config=None, access_log=False)
