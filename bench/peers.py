"""The Python job queues bench/runner.py races the runner against, each with its Redis broker: no-op jobs.

Each peer has an `enqueue(sock, payload, count)` run in the bench's process before the clock
starts, and a `drain(sock, count, ...)` run in a process of its own (bench/runner.py: `race`),
which returns when `count` jobs have run. The jobs do nothing with their payload. Where a
peer's worker has no mode that stops when its queue is empty (arq's burst mode polls,
dramatiq and celery run until stopped), the job function counts its calls and the drain
ends with the last one; the peer's own bookkeeping of that last job is not timed. rq's
workers do stop, up to a minute late: their drain ends when rq recorded the last job's end.
"""

from __future__ import annotations

import asyncio
import logging
import os
import threading
import time
from pathlib import Path

import redis

QUEUE = "peers"


class Countdown:
    """Set when the job function has been called `count` times (from any thread)."""

    def __init__(self, count: int):
        self.left = count
        self.lock = threading.Lock()
        self.done = threading.Event()

    def tick(self) -> None:
        with self.lock:
            self.left -= 1
            if self.left <= 0:
                self.done.set()


# -- rq: SimpleWorker, and `rq worker-pool` (rq's WorkerPool: forking workers) -------------------

def rq_enqueue(sock: Path, payload: str, count: int) -> None:
    from rq import Queue

    queue = Queue(QUEUE, connection=redis.Redis(unix_socket_path=str(sock)))
    with queue.connection.pipeline() as pipe:  # enqueueing is not what is measured: one round trip
        for _ in range(count):
            queue.enqueue("rq_noop.noop", payload, pipeline=pipe)
        pipe.execute()


def rq_last_end(sock: Path, queue_name: str = QUEUE, serializer=None) -> float:
    """When the last of the queue's jobs ended, as rq recorded it (the runner writes rq's records too)."""
    from rq import Queue
    from rq.job import Job

    queue = Queue(queue_name, connection=redis.Redis(unix_socket_path=str(sock)), serializer=serializer)
    ids = queue.finished_job_registry.get_job_ids()
    jobs = Job.fetch_many(ids, queue.connection, serializer=queue.serializer)
    return max(job.ended_at.timestamp() for job in jobs if job is not None)


def end_when_rq_is_done(sock: Path, count: int, finished) -> None:
    """A thread that ends the drain when rq has finished `count` jobs: rq's workers take up to 60 s more
    to stop after their last job (the join of their pubsub thread, rq issue 1613), which is not measured."""
    from rq import Queue

    def watch() -> None:
        queue = Queue(QUEUE, connection=redis.Redis(unix_socket_path=str(sock)))
        while queue.finished_job_registry.get_job_count() < count:
            time.sleep(0.01)
        finished(rq_last_end(sock))
        os._exit(0)

    threading.Thread(target=watch, daemon=True).start()


def rq_simple_drain(sock: Path, count: int, start, finished) -> None:
    from rq import Queue, SimpleWorker

    connection = redis.Redis(unix_socket_path=str(sock))
    worker = SimpleWorker([Queue(QUEUE, connection=connection)], connection=connection)
    start()
    end_when_rq_is_done(sock, count, finished)
    worker.work(burst=True, logging_level="ERROR")


def rq_pool_drain(sock: Path, count: int, start, finished, workers: int = 2) -> None:
    from rq.worker_pool import WorkerPool

    logging.getLogger("rq").setLevel(logging.ERROR)
    pool = WorkerPool([QUEUE], connection=redis.Redis(unix_socket_path=str(sock)), num_workers=workers)
    start()
    end_when_rq_is_done(sock, count, finished)  # its workers, left to end on their own
    pool.start(burst=True, logging_level="ERROR")


# -- arq ------------------------------------------------------------------------------------------

ARQ_POLL_DELAY = 0.005  # arq's default, 0.5 s, sleeps between reads of 100 job ids: ~200 jobs/s here


def arq_enqueue(sock: Path, payload: str, count: int) -> None:
    from arq import create_pool
    from arq.connections import RedisSettings

    async def enqueue() -> None:
        pool = await create_pool(RedisSettings(unix_socket_path=str(sock)))
        for _ in range(count):
            await pool.enqueue_job("noop", payload)
        await pool.aclose()

    asyncio.run(enqueue())


def arq_drain(sock: Path, count: int, start, finished) -> None:
    from arq.connections import RedisSettings
    from arq.worker import Worker, func

    countdown = Countdown(count)

    async def noop(ctx, payload: str) -> None:
        countdown.tick()

    async def drain() -> None:
        worker = Worker([func(noop, name="noop")], redis_settings=RedisSettings(unix_socket_path=str(sock)), max_jobs=10,
                        poll_delay=ARQ_POLL_DELAY, handle_signals=False, log_results=False)
        start()
        running = asyncio.ensure_future(worker.async_run())
        while not countdown.done.is_set():
            await asyncio.sleep(0.001)
        finished()
        running.cancel()

    logging.getLogger("arq").setLevel(logging.ERROR)
    asyncio.run(drain())


# -- dramatiq (Redis broker, 8 worker threads) ----------------------------------------------------

def _dramatiq_actor(sock: Path, countdown: Countdown | None = None):
    import dramatiq
    from dramatiq.brokers.redis import RedisBroker

    broker = RedisBroker(unix_socket_path=str(sock))
    dramatiq.set_broker(broker)

    def noop(payload: str) -> None:
        if countdown is not None:
            countdown.tick()

    return broker, dramatiq.actor(noop, actor_name="noop", queue_name=QUEUE, broker=broker)


def dramatiq_enqueue(sock: Path, payload: str, count: int) -> None:
    broker, actor = _dramatiq_actor(sock)
    for _ in range(count):
        actor.send(payload)
    broker.close()


def dramatiq_drain(sock: Path, count: int, start, finished) -> None:
    from dramatiq import Worker

    logging.getLogger("dramatiq").setLevel(logging.ERROR)
    countdown = Countdown(count)
    broker, _ = _dramatiq_actor(sock, countdown)
    worker = Worker(broker, worker_threads=8)
    start()
    worker.start()
    countdown.done.wait()
    finished()
    os._exit(0)  # its own stop waits for the consumers' timeouts; the drain is done


# -- celery (Redis broker; the solo pool: one process, as the runner) ------------------------------

def _celery_app(sock: Path, countdown: Countdown | None = None):
    from celery import Celery

    app = Celery("peers", broker=f"redis+socket://{sock}")
    app.conf.update(task_default_queue=QUEUE, task_ignore_result=True, worker_hijack_root_logger=False)

    @app.task(name="noop")
    def noop(payload: str) -> None:
        if countdown is not None:
            countdown.tick()

    return app, noop


def celery_enqueue(sock: Path, payload: str, count: int) -> None:
    app, noop = _celery_app(sock)
    with app.producer_or_acquire() as producer:
        for _ in range(count):
            noop.apply_async((payload,), producer=producer)


def celery_drain(sock: Path, count: int, start, finished) -> None:
    from celery.signals import worker_ready

    countdown = Countdown(count)
    app, _ = _celery_app(sock, countdown)

    def end_when_done() -> None:
        countdown.done.wait()
        finished()
        os._exit(0)  # celery's warm shutdown is not what is measured

    threading.Thread(target=end_when_done, daemon=True).start()
    worker_ready.connect(lambda **_: start(), weak=False)  # the clock starts once it is up (mingle, gossip)
    app.worker_main(["--quiet", "worker", "--pool=solo", "--loglevel=ERROR", "-Q", QUEUE])
