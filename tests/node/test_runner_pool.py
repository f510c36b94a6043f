"""Runner pools as real processes: end to end, cancel, SIGTERM, kill -9, many jobs on two runners."""

import os
import signal
import time

from rq.job import Job

from tests.support.processes import alive
from tests.support.waiting import wait_until

KILL_RECOVERY_LIMIT = 30  # seconds: the bound for recovering a dead runner's job


def test_sign_post_run_get(node):
    pool = node.pool(1)
    envelope = node.sign('print(`on ${node_info().id}`); 6 * 7')
    assert node.post(envelope).status_code == 202
    job = node.wait(envelope.id)
    assert (job.status, job.result, job.output) == ("finished", 42, [f"on {node.node_id}"])
    assert pool.process.poll() is None


def test_cancel_a_running_job(node):
    node.pool(1)
    envelope = node.sign('print("started");\nsleep(30);\n"never"', timeout=60)
    node.post(envelope)
    node.wait(envelope.id, until=lambda job: job.status == "started")
    time.sleep(0.3)  # into the sleep
    requested = time.monotonic()
    response = node.cancel(envelope.id, node.client)
    assert response.status_code == 200
    job = node.wait(envelope.id, until=lambda job: job.status == "canceled", timeout=10)
    assert time.monotonic() - requested < 5
    assert job.output == ["started"] and job.result is None
    assert job.error.type == "Cancelled"


def test_sigterm_finishes_the_current_job_then_exits(node):
    pool = node.pool(1)
    current, waiting = node.sign('sleep(1.5); "current done"'), node.sign('"must wait"')
    node.post(current)
    node.wait(current.id, until=lambda job: job.status == "started")
    node.post(waiting)
    assert pool.stop(timeout=30) == 0
    assert node.job(current.id).status == "finished"
    assert node.job(current.id).result == "current done"
    assert node.job(waiting.id).status == "queued"  # left for the next runner


def test_job_outliving_the_grace_period_is_put_back(node):
    pool = node.pool(1)
    envelope = node.sign("sleep(60); 1", timeout=120)
    node.post(envelope)
    node.wait(envelope.id, until=lambda job: job.status == "started")
    started = time.monotonic()
    assert pool.stop(timeout=60) == 0
    assert time.monotonic() - started < node.settings.stop_grace + 10
    job = node.job(envelope.id)
    assert (job.status, job.attempts) == ("queued", 0)
    assert node.supervisor.queue.get_job_ids() == [envelope.id]


def kill_runner_mid_job(node, pool, envelope):
    node.post(envelope)
    node.wait(envelope.id, until=lambda job: job.status == "started")
    victim = pool.runner_pids()[0]
    os.kill(victim, signal.SIGKILL)
    return time.monotonic()


def test_killed_runner_job_fails_when_no_retry_is_left(node):
    pool = node.pool(1)
    envelope = node.sign("sleep(20); 1", timeout=60)
    killed = kill_runner_mid_job(node, pool, envelope)
    job = node.wait(envelope.id, until=lambda job: job.status == "failed", timeout=KILL_RECOVERY_LIMIT)
    assert time.monotonic() - killed < KILL_RECOVERY_LIMIT
    assert job.error.type == "RunnerDied"
    # The pool replaced its dead runner, and the node goes on running jobs.
    pool.wait_for(lambda logs: sum(e["msg"] == "runner started" for e in logs) >= 2, 30, "a new runner")
    follow_up = node.sign("7")
    node.post(follow_up)
    assert node.wait(follow_up.id).result == 7


def test_killed_runner_job_is_run_again_when_a_retry_is_left(node):
    pool = node.pool(1)
    envelope = node.sign('sleep(2); "second run"', timeout=60, retries=1)
    killed = kill_runner_mid_job(node, pool, envelope)
    job = node.wait(envelope.id, until=lambda job: job.status == "finished", timeout=KILL_RECOVERY_LIMIT + 10)
    assert job.result == "second run" and job.attempts == 2
    assert time.monotonic() - killed < KILL_RECOVERY_LIMIT + 10


def test_many_jobs_on_a_pool_of_two_each_finish_exactly_once(node):
    pool = node.pool(2)
    envelopes = [node.sign(f"let i = {i}; sleep(0.005); i * i") for i in range(200)]
    answers = node.supervisor.submit_many([e.to_json() for e in envelopes])
    assert all(not hasattr(answer, "reason") for answer in answers)
    finished = node.supervisor.queue.finished_job_registry
    wait_until(lambda: finished.get_job_count() >= len(envelopes), 120, "the jobs all to finish", interval=0.2)
    serializer = node.supervisor.queue.serializer
    for i, envelope in enumerate(envelopes):
        job = node.job(envelope.id)
        assert (job.status, job.result, job.attempts) == ("finished", i * i, 1)
        assert len(Job.fetch(envelope.id, node.connection, serializer=serializer).results()) == 1
    workers = {entry["worker"] for entry in pool.logs if entry.get("msg") == "job ended"}
    assert len(workers) == 2
    ended = [entry["job"] for entry in pool.logs if entry.get("msg") == "job ended"]
    assert sorted(ended) == sorted(e.id for e in envelopes)  # none twice, none missing


def test_a_pool_killed_with_9_leaves_no_runner_behind(node):
    pool = node.pool(2)
    runners = pool.runner_pids()
    assert len(runners) == 2 and all(alive(pid) for pid in runners)
    os.kill(pool.process.pid, signal.SIGKILL)
    wait_until(lambda: not any(alive(pid) for pid in runners), 30, "the orphaned runners to exit")
