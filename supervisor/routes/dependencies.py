"""What the supervisor's handlers take from their app, as typed dependencies."""

from __future__ import annotations

from typing import Annotated

from fastapi import Depends, Request

from supervisor.gathering import SubmitGatherer
from supervisor.service import Supervisor


def supervisor_of(request: Request) -> Supervisor:
    """The Supervisor the app was made for (supervisor.app.create_app puts it on app.state).

    The submit endpoints, the node's hot path, call this directly: FastAPI resolving a dependency
    (solve_dependencies) costs each request tens of microseconds, a few percent of a submit
    measured in-process. The other handlers take SupervisorDep."""
    return request.app.state.supervisor


def gatherer_of(request: Request) -> SubmitGatherer:
    """Where the one-envelope submits go (supervisor.app.create_app puts it on app.state)."""
    return request.app.state.submits


# async: FastAPI would run a plain `def` dependency in its thread pool, a hop to read one attribute.
async def _supervisor(request: Request) -> Supervisor:
    return supervisor_of(request)


SupervisorDep = Annotated[Supervisor, Depends(_supervisor)]
