"""Channels and rollouts on the wire: which release a channel carries, how far it has gone, who follows it.

A farm or a node follows a channel (`stable` by default) or is pinned to a
version. Promoting a release to a channel gives it to the canary first (named
farms and nodes, and a percentage of the rest), and to everyone once every
canary node has run it for `window` seconds; a canary that fails halts it.
"""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field, StringConstraints, model_validator

from zeronode.api.ledger import FarmName, NodeId, SequenceNumber
from zeronode.release.manifest import Version

_STRICT = ConfigDict(strict=True, extra="forbid", frozen=True)
ChannelName = Annotated[str, StringConstraints(pattern=r"^[a-z][a-z0-9-]{0,31}$")]
DEFAULT_CHANNEL = "stable"
Stage = Literal["canary", "all", "rolled_back"]


class Canary(BaseModel):
    """Who gets a promoted release first: these farms and nodes, and `percent` of the other nodes (chosen by
    a hash of node id and version, so the same nodes each time for one release)."""

    model_config = _STRICT

    farms: Annotated[list[FarmName], Field(max_length=100)] = []
    nodes: Annotated[list[NodeId], Field(max_length=1000)] = []
    percent: Annotated[int, Field(ge=0, le=100)] = 0

    @property
    def empty(self) -> bool:
        return not (self.farms or self.nodes or self.percent)


class ChannelChange(BaseModel):
    """POST /v1/channels/{name}, signed by an admin. promote: `version` to the canary, then to all after
    `window` seconds of health; pause and resume: hold or let go the rollout where it is; rollback: every
    follower back to the version before (an explicit downgrade)."""

    model_config = _STRICT

    action: Literal["promote", "pause", "resume", "rollback"]
    version: Version | None = None
    canary: Canary = Canary()
    window: Annotated[int, Field(ge=0, le=7 * 86400)] = 600
    sequence: SequenceNumber

    @model_validator(mode="after")
    def _version_with_promote(self) -> ChannelChange:
        if (self.action == "promote") != (self.version is not None):
            raise ValueError("a version is given with promote, and only with it")
        return self


class RolloutProgress(BaseModel):
    """The channel's followers: how many run each version, and their last update results for its release."""

    versions: dict[str, int]
    target: int = Field(description="followers the ledger tells to run the channel's release now")
    succeeded: int = Field(description="followers running the channel's release")
    updating: int = Field(description="told to run it, not running it yet, and no failure reported")
    failed: int = Field(description="rolled back or refused the channel's release")
    rolled_back: int = Field(description="installed it, failed its checks and went back")
    refused: int = Field(description="did not install it (signatures, digest, disk, an older version)")
    failures: dict[str, str] = Field(description="node id -> why, for the first few that failed")


class ChannelView(BaseModel):
    name: str
    version: str | None
    previous: str | None
    stage: Stage
    paused: bool
    halted: str | None = Field(description="why the rollout stopped by itself (a canary failed), if it did")
    canary: Canary
    window: int
    stage_since: int
    sequence: int
    progress: RolloutProgress | None = None


class FollowChange(BaseModel):
    """POST /v1/follows, signed by an admin: what a farm or a node runs, a channel or a pinned version
    (neither: back to the default, the farm's or stable)."""

    model_config = _STRICT

    farm: FarmName | None = None
    node: NodeId | None = None
    channel: ChannelName | None = None
    version: Version | None = None
    sequence: SequenceNumber

    @model_validator(mode="after")
    def _one_each(self) -> FollowChange:
        if (self.farm is None) == (self.node is None):
            raise ValueError("give a farm or a node, not both")
        if self.channel is not None and self.version is not None:
            raise ValueError("follow a channel or pin a version, not both")
        return self


class FollowView(BaseModel):
    scope: Literal["farm", "node"]
    target: str
    channel: str | None
    version: str | None
    sequence: int
