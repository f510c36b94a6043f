"""/v1/users: admins create and update users; anyone with read access reads a user's roles and rights."""

from __future__ import annotations

from fastapi import APIRouter, Depends, Request
from fastapi.responses import JSONResponse
from starlette.concurrency import run_in_threadpool

from ledger import users
from ledger.routes.dependencies import LedgerDep, WriteSigner, require_read_token
from zeronode.api.bodies import parse_body
from zeronode.api.errors import Refused
from zeronode.api.ledger import NewUser, NodeId, UserView
from zeronode.api.openapi import ERRORS, request_body
from zeronode.protocol import keys
from zeronode.protocol.errors import MalformedKey

router = APIRouter(prefix="/v1/users", tags=["users"], responses=ERRORS)


@router.post("", response_model=UserView, openapi_extra=request_body(NewUser))
async def save_user(request: Request, public_key: WriteSigner, ledger: LedgerDep) -> JSONResponse:
    user = parse_body(NewUser, await request.body())
    saved, created = await run_in_threadpool(users.save, ledger.db, public_key, user, ledger.clock(), ledger.settings.admins)
    return JSONResponse(status_code=201 if created else 200, content=saved.model_dump())


@router.get("/{public_key}", dependencies=[Depends(require_read_token)])
def get_user(public_key: str, ledger: LedgerDep, node: NodeId | None = None) -> UserView:
    try:
        keys.parse_public_key(public_key)
    except MalformedKey as exc:
        raise Refused(422, exc.reason, str(exc)) from None
    return users.get(ledger.db, public_key, ledger.settings.admins, node)
