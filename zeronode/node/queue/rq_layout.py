"""rq's Redis layout, written directly on the three hot paths of a job.

Going through rq's objects costs a job some 20 Redis commands, and on these
machines a Redis round trip is 70-90 us and each pipelined command another
25 us of client work. The supervisor's accept and a runner's take and finish
are therefore written as the same keys, fields and encodings rq would write,
one Lua script each (lua/*.lua; rq uses Lua scripts the same way). Everything
else (retries, cancels, the monitor's recovery, the API's reads) stays with
rq's own objects.

The same scripts keep the runner's worker record as rq's workers do, for `rq
info` and dashboards: its state (take: busy, idle, or suspended while `rq
suspend`'s key is set, in which case it takes nothing), and its counts of
finished and failed jobs and total working time (finish). A runner's current
job is the execution in its executions set, as in rq 3. These writes ride in
the scripts already sent, so they cost no round trip.

tests/node/test_rq_layout.py runs each path beside rq's own on twin jobs and
compares what each left in Redis, so an rq upgrade that changes the layout
fails there first. rq is pinned to 3.x in pyproject.toml.
"""

from __future__ import annotations

import json
import time
import zlib
from base64 import b64encode
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from importlib import resources
from typing import Any, TypeVar
from uuid import uuid4

import redis
from redis.client import Pipeline
from redis.exceptions import NoScriptError
from rq import Queue
from rq.executions import WORKER_EXECUTIONS_KEY_TEMPLATE, ExecutionRegistry
from rq.job import Job, JobStatus
from rq.registry import FailedJobRegistry, FinishedJobRegistry, StartedJobRegistry
from rq.results import Result
from rq.suspension import WORKERS_SUSPENDED
from rq.worker import BaseWorker, WorkerStatus
from rq.utils import as_text, now, utcformat

T = TypeVar("T")

EXECUTION_PREFIX = "rq:execution:"  # rq.executions.Execution.key
# The fields of a job's hash that differ from one of our jobs to the next.
PER_JOB_FIELDS = ("created_at", "enqueued_at", "data", "description", "meta", "timeout", "retries_left", "retry_intervals")


def execution_key(job_id: str, execution_id: str) -> str:
    return f"{EXECUTION_PREFIX}{job_id}:{execution_id}"


class Scripts:
    """The Lua scripts, called with EVALSHA directly: redis-py's Script objects
    ask SCRIPT EXISTS before every pipeline, a round trip more per job."""

    def __init__(self, connection: redis.Redis, *names: str):
        self.connection = connection
        self.sources = {name: (resources.files(__package__) / "lua" / f"{name}.lua").read_text() for name in names}
        self.shas: dict[str, str] = {}
        self.load()

    def load(self) -> None:
        self.shas = {name: self.connection.script_load(source) for name, source in self.sources.items()}

    def call(self, client, name: str, keys: list, args: list):
        return client.evalsha(self.shas[name], len(keys), *keys, *args)

    def retrying(self, action: Callable[[], T]) -> T:
        """Run `action`; if Redis forgot the scripts (it restarted), load them again and retry once."""
        try:
            return action()
        except NoScriptError:
            self.load()
            return action()


@dataclass(slots=True)  # not frozen: a frozen dataclass's __init__ of 14 fields took 13 µs here, this one 3
class Submission:
    """One verified envelope for accept.lua: its claims and the job to queue."""

    job_id: str
    payload: str
    owner: str  # signer:nonce
    id_key: str
    id_ttl: int
    nonce_key: str
    nonce_ttl: int
    description: str
    timeout: int
    result_ttl: int
    failure_ttl: int
    meta: dict[str, Any]
    retry_intervals: list[int]
    ticket: str | None = None  # coord's placement ticket (zeronode.protocol.ticket): the job's second argument


ACCEPTED, DUPLICATE, ID_IN_USE, REPLAYED = 0, 1, 2, 3


