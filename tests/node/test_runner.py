"""What a runner does with a job, run in this process until the queue is empty."""

import json
import threading
import zlib

import pytest
from rq.job import Job

from runner.pool import run_runner
from runner.worker import Runner
from sal.registry import NodeSals
from sal.storage.drivers.btrfs import BtrfsStorage
from sal.storage.owned import OwnedStorage
from sal.tenancy import OPERATOR
from tests.support.waiting import wait_until
from zeronode.node.queue.jobs import open_queue


def run(node):
    return run_runner(node.settings, burst=True)


def test_end_to_end_result_and_output(node):
    envelope = node.sign(
        'print("deploying");\ndebug("detail");\nlet info = node_info();\n#{ node: info.id, zone: env.ZONE, job: job.id, answer: 40 + 2 }',
        env={"ZONE": "eu"},
    )
    assert node.post(envelope).status_code == 202
    assert run(node) == 1
    job = node.wait(envelope.id)
    assert job.status == "finished"
    assert job.result == {"node": node.node_id, "zone": "eu", "job": envelope.id, "answer": 42}
    assert job.output == ["deploying", '[debug line 2] "detail"']
    assert job.error is None and job.attempts == 1
    assert job.started_at <= job.ended_at and job.duration >= 0
    # rq's own view agrees.
    rq_job = Job.fetch(envelope.id, node.connection, serializer=node.supervisor.queue.serializer)
    assert rq_job.get_status() == "finished"
    assert rq_job.return_value() == job.result
    assert envelope.id in node.supervisor.queue.finished_job_registry.get_job_ids()


def test_script_error_reaches_the_job_with_its_line(node):
    envelope = node.sign('print("before");\nlet x = 1;\nx + missing')
    node.post(envelope)
    run(node)
    job = node.wait(envelope.id)
    assert job.status == "failed"
    assert (job.error.type, job.error.line, job.error.column) == ("EvalError", 3, 5)
    assert "missing" in job.error.message
    assert job.output == ["before"]
    assert envelope.id in node.supervisor.queue.failed_job_registry.get_job_ids()


def test_tampered_payload_in_redis_never_runs(node):
    envelope = node.sign('print("original"); 1')
    node.post(envelope)
    # Someone with access to Redis rewrites the script inside the stored envelope.
    key = Job.key_for(envelope.id)
    function, instance, args, kwargs = json.loads(zlib.decompress(node.connection.hget(key, "data")))
    payload = json.loads(args[0])
    payload["script"] = 'print("tampered"); 2'
    data = json.dumps([function, instance, [json.dumps(payload)], kwargs]).encode()
    node.connection.hset(key, "data", zlib.compress(data))
    stored = Job.fetch(envelope.id, node.connection, serializer=node.supervisor.queue.serializer)
    assert "tampered" in stored.args[0]
    run(node)
    job = node.wait(envelope.id)
    assert job.status == "failed"
    assert job.error.type == "SignatureInvalid"
    assert job.error.message.startswith("signature invalid")
    assert job.output == []  # not a line of it ran


@pytest.mark.parametrize("script", ["let n = 0;\nloop { n += 1; }", "let n = 0;\nsleep(60);"], ids=["busy", "sleeping"])
def test_script_past_its_timeout_times_out(node, script):
    envelope = node.sign(script, timeout=1)
    node.post(envelope)
    run(node)
    job = node.wait(envelope.id)
    assert (job.status, job.error.type, job.error.line) == ("timed_out", "Timeout", 2)
    assert 1 <= job.duration < 5


def test_chatty_output_is_bounded(node):
    envelope = node.sign('for i in 0..5000 { print(`line ${i}`); } "done"')
    node.post(envelope)
    run(node)
    job = node.wait(envelope.id)
    assert job.status == "finished" and job.result == "done"
    assert len(job.output) == 1000 and job.output_truncated


def test_failed_job_is_retried_then_fails(node):
    envelope = node.sign("throw `attempt failed`;", retries=1)
    node.post(envelope)
    run(node)
    # The retry waits out its backoff in the scheduled registry; release it as the monitor does.
    import time

    from runner.monitor import Monitor

    job = node.job(envelope.id)
    assert (job.status, job.attempts) == ("queued", 1)
    time.sleep(1.2)
    Monitor(node.supervisor.queue, node.settings.dead_after).tick()
    run(node)
    job = node.wait(envelope.id)
    assert (job.status, job.attempts) == ("failed", 2)


def test_job_canceled_while_queued_is_not_run(node):
    envelope = node.sign('print("ran"); 1')
    node.post(envelope)
    node.cancel(envelope.id, node.client)
    assert run(node) == 0
    job = node.job(envelope.id)
    assert job.status == "canceled" and job.output == []


def test_a_deployment_creates_a_volume_on_the_nodes_storage(node, pool_dir):
    envelope = node.sign('let v = volume_create(#{ name: "app-data", quota_mb: 32 }); #{ name: v.name, ro: v.read_only }')
    node.post(envelope)
    run_runner(node.settings.model_copy(update={"storage_root": pool_dir}), burst=True)
    job = node.wait(envelope.id)
    assert (job.status, job.result) == ("finished", {"name": "app-data", "ro": False})
    assert (pool_dir / "app-data").is_dir()


def test_a_deployment_runs_a_vm_that_outlives_the_job(node, pool_dir, short_dir):
    image = pool_dir / "alpine"
    BtrfsStorage(pool_dir).create("alpine")
    (image / "disk.raw").write_bytes(b"\0" * 1024 * 1024)
    (image / "vmlinux").write_bytes(b"kernel")
    OwnedStorage(BtrfsStorage(pool_dir)).share(OPERATOR, "alpine")  # the operator's image, for every tenant to boot
    settings = node.settings.model_copy(
        update={"storage_root": pool_dir, "vm_dir": short_dir / "vms", "hypervisor": "simulated"}
    )
    envelope = node.sign('vm_create(#{ name: "app", image: "alpine" }); let vm = vm_start("app"); [vm.state, node_info().hypervisor]')
    node.post(envelope)
    run_runner(settings, burst=True)
    job = node.wait(envelope.id)
    assert (job.status, job.result) == ("finished", ["Running", "simulated"])

    vms = NodeSals.from_settings(settings).vms
    try:
        assert vms.info(OPERATOR, "app")["state"] == "Running"  # the job is over; the VM runs on
    finally:
        vms.stop_all(timeout=1)


def test_a_runner_stops_at_once_when_its_command_thread_has_read_the_unsubscribe(node):
    """rq's command thread (rq issue 1613): on stop, rq unsubscribes and then stops the thread; a thread that
    reads the unsubscribe first waits for a subscription again, and redis-py's stop() joins it without a bound.
    This puts the thread in that state, then stops the runner as rq's teardown does."""
    runner = Runner(node.settings, None, open_queue(node.connection, node.settings.queue))
    runner.subscribe()
    runner.pubsub.unsubscribe()
    wait_until(lambda: not runner.pubsub.subscribed, 10, "the command thread to read its unsubscribe")
    stopping = threading.Thread(target=runner.unsubscribe, daemon=True)
    stopping.start()
    stopping.join(15)  # rq's own thread waits 60 s here
    assert not stopping.is_alive(), "the runner's stop waited on its command thread"
