"""/v1/deployments: signed envelopes in, each target node's progress out, and cancels.

A submission is checked before anything is stored, cheapest first: its size
(`max_envelope_bytes`, 413), the envelope's signatures, whether its id is
stored already (the same envelope: 200 duplicate, having spent no quota, so a
replay costs its signer nothing; another envelope under that id: 409
id_in_use), the signer's rate (`submissions_per_minute`, 429
with Retry-After), its number of targets, named and asked of the selector
(`max_targets`, 422), the replicas' cap on submissions checked with the ledger
(`ledger_lookups_per_second`, 429 with Retry-After; coord.limits), the signer's
rights on every named target, as the ledger says (coord.authorization: 403, or
503 when the ledger cannot say), and, for a selector, coord's choice of nodes
(coord.placement: 422 no_capacity when too few fit). What coord chose is stored
with the deployment (`placed`) and answered with it.

A deployment is stored once, whichever replica takes it; the dispatcher (coord.dispatcher)
moves its tasks. What is stored, and forwarded to the nodes, is the envelope coord verified, in
its canonical JSON (`canonical`), never the client's bytes: those might hold what another parser
reads otherwise (a key twice, say), and a node must run what coord checked. Submissions are the
same deployment when their envelopes are the same, however each was spelled.

Reads are signed requests too (audience "coord"): a deployment's tasks hold its jobs' results
and output, so only its signer or an admin (coord's, or the ledger's fleet admins) sees it.
"""

from __future__ import annotations

import asyncio
import logging
import time
from typing import Annotated

from fastapi import APIRouter, Query, Request
from fastapi.responses import JSONResponse, StreamingResponse

from coord.routes.dependencies import Coord, CoordDep
from coord.store import Deployment, Store
from coord.views import DeploymentView, Overall, view
from zeronode.api.auth import Signer
from zeronode.api.bodies import read_bounded
from zeronode.api.errors import Refused, Unavailable
from zeronode.api.openapi import ERRORS, request_body
from zeronode.protocol import ticket
from zeronode.protocol.envelope import Envelope, verify
from zeronode.protocol.errors import VerificationError

log = logging.getLogger("zeronode.coord")

MAX_WAIT = 60.0

router = APIRouter(prefix="/v1/deployments", tags=["deployments"], responses=ERRORS)


async def existing(store: Store, deployment_id: str) -> Deployment:
    deployment = await store.deployment(deployment_id)
    if deployment is None:
        raise Refused(404, "not_found", f"no deployment {deployment_id}")
    return deployment


async def is_admin(coord: Coord, reader: str) -> bool:
    """A coord admin (its settings' `admins`) or a fleet admin of the ledger (the `admin` role): may read
    and cancel every deployment. Asked only when a reader wants someone else's: the ledger is asked then
    (cached, and within the fleet-wide cap on ledger lookups), so reading one's own never depends on it."""
    if reader in coord.settings.admins:
        return True
    await coord.lookups.spend()
    try:
        user = await coord.authorizer.rights.user(reader)
    except Unavailable as exc:
        raise Unavailable(f"cannot check the reader's rights: {exc}", reason="ledger_unavailable") from None
    return user is not None and "admin" in user.roles


async def readable(coord: Coord, deployment_id: str, reader: str) -> Deployment:
    """The deployment, if `reader` signed it or is an admin; else Refused (404, 403)."""
    deployment = await existing(coord.store, deployment_id)
    if reader != deployment.signer and not await is_admin(coord, reader):
        raise Refused(403, "not_authorized", "only the deployment's signer or a coord admin may read it")
    return deployment


def accepted(deployment: Deployment, *, duplicate: bool) -> JSONResponse:
    return JSONResponse(
        {"id": deployment.id, "targets": deployment.targets, "placed": deployment.placed, "duplicate": duplicate},
        status_code=200 if duplicate else 202,
    )


def canonical(envelope: Envelope) -> str:
    """The envelope as coord stores and forwards it: the verified model's one spelling (canonical JSON,
    signatures included), whatever bytes the client sent."""
    return envelope.canonical_json().decode()


def same_envelope(stored: str, text: str) -> bool:
    """Whether a stored envelope is this one (`text`, canonical). Deployments stored before coord stored
    canonical JSON hold the client's bytes: those are compared in canonical form too."""
    if stored == text:
        return True
    try:
        return canonical(Envelope.model_validate_json(stored)) == text
    except ValueError:
        return False


async def known(store: Store, stored: str, envelope: Envelope, text: str) -> JSONResponse:
    """The answer to a submission whose id is stored: the same deployment, or 409 for another envelope."""
    if not same_envelope(stored, text):
        raise Refused(409, "id_in_use", f"deployment {envelope.id} exists with another envelope")
    return accepted(await existing(store, envelope.id), duplicate=True)


