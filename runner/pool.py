"""`zeronode runner --pool N`: N runner processes on the node's queue, and the monitor.

The parent starts the runners, starts a fresh one whenever one dies, and runs
the monitor. On SIGTERM or SIGINT it passes the signal on; each runner finishes
its current job (or, after the grace period, puts it back on the queue) and
exits. Runners that are still alive after the grace period are killed.

Each runner may map at most `runner_memory_max` bytes (a soft RLIMIT_AS), so a
script's memory ends its own runner at worst, never another process. Past the
ceiling, the Rhai engine's allocation fails and Rust aborts the process
(SIGABRT); Python's own allocations raise MemoryError, on which the runner
exits at once with MEMORY_EXIT (86). Either way the pool fails the job that
runner was running as `ResourceLimit`, without a retry (running a memory bomb
again only ends another runner), and starts a new runner. A runner that dies
otherwise (SIGKILL: an operator's kill -9, the kernel's OOM killer) is the
monitor's to recover: its job is retried while retries are left, or fails as
`RunnerDied`; the jobs of its batch it had not started the pool puts back at the
head of the queue (runner.in_hand). Either way the pool registers the dead runner's death as rq's
workers do their own, so that `rq info` stops listing it at once.

The pool serves its runners' metrics, summed, and its health on
`runner_metrics_host:runner_metrics_port` (runner.metrics, runner.endpoint).
An address it cannot listen on is logged, and the pool runs without it: the
runners' jobs matter more than their metrics.
"""

from __future__ import annotations

import logging
import multiprocessing
import os
import resource
import signal
import sqlite3
import time
from typing import Any

import redis
from rq import Queue, SimpleWorker, worker_registration
from rq.job import Job
from rq.utils import now, utcformat

import zeronode
from runner.endpoint import Endpoint
from runner.executor import Executor
from runner.in_hand import Held, in_hand_path, read_in_hand
from runner.metrics import PoolMetrics
from runner.monitor import MONITOR_INTERVAL, Monitor
from runner.worker import MEMORY_EXIT, Runner
from sal.registry import NodeSals
from zeronode import logs
from zeronode.api.jobs import ScriptError, Status
from zeronode.node.authorizer import node_authorizer
from zeronode.node.identity import node_identity
from zeronode.node.journal import Journal
from zeronode.node.process import die_with_parent
from zeronode.node.queue.jobs import RESOURCE_LIMIT, Outcome, open_queue
from zeronode.node.queue.rq_layout import Layout, started_by
from zeronode.node.settings import NodeSettings

log = logging.getLogger("zeronode.runner")



def runner_name(pid: int, index: int) -> str:
    """A pool's runner's name (its rq worker's): host, process id, index in the pool."""
    return f"{os.uname().nodename}.{pid}.{index}"


def limit_memory(ceiling: int) -> None:
    """Let this process map at most `ceiling` bytes (0: no ceiling), and write no core dump when it aborts
    there (a memory bomb would leave one of `ceiling` bytes each time). Soft limits: what the runner
    starts to outlive it may lift them (a VMM's executor does, for its guest's memory); a script cannot."""
    if ceiling <= 0:
        return
    hard = resource.getrlimit(resource.RLIMIT_AS)[1]
    resource.setrlimit(resource.RLIMIT_AS, (ceiling if hard == resource.RLIM_INFINITY else min(ceiling, hard), hard))
    resource.setrlimit(resource.RLIMIT_CORE, (0, resource.getrlimit(resource.RLIMIT_CORE)[1]))


def connect(settings: NodeSettings) -> redis.Redis:
    return redis.Redis.from_url(settings.redis_url)


def new_runner(settings: NodeSettings, name: str | None = None) -> Runner:
    """A runner on the node's queue, with its executor, ready to work."""
    identity = node_identity(settings)
    queue = open_queue(connect(settings), settings.queue)
    executor = Executor(
        identity.node_id, settings.limits, settings.verify, node_authorizer(settings, identity),
        NodeSals.from_settings(settings), farm=settings.farm, placers=settings.placers,
    )
    return Runner(settings, executor, queue, name=name)


def run_runner(settings: NodeSettings, burst: bool = False, name: str | None = None) -> int:
    """One runner, in this process, until stopped. Returns the number of jobs it ran."""
    runner = new_runner(settings, name)
    log.info("runner started", extra={"worker": runner.name, "node": runner.executor.node_id, "queue": runner.queue.name})
    return runner.work(burst=burst)


def _child(settings_data: dict[str, Any], index: int, parent_pid: int) -> None:
    die_with_parent(parent_pid)  # a pool killed with -9 leaves no runner behind (its SIGTERM: finish, then exit)
    logs.setup()
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C reaches the whole group: the parent decides
    settings = NodeSettings.model_validate(settings_data)
    limit_memory(settings.runner_memory_max)
    try:
        run_runner(settings, name=runner_name(os.getpid(), index))
    except MemoryError:  # in the runner's own work, not a script's: its job, if any, is still the pool's to fail
        os._exit(MEMORY_EXIT)


