"""zeronode.node.queue.rq_layout writes what rq writes: twin jobs, one through rq's objects, one through ours.

If an rq upgrade changes its Redis layout, these tests fail before anything else does.
"""

import json
import zlib
import re
from dataclasses import replace

import pytest
import redis
from rq import Retry
from rq.executions import Execution
from rq.job import Job, JobStatus
from rq.results import Result
from rq.suspension import resume, suspend
from rq.worker import Worker, WorkerStatus

from zeronode.node.queue.jobs import RUN_FUNCTION, open_queue
from zeronode.node.queue.keys import NodeKeys
from zeronode.node.queue.rq_layout import (
    ACCEPTED,
    DUPLICATE,
    ID_IN_USE,
    REPLAYED,
    JobTemplate,
    SUSPENDED,
    Layout,
    Submission,
)

WORKER = "twin-worker"
TTL = 600
PAYLOAD = '{"script": "40 + 2"}'


@pytest.fixture
def queue(redis_client):
    return open_queue(redis_client, "layout")


def enqueue_twins(queue, retries=None):
    """One job enqueued by rq itself, one by our template, with the same arguments."""
    common = dict(description="zeronode job", result_ttl=TTL, failure_ttl=TTL, meta={"node": "n1", "attempts": 0})
    queue.enqueue(
        RUN_FUNCTION, PAYLOAD, job_id="rq-twin", job_timeout=120,
        retry=Retry(max=len(retries), interval=retries) if retries else None, **common,
    )
    submission = Submission(
        job_id="our-twin", payload=PAYLOAD, owner="signer:nonce", id_key="test:owner:our-twin", id_ttl=TTL,
        nonce_key="test:nonce", nonce_ttl=TTL, timeout=120, retry_intervals=retries or [], **common,
    )
    assert JobTemplate(queue, RUN_FUNCTION).accept([submission]) == [ACCEPTED]
    return submission


def test_accept_claims_atomically(queue):
    submission = enqueue_twins(queue)
    template = JobTemplate(queue, RUN_FUNCTION)
    again = template.accept([submission])
    other_owner = template.accept([replace(submission, owner="thief:nonce2", nonce_key="test:nonce2")])
    reused_nonce = template.accept([replace(submission, job_id="new-id", id_key="test:owner:new-id")])
    assert (again, other_owner, reused_nonce) == ([DUPLICATE], [ID_IN_USE], [REPLAYED])
    # An id whose claim has lapsed is still refused while its job's record exists.
    queue.connection.delete(submission.id_key)
    assert template.accept([replace(submission, owner="late:nonce3", nonce_key="test:nonce3")]) == [ID_IN_USE]
    assert queue.get_job_ids() == ["rq-twin", "our-twin"]


def footprint(connection: redis.Redis, job_id: str) -> dict[str, tuple]:
    """Every rq key that mentions the job, by shape (ids blanked), with its type and whether it expires."""
    shape = {}
    for key in connection.scan_iter(f"rq:*{job_id}*"):  # rq's keys; our own claims are ours
        key = key.decode()
        general = re.sub(r"[0-9a-f]{32}", "{execution}", key.replace(job_id, "{job}"))
        shape[general] = (connection.type(key).decode(), connection.ttl(key) > 0)
    return shape


def job_fields(connection: redis.Redis, job_id: str, ignore=("created_at", "enqueued_at", "started_at", "ended_at", "last_heartbeat")) -> dict:
    raw = connection.hgetall(Job.key_for(job_id))
    fields = {k.decode(): v for k, v in raw.items() if k.decode() not in ignore}
    # take.lua writes meta with Lua's JSON encoder: the same JSON, other white space.
    fields["meta"] = json.loads(fields["meta"])
    # accept() stores the job's data with zlib level 0, rq deflates it: the same once decompressed, as rq reads it.
    fields["data"] = zlib.decompress(fields["data"])
    return fields


