"""What the supervisor's handlers take from their app, as typed dependencies."""

from __future__ import annotations

from typing import Annotated

from fastapi import Depends, Request

from supervisor.service import Supervisor


# async: FastAPI would run a plain `def` dependency in its thread pool, a hop to read one attribute.
async def supervisor(request: Request) -> Supervisor:
    """The Supervisor the app was made for (supervisor.app.create_app puts it on app.state)."""
    return request.app.state.supervisor


SupervisorDep = Annotated[Supervisor, Depends(supervisor)]
