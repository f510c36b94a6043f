"""The coordinator's memory, in Redis: deployments, one task per target node, and when each is due.

Every coord replica reads and writes the same keys, so any of them can serve
any request and move any task, and a restarted coord carries on where the
last one stopped:

    coord:deployment:ID       hash: the envelope, who signed it, when, a version bumped on every change
    coord:task:ID:NODE        hash: that node's progress as one JSON `task` (state, job id, attempts, result,
                              error...), and `updated` apart, which a save compares
    coord:deployments         sorted set: deployment ids by submission time
    coord:signer:KEY          sorted set: the same, of one signer's deployments (what a signer lists)
    coord:due                 sorted set: "ID NODE" members, scored by when the task next needs a step
    coord:services            set: the ids of service deployments, which coord.failover keeps on live nodes

A replica claims due tasks with one Lua script that also pushes their score a
lease into the future (a visibility timeout), so two replicas do not step the
same task at once. While a step runs its replica renews the lease (`renew`, a
heartbeat), so the lease can be short: a replica that dies mid-step leaves its
tasks to be claimed again within a lease. Should two replicas step one task all
the same (one stalled past its lease), only the first to write its progress
wins: `save` writes only over the very record the step read, so counts never
drift; and supervisors answer the same envelope with the same job.

The steps a replica runs at once read and save their tasks together: what they
ask of Redis in the same moment goes in one pipeline (`Coalesced`), one round
trip for hundreds of steps, where a round trip each was a third of coord's CPU
at thousands of nodes (bench/coord.py).
"""

from __future__ import annotations

import asyncio
import functools
import json
import time
from collections.abc import Callable
from enum import StrEnum
from typing import Any

import redis.asyncio as redis
from pydantic import BaseModel
from redis.exceptions import WatchError

PREFIX = "coord:"
DEPLOYMENTS = PREFIX + "deployments"
DUE = PREFIX + "due"
SERVICES = PREFIX + "services"

CLAIM = """
local due = redis.call('ZRANGEBYSCORE', KEYS[1], '-inf', ARGV[1], 'LIMIT', 0, tonumber(ARGV[3]))
for _, member in ipairs(due) do
    redis.call('ZADD', KEYS[1], ARGV[2], member)
end
return due
"""

# Renew the leases of running steps: each member whose score is still the lease its step holds (a step
# that saved meanwhile set its own score, or removed it) gets the new one. KEYS[1] due; ARGV[1] the new
# score, then member, score pairs. Returns the renewed members.
RENEW = """
local renewed = {}
for i = 2, #ARGV, 2 do
    local score = redis.call('ZSCORE', KEYS[1], ARGV[i])
    if score and tonumber(score) == tonumber(ARGV[i + 1]) then
        redis.call('ZADD', KEYS[1], ARGV[1], ARGV[i])
        renewed[#renewed + 1] = ARGV[i]
    end
end
return renewed
"""

# Write a step's progress, only over the record the step read (its `updated` unchanged). KEYS: the task,
# its deployment, due. ARGV: updated as read, the due member, the next score ('' for none), the previous
# state, the new state, then the task's field, value pairs. 1 if written, 0 if the record had changed.
SAVE = """
if redis.call('HGET', KEYS[1], 'updated') ~= ARGV[1] then
    return 0
end
for i = 6, #ARGV, 2 do
    redis.call('HSET', KEYS[1], ARGV[i], ARGV[i + 1])
end
redis.call('HINCRBY', KEYS[2], 'version', 1)
if ARGV[4] ~= ARGV[5] then
    redis.call('HINCRBY', KEYS[2], 'count:' .. ARGV[4], -1)
    redis.call('HINCRBY', KEYS[2], 'count:' .. ARGV[5], 1)
end
if ARGV[3] == '' then
    redis.call('ZREM', KEYS[3], ARGV[2])
else
    redis.call('ZADD', KEYS[3], ARGV[3], ARGV[2])
end
return 1
"""


