"""/v1/releases, /v1/channels, /v1/follows: admins publish releases and roll them out; nodes fetch artifacts.

Writes are signed by an admin, except the artifact's upload, which the
published digest vouches for (ledger.releases). Reads are open, or take the
read token; the artifact is served with Range support, so a node resumes an
interrupted download.
"""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends, Path, Request
from fastapi.responses import FileResponse, JSONResponse
from starlette.concurrency import run_in_threadpool

from ledger import releases, rollouts
from ledger.routes.dependencies import LedgerDep, WriteSigner, require_read_token
from zeronode.api.bodies import parse_body
from zeronode.api.errors import Refused
from zeronode.api.openapi import ERRORS, request_body
from zeronode.api.releases import ReleaseNew, ReleaseView
from zeronode.api.rollouts import ChannelChange, ChannelView, FollowChange, FollowView
from zeronode.release.manifest import VERSION_PATTERN

router = APIRouter(tags=["releases"], responses=ERRORS)
VersionPath = Annotated[str, Path(pattern=VERSION_PATTERN)]
ChannelPath = Annotated[str, Path(pattern=r"^[a-z][a-z0-9-]{0,31}$")]


@router.post("/v1/releases", response_model=ReleaseView, openapi_extra=request_body(ReleaseNew))
async def publish(request: Request, signer: WriteSigner, ledger: LedgerDep) -> JSONResponse:
    release = parse_body(ReleaseNew, await request.body())
    settings = ledger.settings
    saved, created = await run_in_threadpool(
        releases.publish, ledger.db, signer, release, ledger.clock(), config_admins=settings.admins,
        release_keys=settings.release_keys, threshold=settings.release_threshold, networks=settings.supervisor_networks,
    )
    return JSONResponse(status_code=201 if created else 200, content=saved.model_dump())


@router.get("/v1/releases", dependencies=[Depends(require_read_token)])
def list_releases(ledger: LedgerDep) -> list[ReleaseView]:
    return releases.listing(ledger.db)


@router.get("/v1/releases/{version}", dependencies=[Depends(require_read_token)])
def get_release(version: VersionPath, ledger: LedgerDep) -> ReleaseView:
    return releases.get(ledger.db, version)


@router.put("/v1/releases/{version}/artifact", openapi_extra=request_body(
    {"type": "string", "format": "binary"}, content_type="application/octet-stream",
    description="the release's tar, checked against its published digest and size",
))
async def upload_artifact(version: VersionPath, request: Request, ledger: LedgerDep) -> ReleaseView:
    declared = request.headers.get("content-length", "")
    if not declared.isdigit():
        raise Refused(411, "length_required", "an artifact upload must declare its Content-Length")
    if int(declared) > ledger.settings.max_artifact_bytes:
        raise Refused(413, "too_large", f"artifact over max_artifact_bytes ({ledger.settings.max_artifact_bytes})")
    return await releases.receive(ledger.db, ledger.settings.artifacts, version, request.stream())


@router.get("/v1/releases/{version}/artifact", dependencies=[Depends(require_read_token)])
def get_artifact(version: VersionPath, ledger: LedgerDep) -> FileResponse:
    release = releases.get(ledger.db, version)
    if not release.hosted:
        raise Refused(404, "artifact_not_here", f"release {version}'s artifact is not on this ledger"
                      + (f": it is at {release.url}" if release.url else " (not uploaded yet)"))
    return FileResponse(releases.artifact_path(ledger.settings.artifacts, release.sha256), media_type="application/x-tar")


@router.post("/v1/channels/{name}", openapi_extra=request_body(ChannelChange))
async def change_channel(name: ChannelPath, request: Request, signer: WriteSigner, ledger: LedgerDep) -> ChannelView:
    change = parse_body(ChannelChange, await request.body())
    return await run_in_threadpool(rollouts.change_channel, ledger.db, signer, name, change, ledger.clock(), ledger.settings.admins)


@router.get("/v1/channels", dependencies=[Depends(require_read_token)])
def list_channels(ledger: LedgerDep) -> list[ChannelView]:
    return [rollouts.channel(ledger.db, name, ledger.clock()) for name in rollouts.channel_names(ledger.db)]


@router.get("/v1/channels/{name}", dependencies=[Depends(require_read_token)])
def get_channel(name: ChannelPath, ledger: LedgerDep) -> ChannelView:
    return rollouts.channel(ledger.db, name, ledger.clock())


@router.post("/v1/follows", openapi_extra=request_body(FollowChange))
async def follow(request: Request, signer: WriteSigner, ledger: LedgerDep) -> FollowView:
    change = parse_body(FollowChange, await request.body())
    return await run_in_threadpool(rollouts.set_follow, ledger.db, signer, change, ledger.settings.admins)


@router.get("/v1/follows", dependencies=[Depends(require_read_token)])
def list_follows(ledger: LedgerDep) -> list[FollowView]:
    return rollouts.follows_listing(ledger.db)
