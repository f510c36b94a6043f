"""rq's own command line on a node's real runner pool: `rq info` sees each runner busy or idle with its
counts, `rq suspend` holds the runners (the current job finishes, no new one starts) until `rq resume`;
and the pool's own /metrics and /health, summed over its runner processes."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families
from rq.worker import Worker

from tests.support.ports import free_port
from tests.support.waiting import wait_until

RQ = Path(sys.executable).parent / "rq"  # rq's console script, beside this Python


def rq(node, *args: str) -> str:
    """Run rq's command line on the node's Redis; its output."""
    result = subprocess.run(
        [str(RQ), *args, "--url", node.settings.redis_url], capture_output=True, text=True, timeout=60,
    )
    assert result.returncode == 0, result.stderr
    return result.stdout


def worker_lines(node) -> list[str]:
    """`rq info`'s line for each worker on the node's queue: 'worker NAME (...) STATE QUEUE. jobs: ...'."""
    return [line for line in rq(node, "info", "--raw", "--only-workers", node.settings.queue).splitlines()
            if line.startswith("worker ")]


def the_worker(node) -> str:
    lines = worker_lines(node)
    assert len(lines) == 1, lines
    return lines[0]


def state_of(line: str) -> str:
    return line.split(") ", 1)[1].split(" ", 1)[0]


@pytest.fixture
def resumed(node):
    """rq's suspension is the whole Redis's: whatever a test does, the next one starts resumed."""
    yield
    node.connection.delete("rq:suspended")


def test_rq_info_shows_each_runner_busy_then_idle_with_its_counts(node):
    node.pool(1)
    wait_until(lambda: state_of(the_worker(node)) == "idle", 30, "the runner idle in rq info")
    running = node.sign('sleep(1.5); "done"', timeout=60)
    node.post(running)
    node.wait(running.id, until=lambda job: job.status == "started")
    line = the_worker(node)
    assert state_of(line) == "busy" and line.endswith("jobs: 0 finished, 0 failed")
    # What dashboards read, through rq's own Worker: the state, and the current job (its execution).
    [worker] = Worker.all(queue=node.supervisor.queue)
    assert (worker.get_state(), worker.get_current_job_id()) == ("busy", running.id)
    node.wait(running.id)

    failing, canceled = node.sign('throw "no"'), node.sign('sleep(30); 1', timeout=60)
    node.post(failing)
    assert node.wait(failing.id).status == "failed"
    node.post(canceled)
    node.wait(canceled.id, until=lambda job: job.status == "started")
    assert node.cancel(canceled.id, node.client).status_code == 200
    assert node.wait(canceled.id).status == "canceled"

    # rq's counts: a canceled (stopped) job counts as failed, as rq's workers count theirs.
    wait_until(lambda: state_of(the_worker(node)) == "idle", 30, "the runner idle again")
    assert the_worker(node).endswith("jobs: 1 finished, 2 failed")
    [worker] = Worker.all(queue=node.supervisor.queue)
    assert worker.total_working_time >= 1.5 and worker.get_current_job_id() is None


def test_rq_suspend_holds_the_runners_until_rq_resume(node, resumed):
    pool = node.pool(1)
    current = node.sign('sleep(1.5); "current"', timeout=60)
    node.post(current)
    node.wait(current.id, until=lambda job: job.status == "started")
    assert "No new jobs will be started" in rq(node, "suspend")
    held = node.sign('"held"')
    node.post(held)
    # The job in hand finishes; its finish takes no new one.
    assert node.wait(current.id).result == "current"
    wait_until(lambda: state_of(the_worker(node)) == "suspended", 30, "the runner suspended in rq info")
    time.sleep(2)  # two more looks at the suspension key: still held
    assert node.job(held.id).status == "queued"
    assert state_of(the_worker(node)) == "suspended"
    assert pool.wait_for_log(lambda entry: entry["msg"].startswith("suspended"))

    assert "Resuming workers" in rq(node, "resume")
    assert node.wait(held.id).result == "held"
    pool.wait_for_log(lambda entry: entry["msg"] == "resumed")


def test_a_job_that_reaches_an_idle_suspended_runner_waits_at_the_head_of_the_queue(node, resumed):
    """An idle runner waits on the queue (BLMOVE) and may hold a job that arrives after `rq suspend`:
    it puts it back, unstarted, where it was."""
    node.pool(1)
    wait_until(lambda: state_of(the_worker(node)) == "idle", 30, "the runner idle")
    rq(node, "suspend")
    first, second = node.sign('"first"'), node.sign('"second"')
    node.post(first)
    node.post(second)
    wait_until(lambda: state_of(the_worker(node)) == "suspended", 30, "the runner suspended")
    time.sleep(1.5)
    queue = node.supervisor.queue
    assert queue.get_job_ids() == [first.id, second.id]
    assert node.connection.llen(queue.intermediate_queue_key) == 0
    rq(node, "resume")
    assert node.wait(second.id).result == "second"
    assert node.job(first.id).started_at <= node.job(second.id).started_at


def metrics(url: str) -> dict[tuple[str, tuple], float]:
    """The pool's /metrics: {(sample name, labels): value}."""
    response = httpx.get(f"{url}/metrics", timeout=10)
    assert response.status_code == 200
    return {(sample.name, tuple(sorted(sample.labels.items()))): sample.value
            for family in text_string_to_metric_families(response.text) for sample in family.samples}


