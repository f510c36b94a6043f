"""What a runner does when the queue, Redis or its operator misbehave (found in review)."""

import signal
import subprocess
import time

from rq.job import Job, JobStatus

from runner.pool import run_runner
from tests.support.processes import ZERONODE
from zeronode.node.queue.jobs import RUN_FUNCTION
from zeronode.node.queue.keys import NodeKeys
from zeronode.node.queue.rq_layout import JobTemplate, Layout, Submission


def plant(node, envelope, job_id=None):
    """Put a job straight into Redis, past the supervisor, as someone with Redis access could."""
    job_id = job_id or envelope.id
    submission = Submission(
        job_id=job_id, payload=envelope.model_dump_json(), owner="x:y", id_key=f"planted:{job_id}", id_ttl=600,
        nonce_key=f"planted-nonce:{job_id}", nonce_ttl=600, description="planted", timeout=60,
        result_ttl=600, failure_ttl=600, meta={"attempts": 0}, retry_intervals=[],
    )
    JobTemplate(node.supervisor.queue, RUN_FUNCTION).accept([submission])
    return job_id


def test_job_signed_by_an_unauthorised_key_never_runs(node):
    job_id = plant(node, node.sign('print("pwned"); 1', key=node.stranger))
    run_runner(node.settings, burst=True)
    job = node.job(job_id)
    assert (job.status, job.error.type, job.output) == ("failed", "NotAuthorized", [])


def test_job_whose_id_is_not_its_envelopes_never_runs(node):
    job_id = plant(node, node.sign('print("copied"); 1'), job_id="00000000-0000-4000-8000-00000000beef")
    run_runner(node.settings, burst=True)
    job = node.job(job_id)
    assert (job.status, job.error.type, job.output) == ("failed", "WrongJob", [])


def test_stray_copy_of_an_ended_job_in_the_queue_does_not_run_it_again(node):
    envelope = node.sign("1")
    node.post(envelope)
    assert run_runner(node.settings, burst=True) == 1
    node.connection.rpush(node.supervisor.queue.key, envelope.id)
    assert run_runner(node.settings, burst=True) == 0
    job = node.job(envelope.id)
    assert (job.status, job.attempts) == ("finished", 1)


def test_finish_after_the_monitor_took_the_job_back_writes_nothing(node):
    envelope = node.sign("1")
    node.post(envelope)
    queue = node.supervisor.queue
    layout = Layout(queue, "slow-runner")
    taken = layout.take(60, NodeKeys(queue.name).cancel_prefix)
    queue.started_job_registry.cleanup(timestamp=time.time() + 3600)  # the monitor declares it dead
    assert Job.fetch(envelope.id, node.connection, serializer=queue.serializer).get_status() == JobStatus.FAILED
    with node.connection.pipeline() as pipe:
        layout.finish_success(pipe, taken.record, taken.started, 42, 600)
        assert pipe.execute() == [0]
    job = node.job(envelope.id)
    assert (job.status, job.error.type) == ("failed", "RunnerDied")


def test_undecodable_job_fails_and_the_runner_goes_on(node):
    broken, fine = node.sign("1"), node.sign("2")
    node.post(broken)
    node.post(fine)
    node.connection.hset(f"rq:job:{broken.id}", "data", b"not zlib at all")
    assert run_runner(node.settings, burst=True) == 1
    assert node.job(broken.id).error.type == "UnreadableJob"
    assert node.job(fine.id).result == 2


def test_a_second_sigterm_does_not_kill_a_busy_runner(node):
    envelope = node.sign('sleep(2); "done"')
    node.post(envelope)
    runner = subprocess.Popen([ZERONODE, "runner", "--burst", "--config", str(node.config)], stderr=subprocess.DEVNULL)
    node.wait(envelope.id, until=lambda job: job.status == "started")
    runner.send_signal(signal.SIGTERM)
    time.sleep(1.2)  # rq's own handler would force-exit on a second signal after a second
    runner.send_signal(signal.SIGTERM)
    assert runner.wait(30) == 0
    job = node.job(envelope.id)
    assert (job.status, job.result) == ("finished", "done")


# A string near max_string_size, curried into 700 function pointers: 1.47 GiB of a runner before
# rhai-py counted what scripts hold; and pointers curried 100,000 deep, which crashed a runner on drop.
CURRY_BOMB = 'let s = "x"; for i in 0..21 { s += s; } fn f(x) { x } let a = []; for i in 0..700 { a.push(Fn("f").curry(s + i)); } a.len'
DEEP_CURRY = 'fn f(x) { x } let p = Fn("f"); for i in 0..100000 { p = Fn("f").curry(p); } 1'


def test_scripts_that_outgrow_the_default_limits_fail_as_resource_limit_and_the_runner_goes_on(node):
    pool = node.pool(1)
    runner = pool.runner_pids()[0]
    for script in (CURRY_BOMB, DEEP_CURRY):
        envelope = node.sign(script, retries=2)  # retries left, and still not retried: it would only fail again
        node.post(envelope)
        job = node.wait(envelope.id, timeout=60)
        assert (job.status, job.error.type, job.attempts) == ("failed", "ResourceLimit", 1), job.error
    follow_up = node.sign("6 * 7")
    node.post(follow_up)
    assert node.wait(follow_up.id).result == 42
    assert pool.runner_pids() == [runner]  # the same runner throughout: refused, never crashed
