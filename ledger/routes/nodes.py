"""/v1/nodes: a node registers itself with its own signature; anyone with read access lists and reads nodes."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends, Query, Request
from fastapi.responses import JSONResponse
from starlette.concurrency import run_in_threadpool

from ledger import nodes
from ledger.routes.dependencies import ClockDep, DatabaseDep, MetricsDep, SettingsDep, WriteSigner, require_read_token
from zeronode.api.bodies import parse_body
from zeronode.api.ledger import NodeDetail, NodeFilters, NodeId, NodeRegistration, NodeView

router = APIRouter(prefix="/v1/nodes", tags=["nodes"])


@router.post("", response_model=NodeView)
async def register(
    request: Request, public_key: WriteSigner, db: DatabaseDep, settings: SettingsDep, clock: ClockDep, metrics: MetricsDep
) -> JSONResponse:
    registration = parse_body(NodeRegistration, await request.body())
    now = clock()
    row, created = await run_in_threadpool(nodes.register, db, public_key, registration, now)
    metrics.registrations.labels("created" if created else "updated").inc()
    view = nodes.view(row, now, settings.offline_after)
    return JSONResponse(status_code=201 if created else 200, content=view.model_dump())


@router.get("", dependencies=[Depends(require_read_token)])
def list_nodes(
    filters: Annotated[NodeFilters, Query()], db: DatabaseDep, settings: SettingsDep, clock: ClockDep
) -> list[NodeView]:
    return nodes.listing(db, filters, now=clock(), offline_after=settings.offline_after)


@router.get("/{node_id}", dependencies=[Depends(require_read_token)])
def get_node(node_id: NodeId, db: DatabaseDep, settings: SettingsDep, clock: ClockDep) -> NodeDetail:
    return nodes.detail(db, node_id, clock(), settings.offline_after)