def jobs(url: str, outcome: str) -> float:
    return metrics(url).get(("zeronode_runner_jobs_total", (("outcome", outcome),)), 0.0)


def busy(url: str) -> float:
    return metrics(url)[("zeronode_runner_busy", ())]


def test_the_pool_serves_its_runners_metrics_summed_and_its_health(node):
    port = free_port()
    node.config.write_text(f"runner_metrics_port = {port}\n" + node.config.read_text())  # before its [limits]
    pool = node.pool(2)
    url = f"http://127.0.0.1:{port}"
    health = httpx.get(f"{url}/health", timeout=10)
    assert health.status_code == 200
    assert {k: health.json()[k] for k in ("status", "runners", "size")} == {"status": "ok", "runners": 2, "size": 2}
    assert jobs(url, "finished") == 0 and busy(url) == 0

    envelopes = [node.sign(f"{i}") for i in range(6)] + [node.sign('throw "no"')]
    for envelope in envelopes:
        node.post(envelope)
    for envelope in envelopes:
        node.wait(envelope.id)
    wait_until(lambda: jobs(url, "failed") == 1, 10, "the failure counted")
    assert jobs(url, "finished") == 6  # summed over the runners
    assert metrics(url)[("zeronode_runner_job_duration_seconds_count", ())] == 7

    sleeper = node.sign("sleep(30); 1", timeout=60)
    node.post(sleeper)
    node.wait(sleeper.id, until=lambda job: job.status == "started")
    wait_until(lambda: busy(url) == 1, 10, "one runner busy")
    # A runner that dies takes its busy gauge with it; its counts stay in the sums.
    for pid in pool.runner_pids():
        os.kill(pid, signal.SIGKILL)
    pool.wait_for(lambda logs: sum(e["msg"] == "runner started" for e in logs) >= 4, 60, "two new runners")
    assert busy(url) == 0
    assert jobs(url, "finished") == 6 and jobs(url, "failed") == 1
    # rq info no longer lists the dead runners: the pool registered their deaths.
    wait_until(lambda: len(worker_lines(node)) == 2, 10, "only the two new runners in rq info")

    missing = httpx.get(f"{url}/jobs", timeout=10)
    assert missing.status_code == 404 and missing.json()["detail"]["reason"] == "not_found"
    assert httpx.post(f"{url}/metrics", timeout=10).status_code == 405
