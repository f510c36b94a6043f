"""/v1/deployments: signed envelopes in, each target node's progress out, and cancels.

A deployment is stored once, whichever replica takes it; the dispatcher (coord.dispatcher)
moves its tasks. These handlers only read and write the store, and wake the dispatcher.
"""

from __future__ import annotations

import asyncio
import logging
import time
from typing import Annotated

from fastapi import APIRouter, Query, Request
from fastapi.responses import JSONResponse, StreamingResponse

from coord.routes.dependencies import DispatcherDep, MetricsDep, SettingsDep, StoreDep
from coord.store import Deployment, Store
from coord.views import DeploymentView, Overall, view
from zeronode.api.auth import Signer
from zeronode.api.bodies import read_bounded
from zeronode.api.errors import Refused
from zeronode.protocol.envelope import verify
from zeronode.protocol.errors import VerificationError

log = logging.getLogger("zeronode.coord")

MAX_BODY = 4 * 1024 * 1024
MAX_WAIT = 60.0

router = APIRouter(prefix="/v1/deployments", tags=["deployments"])


async def existing(store: Store, deployment_id: str) -> Deployment:
    deployment = await store.deployment(deployment_id)
    if deployment is None:
        raise Refused(404, "not_found", f"no deployment {deployment_id}")
    return deployment


@router.post("", status_code=202)
async def submit(
    request: Request, store: StoreDep, dispatcher: DispatcherDep, settings: SettingsDep, metrics: MetricsDep
) -> JSONResponse:
    raw = await read_bounded(request, MAX_BODY)
    try:
        envelope = verify(raw, options=settings.verify).envelope
    except VerificationError as exc:
        raise Refused(exc.http_status, exc.reason, str(exc)) from None
    deployment = Deployment(
        id=envelope.id, signer=envelope.signer, created=time.time(), envelope=raw.decode(),
        expires_at=envelope.expires_at, targets=envelope.targets,
    )
    if not await store.create(deployment):
        stored = await existing(store, envelope.id)
        if stored.envelope != deployment.envelope:
            raise Refused(409, "id_in_use", f"deployment {envelope.id} exists with another envelope")
        return JSONResponse({"id": stored.id, "targets": stored.targets, "duplicate": True}, status_code=200)
    metrics.accepted.inc()
    dispatcher.wake.set()
    log.info("deployment accepted", extra={"deployment": deployment.id, "signer": deployment.signer,
                                           "targets": len(deployment.targets)})
    return JSONResponse({"id": deployment.id, "targets": deployment.targets, "duplicate": False}, status_code=202)


@router.get("/{deployment_id}")
async def get_deployment(
    deployment_id: str,
    store: StoreDep,
    wait: Annotated[float, Query(ge=0, le=MAX_WAIT, description="seconds to wait for a change past `version`")] = 0,
    version: Annotated[int, Query(description="the version the caller has seen")] = -1,
    tasks: Annotated[bool, Query(description="false: status and counts only (cheap for big deployments)")] = True,
) -> DeploymentView:
    deployment = await existing(store, deployment_id)
    deadline = time.monotonic() + wait
    if deployment.version <= version:  # wait on the version alone, one HGET a tick; then read it all
        while await store.version(deployment_id) <= version and time.monotonic() < deadline:
            await asyncio.sleep(0.05)
        deployment = await existing(store, deployment_id)
    return view(deployment, await store.tasks(deployment) if tasks else None)


@router.get("/{deployment_id}/events")
async def events(deployment_id: str, store: StoreDep) -> StreamingResponse:
    await existing(store, deployment_id)

    async def stream():
        seen = -1
        while True:
            if await store.version(deployment_id) != seen:
                deployment = await existing(store, deployment_id)
                seen = deployment.version
                current = view(deployment, await store.tasks(deployment))
                yield f"data: {current.model_dump_json()}\n\n"
                if current.status not in (Overall.PENDING, Overall.RUNNING):
                    return
            await asyncio.sleep(0.1)

    return StreamingResponse(stream(), media_type="text/event-stream")


@router.get("")
async def list_deployments(
    store: StoreDep,
    status: Overall | None = None,
    signer: str | None = None,
    limit: Annotated[int, Query(ge=1, le=1000)] = 50,
) -> list[DeploymentView]:
    found: list[DeploymentView] = []
    for deployment_id in await store.recent(min(limit * 4, 4000)):
        deployment = await store.deployment(deployment_id)
        if deployment is None or (signer and deployment.signer != signer):
            continue
        current = view(deployment)
        if status is None or current.status == status:
            found.append(current)
        if len(found) >= limit:
            break
    return found


@router.post("/{deployment_id}/cancel")
async def cancel(
    deployment_id: str, requester: Signer, store: StoreDep, dispatcher: DispatcherDep, settings: SettingsDep
) -> DeploymentView:
    deployment = await existing(store, deployment_id)
    if requester != deployment.signer and requester not in settings.admins:
        raise Refused(403, "not_authorized", "only the deployment's signer or a coord admin may cancel it")
    await store.cancel(deployment, requester)
    dispatcher.wake.set()
    log.info("deployment canceled", extra={"deployment": deployment_id, "by": requester})
    deployment = await existing(store, deployment_id)
    return view(deployment, await store.tasks(deployment))
