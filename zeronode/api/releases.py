"""Releases on the wire: what an admin publishes, what the ledger shows, what a node is told to run and
what it reports back (docs/operators.md, "Updating a fleet"). The rollout's models are in rollouts.py."""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field, StringConstraints

from zeronode.release.manifest import ReleaseSignature, Sha256, Version

_STRICT = ConfigDict(strict=True, extra="forbid", frozen=True)
ArtifactUrl = Annotated[str, StringConstraints(pattern=r"^https?://\S{1,500}$")]
ArtifactSize = Annotated[int, Field(ge=1, le=2**40)]
Signatures = Annotated[list[ReleaseSignature], Field(min_length=1, max_length=16)]
Reason = Annotated[str, StringConstraints(max_length=500)]


class ReleaseNew(BaseModel):
    """POST /v1/releases, signed by an admin: a release, its artifact's digest and size, and the release
    keys' signatures over them. Without `url` the artifact is uploaded to the ledger next
    (PUT /v1/releases/VERSION/artifact), which serves it to the nodes."""

    model_config = _STRICT

    version: Version
    sha256: Sha256
    size: ArtifactSize
    signatures: Signatures
    url: ArtifactUrl | None = None


class ReleaseView(BaseModel):
    version: str
    sha256: str
    size: int
    signatures: list[ReleaseSignature]
    signers: list[str] = Field(description="the ledger's release keys among the valid signatures")
    url: str | None = Field(description="where nodes fetch it; None: the ledger serves it (hosted)")
    hosted: bool = Field(description="the artifact was uploaded to the ledger and checked against the digest")
    published_at: int
    published_by: str


class ReleaseTarget(BaseModel):
    """What a node should run, in the ledger's answer to its uptime report. `url` is absolute, or a path on
    the ledger. `rollback`: an operator rolled the channel back, so an older version than the node's is wanted."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    version: str
    sha256: str
    size: int
    signatures: list[ReleaseSignature]
    url: str
    channel: str
    rollback: bool = False


UpdateOutcome = Literal["succeeded", "rolled_back", "refused"]


class UpdateResult(BaseModel):
    """A node's last update, in its uptime reports: `refused` never got installed (a bad signature or
    digest, a full disk, an older version), `rolled_back` was installed, failed its checks and was undone."""

    model_config = _STRICT

    version: Version
    result: UpdateOutcome
    reason: Reason | None = None
    at: Annotated[int, Field(ge=0, le=2**53)]
