"""A job as a node's supervisor shows it (GET /v1/jobs/ID): what coord and clients read."""

from __future__ import annotations

from datetime import datetime
from enum import StrEnum
from typing import Any

from pydantic import BaseModel


class Status(StrEnum):
    QUEUED = "queued"
    STARTED = "started"
    FINISHED = "finished"
    FAILED = "failed"
    CANCELED = "canceled"
    TIMED_OUT = "timed_out"
    # The node's queue forgot the job (its Redis lost its data); the node's journal still knows it.
    # Its error says which: QUEUE_LOST (it never started: sending the envelope again runs it once)
    # or RESULT_LOST (it started: it may have run, and it never runs again).
    LOST = "lost"


QUEUE_LOST = "QueueLost"
RESULT_LOST = "ResultLost"


class ScriptError(BaseModel):
    type: str
    message: str
    line: int | None = None
    column: int | None = None


class JobView(BaseModel):
    """A job as the supervisor's API shows it."""

    id: str
    status: Status
    node: str | None = None
    signer: str | None = None
    enqueued_at: datetime | None = None
    started_at: datetime | None = None
    ended_at: datetime | None = None
    attempts: int = 0
    retries: int = 0
    result: Any = None
    output: list[str] = []
    output_truncated: bool = False
    error: ScriptError | None = None
    duration: float | None = None