class JobTemplate:
    """The hash rq writes for one of our jobs, made once by rq and filled in per job.

    accept() sends the fields every job of a call shares once (rq's constants and the
    time stamps, one for the call) and only each job's own fields with it."""

    def __init__(self, queue: Queue, function: str):
        self.queue = queue
        self.function = function
        prototype = queue.create_job(function, args=["template"], job_id="template", meta={})
        queue._prepare_for_queue(prototype)  # origin, status, server version, as at enqueue
        self.fields = {k: v for k, v in prototype.to_dict().items() if k not in PER_JOB_FIELDS}
        self.scripts = Scripts(queue.connection, "accept")

    def shared_mapping(self) -> dict[str, Any]:
        """The fields of the hash that every job of one accept() has alike."""
        stamp = utcformat(now())
        return {**self.fields, "created_at": stamp, "enqueued_at": stamp}

    def data(self, submission: Submission) -> bytes:
        """The job's `data` field: its function and arguments, serialised and zlib'd as rq does. Level 0
        (stored): valid zlib, which rq and the runner decompress, without the 12 µs of deflating a signed
        envelope's base64 (589 -> 376 bytes saved little in Redis)."""
        return zlib.compress(self.queue.serializer.dumps((self.function, None, self._args(submission), {})), 0)

    def own_mapping(self, submission: Submission) -> dict[str, str]:
        """The fields of the hash that are the job's own, but for its data, as the strings Redis stores."""
        mapping = {
            "description": submission.description,
            "meta": self.queue.serializer.dumps(submission.meta).decode(),
            "timeout": str(submission.timeout),
            "result_ttl": str(submission.result_ttl),
            "failure_ttl": str(submission.failure_ttl),
        }
        if submission.retry_intervals:
            mapping["retries_left"] = str(len(submission.retry_intervals))
            mapping["retry_intervals"] = json.dumps(submission.retry_intervals)
        return mapping

    def mapping(self, submission: Submission) -> dict[str, Any]:
        """What `queue.enqueue(function, payload, ...)` writes into the job's hash."""
        return {**self.shared_mapping(), "data": self.data(submission), **self.own_mapping(submission)}

    @staticmethod
    def _args(submission: Submission) -> list[str]:
        return [submission.payload] if submission.ticket is None else [submission.payload, submission.ticket]

    def accept(self, submissions: list[Submission]) -> list[int]:
        """Claim and queue each submission atomically; one code each (ACCEPTED, DUPLICATE, ...).

        Two arguments a job (lua/accept.lua): its claims and fields in one JSON array, and its data.
        redis-py encodes each argument in Python, some 2 µs each, where one json.dumps of them all
        takes 4: as separate arguments, a job's 22 cost the supervisor a tenth of its time."""
        shared = self.shared_mapping()
        args: list[Any] = [self.queue.key, len(submissions), len(shared), *[item for pair in shared.items() for item in pair]]
        for s in submissions:
            claims = [s.id_key, s.owner, str(s.id_ttl), s.nonce_key, s.job_id, str(s.nonce_ttl), Job.key_for(s.job_id)]
            fields = [item for pair in self.own_mapping(s).items() for item in pair]
            args += [json.dumps(claims + fields), self.data(s)]
        keys = [Queue.redis_queues_keys, self.queue.key]
        return self.scripts.retrying(lambda: self.scripts.call(self.queue.connection, "accept", keys, args))


@dataclass
class JobRecord:
    """What a runner needs of a job's hash (lua/take.lua returns it), without building an rq Job."""

    id: str
    payload: str
    meta: dict[str, Any]
    result_ttl: int | None
    failure_ttl: int | None
    retries_left: int
    ticket: str | None = None

    @classmethod
    def from_fields(cls, job_id: str, values: list[bytes | None], serializer) -> JobRecord:
        data, meta, result_ttl, failure_ttl, retries_left = values
        _function, _instance, args, _kwargs = serializer.loads(zlib.decompress(data))
        return cls(
            id=job_id,
            payload=args[0],
            ticket=args[1] if len(args) > 1 else None,
            meta=serializer.loads(meta) if meta else {},
            result_ttl=int(result_ttl) if result_ttl else None,
            failure_ttl=int(failure_ttl) if failure_ttl else None,
            retries_left=int(retries_left) if retries_left else 0,
        )

    @classmethod
    def unreadable(cls, job_id: str) -> JobRecord:
        """A job whose stored data cannot be decoded: enough of it to record its failure."""
        return cls(id=job_id, payload="", meta={}, result_ttl=None, failure_ttl=None, retries_left=0)

    def rq_job(self, queue: Queue) -> Job:
        """rq's own Job, for the rare paths (retry, cancel, put back); one more round trip."""
        job = Job.fetch(self.id, connection=queue.connection, serializer=queue.serializer)
        job.meta = self.meta
        return job


@dataclass(frozen=True)
class Started:
    execution_id: str
    at: datetime

    def composite_key(self, job_id: str) -> str:
        return f"{job_id}:{self.execution_id}"


@dataclass
class Taken:
    """A job a runner took from the queue."""

    record: JobRecord | None  # None: not to be run (deleted, or not in the queued state)
    started: Started | None  # None: not started, because its cancellation was requested
    unreadable: bool = False  # started, but its stored data cannot be decoded
    suspended: bool = False  # nothing taken: `rq suspend` holds the workers (record and started are None)


