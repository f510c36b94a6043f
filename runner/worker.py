"""A runner: an rq worker that runs signed scripts, one at a time, taking quick ones in batches.

rq's SimpleWorker spends about 20 Redis round trips on each job. A busy runner
here spends one a batch of up to runner_batch_max jobs, writing rq's own layout
(zeronode.node.queue.rq_layout) so that rq's tools still see correct statuses,
registries and results. A batch goes:

    check  each job's envelope, again (runner.executor: signature, target, rights)
    claim  their attempts in the journal, in one fsynced transaction
    run    each script; the journal hears each outcome (one transaction) before Redis
    finish the batch's results, and take (start) the next batch: one pipeline

An idle runner waits with BLMOVE, which hands the job it gets to take. The
batch is as large as the jobs the runner ran in runner_batch_seconds last time: a slow
job comes alone, so slow jobs spread over a pool. The runner notes which job of
its batch runs and which wait (runner.in_hand): if it dies, its pool puts back
the ones not started.

rq's tools see the runner as one of rq's workers (zeronode.node.queue.rq_layout):
busy, idle or suspended, its current jobs, its counts. `rq suspend` holds it:
take then takes nothing (the finish-and-take round trip finishes only), and the
runner asks again every second until `rq resume`. Each runner also counts its
jobs for the pool's /metrics (runner.metrics).

Retries, cancels and put-backs are rare, and take rq's own objects.
A watcher thread beats the executions' heartbeats (a short TTL, so the
monitor recovers the jobs within seconds if this process dies), stops the
script when its cancellation is requested, and enforces the stop grace period.
"""

from __future__ import annotations

import logging
import math
import os
import signal
import sqlite3
import threading
import time
from collections.abc import Callable
from datetime import datetime, timedelta, timezone
from typing import TypeVar

import redis
from rq import SimpleWorker, worker_registration
from rq.executions import Execution
from rq.job import JobStatus
from rq.utils import as_text, now, utcformat
from rq.worker import WorkerStatus

import rhai
from runner.executor import Admitted, Executor
from runner.in_hand import InHand, in_hand_path
from runner.metrics import RunnerMetrics
from zeronode.api.jobs import ScriptError, Status
from zeronode.logs import request_context
from zeronode.node.journal import Claim, Entry, Journal
from zeronode.node.queue.jobs import NOT_RETRIED, Outcome
from zeronode.node.queue.keys import NodeKeys
from zeronode.node.queue.rq_layout import Ending, JobRecord, Layout, Started, Taken
from zeronode.node.settings import NodeSettings

log = logging.getLogger("zeronode.runner")
T = TypeVar("T")

MEMORY_EXIT = 86  # a runner's exit status when Python ran out of memory under its ceiling (MemoryError)
WATCH_INTERVAL = 0.1  # how often a running job's cancel flag is checked
BLOCK_SECONDS = 1  # an idle runner notices a stop request within this
PUBSUB_WAIT_SECONDS = 1  # and its rq command thread ends within this (Runner.subscribe)


class Running:
    """The job this runner is running now, as its watcher thread sees it."""

    def __init__(self, record: JobRecord, execution: Execution):
        self.record = record
        self.execution = execution
        self.token = rhai.CancelToken()  # for the Rhai engine
        self.cancel_reason: str | None = None  # "requested" or "shutdown"

    def cancel(self, reason: str) -> None:
        if self.cancel_reason is None:
            self.cancel_reason = reason
        self.token.cancel()


