"""What the ledger's API takes and answers, as pydantic models (shared with zeronode.client.ledger).

Requests are strict, as envelopes are: unknown fields are refused and `"8"` is
not 8, so a signed body means one thing only.
"""

from __future__ import annotations

import ipaddress
from typing import Annotated, Literal, get_args

from pydantic import AfterValidator, BaseModel, ConfigDict, Field, StringConstraints

from zeronode.api.releases import ReleaseTarget, UpdateResult
from zeronode.protocol import keys
from zeronode.protocol.envelope import Label


def _ipv6(text: str) -> str:
    try:
        return str(ipaddress.IPv6Address(text))
    except ValueError:
        raise ValueError(f"not an IPv6 address: {text!r}") from None


PublicKey = Annotated[str, AfterValidator(keys.canonical_public_key)]
NodeId = Annotated[str, StringConstraints(pattern=r"^[a-z2-7]{26}$")]  # zeronode.protocol.keys.node_id
FarmName = Annotated[str, StringConstraints(pattern=r"^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$")]
UnixTime = Annotated[int, Field(ge=0, le=2**53)]
# A change's place in the order of changes to the same record: each must be greater than the last one
# saved, so a signed change replayed within its window cannot undo a later one. Any strictly increasing
# integer will do; the CLI sends its signing time in milliseconds. 2**53: exact in JSON everywhere.
SequenceNumber = Annotated[int, Field(ge=1, le=2**53)]
Bytes = Annotated[int, Field(ge=0, le=2**63 - 1)]
Role = Literal["admin", "operator", "deployer", "observer"]  # what each means: zeronode.api.rights
# online: heard from within offline_after, and its parts healthy; degraded: heard from, and a part failing.
Status = Literal["online", "degraded", "offline"]
# Whether coord may place new deployments on a node: active; cordoned (no new placements); draining (cordoned,
# and its service deployments move elsewhere). Set by an admin (POST /v1/nodes/ID/schedule).
Schedule = Literal["active", "cordoned", "draining"]
PartName = Annotated[str, StringConstraints(pattern=r"^[a-z][a-z0-9_]{0,31}$")]

_STRICT = ConfigDict(strict=True, extra="forbid", frozen=True)


class Capacity(BaseModel):
    model_config = _STRICT

    vcpus: Annotated[int, Field(ge=1, le=1_000_000)]
    memory: Bytes
    disk: Bytes


class Usage(BaseModel):
    """vCPUs and bytes of a node's capacity: what its VMs and volumes hold (reserved), or what is left (free)."""

    model_config = _STRICT

    vcpus: Annotated[int, Field(ge=0, le=100_000_000)]
    memory: Bytes
    disk: Bytes


# A SAL driver's name, as sal.registry's table and a node's settings spell it.
DRIVER_NAME = r"^[a-z0-9][a-z0-9_.-]{0,63}$"
DriverName = Annotated[str, StringConstraints(pattern=DRIVER_NAME)]


class Driver(BaseModel):
    """Which driver runs one of a node's SALs, and what it can do (the SAL's fingerprint)."""

    model_config = _STRICT

    driver: DriverName
    # True when a simulator stands in for the real daemon or VMM: no guest code runs, say.
    simulated: bool = False
    version: Annotated[str, StringConstraints(max_length=64)] | None = None
    features: Annotated[list[Annotated[str, StringConstraints(max_length=64)]], Field(max_length=32)] = []


class Capabilities(BaseModel):
    """A node's SAL drivers; a SAL the node does not have is None."""

    model_config = _STRICT

    hypervisor: Driver | None = None
    storage: Driver | None = None
    network: Driver | None = None


class NodeRegistration(BaseModel):
    """POST /v1/nodes, signed by the node's key: the node id derives from that key."""

    model_config = _STRICT

    farm: FarmName
    owner: Annotated[str, StringConstraints(max_length=128)] | None = None
    capacity: Capacity
    # Any text here: which URLs are allowed is zeronode.api.destinations' one decision (forbidden_destination).
    supervisor_url: Annotated[str, StringConstraints(pattern=r"^\S{1,500}$")] | None = None
    mycelium_address: Annotated[str, StringConstraints(max_length=45), AfterValidator(_ipv6)] | None = None
    version: Annotated[str, StringConstraints(min_length=1, max_length=64)]
    capabilities: Capabilities = Capabilities()
    labels: Annotated[list[Label], Field(max_length=32)] = []


