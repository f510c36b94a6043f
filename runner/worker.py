"""A runner: an rq worker that runs signed scripts, one at a time, with few Redis round trips.

rq's SimpleWorker spends about 20 Redis round trips on each job. This one
spends four, using rq's own job, execution and registry objects so that rq's
tools still see correct statuses:

    1. BLMOVE the next job id into rq's intermediate list
    2. fetch the job, and see whether its cancellation was requested
    3. start: execution record, job status "started", out of the intermediate list
    4. finish: result or failure (or a retry), outcome in the job's meta, execution removed

A watcher thread beats the execution's heartbeat (a short TTL, so the
monitor recovers the job within seconds if this process dies), stops the
script when its cancellation is requested, and enforces the stop grace period.
"""

from __future__ import annotations

import logging
import signal
import threading
import time

import rhai
from rq import SimpleWorker
from rq.executions import Execution
from rq.job import Job, JobStatus
from rq.utils import as_text, now
from rq.worker import WorkerStatus

from runner.executor import Executor
from zeronode.jobs import Outcome, ScriptError, Status, cancel_key
from zeronode.settings import NodeSettings

log = logging.getLogger("zeronode.runner")

WATCH_INTERVAL = 0.1  # how often a running job's cancel flag is checked
BLOCK_SECONDS = 1  # an idle runner notices a stop request within this
NOT_RETRIED = {"SignatureInvalid", "WrongNode"}  # retrying cannot fix these


class Running:
    """The job this runner is running now, as its watcher thread sees it."""

    def __init__(self, job: Job, execution: Execution):
        self.job = job
        self.execution = execution
        self.cancelled = threading.Event()  # for SAL functions that wait
        self.token = rhai.CancelToken()  # for the Rhai engine
        self.cancel_reason: str | None = None  # "requested" or "shutdown"

    def cancel(self, reason: str) -> None:
        if self.cancel_reason is None:
            self.cancel_reason = reason
        self.cancelled.set()
        self.token.cancel()