def register_death(queue: Queue, worker_name: str) -> None:
    """Register the death of a runner that died without doing so, as rq's workers register their own:
    `rq info` stops listing it. Its executions set stays (until its TTL): the monitor and fail_for_memory
    find the dead runner's jobs through the started registry and the executions' own records."""
    worker = SimpleWorker.find_by_key(SimpleWorker.redis_worker_namespace_prefix + worker_name, connection=queue.connection)
    if worker is None:
        return
    with queue.connection.pipeline() as pipe:
        worker_registration.unregister(worker, pipe)
        pipe.hset(worker.key, "death", utcformat(now()))
        pipe.expire(worker.key, 60)
        pipe.execute()


def died_of_memory(exitcode: int | None) -> str | None:
    """How a runner that exited with `exitcode` ran out of memory under its ceiling, or None if it did not."""
    if exitcode == -signal.SIGABRT:
        return "an allocation failed and the runner aborted (SIGABRT)"
    if exitcode == MEMORY_EXIT:
        return f"Python ran out of memory (MemoryError; the runner exited with {MEMORY_EXIT})"
    return None


def fail_for_memory(queue: Queue, journal: Journal, worker_name: str, settings: NodeSettings, how: str,
                    held: Held | None = None) -> list[str]:
    """Fail the job the dead runner `worker_name` was running as ResourceLimit, with no retry: the runner's
    own finish (zeronode.node.queue.rq_layout), so only a job still started by that runner, and never one
    the monitor took back meanwhile. `held`: what the runner's in-hand file said (runner.in_hand); without
    it, every job the runner had started is failed. The ids of the jobs failed."""
    layout = Layout(queue, worker_name)
    ceiling = (f"runner_memory_max = {settings.runner_memory_max / 1024**2:.0f} MiB" if settings.runner_memory_max
               else "the machine's: runner_memory_max = 0")
    message = f"the script took its runner past its memory ceiling ({ceiling}): {how}; not retried"
    failed = []
    for record, started in started_by(queue, worker_name):
        if held is not None and held.running != (record.id, started.execution_id):
            continue  # ended, or not started: not the job that took the runner past its ceiling
        outcome = Outcome(
            status=Status.FAILED, error=ScriptError(type=RESOURCE_LIMIT, message=message),
            duration=round(max(0.0, time.time() - started.at.timestamp()), 6), attempt=record.meta.get("attempts", 1),
        )
        record.meta["outcome"] = outcome.model_dump(mode="json")

        def finish(record=record, started=started) -> int:
            with queue.connection.pipeline(transaction=False) as pipe:
                layout.finish_failure(pipe, record, started, message, record.failure_ttl or settings.result_ttl)
                return pipe.execute()[0]

        journal.end_abandoned(record.id, outcome)  # so that a Redis that forgets still knows how it ended
        if layout.scripts.retrying(finish):
            failed.append(record.id)
            log.warning("job failed: its script took the runner past its memory ceiling",
                        extra={"job": record.id, "worker": worker_name, "error": RESOURCE_LIMIT})
    return failed


def put_back_not_started(queue: Queue, journal: Journal, worker_name: str, waiting: list[tuple[str, str]]) -> list[str]:
    """Return to the head of the queue the jobs a dead runner had taken and not started (its in-hand file's):
    each still started by that runner, its attempt ended in the journal as interrupted, so that the next runs it.
    The ids of the jobs put back."""
    layout = Layout(queue, worker_name)
    connection = queue.connection
    put_back = []
    for job_id, execution_id in waiting:
        if connection.zscore(layout.wip_key, f"{job_id}:{execution_id}") is None:
            continue  # it ended after all, or the monitor took it back
        job = Job.fetch(job_id, connection=connection, serializer=queue.serializer)
        attempt = job.meta.get("attempts", 1)
        entry = journal.entry(job_id)
        if entry is not None and entry.attempt == attempt and entry.ended_at is None:  # claimed, never run
            journal.end_abandoned(job_id, Outcome(status=Status.FAILED, attempt=attempt, error=ScriptError(
                type="Interrupted", message="its runner died before it started; the next attempt runs it")))
        with connection.pipeline() as pipe:
            layout.end_execution_of(pipe, job_id, execution_id)
            queue._enqueue_job(job, pipeline=pipe, at_front=True)
            pipe.execute()
        put_back.append(job_id)
    if put_back:
        log.warning("jobs a dead runner had not started are back in the queue", extra={"worker": worker_name, "jobs": put_back})
    return put_back


