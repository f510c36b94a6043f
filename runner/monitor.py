"""Keeps a queue's jobs moving when runners die: one tick a second, in every runner pool.

Each tick, under a short Redis lock so that several pools never act twice:
- a started job whose execution heartbeat expired lost its runner: rq's
  StartedJobRegistry.cleanup re-queues it while retries are left (counting
  the lost run as an attempt), or fails it;
- a job id left in rq's intermediate list for longer than `dead_after` was
  taken by a runner that died before starting it: it goes back to the queue,
  since it never ran;
- retries whose backoff has passed move from the scheduled registry to the queue.
"""

from __future__ import annotations

import logging
import time

from rq import Queue
from rq.job import Job
from rq.utils import as_text

log = logging.getLogger("zeronode.runner")


class Monitor:
    def __init__(self, queue: Queue, dead_after: float):
        self.queue = queue
        self.connection = queue.connection
        self.dead_after = dead_after
        self.lock_key = f"zeronode:{queue.name}:monitor-lock"
        self._held_since: dict[str, float] = {}

    def tick(self) -> None:
        if not self.connection.set(self.lock_key, "1", nx=True, px=5000):
            return  # another pool's monitor is on it
        try:
            self.queue.started_job_registry.cleanup()
            self.release_orphans()
            self.release_due_retries()
        finally:
            self.connection.delete(self.lock_key)

    def release_orphans(self) -> None:
        holding = [as_text(job_id) for job_id in self.connection.lrange(self.queue.intermediate_queue_key, 0, -1)]
        now = time.monotonic()
        self._held_since = {job_id: self._held_since.get(job_id, now) for job_id in holding}
        for job_id, since in list(self._held_since.items()):
            if now - since < self.dead_after:
                continue
            with self.connection.pipeline() as pipe:
                pipe.lrem(self.queue.intermediate_queue_key, 1, job_id)
                pipe.lpush(self.queue.key, job_id)
                pipe.execute()
            del self._held_since[job_id]
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
