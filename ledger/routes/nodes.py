"""/v1/nodes: a node registers itself with its own signature; anyone with read access lists and reads nodes;
admins cordon, drain and reactivate them."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends, Query, Request
from fastapi.responses import JSONResponse
from starlette.concurrency import run_in_threadpool

from ledger import nodes
from ledger.routes.dependencies import LedgerDep, WriteSigner, require_read_token
from zeronode.api.bodies import parse_body
from zeronode.api.ledger import (
    NodeDetail,
    NodeFilters,
    NodeId,
    NodeRegistration,
    NodeSchedule,
    NodeView,
    ScheduleChange,
)
from zeronode.api.openapi import ERRORS, request_body

router = APIRouter(prefix="/v1/nodes", tags=["nodes"], responses=ERRORS)


@router.post("", response_model=NodeView, openapi_extra=request_body(NodeRegistration))
async def register(request: Request, public_key: WriteSigner, ledger: LedgerDep) -> JSONResponse:
    registration = parse_body(NodeRegistration, await request.body())
    now = ledger.clock()
    row, created = await run_in_threadpool(
        nodes.register, ledger.db, public_key, registration, now, networks=ledger.settings.supervisor_networks
    )
    ledger.metrics.registrations.labels("created" if created else "updated").inc()
    view = nodes.view(row, now, ledger.settings.offline_after)
    return JSONResponse(status_code=201 if created else 200, content=view.model_dump())


@router.get("", dependencies=[Depends(require_read_token)])
def list_nodes(filters: Annotated[NodeFilters, Query()], ledger: LedgerDep) -> list[NodeView]:
    return nodes.listing(ledger.db, filters, now=ledger.clock(), offline_after=ledger.settings.offline_after)


@router.post("/{node_id}/schedule", openapi_extra=request_body(ScheduleChange))
async def set_schedule(node_id: NodeId, request: Request, signer: WriteSigner, ledger: LedgerDep) -> NodeSchedule:
    """Cordon (no new placements), drain (cordon, and move its services away) or reactivate a node: admins only."""
    change = parse_body(ScheduleChange, await request.body())
    schedule = await run_in_threadpool(nodes.set_schedule, ledger.db, signer, node_id, change, ledger.settings.admins)
    return NodeSchedule(node_id=node_id, schedule=schedule, sequence=change.sequence)


@router.get("/{node_id}", dependencies=[Depends(require_read_token)])
def get_node(node_id: NodeId, ledger: LedgerDep) -> NodeDetail:
    return nodes.detail(ledger.db, node_id, ledger.clock(), ledger.settings.offline_after)