@router.post("", status_code=202, openapi_extra=request_body(
    Envelope, description="a signed envelope, verified from its exact bytes (so parsed by the route itself)",
))
async def submit(request: Request, coord: CoordDep) -> JSONResponse:
    store, settings = coord.store, coord.settings
    raw = await read_bounded(request, settings.max_envelope_bytes)
    try:
        verified = verify(raw, options=settings.verify)
    except VerificationError as exc:
        raise Refused(exc.http_status, exc.reason, str(exc)) from None
    envelope = verified.envelope
    text = canonical(envelope)
    # A replay of a stored envelope (by its signer retrying, or by anyone who saw it) changes nothing, and
    # another envelope under a stored id is refused: both answered before the signer's quota is spent.
    if (stored := await store.envelope(envelope.id)) is not None:
        return await known(store, stored, envelope, text)
    await coord.rate.spend(envelope.signer)
    wanted = len(envelope.targets) + (envelope.selector.count if envelope.selector else 0)
    if wanted > settings.max_targets:
        raise Refused(422, "too_many_targets", f"{wanted} targets; a deployment may have at most {settings.max_targets}")
    await coord.lookups.spend()
    if envelope.targets:
        await coord.authorizer.check(verified)
    placed = await coord.placer.place(verified) if envelope.selector else []
    deployment = Deployment(
        id=envelope.id, signer=envelope.signer, created=time.time(), envelope=text, expires_at=envelope.expires_at,
        targets=envelope.targets + placed, placed=placed, digest=ticket.envelope_digest(envelope) if placed else None,
        service=envelope.selector is not None and envelope.selector.kind == "service",
        request_id=request.state.request_id,
    )
    if not await store.create(deployment):  # stored meanwhile, by this replica or another
        return await known(store, (await existing(store, envelope.id)).envelope, envelope, text)
    coord.metrics.accepted.inc()
    coord.dispatcher.wake.set()
    log.info("deployment accepted", extra={"deployment": deployment.id, "signer": deployment.signer,
                                           "targets": len(deployment.targets), "placed": len(placed)})
    return accepted(deployment, duplicate=False)


@router.get("/{deployment_id}")
async def get_deployment(
    deployment_id: str,
    reader: Signer,
    coord: CoordDep,
    wait: Annotated[float, Query(ge=0, le=MAX_WAIT, description="seconds to wait for a change past `version`")] = 0,
    version: Annotated[int, Query(description="the version the caller has seen")] = -1,
    tasks: Annotated[bool, Query(description="false: status and counts only (cheap for big deployments)")] = True,
) -> DeploymentView:
    store = coord.store
    deployment = await readable(coord, deployment_id, reader)
    deadline = time.monotonic() + wait
    if deployment.version <= version:  # wait on the version alone, one HGET a tick; then read it all
        while await store.version(deployment_id) <= version and time.monotonic() < deadline:
            await asyncio.sleep(0.05)
        deployment = await existing(store, deployment_id)
    return view(deployment, await store.tasks(deployment) if tasks else None)


def progress_events(store: Store, deployment_id: str) -> StreamingResponse:
    """The deployment's view as server-sent events, one at each change, until it ends (the dashboard's too)."""

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


@router.get("/{deployment_id}/events")
async def events(deployment_id: str, reader: Signer, coord: CoordDep) -> StreamingResponse:
    await readable(coord, deployment_id, reader)
    return progress_events(coord.store, deployment_id)


async def newest(store: Store, limit: int, *, signer: str | None = None, status: Overall | None = None) -> list[DeploymentView]:
    """The newest deployments, everyone's or `signer`'s, of `status` if given, without their tasks."""
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


@router.get("")
async def list_deployments(
    reader: Signer,
    coord: CoordDep,
    status: Overall | None = None,
    signer: Annotated[str | None, Query(description="an admin's filter; anyone else sees their own only")] = None,
    limit: Annotated[int, Query(ge=1, le=1000)] = 50,
) -> list[DeploymentView]:
    # Everyone's (no `signer`) is for coord's admins; another signer's for any admin; one's own for anyone.
    if signer is None and reader not in coord.settings.admins:
        signer = reader
    if signer != reader and not await is_admin(coord, reader):
        raise Refused(403, "not_authorized", "only an admin may list another signer's deployments")
    return await newest(coord.store, limit, signer=signer, status=status)


@router.post("/{deployment_id}/cancel")
async def cancel(
    deployment_id: str, requester: Signer, coord: CoordDep
) -> DeploymentView:
    store = coord.store
    deployment = await existing(store, deployment_id)
    if requester != deployment.signer and not await is_admin(coord, requester):
        raise Refused(403, "not_authorized", "only the deployment's signer or a coord admin may cancel it")
    await store.cancel(deployment, requester)
    coord.dispatcher.wake.set()
    log.info("deployment canceled", extra={"deployment": deployment_id, "by": requester})
    deployment = await existing(store, deployment_id)
    return view(deployment, await store.tasks(deployment))
