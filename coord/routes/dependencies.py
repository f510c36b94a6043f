"""What the coordinator's handlers take from their app: one typed dependency, `CoordDep`.

The objects are the ones coord.app.create_app puts on app.state.coord. One
dependency, not one per object: each dependency FastAPI resolves costs a
request tens of microseconds (see ledger.routes.dependencies, which does the
same). It is `async`, like the handlers: FastAPI would run a plain `def` one in
its thread pool, a hop to read one attribute.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Annotated

from fastapi import Depends, Request

from coord.authorization import Authorizer
from coord.dispatcher import Dispatcher
from coord.limits import LedgerLookups, SubmissionRate
from coord.metrics import Metrics
from coord.placement import Placer
from coord.settings import CoordSettings
from coord.store import Store


@dataclass(frozen=True)
class Coord:
    """What every handler may need of its app."""

    store: Store
    dispatcher: Dispatcher
    settings: CoordSettings
    metrics: Metrics
    authorizer: Authorizer  # the signer's rights on the targets, from the ledger
    placer: Placer  # the nodes chosen for a selector, from the ledger's free capacity
    rate: SubmissionRate  # each signer's submissions a minute
    lookups: LedgerLookups  # submissions a second that reach the ledger, whoever signed them


async def _coord(request: Request) -> Coord:
    return request.app.state.coord


CoordDep = Annotated[Coord, Depends(_coord)]