class TaskState(StrEnum):
    PENDING = "pending"  # not yet accepted by the node's supervisor
    DISPATCHED = "dispatched"  # accepted, queued on the node
    RUNNING = "running"
    UNKNOWN = "unknown"  # dispatched, and the node does not answer: its outcome is taken when it does
    SUCCEEDED = "succeeded"
    FAILED = "failed"
    CANCELED = "canceled"
    MOVED = "moved"  # a service's share taken off this node (gone, or drained) to another: counted nowhere

    @property
    def final(self) -> bool:
        return self in (TaskState.SUCCEEDED, TaskState.FAILED, TaskState.CANCELED, TaskState.MOVED)


class TaskError(BaseModel):
    reason: str  # what went wrong, as a word: unknown_node, node_offline, not_authorized, script_error...
    message: str
    line: int | None = None


class Task(BaseModel):
    """One target node's part of a deployment."""

    deployment: str
    node: str
    state: TaskState = TaskState.PENDING
    job_id: str | None = None
    supervisor_url: str | None = None  # where the job was handed over, and is followed
    attempts: int = 0  # dispatch attempts that failed and will be retried
    redispatches: int = 0  # times the node lost the job before it started, and was handed the envelope again
    polls: int = 0
    cancel_sent: bool = False
    offline_since: float | None = None
    unreachable_since: float | None = None  # since when the supervisor has not answered (pending or dispatched)
    result: Any = None
    output: list[str] = []
    error: TaskError | None = None
    # The node this share of a service moved to (coord.failover): a job still here is canceled, and the
    # task ends as moved whatever the job's end.
    moved_to: str | None = None
    updated: float = 0.0


class Move(BaseModel):
    """A service's share moved from one node to another (coord.failover), as the deployment's history shows it."""

    at: float
    node: str
    to: str
    reason: str  # offline, drained, unknown_node
    message: str


class Deployment(BaseModel):
    id: str
    signer: str
    created: float
    envelope: str  # the verified envelope in its canonical JSON (coord.routes.deployments): forwarded as is
    expires_at: int
    targets: list[str]  # every node with a task: the envelope's own targets, then those placed
    placed: list[str] = []  # the nodes coord chose by the envelope's selector (coord.placement), best first
    digest: str | None = None  # the envelope's (zeronode.protocol.ticket.envelope_digest), for the placed nodes' tickets
    service: bool = False  # its selector's kind: coord keeps its placed share on live nodes (coord.failover)
    history: list[Move] = []
    canceled_by: str | None = None
    request_id: str | None = None  # the submission's (zeronode.api.middleware): sent to each node with the envelope
    version: int = 0
    counts: dict[str, int] = {}  # tasks in each state, kept by save(): a view without reading every task

    @functools.cached_property
    def envelope_bytes(self) -> bytes:
        """The envelope as sent to each node: encoded once per replica, not once per node."""
        return self.envelope.encode()


class Coalesced:
    """Redis commands asked for in the same moment, sent in one pipeline; each caller awaits its own replies."""

    def __init__(self, connection: redis.Redis):
        self.redis = connection
        self._queued: list[tuple[tuple[Callable[[Any], Any], ...], asyncio.Future]] = []
        self._flushing: set[asyncio.Task] = set()  # held: the loop keeps only weak references to tasks

    async def call(self, *queues: Callable[[Any], Any]) -> list[Any]:
        """Each of `queues` adds one command to the pipeline (`lambda pipe: pipe.hget(...)`): their replies, in
        order, or the first error among them raised."""
        loop = asyncio.get_running_loop()
        replies = loop.create_future()
        self._queued.append((queues, replies))
        if len(self._queued) == 1:  # the first of this moment sends them all, once the others have queued
            loop.call_soon(self._flush_soon)
        return await replies

    def _flush_soon(self) -> None:
        flushing = asyncio.ensure_future(self._flush())
        self._flushing.add(flushing)
        flushing.add_done_callback(self._flushing.discard)

    async def _flush(self) -> None:
        queued, self._queued = self._queued, []
        try:
            async with self.redis.pipeline(transaction=False) as pipe:
                for queues, _ in queued:
                    for queue in queues:
                        queue(pipe)
                flat = await pipe.execute(raise_on_error=False)
        except Exception as exc:  # Redis away: every caller of this moment hears it
            flat = [exc] * sum(len(queues) for queues, _ in queued)
        at = 0
        for queues, replies in queued:
            mine, at = flat[at : at + len(queues)], at + len(queues)
            if replies.done():  # its caller was canceled meanwhile
                continue
            error = next((reply for reply in mine if isinstance(reply, Exception)), None)
            if error is not None:
                replies.set_exception(error)
            else:
                replies.set_result(mine)


