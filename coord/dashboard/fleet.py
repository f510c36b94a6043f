"""What the dashboard shows of the fleet: the ledger's nodes, a node's supervisor, and what coord gave each node.

    nodes        the ledger's list (status, health, version, capacity held and free, uptime), at most MAX_NODES
    node         one node: the ledger's detail (uptime over 24 h and 30 d); its supervisor's /health (the
                 version it runs, its runner pool: runners registered, jobs running and queued) and its newest
                 jobs, read with coord's own signature (coord is an observer on the nodes: it reads every
                 tenant's jobs); and the tasks coord dispatched there among the newest deployments
    failures     the failed tasks of the newest deployments, each with its error: what failed and why

A supervisor that does not answer, or refuses coord, leaves its part of the
node's panel empty with the reason; the ledger's parts fail the whole request
(503), as coord's other ledger reads do. What a supervisor answers is read as
coord.supervisors reads it (capped, never redirected, a refusal's text only in
zeronode's error shape), and jobs reach the browser without their result and
output: the panel is an overview, and the deployment's own view has those.
"""

from __future__ import annotations

import json
from typing import Any

import httpx
from pydantic import BaseModel, TypeAdapter, ValidationError

from coord.settings import CoordSettings
from coord.store import Store, Task, TaskState
from coord.supervisors import BadAnswer, SupervisorClients, Unreachable, clean, refusal
from zeronode.api.destinations import check_supervisor_url
from zeronode.api.errors import Refused, Unavailable, detail_of, unreachable
from zeronode.api.jobs import JobView
from zeronode.api.ledger import NodeDetail, NodeView

MAX_NODES = 1000  # one page of the ledger's: the dashboard is an overview, not an inventory
SCANNED = 200  # newest deployments read for a node's tasks and for the failures
JOBS = 25  # newest jobs asked of a node's supervisor
HEALTH_LIMIT = 16 * 1024  # bytes of a supervisor's /health
JOBS_LIMIT = 4 * 1024 * 1024  # bytes of its job list (each job's output is capped on the node)

_nodes = TypeAdapter(list[NodeView])
_jobs = TypeAdapter(list[JobView])


class RunnerPool(BaseModel):
    registered: int  # runners on the node's queue
    running: int  # jobs running now
    queued: int  # jobs waiting


class SupervisorState(BaseModel):
    """What the node's supervisor said, or why it said nothing (`error`)."""

    reachable: bool
    error: str | None = None
    status: str | None = None  # its /health status: ok, redis unavailable, queue not append-only
    version: str | None = None
    rights: str | None = None
    runners: RunnerPool | None = None
    jobs: list[JobView] | None = None
    jobs_error: str | None = None


class NodeTask(BaseModel):
    """A task coord holds for this node: which deployment, how far it got, why it failed."""

    deployment: str
    signer: str
    created: float
    task: Task


class NodePanel(BaseModel):
    node: NodeDetail
    supervisor: SupervisorState
    tasks: list[NodeTask]


class Failure(BaseModel):
    deployment: str
    signer: str
    created: float
    node: str
    reason: str
    message: str
    line: int | None = None