class UptimeReport(BaseModel):
    """POST /v1/nodes/{id}/uptime, signed by the node: seconds since it booted, at `timestamp`; with what its
    VMs and volumes hold and what is free for more (its allocation ratios applied), and its parts' health."""

    model_config = _STRICT

    uptime: UnixTime
    timestamp: UnixTime
    reserved: Usage | None = None
    free: Usage | None = None
    health: Annotated[dict[PartName, bool], Field(max_length=16)] | None = None
    # The version the node runs now, and how its last update went (docs/operators.md, "Updating a fleet").
    version: Annotated[str, StringConstraints(min_length=1, max_length=64)] | None = None
    update: UpdateResult | None = None


class NodeFilters(BaseModel):
    """GET /v1/nodes: which nodes, a page at a time in id order; `after` is the last id of the previous page."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    status: Status | None = None
    farm: FarmName | None = None
    schedule: Schedule | None = None
    min_vcpus: Annotated[int, Field(ge=0)] | None = None
    min_memory: Annotated[int, Field(ge=0)] | None = None
    min_disk: Annotated[int, Field(ge=0)] | None = None
    # Free capacity, as the nodes' last reports say (indexed: placement filters on them).
    min_free_vcpus: Annotated[int, Field(ge=0)] | None = None
    min_free_memory: Annotated[int, Field(ge=0)] | None = None
    min_free_disk: Annotated[int, Field(ge=0)] | None = None
    after: Annotated[str, StringConstraints(max_length=26)] | None = None
    # These nodes only, comma-separated (at most 200, to keep the URL short): one request where a
    # deployment to many nodes would otherwise ask for each.
    ids: Annotated[str, StringConstraints(pattern=r"^[a-z2-7]{26}(,[a-z2-7]{26}){0,199}$")] | None = None
    limit: Annotated[int, Field(ge=1, le=1000)] = 100


class NodeView(BaseModel):
    node_id: str
    public_key: str
    farm: str
    owner: str | None
    capacity: Capacity
    supervisor_url: str | None
    mycelium_address: str | None
    version: str
    capabilities: Capabilities
    registered_at: int
    updated_at: int
    status: Status
    last_report_at: int | None
    last_uptime: int | None
    restarts: int
    labels: list[str] = []
    schedule: Schedule = "active"
    reserved: Usage | None = None
    free: Usage | None = None
    health: dict[str, bool] | None = None
    update: UpdateResult | None = None


class NodeDetail(NodeView):
    """A node with its uptime percentages: proven up time over the period (or since registration, if later)."""

    uptime_24h: float | None
    uptime_30d: float | None


class UptimeAccepted(BaseModel):
    node_id: str
    timestamp: int
    uptime: int
    restart: bool
    duplicate: bool
    restarts: int
    # What the node should run, when it follows a channel or a pin with a release (single reports only).
    release: ReleaseTarget | None = None


class ScheduleChange(BaseModel):
    """POST /v1/nodes/{id}/schedule, signed by an admin: cordon, drain or make a node active again.
    `sequence` must be greater than the last change's (a replayed change cannot undo a later one)."""

    model_config = _STRICT

    schedule: Schedule
    sequence: SequenceNumber


class NodeSchedule(BaseModel):
    """A node's schedule as the ledger saved it."""

    node_id: str
    schedule: Schedule
    sequence: int


class SignedRequestCopy(BaseModel):
    """One single-report request exactly as signed: a relay forwards it inside a batch."""

    model_config = ConfigDict(strict=True, extra="forbid")

    method: str
    target: Annotated[str, StringConstraints(max_length=256)]
    headers: dict[str, Annotated[str, StringConstraints(max_length=256)]]
    body: Annotated[str, StringConstraints(max_length=4096)]


class UptimeBatch(BaseModel):
    """POST /v1/uptime/batch: many reports, each verified on its own."""

    model_config = ConfigDict(strict=True, extra="forbid")

    reports: list[SignedRequestCopy]


class NewUser(BaseModel):
    """POST /v1/users, signed by an admin: creates the user, or replaces their name and rights.
    Empty roles revoke them. `sequence` must be greater than the one the ledger has for the user."""

    model_config = _STRICT

    public_key: PublicKey
    name: Annotated[str, StringConstraints(min_length=1, max_length=128)]
    roles: Annotated[list[Role], Field(max_length=len(get_args(Role)))] = []
    nodes: Annotated[list[NodeId], Field(max_length=10_000)] = []
    farms: Annotated[list[FarmName], Field(max_length=1_000)] = []
    sequence: SequenceNumber


class UserView(BaseModel):
    public_key: str
    name: str
    roles: list[Role]
    nodes: list[str]
    farms: list[str]
    source: Literal["ledger", "config"]
    sequence: int = Field(description="the sequence of the last change saved (0: none, or from before sequences)")
    created_at: int | None
    updated_at: int | None
    may_deploy: bool | None = Field(None, description="with ?node=ID: whether this user may deploy on that node")