def test_enqueue_writes_what_rq_writes(queue):
    enqueue_twins(queue, retries=[1, 2])
    connection = queue.connection
    assert job_fields(connection, "our-twin") == job_fields(connection, "rq-twin")
    assert footprint(connection, "our-twin") == footprint(connection, "rq-twin")
    assert queue.get_job_ids() == ["rq-twin", "our-twin"]
    ours = Job.fetch("our-twin", connection, serializer=queue.serializer)
    theirs = Job.fetch("rq-twin", connection, serializer=queue.serializer)
    for attribute in ("func_name", "args", "kwargs", "meta", "timeout", "result_ttl", "failure_ttl",
                      "retries_left", "retry_intervals", "origin", "description"):
        assert getattr(ours, attribute) == getattr(theirs, attribute), attribute
    assert ours.get_status() == theirs.get_status() == JobStatus.QUEUED
    assert abs((ours.enqueued_at - theirs.enqueued_at).total_seconds()) < 5


def start_the_rq_way(queue, job_id) -> tuple[Job, Execution]:
    job = Job.fetch(job_id, queue.connection, serializer=queue.serializer)
    queue.connection.lrem(queue.key, 1, job_id)
    job.meta["attempts"] += 1  # what take.lua adds to rq's own writes
    with queue.connection.pipeline() as pipe:
        execution = Execution.create(job, TTL, pipeline=pipe, worker_name=WORKER)
        job.prepare_for_execution(WORKER, pipeline=pipe)
        pipe.hset(job.key, "meta", queue.serializer.dumps(job.meta))
        pipe.persist(job.key)
        pipe.execute()
    return job, execution


def take_our_way(queue):
    layout = Layout(queue, WORKER)
    queue.connection.lrem(queue.key, 1, "rq-twin")  # leave ours at the head of the queue
    taken = layout.take(TTL, NodeKeys(queue.name).cancel_prefix)
    assert taken.record.id == "our-twin" and taken.started is not None
    return layout, taken


def test_take_writes_what_rq_writes(queue):
    enqueue_twins(queue)
    start_the_rq_way(queue, "rq-twin")
    layout, taken = take_our_way(queue)
    connection = queue.connection
    assert taken.record.payload == PAYLOAD and taken.record.meta["attempts"] == 1
    assert job_fields(connection, "our-twin") == job_fields(connection, "rq-twin")
    assert footprint(connection, "our-twin") == footprint(connection, "rq-twin")
    assert set(queue.started_job_registry.get_job_ids(cleanup=False)) == {"rq-twin", "our-twin"}
    assert Job.fetch("our-twin", connection, serializer=queue.serializer).get_status() == JobStatus.STARTED


@pytest.mark.parametrize("succeeded", [True, False], ids=["success", "failure"])
def test_finish_writes_what_rq_writes(queue, succeeded):
    enqueue_twins(queue)
    connection = queue.connection
    job, execution = start_the_rq_way(queue, "rq-twin")
    layout, taken = take_our_way(queue)
    with connection.pipeline() as pipe:
        if succeeded:
            job._result = {"answer": 42}
            job._handle_success(TTL, pipeline=pipe, worker_name=WORKER, execution_id=execution.id,
                                execution_started_at=execution.created_at, execution_ended_at=job.started_at)
            job.cleanup(TTL, pipeline=pipe, remove_from_queue=False)
        else:
            job.set_status(JobStatus.FAILED, pipeline=pipe)
            job._handle_failure("it broke", pipeline=pipe, worker_name=WORKER, execution_id=execution.id,
                                execution_started_at=execution.created_at, execution_ended_at=job.started_at)
        execution.delete(job=job, pipeline=pipe)
        pipe.execute()
    with connection.pipeline() as pipe:
        if succeeded:
            layout.finish_success(pipe, taken.record, taken.started, {"answer": 42}, TTL)
        else:
            layout.finish_failure(pipe, taken.record, taken.started, "it broke", TTL)
        pipe.execute()

    assert footprint(connection, "our-twin") == footprint(connection, "rq-twin")
    assert job_fields(connection, "our-twin") == job_fields(connection, "rq-twin")
    our_job = Job.fetch("our-twin", connection, serializer=queue.serializer)
    their_job = Job.fetch("rq-twin", connection, serializer=queue.serializer)
    assert our_job.get_status() == their_job.get_status()
    our_result, their_result = our_job.latest_result(), their_job.latest_result()
    assert our_result.type == their_result.type == (Result.Type.SUCCESSFUL if succeeded else Result.Type.FAILED)
    assert our_result.return_value == their_result.return_value
    assert our_result.exc_string == their_result.exc_string
    registry = queue.finished_job_registry if succeeded else queue.failed_job_registry
    assert {"our-twin", "rq-twin"} <= set(registry.get_job_ids())
    assert queue.started_job_registry.get_job_ids(cleanup=False) == []
    assert 0 < connection.ttl(Job.key_for("our-twin")) <= TTL