SUSPENDED = Taken(None, None, suspended=True)


class Layout:
    """One queue's keys, and a runner's take and finish: one Redis command each, for one job or several."""

    def __init__(self, queue: Queue, worker_name: str):
        self.queue = queue
        self.connection = queue.connection
        self.serializer = queue.serializer
        self.worker_name = worker_name
        self.wip_key = StartedJobRegistry.key_template.format(queue.name)
        self.finished_key = FinishedJobRegistry.key_template.format(queue.name)
        self.failed_key = FailedJobRegistry.key_template.format(queue.name)
        self.worker_executions_key = WORKER_EXECUTIONS_KEY_TEMPLATE.format(worker_name)
        self.worker_key = BaseWorker.redis_worker_namespace_prefix + worker_name
        self.state = ""  # the worker's state as take.lua last wrote it; "" makes it write the next one
        self.executions_prefix = ExecutionRegistry.key_template.format("")
        self.scripts = Scripts(self.connection, "take", "finish")

    def take(self, ttl: int, cancel_prefix: str, held_job_id: str = "") -> Taken | None:
        """The next job (or `held_job_id`, already moved by BLMOVE), started; None when the queue is empty
        (take_many)."""
        batch = self.take_many(ttl, cancel_prefix, 1, held_job_id)
        return batch[0] if batch else None

    def take_many(self, ttl: int, cancel_prefix: str, count: int, held_job_id: str = "", pipe: Pipeline | None = None):
        """Take up to `count` jobs (the first `held_job_id`, if BLMOVE moved one) and start them; while `rq suspend`
        holds the workers, take none ([SUSPENDED]), and put `held_job_id` back at the head of the queue.

        Without `pipe`, returns the Taken jobs ([] when the queue is empty). With `pipe`, queues the
        call there and returns a function that turns the reply into the Taken jobs.
        """
        at = now()
        stamp, seconds = utcformat(at), at.timestamp()
        execution_ids = [uuid4().hex for _ in range(count)]
        keys = [self.queue.key, self.queue.intermediate_queue_key, self.wip_key, self.worker_executions_key,
                self.worker_key, WORKERS_SUSPENDED]
        args = [
            self.worker_name, count, stamp, seconds, int(seconds), ttl, cancel_prefix, Job.redis_job_namespace_prefix,
            EXECUTION_PREFIX, self.executions_prefix, held_job_id, self.state, *execution_ids,
        ]

        def taken(reply) -> list[Taken]:
            if reply is None:
                self.state = WorkerStatus.IDLE.value
                return []
            if reply[0] == 3:
                self.state = WorkerStatus.SUSPENDED.value
                return [SUSPENDED]
            batch = []
            for index, (job_id, state, values) in enumerate(reply[1:]):
                batch.append(self._taken(as_text(job_id), state, values, Started(execution_ids[index], at)))
            if any(t.started is not None for t in batch):
                self.state = WorkerStatus.BUSY.value
            return batch

        if pipe is None:
            return taken(self.scripts.retrying(lambda: self.scripts.call(self.connection, "take", keys, args)))
        self.scripts.call(pipe, "take", keys, args)
        return taken

    def _taken(self, job_id: str, state: int, values: list, started: Started) -> Taken:
        if state == 2:
            return Taken(None, None)
        try:
            record = JobRecord.from_fields(job_id, values, self.serializer)
        except (ValueError, TypeError, KeyError, IndexError, zlib.error):
            return Taken(JobRecord.unreadable(job_id), started if state == 0 else None, unreadable=True)
        return Taken(record, started if state == 0 else None)

    def ending(self) -> Ending:
        """Jobs' ends, gathered to be written in one finish.lua call."""
        return Ending(self)

    def finish_success(self, pipe: Pipeline, record: JobRecord, started: Started, value: Any, ttl: int) -> None:
        """Queue in `pipe`; its reply is 0 if the monitor had already taken the job back."""
        ending = self.ending()
        ending.success(record, started, value, ttl)
        ending.send(pipe)

    def finish_failure(self, pipe: Pipeline, record: JobRecord, started: Started, exc_string: str, ttl: int) -> None:
        """Queue in `pipe`; its reply is 0 if the monitor had already taken the job back."""
        ending = self.ending()
        ending.failure(record, started, exc_string, ttl)
        ending.send(pipe)

    def end_execution(self, pipe: Pipeline, record: JobRecord, started: Started) -> None:
        """What Execution.delete writes (for the rare endings that go through rq's objects)."""
        self.end_execution_of(pipe, record.id, started.execution_id)

    def end_execution_of(self, pipe: Pipeline, job_id: str, execution_id: str) -> None:
        composite = f"{job_id}:{execution_id}"
        pipe.delete(execution_key(job_id, execution_id))
        pipe.zrem(self.wip_key, composite)
        pipe.zrem(self.executions_prefix + job_id, execution_id)
        pipe.srem(self.worker_executions_key, composite)


