"""The runner against Python's job queues: N no-op jobs drained, each worker in a process of its own.

    .venv/bin/python bench/runner.py [--jobs 2000] [--rounds 3]

Every drain starts with its N jobs already queued on the bench's redis-server, each
carrying a signed envelope's size of payload, and its worker built and connected; the
clock runs from the moment it is let go to the end of its last job. In one run, round
after round, the same peers:

    zeronode runner, 1 process    verifies each envelope again and runs `40 + 2` in Rhai,
                                  writing rq's layout, worker state and counters
    zeronode runners, 2 processes on the same queue, as a runner pool starts them
    arq                           asyncio, max_jobs 10 (bench/peers.py: its poll delay)
    dramatiq                      Redis broker, 8 worker threads
    celery                        Redis broker, the solo pool (one process)
    rq SimpleWorker, rq worker-pool (rq's WorkerPool, 2 workers, a fork per job)

The rq peers drain N/4 jobs (they are the slowest; a rate is a rate). Aims (issue 19):
one runner ≥ 2× arq, 2 runners ≥ 1.6× one, ≤ 12 Redis commands per job (INFO's
total_commands_processed over the one-runner drain: commands inside Lua scripts count
one each, the heartbeats' included).
"""

from __future__ import annotations

import argparse
import multiprocessing
import os
import queue
import resource
import shutil
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import nacl.signing
import redis
from rich.console import Console
from rich.table import Table

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT), str(ROOT / "bench")]

import peers  # noqa: E402
from aims import Aim, report  # noqa: E402
from supervisor.service import Supervisor  # noqa: E402
from tests.support.processes import stop  # noqa: E402
from tests.support.redis_server import start_redis_server  # noqa: E402
from zeronode.node.authorizer import node_authorizer  # noqa: E402
from zeronode.node.identity import node_identity  # noqa: E402
from zeronode.node.settings import NodeSettings  # noqa: E402
from zeronode.protocol import keys  # noqa: E402
from zeronode.protocol.envelope import new_envelope  # noqa: E402

console = Console()
SPAWN = multiprocessing.get_context("spawn")
RUNNER_1, RUNNER_2 = "zeronode runner, 1 process", "zeronode runners, 2 processes"


def _drain_child(target: Callable, args: tuple, ready, go, times) -> None:
    """A drain in its own process: `target(*args, start, finished)` calls `start` once its worker is
    built (which waits for the bench's go) and `finished` (or returns) after its last job; `finished(at)`
    when the last job ended earlier, at `at`."""
    sys.path[:0] = [str(ROOT), str(ROOT / "bench")]
    clock: dict[str, float] = {}

    def start() -> None:
        ready.put(os.getpid())
        go.wait()
        clock["start"], clock["cpu"] = time.time(), cpu_seconds()

    def finished(at: float | None = None) -> None:
        if "end" not in clock:
            clock["end"] = at or time.time()
            times.put((clock["start"], clock["end"], cpu_seconds() - clock["cpu"]))
            times.close()
            times.join_thread()  # flushed: some drains end with os._exit

    target(*args, start, finished)
    finished()


def wait_for(answers, processes: list, timeout: float = 600):
    """The next answer a drain process gives; an error if one of them ended without giving it."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            return answers.get(timeout=0.5)
        except queue.Empty:
            failed = [p for p in processes if p.exitcode not in (None, 0)]
            if failed:
                for process in processes:
                    process.kill()
                raise RuntimeError(f"a drain process failed (exit status {failed[0].exitcode})")
    raise TimeoutError("a drain took longer than the bench waits")


def cpu_seconds() -> float:
    """CPU time of this process and of its children that ended (rq's worker-pool forks its workers, and they a job each)."""
    own, children = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN)
    return own.ru_utime + own.ru_stime + children.ru_utime + children.ru_stime


def redis_cpu(connection: redis.Redis) -> float:
    cpu = connection.info("cpu")
    return cpu["used_cpu_user"] + cpu["used_cpu_sys"]


@dataclass
class Race:
    per_second: float  # jobs/s, from the first drain's start to the last one's end
    commands: float  # Redis commands per job (INFO total_commands_processed)
    worker_cpu: float  # µs of the workers' CPU per job
    redis_cpu: float  # µs of Redis's CPU per job


def race(connection: redis.Redis, drains: list[tuple[Callable, tuple]], count: int) -> Race:
    """Run the drains (one process each) together from one go."""
    ready, go, times = SPAWN.Queue(), SPAWN.Event(), SPAWN.Queue()
    # Not daemonic: rq's worker-pool starts processes of its own.
    processes = [SPAWN.Process(target=_drain_child, args=(target, args, ready, go, times)) for target, args in drains]
    for process in processes:
        process.start()
    for _ in processes:
        wait_for(ready, processes)
    commands, server_cpu = connection.info("stats")["total_commands_processed"], redis_cpu(connection)
    go.set()
    spans = [wait_for(times, processes) for _ in processes]
    server_cpu = redis_cpu(connection) - server_cpu
    used = connection.info("stats")["total_commands_processed"] - commands - 2
    for process in processes:
        process.join(30)
        if process.is_alive():
            process.kill()
    seconds = max(end for _, end, _ in spans) - min(start for start, _, _ in spans)
    return Race(count / seconds, used / count, 1e6 * sum(cpu for _, _, cpu in spans) / count, 1e6 * server_cpu / count)


