"""Who may do what on a node, as the ledger decides it: roles in scopes, and signature policies.

The ledger holds each user's roles and the nodes and farms they apply to
(docs/security.md). On one node a user's roles come to:

    admin      fleet admin: node admin everywhere, and manages the ledger's users and policies
    operator   node admin on the nodes and farms listed for the user; may deploy there
    deployer   may deploy on the nodes and farms listed for the user
    observer   reads and cancels every job on the nodes and farms listed for the user, and
               deploys nothing: coord's key, which follows the jobs it dispatched

A node admin sees and acts on every tenant's VMs, volumes and jobs; a deployer
on its own only. The admin role alone grants no deployment: an admin who runs
scripts on nodes is also an operator or deployer there. An observer's key,
stolen, runs nothing anywhere.

A signature policy says "`threshold` of these `keys` must have signed" for the
envelopes run on a node or on every node of a farm: all of them (`deploy`), or
only those whose signer acts as a node admin there (`admin`).

The same decision (`authorize`) runs at coord before any task exists, at the
supervisor before any job is queued and at the runner before a script runs.
"""

from __future__ import annotations

import re
from collections.abc import Collection, Iterable
from typing import Annotated, Literal, get_args

from pydantic import BaseModel, ConfigDict, Field, StringConstraints, field_serializer, model_validator

from zeronode.api.ledger import FarmName, NodeId, PublicKey, Role, SequenceNumber, UnixTime
from zeronode.protocol.envelope import Policy
from zeronode.protocol.errors import NotAuthorized

NODE_ADMIN: frozenset[str] = frozenset({"admin", "operator"})
MAY_DEPLOY: frozenset[str] = frozenset({"operator", "deployer"})
OVERSEES_JOBS: frozenset[str] = NODE_ADMIN | {"observer"}  # reads and cancels anyone's jobs
SCOPED: frozenset[str] = MAY_DEPLOY | {"observer"}  # the roles that hold on the listed nodes and farms only
NONE: frozenset[str] = frozenset()
NODE_ID = re.compile(r"[a-z2-7]{26}")  # zeronode.protocol.keys.node_id

_STRICT = ConfigDict(strict=True, extra="forbid", frozen=True)


def roles_on(roles: Iterable[str], nodes: Collection[str], farms: Collection[str], node_id: str, farm: str | None) -> frozenset[str]:
    """A user's roles on one node, from the roles, nodes and farms the ledger lists for them."""
    roles = frozenset(roles)
    effective = roles & {"admin"}
    if node_id in nodes or (farm is not None and farm in farms):
        effective |= roles & SCOPED
    return effective


def may_deploy(roles: frozenset[str]) -> bool:
    return not roles.isdisjoint(MAY_DEPLOY)


def is_node_admin(roles: frozenset[str]) -> bool:
    return not roles.isdisjoint(NODE_ADMIN)


def oversees_jobs(roles: frozenset[str]) -> bool:
    """Whether these roles read and cancel every tenant's jobs (node admins and observers)."""
    return not roles.isdisjoint(OVERSEES_JOBS)


class SignaturePolicy(Policy):
    """A policy of the ledger: which envelopes it covers (`scope`, `target`, `action`), and the Policy itself."""

    scope: Literal["node", "farm"]
    target: Annotated[str, Field(pattern=r"^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$", description="the node id or farm name")]
    action: Literal["deploy", "admin"] = "deploy"

    def covers(self, node_id: str, farm: str | None) -> bool:
        return self.target == (node_id if self.scope == "node" else farm)

    @field_serializer("keys")
    def _sorted_keys(self, keys: frozenset[str]) -> list[str]:
        return sorted(keys)  # a set has no order of its own: the same policy always reads the same


MAX_POLICY_KEYS = 16
Scope = Literal["node", "farm"]
Action = Literal["deploy", "admin"]
Target = Annotated[str, StringConstraints(pattern=r"^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$")]  # a node id or a farm


class PolicyChange(BaseModel):
    """POST /v1/policies, signed by a ledger admin: set the policy of (`scope`, `target`, `action`),
    or remove it with `threshold` 0. `sequence` must be greater than the last one saved for the
    same (scope, target, action), removals included, as NewUser's for a user."""

    model_config = _STRICT

    scope: Scope
    target: Target
    action: Action = "deploy"
    threshold: Annotated[int, Field(ge=0, le=MAX_POLICY_KEYS)]
    keys: Annotated[list[PublicKey], Field(max_length=MAX_POLICY_KEYS)] = []
    sequence: SequenceNumber

    @model_validator(mode="after")
    def _consistent(self) -> PolicyChange:
        if self.scope == "node" and not NODE_ID.fullmatch(self.target):
            raise ValueError(f"target {self.target!r} is not a node id")
        if len(set(self.keys)) != len(self.keys):
            raise ValueError("keys must be distinct")
        if self.threshold > len(self.keys):
            raise ValueError(f"threshold {self.threshold} exceeds the {len(self.keys)} keys")
        return self

    @property
    def removes(self) -> bool:
        return self.threshold == 0


class PolicyRemoved(BaseModel):
    """What POST /v1/policies answers for a change with threshold 0: no policy there any more."""

    scope: Scope
    target: str
    action: Action
    removed: Literal[True] = True


class PolicyFilters(BaseModel):
    """GET /v1/policies: which policies (all of them by default)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    scope: Scope | None = None
    target: Target | None = None


class Grant(BaseModel):
    """One user's roles on one node."""

    model_config = _STRICT

    public_key: PublicKey
    roles: Annotated[list[Role], Field(min_length=1, max_length=len(get_args(Role)))]  # each at most once


class NodeRights(BaseModel):
    """GET /v1/nodes/{id}/rights: every user with a role on the node, and the policies that cover it."""

    model_config = _STRICT

    node_id: NodeId
    farm: FarmName | None
    generated_at: UnixTime
    grants: list[Grant]
    policies: list[SignaturePolicy]


def authorize(roles: frozenset[str], policies: Iterable[SignaturePolicy], signers: frozenset[str], signer: str) -> bool:
    """Whether `signer`, with `roles` on this node, may run an envelope signed by `signers`; raise
    NotAuthorized or PolicyNotMet if not. True when it runs as a node admin (sees every tenant)."""
    if not may_deploy(roles):
        raise NotAuthorized(f"signer {signer} may not deploy on this node")
    admin = is_node_admin(roles)
    for policy in policies:
        if policy.action == "deploy" or admin:
            policy.check(signers)
    return admin