def connect(url: str, *, max_connections: int = 64) -> redis.Redis:
    """A client whose pool makes callers wait for a free connection rather than fail when all are busy."""
    return redis.Redis(connection_pool=redis.BlockingConnectionPool.from_url(url, max_connections=max_connections))


def deployment_key(deployment_id: str) -> str:
    return f"{PREFIX}deployment:{deployment_id}"


def task_key(deployment_id: str, node: str) -> str:
    return f"{PREFIX}task:{deployment_id}:{node}"


def signer_key(signer: str) -> str:
    return f"{PREFIX}signer:{signer}"


def due_member(deployment_id: str, node: str) -> str:
    return f"{deployment_id} {node}"


class Store:
    def __init__(self, connection: redis.Redis, *, ttl: int = 30 * 86400):
        self.redis = connection
        self.ttl = ttl  # how long a deployment's records are kept after its last change
        self._claim = connection.register_script(CLAIM)
        self._renew = connection.register_script(RENEW)
        self._save = connection.register_script(SAVE)
        self._together = Coalesced(connection)  # the reads and saves of the steps running at once

    async def create(self, deployment: Deployment) -> bool:
        """Store a new deployment with a pending task per target, all due now. False if its id exists."""
        key = deployment_key(deployment.id)
        now = time.time()
        async with self.redis.pipeline(transaction=True) as pipe:
            await pipe.watch(key)  # a replica storing the same id meanwhile makes execute() fail
            if await pipe.exists(key):
                return False
            pipe.multi()
            fields = deployment.model_dump(exclude={"counts"})
            pipe.hset(key, mapping={field: _encode(value) for field, value in fields.items()})
            pipe.hset(key, f"count:{TaskState.PENDING}", len(deployment.targets))
            pipe.expire(key, self.ttl)
            for node in deployment.targets:
                task = Task(deployment=deployment.id, node=node, updated=now)
                pipe.hset(task_key(deployment.id, node), mapping=_fields(task))
                pipe.expire(task_key(deployment.id, node), self.ttl)
            pipe.zadd(DEPLOYMENTS, {deployment.id: deployment.created})
            pipe.zadd(signer_key(deployment.signer), {deployment.id: deployment.created})
            pipe.expire(signer_key(deployment.signer), self.ttl)  # kept as long as the signer's newest deployment
            pipe.zadd(DUE, {due_member(deployment.id, node): now for node in deployment.targets})
            if deployment.service:
                pipe.sadd(SERVICES, deployment.id)
            try:
                await pipe.execute()
            except WatchError:
                return False
        return True

    async def deployment(self, deployment_id: str) -> Deployment | None:
        return _deployment(await self.redis.hgetall(deployment_key(deployment_id)))

    async def move(self, deployment_id: str, node: str, to: str, reason: str, message: str) -> bool:
        """Move a service's share from `node` to `to`: a pending task for `to`, due now, and the history says so.
        The task on `node` ends as moved, or, while its job may still run there, is canceled first (the
        dispatcher ends it as moved). False, changing nothing, when the deployment or that task changed meanwhile
        (another replica moved it) or the move no longer applies."""
        key, old_key = deployment_key(deployment_id), task_key(deployment_id, node)
        now = time.time()
        async with self.redis.pipeline(transaction=True) as pipe:
            await pipe.watch(key, old_key)
            deployment, row = _deployment(await pipe.hgetall(key)), await pipe.hgetall(old_key)
            if deployment is None or not row or node not in deployment.placed or to in deployment.targets:
                return False
            task = _task(row)
            if task.moved_to is not None or task.state == TaskState.MOVED:
                return False
            previous = task.state
            in_flight = previous in (TaskState.DISPATCHED, TaskState.RUNNING, TaskState.UNKNOWN)
            task.moved_to, task.updated = to, now  # `updated` changed: a step of it running now saves nothing
            if not in_flight:
                task.state = TaskState.MOVED
            history = [*deployment.history, Move(at=now, node=node, to=to, reason=reason, message=message)]
            pipe.multi()
            pipe.hset(key, mapping={
                "targets": _encode([*deployment.targets, to]), "placed": _encode([*deployment.placed, to]),
                "history": _encode([move.model_dump() for move in history]),
            })
            pipe.hincrby(key, "version", 1)
            pipe.hset(old_key, mapping=_fields(task))
            if task.state != previous:
                pipe.hincrby(key, f"count:{previous}", -1)
                pipe.hincrby(key, f"count:{task.state}", 1)
            pipe.hincrby(key, f"count:{TaskState.PENDING}", 1)
            pipe.hset(task_key(deployment_id, to), mapping=_fields(Task(deployment=deployment_id, node=to, updated=now)))
            pipe.expire(task_key(deployment_id, to), self.ttl)
            members = {due_member(deployment_id, to): now} | ({due_member(deployment_id, node): now} if in_flight else {})
            pipe.zadd(DUE, members)
            if not in_flight:
                pipe.zrem(DUE, due_member(deployment_id, node))
            try:
                await pipe.execute()
            except WatchError:
                return False
        return True

    async def lead(self, name: str, holder: str, seconds: float) -> bool:
        """Whether `holder` (a replica) may do the fleet-wide chore `name` now: the first to ask in each
        `seconds` does it; the others skip this round."""
        return bool(await self.redis.set(f"{PREFIX}lead:{name}", holder, nx=True, px=max(1, int(seconds * 1000))))

    async def services(self) -> list[str]:
        """The ids of the service deployments kept on live nodes."""
        return [member.decode() for member in await self.redis.smembers(SERVICES)]

    async def forget_service(self, deployment_id: str) -> None:
        """Stop keeping this deployment on live nodes (it ended, expired, or was canceled)."""
        await self.redis.srem(SERVICES, deployment_id)

    async def envelope(self, deployment_id: str) -> str | None:
        """The deployment's envelope as submitted, or None when there is no such deployment: one HGET."""
        value = await self.redis.hget(deployment_key(deployment_id), "envelope")
        return None if value is None else json.loads(value)

    async def tasks(self, deployment: Deployment) -> list[Task]:
        async with self.redis.pipeline(transaction=False) as pipe:
            for node in deployment.targets:
                pipe.hgetall(task_key(deployment.id, node))
            rows = await pipe.execute()
        return [_task(row) for row in rows if row]

    async def task(self, deployment_id: str, node: str) -> tuple[Task | None, str | None]:
        """The task, and who canceled its deployment (None if nobody): all a step needs, in one round trip
        shared with the steps asking at the same moment."""
        row, canceled_by = await self._together.call(
            lambda pipe: pipe.hgetall(task_key(deployment_id, node)),
            lambda pipe: pipe.hget(deployment_key(deployment_id), "canceled_by"),
        )
        return (_task(row) if row else None), (json.loads(canceled_by) if canceled_by else None)

    async def save(self, task: Task, previous: TaskState, *, next_step_at: float | None, read: float) -> bool:
        """Write a task's progress (it was in state `previous`, its `updated` was `read` when the step read
        it); due again at `next_step_at`, or never when None. False, writing nothing, when the record
        changed since it was read: another replica stepped the task meanwhile, and its progress stands."""
        task.updated = time.time()
        fields = [item for pair in _fields(task).items() for item in pair]
        keys = [task_key(task.deployment, task.node), deployment_key(task.deployment), DUE]
        args = [_encode(read), due_member(task.deployment, task.node), "" if next_step_at is None else next_step_at,
                previous.value, task.state.value, *fields]
        [written] = await self._together.call(lambda pipe: _run_script(pipe, self._save, keys, args))
        return bool(written)

    async def claim(self, limit: int, lease: float, *, now: float | None = None) -> list[tuple[str, str]]:
        """Up to `limit` due tasks as (deployment, node), leased to this replica until `now` + `lease`."""
        now = time.time() if now is None else now
        members = await self._claim(keys=[DUE], args=[now, now + lease, limit])
        return [tuple(member.decode().split(" ", 1)) for member in members]  # type: ignore[misc]

    async def renew(self, leases: list[tuple[str, str, float]], until: float) -> set[tuple[str, str]]:
        """Move the leases of running steps, (deployment, node, the score its lease holds), to `until`: the
        (deployment, node) of those still leased as they were (not saved, not claimed by another meanwhile)."""
        if not leases:
            return set()
        args: list[Any] = [until]
        for deployment_id, node, score in leases:
            args += [due_member(deployment_id, node), score]
        renewed = await self._renew(keys=[DUE], args=args)
        return {tuple(member.decode().split(" ", 1)) for member in renewed}  # type: ignore[misc]

    async def forget(self, deployment_id: str, node: str) -> None:
        """Stop stepping a task whose records are gone (expired)."""
        await self.redis.zrem(DUE, due_member(deployment_id, node))

    async def cancel(self, deployment: Deployment, requester: str) -> None:
        """Mark the deployment canceled and make its unfinished tasks due now: their next step acts on it."""
        async with self.redis.pipeline(transaction=True) as pipe:
            pipe.hset(deployment_key(deployment.id), "canceled_by", _encode(requester))
            pipe.hincrby(deployment_key(deployment.id), "version", 1)
            pipe.zadd(DUE, {due_member(deployment.id, node): 0 for node in deployment.targets}, xx=True)
            await pipe.execute()

    async def version(self, deployment_id: str) -> int:
        return int(await self.redis.hget(deployment_key(deployment_id), "version") or 0)

    async def recent(self, limit: int, before: float | None = None, *, signer: str | None = None) -> list[str]:
        """Deployment ids, newest first: everyone's, or `signer`'s."""
        top = "+inf" if before is None else f"({before}"
        index = DEPLOYMENTS if signer is None else signer_key(signer)
        ids = await self.redis.zrevrangebyscore(index, top, "-inf", start=0, num=limit)
        return [i.decode() for i in ids]

    async def due_count(self) -> int:
        return await self.redis.zcard(DUE)


