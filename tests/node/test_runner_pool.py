"""Runner pools as real processes: end to end, cancel, SIGTERM, kill -9, many jobs on two runners, a runner's
memory ceiling; and the runner's systemd unit, read."""

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

from rq.job import Job

from runner.pool import MEMORY_EXIT, died_of_memory
from tests.support.processes import alive
from tests.support.waiting import wait_until
from zeronode.node.settings import NodeSettings

KILL_RECOVERY_LIMIT = 30  # seconds: the bound for recovering a dead runner's job


def test_sign_post_run_get(node):
    pool = node.pool(1)
    envelope = node.sign('print(`on ${node_info().id}`); 6 * 7')
    assert node.post(envelope).status_code == 202
    job = node.wait(envelope.id)
    assert (job.status, job.result, job.output) == ("finished", 42, [f"on {node.node_id}"])
    assert pool.process.poll() is None


def test_health_counts_the_runner_pool_and_its_jobs(node):
    """/health's runner pool (what coord's fleet dashboard shows): runners registered, jobs running and queued."""
    node.pool(2)
    wait_until(lambda: node.http.get("/health").json()["runners"]["registered"] == 2, 30, "two runners registered")
    long = [node.sign(f"sleep(30); {i}", timeout=60) for i in range(3)]
    for envelope in long:
        node.post(envelope)
    wait_until(lambda: node.http.get("/health").json()["runners"] == {"registered": 2, "running": 2, "queued": 1}, 30,
               "two jobs running and one queued")
    for envelope in long:
        assert node.cancel(envelope.id, node.client).status_code == 200
    wait_until(lambda: node.http.get("/health").json()["runners"] == {"registered": 2, "running": 0, "queued": 0}, 30,
               "nothing running once canceled")


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
    envelope = node.sign("if job.attempt == 1 { sleep(60) }; job.attempt", timeout=120)
    node.post(envelope)
    node.wait(envelope.id, until=lambda job: job.status == "started")
    started = time.monotonic()
    assert pool.stop(timeout=60) == 0
    assert time.monotonic() - started < node.settings.stop_grace + 10
    job = node.job(envelope.id)
    # The interrupted attempt counts (the journal never lets it run again); the next is another runner's.
    assert (job.status, job.attempts) == ("queued", 1)
    assert node.supervisor.queue.get_job_ids() == [envelope.id]
    node.pool(1)
    job = node.wait(envelope.id)
    assert (job.status, job.attempts, job.result) == ("finished", 2, 2)


def running(node, envelope) -> bool:
    """Whether a runner runs the envelope's script now (its in-hand file says so: runner.in_hand), past the
    checks and the journal's claim; a job "started" in Redis may still wait in its runner's batch."""
    return any(f"run {envelope.id} " in path.read_text() for path in (node.settings.state_dir / "runners").glob("*.in-hand"))


def kill_runner_mid_job(node, pool, envelope):
    node.post(envelope)
    wait_until(lambda: running(node, envelope), 30, "the job's script to run")
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


# -- a runner's memory ceiling ----------------------------------------------------------------------

MEMORY_CEILING = 512 * 1024**2  # runner_memory_max: far below the default, well above what a runner maps idle (~300 MiB)
# A string of 1 MiB, then a new one each turn, held: past any ceiling within a few hundred turns.
MEMORY_BOMB = 'let s = "x";\nfor i in 0..20 { s += s; }\nlet held = [];\nfor i in 0..100000 { held.push(s + i); }\nheld.len()'


def with_memory_ceiling(node, ceiling: int) -> None:
    """The node's settings file with `ceiling` as runner_memory_max, and script limits raised past it (so the
    ceiling, not a Rhai limit, stops the memory bomb): what the pools started after this read."""
    raised = "max_string_size = 100000000000\nmax_array_size = 100000000\nmax_memory = 100000000000\n"
    text = node.config.read_text()
    node.config.write_text(text.replace("[limits]\n", f"runner_memory_max = {ceiling}\n[limits]\n{raised}"))


def address_space_limit(pid: int) -> int | None:
    """A process's soft RLIMIT_AS, from /proc (None: unlimited)."""
    for line in Path(f"/proc/{pid}/limits").read_text().splitlines():
        if line.startswith("Max address space"):
            soft = line.split()[3]
            return None if soft == "unlimited" else int(soft)
    raise AssertionError(f"no address-space line in /proc/{pid}/limits")


