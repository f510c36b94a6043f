"""/v1/vms: a VM's console and events, read by signed requests of its owner or a node admin."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Query, Request

from supervisor.vms import VmReader
from zeronode.api.auth import Signer
from zeronode.api.openapi import ERRORS

router = APIRouter(prefix="/v1/vms", tags=["vms"], responses=ERRORS)


def _vms(request: Request) -> VmReader:
    return request.app.state.vms


@router.get("/{name}/console")
def console(
    name: str, request: Request, reader: Signer,
    lines: Annotated[int, Query(ge=1, le=1000)] = 100,
    boot: Annotated[int, Query(ge=0, le=2)] = 0,
    offset: Annotated[int | None, Query(ge=0)] = None,
    file: Annotated[int | None, Query(ge=0)] = None,
) -> dict[str, Any]:
    """The last `lines` lines of a boot's console (0: this boot; 1, 2: the ones before), or, with `offset`
    (and the `file` the last answer named), this boot's console from that byte on and the `offset` and `file`
    to ask for next (`zeronode vm logs --follow`; a new boot's console is read from its start)."""
    if offset is not None:
        return _vms(request).follow(reader, name, offset, file)
    return _vms(request).console(reader, name, lines=lines, boot=boot)


@router.get("/{name}/events")
def events(name: str, request: Request, reader: Signer,
           limit: Annotated[int, Query(ge=1, le=200)] = 200) -> dict[str, Any]:
    """The VM's last events, oldest first: created, started, stopped, exited, crashed, restarted, gave_up..."""
    return _vms(request).events(reader, name, limit)
