"""From signed script to executed job, against raw rq, in one run on one machine.

    .venv/bin/python bench/pipeline.py [--jobs 2000]

Baseline (a): raw rq. N no-op Python jobs carrying the same payload size,
enqueued one at a time with `Queue.enqueue`, then drained by rq's SimpleWorker.
zeronode (b): N signed trivial scripts (`40 + 2`) accepted by the supervisor's
enqueue path (in this process: one at a time and in batches of 100; and over
HTTP to a `zeronode supervisor` process), then drained by one runner, which verifies each
envelope again and evaluates it in Rhai. Latency from submit to start (p50/p99)
is measured with the worker running while jobs arrive. Aims: runner ≥ 4× the
SimpleWorker's throughput, supervisor ≥ 3× rq's one-at-a-time enqueue.

What each drain costs Redis per job: the round trips its client made (a pipeline
is one; counted on the client's connections, the heartbeat thread's included)
and the commands Redis ran (INFO's total_commands_processed: those inside Lua
scripts count one each).
"""

from __future__ import annotations

import argparse
import multiprocessing
import os
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path

import httpx
import nacl.signing
import redis
from rich.console import Console
from rich.progress import track
from rich.table import Table
from rq import SimpleWorker
from rq.job import Job

# The helpers live in the tests' support package, imported from the repository root; this directory
# stays on the path after it: rq_noop, the baseline's job function, is imported from here.
ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT), str(ROOT / "bench")]

from aims import Aim, report  # noqa: E402
from runner.executor import Executor  # noqa: E402
from runner.worker import Runner  # noqa: E402
from supervisor.service import Supervisor  # noqa: E402
from tests.support.node_processes import supervisor_process  # noqa: E402
from tests.support.processes import stop  # noqa: E402
from tests.support.redis_server import start_redis_server  # noqa: E402
from zeronode.node.authorizer import node_authorizer  # noqa: E402
from zeronode.node.identity import node_identity  # noqa: E402
from zeronode.node.queue.jobs import open_queue  # noqa: E402
from zeronode.node.settings import NodeSettings  # noqa: E402
from zeronode.protocol import keys  # noqa: E402
from zeronode.protocol.envelope import new_envelope  # noqa: E402

console = Console()
ROUNDED = (
    "rq enqueue, one at a time",
    "rq SimpleWorker drain",
    "supervisor accept, one at a time",
    "runner drain (verify + Rhai)",
    "supervisor accept, batches of 100",
)


def rate(count: int, seconds: float) -> float:
    return count / seconds if seconds > 0 else float("inf")


class CountingConnection(redis.UnixDomainSocketConnection):
    """A connection that counts the requests it sends: each is one round trip (a pipeline sends one)."""

    sent = 0

    def send_packed_command(self, command, check_health=True):
        CountingConnection.sent += 1
        super().send_packed_command(command, check_health)


class RedisWork:
    """Round trips and commands per job, over drains: medians of the drains measured."""

    def __init__(self) -> None:
        self.round_trips: list[float] = []
        self.commands: list[float] = []

    def measure(self, connection: redis.Redis, drain) -> int:
        """Run `drain` (it returns how many jobs it ran) and record Redis's work per job; returns the count."""
        commands = connection.info("stats")["total_commands_processed"]
        sent = CountingConnection.sent
        count = drain()
        self.round_trips.append((CountingConnection.sent - sent - 1) / count)  # less the INFO below
        self.commands.append((connection.info("stats")["total_commands_processed"] - commands - 1) / count)
        return count

    def summary(self) -> str:
        return f"{statistics.median(self.round_trips):.2f} round trips, {statistics.median(self.commands):.1f} commands"


def counted_connection(sock: Path) -> redis.Redis:
    """A client of the Redis at `sock` whose round trips are counted (CountingConnection)."""
    return redis.Redis(connection_pool=redis.ConnectionPool(connection_class=CountingConnection, path=str(sock)))