@pytest.mark.parametrize("retries", [None, [1]], ids=["no-retry", "retry"])
def test_rq_recovers_a_job_whose_runner_died(queue, retries):
    enqueue_twins(queue, retries=retries)
    take_our_way(queue)
    # The runner dies: no heartbeat ever again. rq's own cleanup, after the TTL, takes over.
    queue.started_job_registry.cleanup(timestamp=Job.fetch("our-twin", queue.connection).started_at.timestamp() + TTL + 1)
    status = Job.fetch("our-twin", queue.connection, serializer=queue.serializer).get_status()
    assert status == (JobStatus.SCHEDULED if retries else JobStatus.FAILED)


def test_take_and_finish_keep_the_workers_state_and_counts_as_rq_does(queue):
    connection = queue.connection
    worker_key = Worker.redis_worker_namespace_prefix + WORKER
    connection.hset(worker_key, mapping={"state": "started", "queues": queue.name})  # its birth, as rq writes it
    connection.expire(worker_key, TTL)
    enqueue_twins(queue)
    layout, taken = take_our_way(queue)
    worker = Worker.find_by_key(worker_key, connection)
    assert worker.get_state() == WorkerStatus.BUSY
    assert worker.get_current_job_id() == "our-twin"  # rq 3 reads it from the worker's executions
    with connection.pipeline() as pipe:
        layout.finish_success(pipe, taken.record, taken.started, 42, TTL)
        pipe.execute()
    connection.lrem(queue.key, 1, "rq-twin")
    assert layout.take(TTL, NodeKeys(queue.name).cancel_prefix) is None  # the queue is empty
    worker = Worker.find_by_key(worker_key, connection)
    assert (worker.get_state(), worker.successful_job_count, worker.failed_job_count) == (WorkerStatus.IDLE, 1, 0)
    assert worker.total_working_time > 0 and worker.get_current_job_id() is None
    assert connection.ttl(worker_key) > 0  # its heartbeat's TTL, untouched


def test_a_worker_without_a_record_gets_none_from_take_and_finish(queue):
    """A runner whose record expired (a long Redis outage) must not get one without a TTL from the scripts."""
    enqueue_twins(queue)
    layout, taken = take_our_way(queue)
    with queue.connection.pipeline() as pipe:
        layout.finish_failure(pipe, taken.record, taken.started, "it broke", TTL)
        pipe.execute()
    assert layout.take(TTL, NodeKeys(queue.name).cancel_prefix) is None  # the queue is empty: idle, unwritten
    assert not queue.connection.exists(Worker.redis_worker_namespace_prefix + WORKER)


def test_take_while_suspended_takes_nothing_and_puts_a_held_job_back(queue):
    connection = queue.connection
    worker_key = Worker.redis_worker_namespace_prefix + WORKER
    connection.hset(worker_key, "state", "idle")
    connection.expire(worker_key, TTL)
    enqueue_twins(queue)
    layout, cancel_prefix = Layout(queue, WORKER), NodeKeys(queue.name).cancel_prefix
    suspend(connection)
    try:
        assert layout.take(TTL, cancel_prefix) is SUSPENDED
        # A job BLMOVE moved while the runner waited goes back to the head of the queue, not started.
        held = connection.blmove(queue.key, queue.intermediate_queue_key, 1).decode()
        assert layout.take(TTL, cancel_prefix, held_job_id=held) is SUSPENDED
        assert queue.get_job_ids() == ["rq-twin", "our-twin"]
        assert connection.llen(queue.intermediate_queue_key) == 0
        assert Worker.find_by_key(worker_key, connection).get_state() == WorkerStatus.SUSPENDED
        assert Job.fetch("rq-twin", connection).get_status() == JobStatus.QUEUED
    finally:
        resume(connection)
    assert layout.take(TTL, cancel_prefix).record.id == "rq-twin"