def test_a_script_past_the_memory_ceiling_fails_as_resource_limit_and_the_pool_goes_on(node):
    with_memory_ceiling(node, MEMORY_CEILING)
    pool = node.pool(1)
    assert [address_space_limit(pid) for pid in pool.runner_pids()] == [MEMORY_CEILING]
    assert address_space_limit(pool.process.pid) != MEMORY_CEILING  # the runners' ceiling, not the pool's
    bomb = node.sign(MEMORY_BOMB, timeout=120, retries=2)  # retries left, and still not retried
    assert node.post(bomb).status_code == 202
    job = node.wait(bomb.id, until=lambda job: job.status == "failed", timeout=120)
    assert job.error.type == "ResourceLimit"
    assert f"runner_memory_max = {MEMORY_CEILING // 1024**2} MiB" in job.error.message
    assert job.attempts == 1
    died = pool.wait_for_log(lambda entry: entry.get("msg") == "runner process died")
    assert died["out_of_memory"] is True and died["exitcode"] == -signal.SIGABRT
    # A new runner takes the next job; the memory bomb stays failed, never run again.
    pool.wait_for(lambda logs: sum(e["msg"] == "runner started" for e in logs) >= 2, 60, "a new runner")
    follow_up = node.sign("7")
    node.post(follow_up)
    assert node.wait(follow_up.id).result == 7
    assert node.job(bomb.id).status == "failed" and node.job(bomb.id).attempts == 1
    assert node.supervisor.queue.started_job_registry.get_job_ids(cleanup=False) == []
    assert bomb.id in node.supervisor.queue.failed_job_registry.get_job_ids()
    assert [entry["job"] for entry in pool.logs if entry.get("error") == "ResourceLimit"] == [bomb.id]


def test_only_an_abort_or_the_memory_exit_status_is_taken_for_the_ceiling():
    assert died_of_memory(MEMORY_EXIT) and died_of_memory(-signal.SIGABRT)
    assert died_of_memory(-signal.SIGKILL) is None and died_of_memory(1) is None  # the monitor's: RunnerDied or a retry


# -- the systemd units ------------------------------------------------------------------------------

UNITS = Path(__file__).resolve().parents[2] / "scripts" / "systemd"


def unit_settings(path: Path) -> dict[str, str]:
    """A unit's `Key=value` settings (the last of each), comments and section headers left out."""
    settings = {}
    for line in path.read_text().splitlines():
        if "=" in line and not line.lstrip().startswith(("#", ";", "[")):
            key, _, value = line.partition("=")
            settings[key.strip()] = value.strip()
    return settings


def size_in_bytes(text: str) -> int:
    units = {"K": 1024, "M": 1024**2, "G": 1024**3, "T": 1024**4}
    return int(text[:-1]) * units[text[-1]] if text[-1] in units else int(text)


def test_the_systemd_units_stop_their_whole_cgroup_and_bound_the_runners_memory():
    units = sorted(UNITS.glob("*.service.in"))  # templates: scripts/install-services fills in their paths
    assert {unit.name for unit in units} >= {"zeronode-runner.service.in", "zeronode-supervisor.service.in",
                                             "zeronode-identity.service.in"}
    for unit in units:  # `process` or `mixed` would leave the unit's other processes running past the SIGTERM
        assert unit_settings(unit).get("KillMode", "control-group") == "control-group", unit.name
    runner = unit_settings(UNITS / "zeronode-runner.service.in")
    defaults = NodeSettings.model_fields
    runners = int(runner["Environment"].removeprefix("ZERONODE_RUNNERS="))
    # The runners' own ceilings are reached first: the cgroup's limit is a backstop, never a script's to hit.
    assert size_in_bytes(runner["MemoryMax"]) > runners * defaults["runner_memory_max"].default
    assert runner["OOMPolicy"] == "continue"  # a runner killed for memory is replaced, not the whole pool stopped
    # The pool kills a runner still finishing its job stop_grace + 10 s after SIGTERM: systemd waits longer.
    assert int(runner["TimeoutStopSec"]) > defaults["stop_grace"].default + 10


def test_jobs_a_killed_runner_took_but_had_not_started_run_once_on_another(node):
    # Batches as large as runner_batch_max, however slow this machine is (first: the file ends in a table).
    node.config.write_text("runner_batch_seconds = 60.0\n" + node.config.read_text())
    pool = node.pool(1)
    warm_up = [node.sign(f"{i}") for i in range(10)]  # quick jobs: the runner then takes several at a time
    node.supervisor.submit_many([e.to_json() for e in warm_up])
    for envelope in warm_up:
        node.wait(envelope.id)
    slow = node.sign("sleep(20); 1", timeout=60)
    after = [node.sign(f'"after {i}"') for i in range(3)]
    node.supervisor.submit_many([e.to_json() for e in [slow, *after]])  # queued at once: one batch
    wait_until(lambda: running(node, slow), 30, "the slow job's script to run")
    assert all(node.job(e.id).status == "started" for e in after)  # taken with it, waiting their turn
    os.kill(pool.runner_pids()[0], signal.SIGKILL)
    for i, envelope in enumerate(after):
        job = node.wait(envelope.id, timeout=30)
        assert (job.status, job.result) == ("finished", f"after {i}")
    ended = [entry["job"] for entry in pool.logs if entry.get("msg") == "job ended"]
    assert all(ended.count(e.id) == 1 for e in after)  # each ran once
    assert node.wait(slow.id, until=lambda job: job.status == "failed", timeout=KILL_RECOVERY_LIMIT).error.type == "RunnerDied"
