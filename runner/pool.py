"""`zeronode runner --pool N`: N runner processes on the node's queue, and the monitor.

The parent starts the runners, starts a fresh one whenever one dies, and runs
the monitor. On SIGTERM or SIGINT it passes the signal on; each runner finishes
its current job (or, after the grace period, puts it back on the queue) and
exits. Runners that are still alive after the grace period are killed.
"""

from __future__ import annotations

import logging
import multiprocessing
import os
import signal
import time
from typing import Any

import redis

from runner.executor import Executor
from runner.monitor import MONITOR_INTERVAL, Monitor
from runner.worker import Runner
from sal.registry import NodeSals
from zeronode import logs
from zeronode.node.authorizer import node_authorizer
from zeronode.node.identity import node_identity
from zeronode.node.process import die_with_parent
from zeronode.node.queue.jobs import open_queue
from zeronode.node.settings import NodeSettings

log = logging.getLogger("zeronode.runner")


def connect(settings: NodeSettings) -> redis.Redis:
    return redis.Redis.from_url(settings.redis_url)


def run_runner(settings: NodeSettings, burst: bool = False, name: str | None = None) -> int:
    """One runner, in this process, until stopped. Returns the number of jobs it ran."""
    identity = node_identity(settings)
    queue = open_queue(connect(settings), settings.queue)
    executor = Executor(
        identity.node_id, settings.limits, settings.verify, node_authorizer(settings, identity),
        NodeSals.from_settings(settings),
    )
    runner = Runner(settings, executor, queue, name=name)
    log.info("runner started", extra={"worker": runner.name, "node": identity.node_id, "queue": queue.name})
    return runner.work(burst=burst)


def _child(settings_data: dict[str, Any], index: int, parent_pid: int) -> None:
    die_with_parent(parent_pid)  # a pool killed with -9 leaves no runner behind (its SIGTERM: finish, then exit)
    logs.setup()
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C reaches the whole group: the parent decides
    settings = NodeSettings.model_validate(settings_data)
    run_runner(settings, name=f"{os.uname().nodename}.{os.getpid()}.{index}")


class Pool:
    def __init__(self, settings: NodeSettings, size: int):
        if size < 1:
            raise ValueError("a pool needs at least one runner")
        self.settings = settings
        self.size = size
        self.context = multiprocessing.get_context("spawn")  # no Redis sockets or threads inherited
        self.processes: dict[int, multiprocessing.process.BaseProcess] = {}
        self.stopping = False

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
        monitor = Monitor(open_queue(connect(self.settings), self.settings.queue), self.settings.dead_after)
        for index in range(self.size):
            self._start(index)
        while not self.stopping:
            try:
                monitor.tick()
            except redis.RedisError as exc:
                log.warning("monitor could not reach redis", extra={"error": str(exc)})
            for index, process in list(self.processes.items()):
                if not process.is_alive() and not self.stopping:
                    log.warning("runner process died", extra={"index": index, "exitcode": process.exitcode})
                    self._start(index)
            time.sleep(MONITOR_INTERVAL)
        self._shutdown()

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
        log.info("pool stopped")
