"""Who may do what on a node: its rights (read by the node itself, signed), and the signature policies
(set by admins, read by anyone with read access)."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends, Query, Request
from fastapi.responses import JSONResponse
from starlette.concurrency import run_in_threadpool

from ledger import policies, rights
from ledger.routes.dependencies import LedgerDep, WriteSigner, require_read_token
from zeronode.api.auth import Signer
from zeronode.api.bodies import parse_body
from zeronode.api.ledger import NodeId
from zeronode.api.openapi import ERRORS, request_body
from zeronode.api.rights import NodeRights, PolicyChange, PolicyFilters, PolicyRemoved, SignaturePolicy

router = APIRouter(tags=["rights"], responses=ERRORS)


# Signed rather than behind the read token: a node holds its key, not the token, and a signed
# GET names its reader, so only the node itself and the ledger's admins see who may act on it.
@router.get("/v1/nodes/{node_id}/rights")
def node_rights(node_id: NodeId, signer: Signer, ledger: LedgerDep) -> NodeRights:
    return rights.node_rights(ledger.db, signer, node_id, ledger.clock(), ledger.settings.admins)


@router.post("/v1/policies", response_model=SignaturePolicy | PolicyRemoved, openapi_extra=request_body(PolicyChange))
async def set_policy(request: Request, signer: WriteSigner, ledger: LedgerDep) -> JSONResponse:
    change = parse_body(PolicyChange, await request.body())
    saved, created = await run_in_threadpool(policies.save, ledger.db, signer, change, ledger.clock(), ledger.settings.admins)
    return JSONResponse(status_code=201 if created else 200, content=saved.model_dump(mode="json"))


@router.get("/v1/policies", dependencies=[Depends(require_read_token)])
def list_policies(filters: Annotated[PolicyFilters, Query()], ledger: LedgerDep) -> list[SignaturePolicy]:
    return policies.listing(ledger.db, filters)
