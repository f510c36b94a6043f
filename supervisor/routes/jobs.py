"""/v1/jobs: signed envelopes in; jobs out to signed reads by their signer or a node admin; cancels likewise.

An envelope whose selector let coord choose this node comes with coord's
placement ticket in the `zeronode-placement` header (zeronode.protocol.ticket).

Verifying, compiling and Redis are blocking work: a batch hands it to the thread
pool, the one-envelope submit to the app's SubmitGatherer (supervisor.gathering: the
envelopes of concurrent requests go to the thread pool together), and the other
handlers are plain `def`, which FastAPI runs there.

A batch is cut into its envelopes' own texts (zeronode.api.bodies.batch_items),
never parsed whole: each text is verified as if it had come alone, in one
strict parse, so one envelope that is nested 100,000 deep, repeats a key or is
not JSON at all is refused alone. The batch is refused whole only when it is
not an array of items (400 invalid_json, 422 malformed), holds more than
MAX_BATCH of them (422 too_many) or is larger than MAX_BODY (413 too_large).
"""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Query, Request
from fastapi.responses import JSONResponse
from starlette.concurrency import run_in_threadpool

from supervisor.routes.dependencies import SupervisorDep, gatherer_of, supervisor_of
from supervisor.service import Supervisor
from zeronode.api.auth import Signer
from zeronode.api.bodies import batch_items, read_bounded
from zeronode.api.errors import ServiceError
from zeronode.api.jobs import JobView, Status
from zeronode.api.openapi import ERRORS, reference, request_body
from zeronode.api.routing import PlainRoute
from zeronode.protocol.envelope import Envelope
from zeronode.protocol.ticket import HEADER as TICKET_HEADER

MAX_BODY = 8 * 1024 * 1024
MAX_BATCH = 1000

router = APIRouter(prefix="/v1/jobs", tags=["jobs"], responses=ERRORS)


async def submit(request: Request) -> JSONResponse:
    # Coord's placement ticket, when coord chose this node by the envelope's selector (zeronode.protocol.ticket).
    ticket = request.headers.get(TICKET_HEADER)
    raw = await read_bounded(request, MAX_BODY)
    accepted = await gatherer_of(request).submit(raw, ticket, request.state.request_id)
    if isinstance(accepted, ServiceError):
        raise accepted
    return JSONResponse(
        status_code=200 if accepted.duplicate else 202,
        content={"job_id": accepted.job_id, "status": accepted.status, "duplicate": accepted.duplicate},
    )


# The node's hot path is served by a plain Starlette route (zeronode.api.routing.PlainRoute), put before
# FastAPI's: a FastAPI route cost a no-op POST 40% of its rate here (4,921 against 7,880 requests/s,
# 8 connections, the same app and middleware). FastAPI's route stays for the OpenAPI document, which lists
# FastAPI's routes only; POSTs never reach it. Both call `submit`: the same middleware, request id,
# metrics (by the route's path) and error bodies.
router.routes.append(PlainRoute("/v1/jobs", submit, methods=["POST"]))
router.post("", status_code=202, openapi_extra=request_body(
    Envelope, description="a signed envelope, verified from its exact bytes (so parsed by the route itself)",
))(submit)


@router.post("/batch", openapi_extra=request_body(
    {"type": "array", "items": reference(Envelope), "maxItems": MAX_BATCH},
    description="signed envelopes, each verified from its own text and answered alone, in order",
))
async def submit_batch(request: Request) -> JSONResponse:
    raw = await read_bounded(request, MAX_BODY)
    answers = await run_in_threadpool(_submit_batch, supervisor_of(request), raw, request.state.request_id)
    return JSONResponse(answers)


def _submit_batch(supervisor: Supervisor, raw: bytes, request_id: str) -> list[dict[str, Any]]:
    """One answer per envelope of the batch, in order (in the thread pool: cutting a large batch is work too)."""
    items = batch_items(raw, limit=MAX_BATCH)
    answers = supervisor.submit_many(items, request_ids=[request_id] * len(items))
    return [
        {"status_code": a.status, "error": a.body()}
        if isinstance(a, ServiceError)
        else {"status_code": 200 if a.duplicate else 202, "job_id": a.job_id, "status": a.status, "duplicate": a.duplicate}
        for a in answers
    ]


@router.get("/{job_id}")
def get_job(job_id: str, supervisor: SupervisorDep, reader: Signer) -> JobView:
    return supervisor.job(job_id, reader)


@router.get("")
def list_jobs(
    supervisor: SupervisorDep, reader: Signer, status: Status | None = None,
    limit: Annotated[int, Query(ge=1, le=1000)] = 100,
) -> list[JobView]:
    return supervisor.jobs(reader, status, limit)


@router.post("/{job_id}/cancel")
def cancel(job_id: str, supervisor: SupervisorDep, requester: Signer) -> JobView:
    return supervisor.cancel(job_id, requester)
