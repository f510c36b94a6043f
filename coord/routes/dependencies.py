"""What the coordinator's handlers take from their app, as typed dependencies.

The objects are the ones coord.app.create_app puts on app.state. Every
dependency here is `async`, like the handlers: FastAPI would run a plain `def`
one in its thread pool, a hop to read one attribute.
"""

from __future__ import annotations

from typing import Annotated

from fastapi import Depends, Request

from coord.authorization import Authorizer
from coord.dispatcher import Dispatcher
from coord.limits import SubmissionRate
from coord.metrics import Metrics
from coord.settings import CoordSettings
from coord.store import Store


async def store(request: Request) -> Store:
    return request.app.state.store


async def dispatcher(request: Request) -> Dispatcher:
    return request.app.state.dispatcher


async def settings(request: Request) -> CoordSettings:
    return request.app.state.settings


async def metrics(request: Request) -> Metrics:
    return request.app.state.metrics


async def authorizer(request: Request) -> Authorizer:
    return request.app.state.authorizer


async def rate(request: Request) -> SubmissionRate:
    return request.app.state.rate


StoreDep = Annotated[Store, Depends(store)]
DispatcherDep = Annotated[Dispatcher, Depends(dispatcher)]
SettingsDep = Annotated[CoordSettings, Depends(settings)]
MetricsDep = Annotated[Metrics, Depends(metrics)]
AuthorizerDep = Annotated[Authorizer, Depends(authorizer)]
RateDep = Annotated[SubmissionRate, Depends(rate)]