class Runner(SimpleWorker):
    def __init__(self, settings: NodeSettings, executor: Executor, queue, journal: Journal | None = None, **kwargs):
        super().__init__([queue], connection=queue.connection, serializer=queue.serializer, **kwargs)
        self.settings = settings
        self.executor = executor
        self.journal = journal or Journal(settings.journal_path)
        self.queue = queue
        self.layout = Layout(queue, self.name)
        self.keys = NodeKeys(queue.name)
        self.cancel_prefix = self.keys.cancel_prefix
        self.started_registry = queue.started_job_registry
        self.canceled_registry = queue.canceled_job_registry
        self.running: Running | None = None
        self.stop_requested_at: float | None = None
        self.jobs_done = 0
        self.metrics = RunnerMetrics()
        self.suspended = False  # as the last take found rq's suspension key
        self.batch_size = 1  # how many jobs the next take asks for (Runner.handle)
        self.in_hand: list[Taken] = []  # the batch's started jobs: the watcher beats their executions
        self.unjournaled: list[tuple[str, Outcome]] = []  # the batch's ends, for the journal before Redis (finish)
        self.hand = InHand(in_hand_path(settings.state_dir, self.name))  # for the pool, should this runner die
        self.last_finished_at: float | None = None  # when Redis last heard of jobs' ends from this runner (time.time())

    def _install_signal_handlers(self) -> None:
        """A stop request (SIGTERM; SIGINT unless ignored, as in pool children)
        finishes the job in hand, or puts it back after the grace period. rq's own
        handlers would force-exit on a second signal and leave the job started."""
        signal.signal(signal.SIGTERM, lambda *_: self._shutdown())
        if signal.getsignal(signal.SIGINT) is not signal.SIG_IGN:
            signal.signal(signal.SIGINT, lambda *_: self._shutdown())

    def _shutdown(self) -> None:
        if self.stop_requested_at is None:
            self.stop_requested_at = time.monotonic()
            log.info("stop requested", extra={"worker": self.name, "busy": self.running is not None})
        self._stop_requested = True

    def subscribe(self) -> None:
        """rq's command channel, as rq subscribes to it, but with a thread that waits at most a second at a time.

        rq waits up to 60 s: on stop it unsubscribes, and when its thread reads that answer before the stop
        flag is set it goes back to wait 60 s for a subscription that never comes, while redis-py's stop()
        joins it with no bound (rq issue 1613). Measured: 1 pool stop in 6 after a Redis restart took 40 s,
        until the pool killed the runner."""
        self.pubsub = self.connection.pubsub()
        self.pubsub.subscribe(**{self.pubsub_channel_name: self.handle_payload})
        self.pubsub_thread = self.pubsub.run_in_thread(
            sleep_time=PUBSUB_WAIT_SECONDS, daemon=True, exception_handler=self._pubsub_exception_handler
        )

    def get_heartbeat_ttl(self, job=None, working_time: float = 0.0) -> int:
        return max(1, math.ceil(self.settings.dead_after))

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
            batch: list[Taken] = []
            while True:
                try:
                    if not batch:
                        if self._stop_requested:
                            break
                        batch = self.take(block=not burst)
                        if not batch:
                            if burst:
                                break
                            continue
                    if self.note_suspension(batch[0].suspended):
                        if burst:  # as rq's workers: a suspended burst ends
                            break
                        batch = []
                        time.sleep(BLOCK_SECONDS)  # then asks again (take); a stop request is seen within this
                        continue
                    batch = self.handle(batch)
                except redis.RedisError as exc:
                    # Redis away: wait and carry on. Jobs in hand are the monitor's to recover.
                    log.warning("redis unavailable", extra={"worker": self.name, "error": str(exc)})
                    batch = []
                    self.in_hand = []
                    time.sleep(BLOCK_SECONDS)
        finally:
            watcher_stop.set()
            watcher.join()
            self.hand.close()
            self.teardown()
            for signum, handler in previous.items():
                signal.signal(signum, handler)
        return self.jobs_done

    def note_suspension(self, suspended: bool) -> bool:
        """Say when `rq suspend` starts and stops holding this runner; returns `suspended`."""
        if suspended != self.suspended:
            self.suspended = suspended
            message = "suspended: no new job until `rq resume`" if suspended else "resumed"
            log.info(message, extra={"worker": self.name})
        return suspended

    def take(self, block: bool) -> list[Taken]:
        """Round trip 1: the next jobs, started. When the queue is empty, wait for one (if `block`)."""
        ttl = self.get_heartbeat_ttl()
        batch = self.layout.take_many(ttl, self.cancel_prefix, self.batch_size)
        if not batch and block:
            held = self.connection.blmove(self.queue.key, self.queue.intermediate_queue_key, BLOCK_SECONDS)
            if held is not None:
                batch = self.layout.take_many(ttl, self.cancel_prefix, self.batch_size, held_job_id=as_text(held))
        return batch

    def handle(self, batch: list[Taken]) -> list[Taken]:
        """Run a batch of taken jobs: check each, claim them in the journal together (one fsync), run each,
        then record their ends and take the next batch in one round trip. Returns the next batch."""
        self.in_hand = [taken for taken in batch if taken.started is not None]
        self.hand.write(None, [(t.record.id, t.started.execution_id) for t in self.in_hand if t.record is not None])
        ending = self.layout.ending()
        checked: list[tuple[Taken, Admitted]] = []
        for taken in batch:
            with self.job_context(taken):
                admitted = self.check(taken, ending)
                if admitted is not None:
                    checked.append((taken, admitted))
        claims = self.claim(checked)
        ran, began = 0, time.monotonic()  # the scripts' time (and their ends'), not the checks' or the claims' fsync
        for index, ((taken, admitted), (claim, outcome)) in enumerate(zip(checked, claims, strict=True)):
            with self.job_context(taken):
                assert taken.record is not None and taken.started is not None
                self.hand.write((taken.record.id, taken.started.execution_id),
                                [(t.record.id, t.started.execution_id) for t, _ in checked[index + 1:]])  # type: ignore[union-attr]
                if claim is Claim.BUSY:
                    self.delay(taken.record, taken.started, "another runner, still alive, is running this envelope")
                elif claim is not Claim.RUN:  # it ran before, and Redis forgot (or it is a replay): record, never run again
                    assert outcome is not None
                    self.end(taken.record, taken.started, outcome, ending)
                elif self.grace_over():  # claimed, never started: the next attempt is another runner's
                    self.interrupt(taken.record, taken.started, admitted.run.failed(
                        "Interrupted", "its runner stopped before it started; the next attempt runs it"), ran=False)
                else:
                    self.run_one(taken.record, taken.started, admitted, ending)
                    ran += 1
        if ran:  # quick scripts come in bigger batches, up to a batch's worth of time; a slow one alone
            per_job = (time.monotonic() - began) / ran
            self.batch_size = max(1, min(self.settings.runner_batch_max, int(self.settings.runner_batch_seconds / per_job)))
        return self.finish(ending)

    def job_context(self, taken: Taken):
        """The job's lines carry the id of the request that queued it (supervisor: job meta)."""
        return request_context(taken.record.meta.get("request_id") if taken.record else None)

    def grace_over(self) -> bool:
        return self.stop_requested_at is not None and time.monotonic() - self.stop_requested_at > self.settings.stop_grace

    def check(self, taken: Taken, ending: Ending) -> Admitted | None:
        """A taken job's checks: the job to run, or None when it ended here (or is not to run)."""
        if taken.record is None:  # deleted, or not queued: nothing to run
            return None
        if taken.started is None:  # its cancellation was requested before it started
            job = taken.record.rq_job(self.queue)
            with self.connection.pipeline() as pipe:
                pipe.lrem(self.queue.intermediate_queue_key, 1, job.id)
                self.mark_canceled(job, pipe, taken.record.result_ttl or self.settings.result_ttl)
                pipe.execute()
            return None
        self.metrics.started()
        record, started = taken.record, taken.started
        if taken.unreadable:
            outcome = Outcome(status=Status.FAILED, error=ScriptError(type="UnreadableJob", message="the job's stored data cannot be decoded"))
            self.end(record, started, outcome, ending)
            return None
        admitted = self.executor.admit(record.payload, job_id=record.id, attempt=record.meta.get("attempts", 1), ticket=record.ticket)
        if isinstance(admitted, Outcome):  # refused before it could run; but if it ran once, that stands
            self.end(record, started, self.journal_outcome(record.id) or admitted, ending)
            return None
        return admitted

    def mark_canceled(self, job, pipe, ttl: int) -> None:
        job.set_status(JobStatus.CANCELED, pipeline=pipe)
        self.canceled_registry.add(job, ttl, pipeline=pipe)
        job.cleanup(ttl, pipeline=pipe, remove_from_queue=False)

    def run_one(self, record: JobRecord, started: Started, admitted: Admitted, ending: Ending) -> None:
        """Run a started, claimed job and record its end."""
        execution = Execution(started.execution_id, record.id, self.connection, worker_name=self.name)
        self.running = running = Running(record, execution)
        try:
            outcome = self.executor.execute(admitted, cancel_token=running.token)
        except MemoryError:  # under the runner's ceiling: the pool fails the job as ResourceLimit (runner.pool)
            os._exit(MEMORY_EXIT)
        except Exception as exc:  # a bug of ours, not the script's: record it, never lose the job
            log.exception("runner error", extra={"job": record.id})
            outcome = Outcome(status=Status.FAILED, error=ScriptError(type="RunnerError", message=str(exc)), attempt=admitted.run.attempt)
        finally:
            self.running = None
        self.jobs_done += 1
        if running.cancel_reason == "shutdown" and outcome.status == Status.CANCELED:
            # Stopped by our shutdown, not the client: this attempt ends here (what it did is done), and the
            # job goes back to the queue for another runner to make the next attempt.
            self.interrupt(record, started, outcome.model_copy(update={"status": Status.FAILED, "error": ScriptError(
                type="Interrupted", message="its runner stopped it after the stop grace period; the next attempt runs anew")}))
            return
        self.end(record, started, outcome, ending, ran=True)

    def interrupt(self, record: JobRecord, started: Started, outcome: Outcome, ran: bool = True) -> None:
        """End this attempt as interrupted by the runner's stop, and put the job back for the next one."""
        self.journal_end(record.id, outcome)
        self.put_back(record, started, ran)
        self.metrics.ended("interrupted", self.working_time(started))

    def journal_outcome(self, job_id: str) -> Outcome | None:
        """The outcome the journal holds for a job whose attempt ended, if any."""
        try:
            entry = self.journal.entry(job_id)
        except sqlite3.Error:
            return None
        return entry.outcome if entry is not None and entry.ended_at is not None else None

    def claim(self, checked: list[tuple[Taken, Admitted]]) -> list[tuple[Claim, Outcome | None]]:
        """Claim these jobs' attempts in the journal (durably, together), or learn why each must not run."""
        if not checked:
            return []
        attempts = [(a.envelope.id, a.envelope.signer, a.envelope.nonce, a.envelope.expires_at, a.run.attempt) for _, a in checked]
        try:
            claims = self.journal.claim_many(attempts)
        except sqlite3.Error as exc:  # no durable claim, no run (a full disk, say): try again later
            log.error("journal unavailable", extra={"jobs": len(attempts), "error": str(exc)})
            return [(Claim.BUSY, None)] * len(checked)
        return [self.verdict(admitted, claim, entry) for (_, admitted), (claim, entry) in zip(checked, claims, strict=True)]

    @staticmethod
    def verdict(admitted: Admitted, claim: Claim, entry: Entry | None) -> tuple[Claim, Outcome | None]:
        if claim is Claim.RUN:
            return claim, None
        if claim is Claim.REPLAYED:
            return claim, admitted.run.failed("Replayed", "another envelope holds this id or this signer's nonce on this node")
        if claim is Claim.ENDED and entry is not None and entry.outcome is not None:
            log.warning("job ran before; its recorded outcome is written again", extra={"job": admitted.envelope.id})
            return claim, entry.outcome
        if claim is Claim.ENDED:
            return claim, admitted.run.failed(
                "RunnerDied", "this attempt started before on a runner that died; it is not run twice"
            )
        return claim, None

    def journal_end(self, job_id: str, outcome: Outcome) -> None:
        self.journal_ends([(job_id, outcome)])

    def journal_ends(self, ends: list[tuple[str, Outcome]]) -> None:
        """Write how attempts that ran here ended (before Redis hears of it), in one transaction."""
        for delay in (0.1, 0.5, 1.0, None):
            try:
                self.journal.end_many(ends)
                return
            except sqlite3.Error as exc:  # Redis still gets the result; only a wipe of it would lose it now
                if delay is None:
                    log.error("journal could not record the outcome", extra={"jobs": [job_id for job_id, _ in ends], "error": str(exc)})
                    return
                time.sleep(delay)

    def delay(self, record: JobRecord, started: Started, why: str) -> None:
        """Leave a job for later, as if this runner had never taken it: back in a while, through the scheduled registry."""
        record.meta["attempts"] = max(0, record.meta.get("attempts", 1) - 1)
        self.requeue(record, started, at=datetime.now(timezone.utc) + timedelta(seconds=self.settings.dead_after), ran=False)
        self.metrics.left()
        log.warning("job delayed", extra={"job": record.id, "reason": why})

    def end(self, record: JobRecord, started: Started, outcome: Outcome, ending: Ending, ran: bool = False) -> None:
        """Record how a job ended: the common endings join `ending` (written with the batch's), the rare go through rq.
        `ran`: its script ran here, and the journal must hear how it ended before Redis does."""
        record.meta["outcome"] = outcome.model_dump(mode="json")
        retry = (
            outcome.status in (Status.FAILED, Status.TIMED_OUT)
            and record.retries_left > 0
            and not (outcome.error and outcome.error.type in NOT_RETRIED)
        )
        log.info(
            "job ended",
            extra={"job": record.id, "worker": self.name, "status": "retrying" if retry else outcome.status, "duration": outcome.duration},
        )
        self.metrics.ended(str(outcome.status), self.working_time(started))
        if outcome.status == Status.CANCELED or retry:
            if ran:
                self.journal_end(record.id, outcome)
            self.finish_with_rq(record, started, outcome, retry)
            return
        if ran:
            self.unjournaled.append((record.id, outcome))
        if outcome.status == Status.FINISHED:
            ending.success(record, started, outcome.value, record.result_ttl or self.settings.result_ttl)
        else:
            message = outcome.error.message if outcome.error else str(outcome.status)
            ending.failure(record, started, message, record.failure_ttl or self.settings.result_ttl)

    def finish(self, ending: Ending) -> list[Taken]:
        """Round trip 2 (and 1 of the next batch): write the batch's ends and, unless stopping, take the next batch."""
        if self.unjournaled:
            self.journal_ends(self.unjournaled)
            self.unjournaled = []

        def finish_and_take() -> list[Taken]:
            take_next = not self._stop_requested
            with self.connection.pipeline(transaction=False) as pipe:
                ending.send(pipe)
                taken = self.layout.take_many(self.get_heartbeat_ttl(), self.cancel_prefix, self.batch_size, pipe=pipe) if take_next else None
                if not len(pipe):
                    return []
                replies = pipe.execute()
            if ending.count and replies[0] < ending.count:
                log.warning("jobs were taken back by the monitor; their results are dropped",
                            extra={"jobs": ending.count - replies[0], "worker": self.name})
            self.in_hand = []
            self.hand.write(None, [])
            if ending.count:
                self.last_finished_at = time.time()
            return taken(replies[-1]) if taken else []

        return self.with_retries(lambda: self.layout.scripts.retrying(finish_and_take)) or []

    def with_retries(self, action: Callable[[], T]) -> T | None:
        """A job's end is worth waiting for: retry until Redis is back, however long it is away
        (the finish script refuses a job the monitor took back meanwhile). Only a stop request
        gives up, after the grace period; the journal has the outcome, for whoever takes the job next."""
        delay = 0.1
        last_said = time.monotonic()
        while True:
            try:
                return action()
            except redis.RedisError as exc:
                stopping_since = self.stop_requested_at
                if stopping_since is not None and time.monotonic() - stopping_since > self.settings.stop_grace:
                    raise
                if time.monotonic() - last_said > 10:
                    log.warning("still waiting for redis to record a job's end", extra={"worker": self.name, "error": str(exc)})
                    last_said = time.monotonic()
                time.sleep(delay)
                delay = min(delay * 2, 1.0)

    def finish_with_rq(self, record: JobRecord, started: Started, outcome: Outcome, retry: bool) -> None:
        """The rare endings (a retry, a cancel) go through rq's own objects."""
        job = record.rq_job(self.queue)
        job.ended_at = now()
        result_ttl = record.result_ttl or self.settings.result_ttl
        with self.connection.pipeline() as pipe:
            pipe.hset(job.key, mapping={"meta": self.serializer.dumps(record.meta), "ended_at": utcformat(job.ended_at)})
            if retry:
                job.retry(self.queue, pipe)
            else:
                self.mark_canceled(job, pipe, result_ttl)
            self.layout.end_execution(pipe, record, started)
            self.count_failed(pipe, started)  # as rq's workers count a retry and a stopped job
            pipe.execute()

    def put_back(self, record: JobRecord, started: Started, ran: bool = True) -> None:
        """Return an interrupted job to the front of the queue: its next attempt is another runner's."""
        self.requeue(record, started, ran=ran)
        log.info("job put back", extra={"job": record.id, "reason": "runner stopping"})

    def requeue(self, record: JobRecord, started: Started, at: datetime | None = None, ran: bool = True) -> None:
        """End this runner's execution of a job and queue it again: at the front, or from `at` on.
        `ran`: the attempt ran here (it counts as failed, as rq counts a job its worker gave up)."""
        job = record.rq_job(self.queue)
        with self.connection.pipeline() as pipe:
            pipe.hset(job.key, "meta", self.serializer.dumps(record.meta))
            self.layout.end_execution(pipe, record, started)
            if ran:
                self.count_failed(pipe, started)
            if at is None:
                self.queue._enqueue_job(job, pipeline=pipe, at_front=True)
            else:
                self.queue.schedule_job(job, at, pipeline=pipe)
            pipe.execute()

    @staticmethod
    def working_time(started: Started) -> float:
        return max(0.0, (now() - started.at).total_seconds())

    def count_failed(self, pipe, started: Started) -> None:
        """rq's count of this worker's failed jobs and its working time, on the rare endings
        (finish.lua counts the others)."""
        self.increment_failed_job_count(pipe)
        self.increment_total_working_time(timedelta(seconds=self.working_time(started)), pipe)

    # -- the watcher thread --------------------------------------------------

    def _watch(self, stop: threading.Event) -> None:
        last_beat = 0.0
        last_said = -math.inf  # a Redis outage is said once every 10 s, not at every 0.1 s tick
        while not stop.wait(WATCH_INTERVAL):
            running = self.running
            try:
                if running is not None:
                    if self.connection.exists(self.keys.cancel(running.record.id)):
                        running.cancel("requested")
                    if self.grace_over():
                        running.cancel("shutdown")
                if time.monotonic() - last_beat >= self.settings.heartbeat_interval:
                    self._beat(running, self.in_hand)
                    last_beat = time.monotonic()
            except Exception as exc:  # Redis away for a moment, most likely: keep watching, the monitor tolerates gaps
                if time.monotonic() - last_said > 10:
                    unexpected = not isinstance(exc, redis.RedisError)
                    log.warning("watcher step failed", exc_info=unexpected, extra={"worker": self.name, "error": str(exc)})
                    last_said = time.monotonic()

    def _beat(self, running: Running | None, in_hand: list[Taken]) -> None:
        """The worker's heartbeat, and the executions' of every job of the batch in hand (started, not yet ended)."""
        ttl = self.get_heartbeat_ttl()
        with self.connection.pipeline() as pipe:
            self.heartbeat(ttl + 60, pipeline=pipe)
            for taken in in_hand:
                if taken.record is not None and taken.started is not None:
                    execution = Execution(taken.started.execution_id, taken.record.id, self.connection, worker_name=self.name)
                    execution.heartbeat(self.started_registry, ttl, pipeline=pipe)
            beat = pipe.execute()
        if beat[0] == 1:  # the heartbeat made the worker's hash anew: it had expired (a long Redis outage)
            self.register_again(ttl + 60, running)

    def register_again(self, ttl: int, running: Running | None) -> None:
        """Write this worker's record and registration again, as rq's workers do when theirs expired,
        so that `rq info` lists it again; its counts start afresh."""
        state = WorkerStatus.SUSPENDED if self.suspended else WorkerStatus.BUSY if running else WorkerStatus.IDLE
        with self.connection.pipeline() as pipe:
            pipe.hset(self.key, mapping={**self.serialize(), "state": state.value})
            pipe.expire(self.key, ttl)
            worker_registration.register(self, pipe)
            pipe.execute()
        self.layout.state = ""  # the next take writes its state, whatever this guessed
        log.warning("worker record written again: it had expired", extra={"worker": self.name})