def latencies(connection: redis.Redis, ids: list[str], serializer) -> tuple[float, float]:
    jobs = [job for job in Job.fetch_many(ids, connection, serializer=serializer) if job and job.started_at]
    waits = sorted((job.started_at - job.enqueued_at).total_seconds() * 1000 for job in jobs)
    return statistics.median(waits), waits[int(len(waits) * 0.99) - 1]


def rq_worker_process(sock: str, jobs: int) -> None:
    sys.path.insert(0, str(Path(__file__).parent))
    connection = redis.Redis(unix_socket_path=sock)
    queue = open_queue(connection, "baseline")
    SimpleWorker([queue], connection=connection, serializer=queue.serializer).work(max_jobs=jobs, logging_level="ERROR")


def runner_process(settings_data: dict) -> None:
    from runner.pool import run_runner

    run_runner(NodeSettings.model_validate(settings_data))


def in_process(target, *args) -> multiprocessing.process.BaseProcess:
    """The worker in a process of its own, as in production (and for its signal handlers)."""
    process = multiprocessing.get_context("spawn").Process(target=target, args=args, daemon=True)
    process.start()
    time.sleep(1.5)  # let it import and start listening before jobs arrive
    return process


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--jobs", type=int, default=2000, help="jobs per round")
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    n, rounds_count = args.jobs, args.rounds
    workdir = Path(tempfile.mkdtemp(prefix="zeronode-bench-"))
    redis_process, sock = start_redis_server(workdir)
    connection = counted_connection(sock)
    results: dict[str, float] = {}
    rq_work, runner_work = RedisWork(), RedisWork()
    try:
        settings = NodeSettings(state_dir=workdir / "state", redis_url=f"unix://{sock}", queue="bench")
        identity = node_identity(settings)
        client = nacl.signing.SigningKey.generate()
        settings.authorized_keys_path.write_text(keys.public_key_text(client) + "\n")
        envelopes = lambda count: [new_envelope("40 + 2", [identity.node_id], client) for _ in range(count)]  # noqa: E731
        payload = envelopes(1)[0].to_json()

        def new_runner():
            queue = open_queue(connection, settings.queue)
            executor = Executor(identity.node_id, settings.limits, settings.verify, node_authorizer(settings, identity))
            return Runner(settings, executor, queue)

        def new_supervisor():
            return Supervisor(settings, connection, identity, node_authorizer(settings, identity))

        # The machine's speed drifts: alternate baseline and zeronode, round after round,
        # and report the median of the per-round ratios.
        rounds: dict[str, list[float]] = {name: [] for name in ROUNDED}
        for _ in track(range(rounds_count), description="rounds: rq, then zeronode…", console=console):
            connection.flushall()
            queue = open_queue(connection, "baseline")
            started = time.perf_counter()
            for _ in range(n):
                queue.enqueue("rq_noop.noop", payload)
            rounds["rq enqueue, one at a time"].append(rate(n, time.perf_counter() - started))
            started = time.perf_counter()
            worker = SimpleWorker([queue], connection=connection, serializer=queue.serializer)
            rq_work.measure(connection, lambda: worker.work(burst=True, logging_level="ERROR") and n)
            rounds["rq SimpleWorker drain"].append(rate(n, time.perf_counter() - started))

            connection.flushall()
            supervisor = new_supervisor()
            batch = [e.to_json() for e in envelopes(n)]
            started = time.perf_counter()
            for raw in batch:
                supervisor.submit(raw)
            rounds["supervisor accept, one at a time"].append(rate(n, time.perf_counter() - started))
            started = time.perf_counter()
            drained = runner_work.measure(connection, lambda: new_runner().work(burst=True))
            rounds["runner drain (verify + Rhai)"].append(rate(drained, time.perf_counter() - started))

            connection.flushall()
            batch = [e.to_json() for e in envelopes(n)]
            started = time.perf_counter()
            for i in range(0, n, 100):
                supervisor.submit_many(batch[i : i + 100])
            rounds["supervisor accept, batches of 100"].append(rate(n, time.perf_counter() - started))
        results.update({name: statistics.median(values) for name, values in rounds.items()})
        per_round = {
            "drain": [z / r for z, r in zip(rounds["runner drain (verify + Rhai)"], rounds["rq SimpleWorker drain"], strict=True)],
            "accept": [z / r for z, r in zip(rounds["supervisor accept, one at a time"], rounds["rq enqueue, one at a time"], strict=True)],
            "batched": [z / r for z, r in zip(rounds["supervisor accept, batches of 100"], rounds["rq enqueue, one at a time"], strict=True)],
        }
        ratios = {name: statistics.median(values) for name, values in per_round.items()}

        with console.status("latency, and HTTP…"):
            connection.flushall()
            queue = open_queue(connection, "baseline")
            ids = []
            worker = in_process(rq_worker_process, str(sock), n // 4)
            for _ in range(n // 4):
                ids.append(queue.enqueue("rq_noop.noop", payload).id)
                time.sleep(0.002)
            worker.join(120)
            rq_latency = latencies(connection, ids, queue.serializer)

            connection.flushall()
            http_count = max(200, n // 4)
            batch = [e.to_json() for e in envelopes(http_count)]
            with supervisor_process(settings, workdir) as (url, _), httpx.Client(base_url=url) as http:
                started = time.perf_counter()
                for raw in batch:
                    assert http.post("/v1/jobs", content=raw).status_code == 202
                results["supervisor over HTTP, one request each"] = rate(http_count, time.perf_counter() - started)

            connection.flushall()
            worker = in_process(runner_process, settings.model_dump(mode="json"))
            ids = []
            for raw in [e.to_json() for e in envelopes(n // 4)]:
                ids.append(supervisor.submit(raw).job_id)
                time.sleep(0.002)
            deadline = time.monotonic() + 120
            while supervisor.queue.finished_job_registry.get_job_count() < len(ids) and time.monotonic() < deadline:
                time.sleep(0.05)
            worker.terminate()
            worker.join(10)
            zn_latency = latencies(connection, ids, supervisor.queue.serializer)
    finally:
        stop(redis_process, 10)
        shutil.rmtree(workdir, ignore_errors=True)

    table = Table(title=f"{n} jobs a round, medians of {rounds_count} rounds, {os.cpu_count()} cores")
    table.add_column("path")
    table.add_column("jobs/s", justify="right")
    for name, per_second in results.items():
        table.add_row(name, f"{per_second:,.0f}")
    console.print(table)
    http = results["supervisor over HTTP, one request each"] / results["rq enqueue, one at a time"]
    console.print(f"runner vs rq SimpleWorker: {ratios['drain']:.2f}× (median of {rounds_count} rounds; aim ≥ 4×)")
    console.print(
        f"supervisor vs rq enqueue: {ratios['accept']:.2f}× one at a time, {ratios['batched']:.2f}× in batches of 100 "
        f"(aim ≥ 3×), {http:.2f}× over HTTP"
    )
    console.print(f"Redis per job: rq SimpleWorker {rq_work.summary()}; runner {runner_work.summary()}")
    console.print(
        f"submit → start latency: rq p50 {rq_latency[0]:.1f} ms p99 {rq_latency[1]:.1f} ms; "
        f"zeronode p50 {zn_latency[0]:.1f} ms p99 {zn_latency[1]:.1f} ms"
    )
    report([
        Aim("runner drain / rq SimpleWorker drain", per_round["drain"], at_least=4),
        Aim("supervisor accept in-process, one at a time / rq enqueue", per_round["accept"], at_least=3),
        Aim("supervisor accept in-process, batches of 100 / rq enqueue", per_round["batched"], at_least=3),
    ], console)


if __name__ == "__main__":
    main()
