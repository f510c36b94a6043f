"""/v1/deployments: signed envelopes in, each target node's progress out, and cancels.

A submission is checked before anything is stored, cheapest first: its size
(`max_envelope_bytes`, 413), the envelope's signatures, the signer's rate
(`submissions_per_minute`, 429 with Retry-After), its number of targets
(`max_targets`, 422), and the signer's rights on every target, as the ledger
says (coord.authorization: 403, or 503 when the ledger cannot say).

A deployment is stored once, whichever replica takes it; the dispatcher (coord.dispatcher)
moves its tasks. Reads are signed requests too (audience "coord"): a deployment's
tasks hold its jobs' results and output, so only its signer or a coord admin sees it.
"""

from __future__ import annotations

import asyncio
import logging
import time
from typing import Annotated

from fastapi import APIRouter, Query, Request
from fastapi.responses import JSONResponse, StreamingResponse

from coord.routes.dependencies import (
    AuthorizerDep,
    DispatcherDep,
    MetricsDep,
    RateDep,
    SettingsDep,
    StoreDep,
)
from coord.settings import CoordSettings
from coord.store import Deployment, Store
from coord.views import DeploymentView, Overall, view
from zeronode.api.auth import Signer
from zeronode.api.bodies import read_bounded
from zeronode.api.errors import Refused
from zeronode.protocol.envelope import verify
from zeronode.protocol.errors import VerificationError

log = logging.getLogger("zeronode.coord")

MAX_WAIT = 60.0

router = APIRouter(prefix="/v1/deployments", tags=["deployments"])


async def existing(store: Store, deployment_id: str) -> Deployment:
    deployment = await store.deployment(deployment_id)
    if deployment is None:
        raise Refused(404, "not_found", f"no deployment {deployment_id}")
    return deployment


def is_admin(settings: CoordSettings, reader: str) -> bool:
    return reader in settings.admins


async def readable(store: Store, settings: CoordSettings, deployment_id: str, reader: str) -> Deployment:
    """The deployment, if `reader` signed it or is a coord admin; else Refused (404, 403)."""
    deployment = await existing(store, deployment_id)
    if reader != deployment.signer and not is_admin(settings, reader):
        raise Refused(403, "not_authorized", "only the deployment's signer or a coord admin may read it")
    return deployment


@router.post("", status_code=202)
async def submit(
    request: Request, store: StoreDep, dispatcher: DispatcherDep, settings: SettingsDep, metrics: MetricsDep,
    rate: RateDep, authorizer: AuthorizerDep,
) -> JSONResponse:
    raw = await read_bounded(request, settings.max_envelope_bytes)
    try:
        verified = verify(raw, options=settings.verify)
    except VerificationError as exc:
        raise Refused(exc.http_status, exc.reason, str(exc)) from None
    envelope = verified.envelope
    await rate.spend(envelope.signer)
    if len(envelope.targets) > settings.max_targets:
        raise Refused(
            422, "too_many_targets", f"{len(envelope.targets)} targets; a deployment may name at most {settings.max_targets}"
        )
    await authorizer.check(verified)
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
    reader: Signer,
    store: StoreDep,
    settings: SettingsDep,
    wait: Annotated[float, Query(ge=0, le=MAX_WAIT, description="seconds to wait for a change past `version`")] = 0,
    version: Annotated[int, Query(description="the version the caller has seen")] = -1,
    tasks: Annotated[bool, Query(description="false: status and counts only (cheap for big deployments)")] = True,
) -> DeploymentView:
    deployment = await readable(store, settings, deployment_id, reader)
    deadline = time.monotonic() + wait
    if deployment.version <= version:  # wait on the version alone, one HGET a tick; then read it all
        while await store.version(deployment_id) <= version and time.monotonic() < deadline:
            await asyncio.sleep(0.05)
        deployment = await existing(store, deployment_id)
    return view(deployment, await store.tasks(deployment) if tasks else None)


@router.get("/{deployment_id}/events")
async def events(deployment_id: str, reader: Signer, store: StoreDep, settings: SettingsDep) -> StreamingResponse:
    await readable(store, settings, deployment_id, reader)

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
    reader: Signer,
    store: StoreDep,
    settings: SettingsDep,
    status: Overall | None = None,
    signer: Annotated[str | None, Query(description="a coord admin's filter; anyone else sees their own only")] = None,
    limit: Annotated[int, Query(ge=1, le=1000)] = 50,
) -> list[DeploymentView]:
    if not is_admin(settings, reader):
        if signer not in (None, reader):
            raise Refused(403, "not_authorized", "only a coord admin may list another signer's deployments")
        signer = reader
    found: list[DeploymentView] = []
    for deployment_id in await store.recent(min(limit * 4, 4000), signer=signer):
        deployment = await store.deployment(deployment_id)
        if deployment is None:  # expired since it was listed
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
    if requester != deployment.signer and not is_admin(settings, requester):
        raise Refused(403, "not_authorized", "only the deployment's signer or a coord admin may cancel it")
    await store.cancel(deployment, requester)
    dispatcher.wake.set()
    log.info("deployment canceled", extra={"deployment": deployment_id, "by": requester})
    deployment = await existing(store, deployment_id)
    return view(deployment, await store.tasks(deployment))