class Runner(SimpleWorker):
    def __init__(self, settings: NodeSettings, executor: Executor, queue, **kwargs):
        super().__init__([queue], connection=queue.connection, serializer=queue.serializer, **kwargs)
        self.settings = settings
        self.executor = executor
        self.queue = queue
        self.running: Running | None = None
        self.stop_requested_at: float | None = None
        self.jobs_done = 0

    # rq calls this from its SIGTERM/SIGINT handler. Never raise here: the job
    # in hand (perhaps between two round trips) must be finished or put back.
    def _shutdown(self) -> None:
        if self.stop_requested_at is None:
            self.stop_requested_at = time.monotonic()
            log.info("stop requested", extra={"worker": self.name, "busy": self.running is not None})
        self._stop_requested = True

    def get_heartbeat_ttl(self, job: Job, working_time: float = 0.0) -> int:
        return max(1, int(self.settings.dead_after))

    # -- the loop ----------------------------------------------------------

    def work(self, burst: bool = False, **_: object) -> int:  # type: ignore[override]
        """Run jobs until stopped (or, with `burst`, until the queue is empty). Returns the count."""
        self.bootstrap(logging_level="WARNING")
        # rq installs its own SIGINT/SIGTERM handlers; put the caller's back when done.
        previous = {signum: signal.getsignal(signum) for signum in (signal.SIGINT, signal.SIGTERM)}
        self._install_signal_handlers()
        watcher_stop = threading.Event()
        watcher = threading.Thread(target=self._watch, args=(watcher_stop,), name="runner-watch", daemon=True)
        watcher.start()
        try:
            while not self._stop_requested:
                job, cancel_requested = self.dequeue(block=not burst)
                if job is None:
                    if burst:
                        break
                    continue
                if cancel_requested or job.get_status(refresh=False) == JobStatus.CANCELED:
                    self.drop_canceled(job)
                    continue
                self.run_one(job)
        finally:
            watcher_stop.set()
            watcher.join()
            self.teardown()
            for signum, handler in previous.items():
                signal.signal(signum, handler)
        return self.jobs_done

    def dequeue(self, block: bool) -> tuple[Job | None, bool]:
        """Round trips 1 and 2: the next job, and whether its cancellation was requested."""
        source, holding = self.queue.key, self.queue.intermediate_queue_key
        if block:
            job_id = self.connection.blmove(source, holding, BLOCK_SECONDS)
        else:
            job_id = self.connection.lmove(source, holding)
        if job_id is None:
            return None, False
        job_id = as_text(job_id)
        with self.connection.pipeline(transaction=False) as pipe:
            pipe.hgetall(Job.key_for(job_id))
            pipe.exists(cancel_key(self.queue, job_id))
            data, cancel_requested = pipe.execute()
        if not data:  # deleted while queued
            self.connection.lrem(holding, 1, job_id)
            return None, False
        job = Job(job_id, connection=self.connection, serializer=self.serializer)
        job.restore(data)
        return job, bool(cancel_requested)

    def drop_canceled(self, job: Job) -> None:
        with self.connection.pipeline() as pipe:
            pipe.lrem(self.queue.intermediate_queue_key, 1, job.id)
            job.set_status(JobStatus.CANCELED, pipeline=pipe)
            self.queue.canceled_job_registry.add(job, self.settings.result_ttl, pipeline=pipe)
            pipe.execute()

    def run_one(self, job: Job) -> None:
        execution = self.start(job)
        self.running = running = Running(job, execution)
        try:
            outcome = self.executor.run(
                job.args[0],
                cancelled=running.cancelled,
                cancel_token=running.token,
                attempt=job.meta.get("attempts", 1),
            )
        except Exception as exc:  # a bug of ours, not the script's: record it, never lose the job
            log.exception("runner error", extra={"job": job.id})
            outcome = Outcome(status=Status.FAILED, error=ScriptError(type="RunnerError", message=str(exc)))
        finally:
            self.running = None
        if running.cancel_reason == "shutdown" and outcome.status == Status.CANCELED:
            self.put_back(job, execution)  # stopped by our shutdown, not the client: let another runner have it
        else:
            self.finish(job, execution, outcome)
        self.jobs_done += 1

    def start(self, job: Job) -> Execution:
        """Round trip 3."""
        job.meta["attempts"] = job.meta.get("attempts", 0) + 1
        job.meta.pop("outcome", None)  # a previous attempt's; if this runner dies, none is right
        with self.connection.pipeline() as pipe:
            execution = Execution.create(job, self.get_heartbeat_ttl(job), pipeline=pipe, worker_name=self.name)
            job.prepare_for_execution(self.name, pipeline=pipe)
            pipe.hset(job.key, "meta", self.serializer.dumps(job.meta))
            pipe.persist(job.key)
            pipe.lrem(self.queue.intermediate_queue_key, 1, job.id)
            self.set_state(WorkerStatus.BUSY, pipeline=pipe)
            pipe.execute()
        return execution

    def finish(self, job: Job, execution: Execution, outcome: Outcome) -> None:
        """Round trip 4: record what happened, in one transaction."""
        job.ended_at = now()
        job.meta["outcome"] = outcome.model_dump(mode="json")
        retry = (
            outcome.status in (Status.FAILED, Status.TIMED_OUT)
            and job.should_retry
            and not (outcome.error and outcome.error.type in NOT_RETRIED)
        )
        with self.connection.pipeline() as pipe:
            pipe.hset(job.key, "meta", self.serializer.dumps(job.meta))
            pipe.hset(job.key, "ended_at", job.ended_at.strftime("%Y-%m-%dT%H:%M:%S.%fZ"))
            ttl = self.settings.result_ttl
            if outcome.status == Status.FINISHED:
                job._result = outcome.value
                job._handle_success(
                    ttl, pipeline=pipe, worker_name=self.name, execution_id=execution.id,
                    execution_started_at=execution.created_at, execution_ended_at=job.ended_at,
                )
                job.cleanup(ttl, pipeline=pipe, remove_from_queue=False)
                self.increment_successful_job_count(pipe)
            elif outcome.status == Status.CANCELED:
                job.set_status(JobStatus.CANCELED, pipeline=pipe)
                self.queue.canceled_job_registry.add(job, ttl, pipeline=pipe)
                job.cleanup(ttl, pipeline=pipe, remove_from_queue=False)
            elif retry:
                job.retry(self.queue, pipe)
            else:
                job.set_status(JobStatus.FAILED, pipeline=pipe)
                job._handle_failure(
                    outcome.error.message if outcome.error else outcome.status, pipeline=pipe,
                    worker_name=self.name, execution_id=execution.id,
                    execution_started_at=execution.created_at, execution_ended_at=job.ended_at,
                )
                job.cleanup(ttl, pipeline=pipe, remove_from_queue=False)
                self.increment_failed_job_count(pipe)
            execution.delete(job=job, pipeline=pipe)
            self.set_state(WorkerStatus.IDLE, pipeline=pipe)
            pipe.execute()
        log.info(
            "job ended",
            extra={"job": job.id, "worker": self.name, "status": "retrying" if retry else outcome.status, "duration": outcome.duration},
        )

    def put_back(self, job: Job, execution: Execution) -> None:
        """Return an interrupted job to the front of the queue, as if it had never started."""
        job.meta["attempts"] = max(0, job.meta.get("attempts", 1) - 1)
        with self.connection.pipeline() as pipe:
            pipe.hset(job.key, "meta", self.serializer.dumps(job.meta))
            execution.delete(job=job, pipeline=pipe)
            self.queue._enqueue_job(job, pipeline=pipe, at_front=True)
            self.set_state(WorkerStatus.IDLE, pipeline=pipe)
            pipe.execute()
        log.info("job put back", extra={"job": job.id, "reason": "runner stopping"})

    # -- the watcher thread --------------------------------------------------

    def _watch(self, stop: threading.Event) -> None:
        last_beat = 0.0
        while not stop.wait(WATCH_INTERVAL):
            running = self.running
            try:
                if running is not None:
                    if self.connection.exists(cancel_key(self.queue, running.job.id)):
                        running.cancel("requested")
                    grace_over = self.stop_requested_at is not None and (
                        time.monotonic() - self.stop_requested_at > self.settings.stop_grace
                    )
                    if grace_over:
                        running.cancel("shutdown")
                if time.monotonic() - last_beat >= self.settings.heartbeat_interval:
                    self._beat(running)
                    last_beat = time.monotonic()
            except Exception:  # Redis away for a moment: keep watching, the monitor tolerates gaps
                log.warning("watcher could not reach redis", exc_info=True)

    def _beat(self, running: Running | None) -> None:
        ttl = self.get_heartbeat_ttl(running.job) if running else int(self.settings.dead_after)
        with self.connection.pipeline() as pipe:
            self.heartbeat(ttl + 60, pipeline=pipe)
            if running is not None:
                running.execution.heartbeat(self.queue.started_job_registry, ttl, pipeline=pipe)
            pipe.execute()
