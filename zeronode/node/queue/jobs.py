"""How a node keeps jobs in Redis, as the supervisor writes them and runners read them.

A job is an rq job (JSON serializer, never pickle) whose id is the envelope's
id and whose only argument is the signed envelope itself, so every runner can
verify it again. What a run produced (value, output lines, error, duration)
is stored in the job's meta as an Outcome; rq keeps the status, timestamps
and registries, so rq's own tools show the same picture.
"""

from __future__ import annotations

import base64
from typing import Any

import redis
from pydantic import BaseModel
from rq import Queue
from rq.job import Job, JobStatus
from rq.serializers import JSONSerializer

from zeronode.api.jobs import JobView, ScriptError, Status

# The function rq records for each job; a plain rq worker would call it too.
RUN_FUNCTION = "runner.executor.run_envelope"
OUTPUT_MAX_LINES = 1000
OUTPUT_MAX_BYTES = 64 * 1024
RUNNER_DIED = "RunnerDied"  # the error of a job whose runner died while running it, no retries left
RESOURCE_LIMIT = "ResourceLimit"  # the error of a run stopped for what it held (memory, depth), not for what it did
# Errors a retry cannot fix (and re-running a script that outgrew its limits only hits them again).
NOT_RETRIED = frozenset(
    {"SignatureInvalid", "Expired", "WrongJob", "WrongNode", "NotAuthorized", "PolicyNotMet", "UnreadableJob", "Replayed", RESOURCE_LIMIT}
)


def open_queue(connection: redis.Redis, name: str) -> Queue:
    return Queue(name, connection=connection, serializer=JSONSerializer)


class Outcome(BaseModel):
    """What one run of a job's script produced."""

    status: Status
    value: Any = None
    output: list[str] = []
    output_truncated: bool = False
    error: ScriptError | None = None
    duration: float = 0.0
    attempt: int = 1


def status_of(job: Job, outcome: Outcome | None) -> Status:
    rq_status = job.get_status(refresh=False)
    if rq_status == JobStatus.STARTED:
        return Status.STARTED
    if rq_status == JobStatus.FINISHED:
        return Status.FINISHED
    if rq_status in (JobStatus.CANCELED, JobStatus.STOPPED):
        return Status.CANCELED
    if rq_status == JobStatus.FAILED:
        return Status.TIMED_OUT if outcome and outcome.status == Status.TIMED_OUT else Status.FAILED
    return Status.QUEUED  # queued, scheduled (a retry waiting for its backoff), deferred


def view(job: Job) -> JobView:
    meta = job.meta or {}
    outcome = Outcome.model_validate(meta["outcome"]) if "outcome" in meta else None
    abandoned = job.get_status(refresh=False) == JobStatus.FAILED and outcome is None
    error = outcome.error if outcome else None
    if abandoned:  # failed by the monitor: its runner died and no retries were left
        error = ScriptError(type=RUNNER_DIED, message="the runner died while running the job and no retries were left")
    return JobView(
        id=job.id,
        status=status_of(job, outcome),
        node=meta.get("node"),
        signer=meta.get("signer"),
        enqueued_at=job.enqueued_at,
        started_at=job.started_at,
        ended_at=job.ended_at,
        attempts=meta.get("attempts", 0),
        retries=meta.get("retries", 0),
        result=outcome.value if outcome else None,
        output=outcome.output if outcome else [],
        output_truncated=outcome.output_truncated if outcome else False,
        error=error,
        duration=outcome.duration if outcome else None,
    )


def json_value(value: Any) -> Any:
    """A script's value, made JSON: BLOBs become base64 text."""
    if isinstance(value, bytes):
        return base64.b64encode(value).decode("ascii")
    if isinstance(value, list):
        return [json_value(item) for item in value]
    if isinstance(value, dict):
        return {key: json_value(item) for key, item in value.items()}
    return value
