"""A deployment as the coordinator's API shows it: its tasks' states summed up in one overall status."""

from __future__ import annotations

from enum import StrEnum

from pydantic import BaseModel

from coord.store import Deployment, Move, Task, TaskState


class Overall(StrEnum):
    PENDING = "pending"
    RUNNING = "running"
    SUCCEEDED = "succeeded"
    FAILED = "failed"
    CANCELED = "canceled"


def overall(counts: dict[str, int]) -> Overall:
    # A moved share counts nowhere: the node it moved to holds it now.
    states = {TaskState(state) for state, count in counts.items() if count > 0} - {TaskState.MOVED}
    if not all(state.final for state in states):
        return Overall.PENDING if states == {TaskState.PENDING} else Overall.RUNNING
    if TaskState.FAILED in states:
        return Overall.FAILED
    return Overall.CANCELED if TaskState.CANCELED in states else Overall.SUCCEEDED


class DeploymentView(BaseModel):
    id: str
    signer: str
    created: float
    expires_at: int
    status: Overall
    counts: dict[str, int]
    canceled_by: str | None
    version: int
    placed: list[str] = []  # the nodes coord chose by the envelope's selector
    service: bool = False
    history: list[Move] = []  # a service's moves from node to node
    tasks: list[Task] | None = None


def view(deployment: Deployment, tasks: list[Task] | None = None) -> DeploymentView:
    return DeploymentView(
        id=deployment.id, signer=deployment.signer, created=deployment.created, expires_at=deployment.expires_at,
        status=overall(deployment.counts), counts=deployment.counts, canceled_by=deployment.canceled_by,
        version=deployment.version, placed=deployment.placed, service=deployment.service,
        history=deployment.history, tasks=tasks,
    )
