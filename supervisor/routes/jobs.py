"""/v1/jobs: signed envelopes in; jobs out to signed reads by their signer or a node admin; cancels likewise.

Verifying, compiling and Redis are blocking work: submits hand it to the thread
pool, and the other handlers are plain `def`, which FastAPI runs there.
"""

from __future__ import annotations

import json
from typing import Annotated, Any

from fastapi import APIRouter, Query, Request
from fastapi.responses import JSONResponse
from pydantic import Field, RootModel
from starlette.concurrency import run_in_threadpool

from supervisor.routes.dependencies import SupervisorDep, supervisor_of
from zeronode.api.auth import Signer
from zeronode.api.bodies import parse_body, read_bounded
from zeronode.api.errors import ServiceError
from zeronode.api.jobs import JobView, Status

MAX_BODY = 8 * 1024 * 1024
MAX_BATCH = 1000

router = APIRouter(prefix="/v1/jobs", tags=["jobs"])


class EnvelopeBatch(RootModel[Annotated[list[Any], Field(max_length=MAX_BATCH)]]):
    """POST /v1/jobs/batch: a JSON array of envelopes. Each is any JSON value here: the service verifies
    each on its own, so one that is not an envelope is refused alone, not with the whole batch."""


@router.post("", status_code=202)
async def submit(request: Request) -> JSONResponse:
    accepted = await run_in_threadpool(supervisor_of(request).submit, await read_bounded(request, MAX_BODY))
    return JSONResponse(
        status_code=200 if accepted.duplicate else 202,
        content={"job_id": accepted.job_id, "status": accepted.status, "duplicate": accepted.duplicate},
    )


@router.post("/batch")
async def submit_batch(request: Request) -> list[dict[str, Any]]:
    batch = parse_body(EnvelopeBatch, await read_bounded(request, MAX_BODY))
    answers = await run_in_threadpool(supervisor_of(request).submit_many, [json.dumps(envelope) for envelope in batch.root])
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