class Pool:
    def __init__(self, settings: NodeSettings, size: int):
        if size < 1:
            raise ValueError("a pool needs at least one runner")
        self.settings = settings
        self.size = size
        self.context = multiprocessing.get_context("spawn")  # no Redis sockets or threads inherited
        self.processes: dict[int, multiprocessing.process.BaseProcess] = {}
        self.stopping = False
        self.redis_reachable = False  # as the monitor's last tick found it
        self.runners_alive = 0  # as the last look found them (only this thread may poll its children)

    def _start(self, index: int) -> None:
        process = self.context.Process(
            target=_child, args=(self.settings.model_dump(mode="json"), index, os.getpid()), name=f"runner-{index}",
            daemon=False,
        )
        process.start()
        self.processes[index] = process
        log.info("runner process started", extra={"index": index, "pid": process.pid})

    def _stop(self, signum: int, _frame: Any) -> None:
        if not self.stopping:
            log.info("pool stopping", extra={"signal": signal.Signals(signum).name})
        self.stopping = True

    def run(self) -> None:
        signal.signal(signal.SIGTERM, self._stop)
        signal.signal(signal.SIGINT, self._stop)
        self.queue = open_queue(connect(self.settings), self.settings.queue)
        self.journal = Journal(self.settings.journal_path)
        monitor = Monitor(self.queue, self.settings.dead_after)
        self.metrics = PoolMetrics()  # before the runners start: they inherit where to write
        endpoint = self._serve()
        try:
            for index in range(self.size):
                self._start(index)
            while not self.stopping:
                # Dead runners before the monitor: the job of a runner its script's memory ended is the pool's
                # to fail, before a monitor would recover it as a dead runner's (once its heartbeat expires).
                for index, process in list(self.processes.items()):
                    if not process.is_alive() and not self.stopping:
                        self._runner_died(index, process)
                        self._start(index)
                self.runners_alive = sum(process.is_alive() for process in self.processes.values())
                try:
                    monitor.tick()
                    self.redis_reachable = True
                except redis.RedisError as exc:
                    self.redis_reachable = False
                    monitor.redis_lost()
                    log.warning("monitor could not reach redis", extra={"error": str(exc)})
                time.sleep(MONITOR_INTERVAL)
            self._shutdown()
        finally:
            if endpoint is not None:
                endpoint.stop()
            self.metrics.close()

    def _serve(self) -> Endpoint | None:
        """The pool's /metrics and /health, unless runner_metrics_port is 0 or its address is taken."""
        host, port = self.settings.runner_metrics_host, self.settings.runner_metrics_port
        if port == 0:
            return None
        try:
            endpoint = Endpoint(host, port, self.metrics.registry, self.health)
        except OSError as exc:
            log.error("runner metrics not served: cannot listen there", extra={"host": host, "port": port, "error": str(exc)})
            return None
        endpoint.start()
        log.info("runner metrics served", extra={"host": host, "port": endpoint.address[1]})
        return endpoint

    def health(self) -> tuple[bool, dict[str, Any]]:
        """What /health says, from the endpoint's thread: healthy while the monitor reaches Redis. It reads what
        the pool's loop found, never polls a child itself (two threads waiting on one child can lose its exit)."""
        status = "ok" if self.redis_reachable else "redis unavailable"
        return self.redis_reachable, {
            "status": status, "runners": self.runners_alive, "size": self.size, "version": zeronode.__version__,
        }

    def _runner_died(self, index: int, process: multiprocessing.process.BaseProcess) -> None:
        how = died_of_memory(process.exitcode)
        log.warning("runner process died", extra={"index": index, "pid": process.pid, "exitcode": process.exitcode,
                                                  "out_of_memory": how is not None})
        self.metrics.runner_ended(process.pid)
        name = runner_name(process.pid, index)
        hand = in_hand_path(self.settings.state_dir, name)
        held = read_in_hand(hand)
        if how is not None:
            self._fail_for_memory(name, how, held)
        if held is not None and held.waiting:
            try:
                put_back_not_started(self.queue, self.journal, name, held.waiting)
            except (redis.RedisError, sqlite3.Error) as exc:  # the monitor recovers them as a dead runner's
                log.warning("could not put back the jobs a dead runner had not started", extra={"worker": name, "error": str(exc)})
        hand.unlink(missing_ok=True)
        try:
            register_death(self.queue, name)
        except redis.RedisError as exc:  # its record expires anyway, within its heartbeat's TTL
            log.warning("could not register a dead runner's death", extra={"worker": name, "error": str(exc)})

    def _fail_for_memory(self, name: str, how: str, held: Held | None) -> None:
        try:
            failed = fail_for_memory(self.queue, self.journal, name, self.settings, how, held)
        except (redis.RedisError, sqlite3.Error) as exc:
            log.warning("could not fail the job of a runner out of memory; the monitor recovers it as a dead runner's",
                        extra={"worker": name, "error": str(exc)})
            return
        if not failed:
            log.warning("a runner ran out of memory outside a job: is runner_memory_max too low for a runner?",
                        extra={"worker": name, "runner_memory_max": self.settings.runner_memory_max})

    def _shutdown(self) -> None:
        for process in self.processes.values():
            if process.is_alive():
                os.kill(process.pid, signal.SIGTERM)
        deadline = time.monotonic() + self.settings.stop_grace + 10
        for process in self.processes.values():
            process.join(max(0.0, deadline - time.monotonic()))
            if process.is_alive():
                log.warning("runner process killed after the grace period", extra={"pid": process.pid})
                process.kill()
                process.join()
            self.metrics.runner_ended(process.pid)
        log.info("pool stopped")
