"""Keeps a queue's jobs moving when runners die: one tick a second, in every runner pool.

Each tick, under a short Redis lock so that several pools never act twice:
- a started job whose execution heartbeat expired lost its runner: rq's
  StartedJobRegistry.cleanup re-queues it while retries are left (counting
  the lost run as an attempt), or fails it;
- a job id left in rq's intermediate list for longer than `dead_after` was
  taken by a runner that died before starting it: it goes back to the queue,
  since it never ran;
- retries whose backoff has passed move from the scheduled registry to the queue.

Heartbeats missed while Redis was away say nothing of the runners: after an
outage the monitor sees (a tick that failed, or ticks that could not run:
Redis hung, the host paused), or a restart of Redis (a new run_id), it judges
no runner dead for `dead_after`, time enough for every live runner to beat again.
"""

from __future__ import annotations

import logging
import time

from rq import Queue
from rq.job import Job
from rq.utils import as_text

from zeronode.node.queue.keys import NodeKeys

log = logging.getLogger("zeronode.runner")

MONITOR_INTERVAL = 1.0  # seconds between ticks (runner.pool calls tick)
STALL_AFTER = 3 * MONITOR_INTERVAL  # a longer gap between two ticks: Redis or the host stalled


class Monitor:
    def __init__(self, queue: Queue, dead_after: float):
        self.queue = queue
        self.connection = queue.connection
        self.dead_after = dead_after
        # redis-py's lock releases only if it is still ours (a token, compared on release).
        self.lock = self.connection.lock(NodeKeys(queue.name).monitor_lock, timeout=30)
        self._held_since: dict[str, float] = {}
        self._last_look = 0.0
        self._redis_run_id: str | None = None
        self._last_tick = time.monotonic()
        self._judge_after = time.monotonic() + dead_after  # runners started with us need time to beat once

    def redis_lost(self) -> None:
        """Redis could not be reached (the pool calls this): no runner is judged by its silence for a while."""
        self._judge_after = time.monotonic() + self.dead_after

    def tick(self) -> None:
        run_id = self.connection.info("server").get("run_id")
        if run_id != self._redis_run_id:  # Redis restarted: every heartbeat it restored is stale
            if self._redis_run_id is not None:
                log.warning("redis restarted; runners are given time to beat again", extra={"grace": self.dead_after})
                self.redis_lost()
            self._redis_run_id = run_id
        now = time.monotonic()
        if now - self._last_tick > STALL_AFTER:  # this monitor was stalled, and the runners' beats may have been too
            self.redis_lost()
        self._last_tick = now
        if not self.lock.acquire(blocking=False):
            return  # another pool's monitor is on it
        try:
            if time.monotonic() >= self._judge_after:
                self.queue.started_job_registry.cleanup()
                self.release_orphans()
            self.release_due_retries()
        finally:
            self.lock.release()

    def release_orphans(self) -> None:
        now = time.monotonic()
        if now - self._last_look > 2 * MONITOR_INTERVAL:
            self._held_since = {}  # we missed ticks (another pool held the lock): start counting afresh
        self._last_look = now
        holding = [as_text(job_id) for job_id in self.connection.lrange(self.queue.intermediate_queue_key, 0, -1)]
        self._held_since = {job_id: self._held_since.get(job_id, now) for job_id in holding}
        for job_id, since in list(self._held_since.items()):
            if now - since < self.dead_after:
                continue
            del self._held_since[job_id]
            # Only if it is still there: a runner may have taken it since we looked.
            if self.connection.lrem(self.queue.intermediate_queue_key, 1, job_id):
                self.connection.lpush(self.queue.key, job_id)
                log.warning("orphaned job returned to the queue", extra={"job": job_id})

    def release_due_retries(self) -> None:
        registry = self.queue.scheduled_job_registry
        due = registry.get_jobs_to_schedule(int(time.time()))
        if not due:
            return
        jobs = Job.fetch_many(due, self.connection, serializer=self.queue.serializer)
        with self.connection.pipeline() as pipe:
            for job in jobs:
                if job is not None:
                    self.queue._enqueue_job(job, pipeline=pipe)
                    registry.remove(job, pipeline=pipe)
            pipe.execute()
        log.info("retries released", extra={"jobs": len(due)})