def runner_drain(settings_data: dict, name: str, start, finished) -> None:
    """A runner as a pool starts one (logging to stderr as JSON, here to a file), in burst mode, until the
    last job's end (the other runner of a pair may have finished it)."""
    from runner.pool import new_runner
    from zeronode import logs

    settings = NodeSettings.model_validate(settings_data)
    log_file = os.open(settings.state_dir / f"{name}.log", os.O_WRONLY | os.O_CREAT | os.O_APPEND)
    os.dup2(log_file, 2)
    logs.setup()
    runner = new_runner(settings, name)
    start()
    runner.work(burst=True)
    # Its last jobs' end: a burst's work() returns up to a second later (the join of rq's pubsub thread).
    finished(runner.last_finished_at)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--jobs", type=int, default=2000, help="jobs per drain (the rq peers: a quarter)")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--only", default="", help="race only the workers whose name contains one of these, comma-separated (no aims)")
    args = parser.parse_args()
    n, slow_n = args.jobs, max(10, args.jobs // 4)
    workdir = Path(tempfile.mkdtemp(prefix="zeronode-bench-runner-"))
    redis_process, sock = start_redis_server(workdir)
    connection = redis.Redis(unix_socket_path=str(sock))
    rounds: dict[str, list[float]] = {}
    commands: dict[str, list[float]] = {}
    worker_cpu: dict[str, list[float]] = {}
    server_cpu: dict[str, list[float]] = {}
    try:
        settings = NodeSettings(state_dir=workdir / "state", redis_url=f"unix://{sock}", queue="bench")
        identity = node_identity(settings)
        client = nacl.signing.SigningKey.generate()
        settings.authorized_keys_path.write_text(keys.public_key_text(client) + "\n")
        settings_data = settings.model_dump(mode="json")
        payload = new_envelope("40 + 2", [identity.node_id], client).to_json()

        supervisor = Supervisor(settings, connection, identity, node_authorizer(settings, identity))

        def queue_envelopes() -> None:
            batch = [new_envelope("40 + 2", [identity.node_id], client).to_json() for _ in range(n)]
            for i in range(0, n, 100):
                supervisor.submit_many(batch[i : i + 100])

        contenders: list[tuple[str, int, Callable[[], None], list[tuple[Callable, tuple]]]] = [
            (RUNNER_1, n, queue_envelopes, [(runner_drain, (settings_data, "bench-runner.1"))]),
            (RUNNER_2, n, queue_envelopes, [(runner_drain, (settings_data, f"bench-runner.{i}")) for i in (1, 2)]),
            ("arq (max_jobs 10)", n, lambda: peers.arq_enqueue(sock, payload, n), [(peers.arq_drain, (sock, n))]),
            ("dramatiq (8 threads)", n, lambda: peers.dramatiq_enqueue(sock, payload, n), [(peers.dramatiq_drain, (sock, n))]),
            ("celery (solo pool)", n, lambda: peers.celery_enqueue(sock, payload, n), [(peers.celery_drain, (sock, n))]),
            ("rq SimpleWorker", slow_n, lambda: peers.rq_enqueue(sock, payload, slow_n),
             [(peers.rq_simple_drain, (sock, slow_n))]),
            ("rq worker-pool (2 workers)", slow_n, lambda: peers.rq_enqueue(sock, payload, slow_n),
             [(peers.rq_pool_drain, (sock, slow_n))]),
        ]
        contenders = [contender for contender in contenders if any(part in contender[0] for part in args.only.split(","))]
        for round_index in range(args.rounds):
            for name, count, enqueue, drains in contenders:
                connection.flushall()
                enqueue()
                result = race(connection, drains, count)
                rounds.setdefault(name, []).append(result.per_second)
                commands.setdefault(name, []).append(result.commands)
                worker_cpu.setdefault(name, []).append(result.worker_cpu)
                server_cpu.setdefault(name, []).append(result.redis_cpu)
                console.print(f"round {round_index + 1}: {name}: {result.per_second:,.0f} jobs/s, {result.commands:.1f} "
                              f"Redis commands a job, CPU per job: worker {result.worker_cpu:.0f} µs, Redis {result.redis_cpu:.0f} µs")
    finally:
        stop(redis_process, 10)
        shutil.rmtree(workdir, ignore_errors=True)

    table = Table(title=f"{n} no-op jobs a drain (rq: {slow_n}), medians of {args.rounds} rounds, {os.cpu_count()} cores")
    for column in ("worker", "jobs/s", "min–max", "Redis commands/job", "worker CPU µs/job", "Redis CPU µs/job"):
        table.add_column(column, justify="left" if column == "worker" else "right")
    for name, values in rounds.items():
        table.add_row(name, f"{statistics.median(values):,.0f}", f"{min(values):,.0f}–{max(values):,.0f}",
                      f"{statistics.median(commands[name]):.1f}", f"{statistics.median(worker_cpu[name]):.0f}",
                      f"{statistics.median(server_cpu[name]):.0f}")
    console.print(table)
    if args.only:
        return
    arq = rounds["arq (max_jobs 10)"]
    versus_arq = [z / a for z, a in zip(rounds[RUNNER_1], arq, strict=True)]
    scaling = [two / one for two, one in zip(rounds[RUNNER_2], rounds[RUNNER_1], strict=True)]
    console.print(f"runner vs arq: {statistics.median(versus_arq):.2f}×; 2 runners vs 1: {statistics.median(scaling):.2f}×")
    report([
        Aim("runner, 1 process / arq (verify + Rhai vs no-op)", versus_arq, at_least=2.0),
        Aim("runners, 2 processes / 1 process", scaling, at_least=1.6),
        Aim("Redis commands per job, 1 runner", commands[RUNNER_1], at_most=12, unit="commands/job"),
    ], console)


if __name__ == "__main__":
    main()