def _run_script(pipe: Any, script: Any, keys: list[str], args: list[Any]) -> None:
    """Queue a registered script in a pipeline: its SHA, loaded first by the pipeline if Redis lacks it."""
    pipe.scripts.add(script)
    pipe.evalsha(script.sha, len(keys), *keys, *args)


def _encode(value: Any) -> str:
    return json.dumps(value)


def _fields(task: Task) -> dict[str, str | bytes]:
    """A task's hash: the task as one JSON value (one encode, one decode), and `updated` apart for SAVE to compare."""
    return {"task": task.model_dump_json(), "updated": _encode(task.updated)}


def _deployment(fields: dict[bytes, bytes]) -> Deployment | None:
    if b"envelope" not in fields:
        return None
    record: dict[str, Any] = {"counts": {}}
    for name, value in fields.items():
        name = name.decode()
        if name.startswith("count:"):
            if int(value) > 0:
                record["counts"][name.removeprefix("count:")] = int(value)
        else:
            record[name] = json.loads(value)
    return Deployment.model_validate(record)


def _task(row: dict[bytes, bytes]) -> Task:
    if b"task" in row:
        return Task.model_validate_json(row[b"task"])
    # Stored by a coord before tasks were one JSON value: a field each.
    return Task.model_validate({k.decode(): json.loads(v) for k, v in row.items()})