class Fleet:
    def __init__(self, settings: CoordSettings, http: httpx.AsyncClient, supervisors: SupervisorClients, store: Store):
        self.settings = settings
        self.ledger_url = settings.ledger_url.rstrip("/")
        self.http = http
        self.supervisors = supervisors
        self.store = store
        self.headers = {"authorization": f"Bearer {settings.ledger_token}"} if settings.ledger_token else {}

    async def _ledger(self, path: str, params: dict[str, Any] | None = None) -> Any:
        try:
            response = await self.http.get(f"{self.ledger_url}{path}", params=params, headers=self.headers)
        except httpx.HTTPError as exc:
            raise unreachable(exc, "the ledger", self.ledger_url) from exc
        if response.status_code == 404:
            raise Refused(404, "not_found", detail_of(response)[1])
        if response.status_code != 200:
            raise Unavailable(f"the ledger answered {response.status_code}: {detail_of(response)[1]}", reason="ledger_unavailable")
        return response.content

    async def nodes(self) -> list[NodeView]:
        raw = await self._ledger("/v1/nodes", {"limit": MAX_NODES})
        try:
            return _nodes.validate_json(raw)
        except ValidationError as exc:
            raise Unavailable(f"the ledger's node list is not what coord reads: {exc.error_count()} problems",
                              reason="ledger_unavailable") from None

    async def node(self, node_id: str) -> NodePanel:
        raw = await self._ledger(f"/v1/nodes/{node_id}")
        try:
            detail = NodeDetail.model_validate_json(raw)
        except ValidationError as exc:
            raise Unavailable(f"the ledger's node is not what coord reads: {exc.error_count()} problems",
                              reason="ledger_unavailable") from None
        return NodePanel(node=detail, supervisor=await self._supervisor(detail), tasks=await self._tasks(node_id))

    async def _supervisor(self, node: NodeDetail) -> SupervisorState:
        try:
            url = check_supervisor_url(
                node.supervisor_url or "", mycelium_address=node.mycelium_address, networks=self.settings.supervisor_networks
            )
        except Refused as exc:
            return SupervisorState(reachable=False, error=exc.message)
        try:
            health = await self.supervisors.exchange("GET", f"{url}/health", limit=HEALTH_LIMIT)
        except (Unreachable, BadAnswer) as exc:
            return SupervisorState(reachable=False, error=str(exc))
        if health.status not in (200, 503):  # 503: the node is up, its queue is not (its body says which)
            return SupervisorState(reachable=False, error=f"its /health answered HTTP {health.status}")
        state = _health(health.body)
        try:
            answer = await self.supervisors.exchange("GET", f"{url}/v1/jobs?limit={JOBS}", limit=JOBS_LIMIT,
                                                     audience=node.node_id)
        except (Unreachable, BadAnswer) as exc:
            state.jobs_error = str(exc)
            return state
        if answer.status != 200:
            reason, message = refusal(answer)
            state.jobs_error = f"{reason}: {message}"
            return state
        try:
            state.jobs = [job.model_copy(update={"result": None, "output": []}) for job in _jobs.validate_json(answer.body)]
        except ValidationError:
            state.jobs_error = "the node's job list is not what coord reads"
        return state

    async def _tasks(self, node_id: str) -> list[NodeTask]:
        found = []
        for deployment_id in await self.store.recent(SCANNED):
            deployment = await self.store.deployment(deployment_id)
            if deployment is None or node_id not in deployment.targets:
                continue
            task, _ = await self.store.task(deployment_id, node_id)
            if task is not None:
                found.append(NodeTask(deployment=deployment_id, signer=deployment.signer, created=deployment.created,
                                      task=task.model_copy(update={"result": None, "output": []})))
        return found

    async def failures(self, limit: int = 20) -> list[Failure]:
        found: list[Failure] = []
        for deployment_id in await self.store.recent(SCANNED):
            deployment = await self.store.deployment(deployment_id)
            if deployment is None or not deployment.counts.get(TaskState.FAILED):
                continue
            for task in await self.store.tasks(deployment):
                if task.state == TaskState.FAILED and task.error is not None:
                    found.append(Failure(deployment=deployment_id, signer=deployment.signer, created=deployment.created,
                                         node=task.node, reason=task.error.reason, message=task.error.message,
                                         line=task.error.line))
                    if len(found) >= limit:
                        return found
        return found


def _health(body: bytes) -> SupervisorState:
    """A supervisor's /health as the panel shows it: its known fields, each only when it has its type."""
    try:
        health = json.loads(body)
    except ValueError:
        health = None
    if not isinstance(health, dict):
        return SupervisorState(reachable=True, error="its /health answer is not JSON")

    def text(name: str) -> str | None:
        value = health.get(name)
        return clean(value)[:100] if isinstance(value, str) else None

    try:
        runners = RunnerPool.model_validate(health.get("runners")) if health.get("runners") is not None else None
    except ValidationError:
        runners = None
    return SupervisorState(reachable=True, status=text("status"), version=text("version"), rights=text("rights"), runners=runners)