class Ending:
    """Started jobs' ends (finished, or failed for good), written in one call of finish.lua by `send`:
    each job only if its execution is still in the started registry (the monitor did not take it back)."""

    def __init__(self, layout: Layout):
        self.layout = layout
        self.count = 0
        self.args: list[Any] = []

    def success(self, record: JobRecord, started: Started, value: Any, ttl: int) -> None:
        entry: dict[str, Any] = {"type": Result.Type.SUCCESSFUL.value}
        if value is not None:
            entry["return_value"] = b64encode(self.layout.serializer.dumps(value)).decode()
        self._add(record, started, JobStatus.FINISHED.value, ttl, entry)

    def failure(self, record: JobRecord, started: Started, exc_string: str, ttl: int) -> None:
        entry = {"type": Result.Type.FAILED.value, "exc_string": b64encode(zlib.compress(exc_string.encode())).decode()}
        self._add(record, started, JobStatus.FAILED.value, ttl, entry)

    def _add(self, record: JobRecord, started: Started, status: str, ttl: int, entry: dict[str, Any]) -> None:
        ended = now()
        entry = {
            **entry,
            "worker_name": self.layout.worker_name,
            "execution_id": started.execution_id,
            "execution_started_at": started.at.timestamp(),
            "execution_ended_at": ended.timestamp(),
        }
        self.args += [
            record.id, started.execution_id, status, utcformat(ended), self.layout.serializer.dumps(record.meta),
            ttl, int(time.time()) + ttl, max(0.0, (ended - started.at).total_seconds()), len(entry),
            *[item for pair in entry.items() for item in pair],
        ]
        self.count += 1

    def send(self, pipe: Pipeline) -> None:
        """Queue the call in `pipe` (if there is anything to end); its reply is how many jobs it ended."""
        if not self.count:
            return
        layout = self.layout
        keys = [layout.wip_key, layout.worker_executions_key, layout.finished_key, layout.failed_key, layout.worker_key]
        args = [Job.redis_job_namespace_prefix, EXECUTION_PREFIX, layout.executions_prefix, Result.get_key(""),
                self.count, *self.args]
        layout.scripts.call(pipe, "finish", keys, args)


def started_by(queue: Queue, worker_name: str) -> list[tuple[JobRecord, Started]]:
    """The jobs the runner `worker_name` started and has not finished: what a runner that died left
    started. Read from the started registry, keeping each entry whose execution is that runner's (its
    executions set, which take.lua writes, or the execution's worker_name). Ending one goes through
    Layout(queue, worker_name).finish_failure as a runner's own finish does, so it ends the job only
    if its execution is still in the started registry (the monitor did not take it back meanwhile)."""
    connection = queue.connection
    wip_key = StartedJobRegistry.key_template.format(queue.name)
    composites = [as_text(entry) for entry in connection.zrange(wip_key, 0, -1)]
    if not composites:
        return []
    pairs = [composite.rpartition(":")[::2] for composite in composites]  # (job id, execution id)
    with connection.pipeline(transaction=False) as pipe:
        pipe.smembers(WORKER_EXECUTIONS_KEY_TEMPLATE.format(worker_name))
        for job_id, execution_id in pairs:
            pipe.hmget(execution_key(job_id, execution_id), "worker_name", "created_at")
            pipe.hmget(Job.key_for(job_id), "data", "meta", "result_ttl", "failure_ttl", "retries_left")
        replies = pipe.execute()
    own = {as_text(member) for member in replies[0]}
    found = []
    for index, (composite, (job_id, execution_id)) in enumerate(zip(composites, pairs, strict=True)):
        (worker, created), values = replies[1 + 2 * index], replies[2 + 2 * index]
        if composite not in own and (worker is None or as_text(worker) != worker_name):
            continue
        if values[0] is None:  # the job's record is gone
            continue
        at = datetime.fromtimestamp(float(created), tz=UTC) if created else now()
        try:
            record = JobRecord.from_fields(job_id, values, queue.serializer)
        except (ValueError, TypeError, KeyError, IndexError, zlib.error):
            record = JobRecord.unreadable(job_id)
        found.append((record, Started(execution_id, at)))
    return found
