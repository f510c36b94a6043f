"""The supervisor's accept path over HTTP, against the HTTP ceiling and rq's own enqueue, in one run.

    .venv/bin/python bench/supervisor.py [--jobs 3000] [--rounds 3] [--connections 8] [--batch 100]

One redis-server (append-only, as a node's), one `zeronode supervisor` process
(every check: signature, window, target, rights, compile, replay, the journal),
and, round after round, alternating peer and zeronode:

(a) the ceiling: a no-op POST on the same stack (bench/noop_server.py: the same
    app factory, middleware, kind of route and uvicorn call), driven by the same
    client; and, for comparison, the same no-op on a FastAPI route;
(b) zeronode, one envelope a request: `POST /v1/jobs` on `--connections`
    keep-alive connections;
(c) rq, one at a time: `Queue.enqueue` in this process, the same payload size;
(d) zeronode's batch endpoint: `POST /v1/jobs/batch`, `--batch` envelopes a request;
(e) rq `Queue.enqueue_many`, in this process, `--batch` jobs a call.

Envelopes are signed and requests written before the clock starts
(tests.support.http_load): the server, not the client, is measured. The
supervisor's CPU per envelope (its process's user+system time) is printed too:
on a shared machine it moves less than the rates do.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import nacl.signing
import redis
from rich.console import Console
from rich.progress import track
from rich.table import Table
from rq import Queue

from aims import Aim, report  # bench/aims.py, imported while this directory is still on the path

# The helpers live in the tests' support package, imported from the repository root; this directory
# comes off the path, as this very file would shadow the supervisor package.
ROOT = Path(__file__).resolve().parents[1]
sys.path[:] = [str(ROOT), *(entry for entry in sys.path if Path(entry or ".").resolve() != ROOT / "bench")]

from tests.support.health import wait_healthy  # noqa: E402
from tests.support.http_load import drive, http_request  # noqa: E402
from tests.support.node_processes import supervisor_process  # noqa: E402
from tests.support.ports import free_port  # noqa: E402
from tests.support.processes import stop  # noqa: E402
from tests.support.redis_server import start_redis_server  # noqa: E402
from zeronode.node.identity import node_identity  # noqa: E402
from zeronode.node.queue.jobs import open_queue  # noqa: E402
from zeronode.node.settings import NodeSettings  # noqa: E402
from zeronode.protocol import keys  # noqa: E402
from zeronode.protocol.envelope import new_envelope  # noqa: E402

console = Console()
NOOP, NOOP_FASTAPI, SINGLE, RQ_ONE, BATCH, RQ_MANY = "noop", "noop fastapi", "single", "rq enqueue", "batch", "rq enqueue_many"
NAMES = {
    NOOP: "no-op POST, same stack (requests)",
    NOOP_FASTAPI: "no-op POST on a FastAPI route, for comparison",
    SINGLE: "zeronode POST /v1/jobs, one envelope a request",
    RQ_ONE: "rq Queue.enqueue, one at a time, in-process",
    BATCH: "zeronode POST /v1/jobs/batch",
    RQ_MANY: "rq Queue.enqueue_many, in-process",
}
JSON = {"Content-Type": "application/json"}


def rate(count: int, seconds: float) -> float:
    return count / seconds if seconds > 0 else float("inf")


def cpu_seconds(pid: int) -> float:
    """User and system time of process `pid` so far."""
    fields = Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def start_noop_server() -> tuple[subprocess.Popen, int]:
    port = free_port()
    process = subprocess.Popen([sys.executable, str(ROOT / "bench" / "noop_server.py"), str(port)], stderr=subprocess.DEVNULL)
    try:
        wait_healthy(f"http://127.0.0.1:{port}", 60, process)
    except AssertionError:
        stop(process, 10)
        raise
    return process, port


def accepted(answers: list[tuple[int, bytes]]) -> None:
    refused = [(status, body) for status, body in answers if status != 202]
    assert not refused, refused[:3]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--jobs", type=int, default=3000, help="jobs per round and path")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--connections", type=int, default=8, help="keep-alive connections, one request in flight each")
    parser.add_argument("--batch", type=int, default=100, help="envelopes per batch request, jobs per enqueue_many")
    parser.add_argument("--batch-connections", type=int, default=2, help="connections sending batch requests")
    args = parser.parse_args()
    n = args.jobs
    workdir = Path(tempfile.mkdtemp(prefix="zeronode-bench-supervisor-"))
    redis_process, sock = start_redis_server(workdir)
    connection = redis.Redis(unix_socket_path=str(sock))
    rounds: dict[str, list[float]] = {name: [] for name in NAMES}
    cpu: dict[str, list[float]] = {NOOP: [], NOOP_FASTAPI: [], SINGLE: [], BATCH: []}  # the server's CPU µs per request or envelope
    noop = None
    try:
        settings = NodeSettings(state_dir=workdir / "state", redis_url=f"unix://{sock}", queue="bench")
        identity = node_identity(settings)
        client = nacl.signing.SigningKey.generate()
        settings.authorized_keys_path.write_text(keys.public_key_text(client) + "\n")

        def envelopes(count: int) -> list[bytes]:
            return [new_envelope("40 + 2", [identity.node_id], client).to_json().encode() for _ in range(count)]

        payload = envelopes(1)[0].decode()  # rq's jobs carry an envelope's size
        noop_requests = {path: http_request("POST", path, JSON, envelopes(1)[0]) for path in ("/noop", "/noop-fastapi")}
        with console.status("starting the no-op server and the supervisor…"):
            noop, noop_port = start_noop_server()
            serving = supervisor_process(settings, workdir)
            url, process = serving.__enter__()
        port = int(url.rsplit(":", 1)[1])
        try:
            for _ in track(range(args.rounds), description="rounds: peer, then zeronode…", console=console):
                for name, path in ((NOOP, "/noop"), (NOOP_FASTAPI, "/noop-fastapi")):
                    before = cpu_seconds(noop.pid)
                    seconds, answers = asyncio.run(drive(noop_port, [noop_requests[path]] * n, args.connections))
                    cpu[name].append((cpu_seconds(noop.pid) - before) / n * 1e6)
                    accepted(answers)
                    rounds[name].append(rate(n, seconds))

                singles = [http_request("POST", "/v1/jobs", JSON, raw) for raw in envelopes(n)]
                before = cpu_seconds(process.pid)
                seconds, answers = asyncio.run(drive(port, singles, args.connections))
                cpu[SINGLE].append((cpu_seconds(process.pid) - before) / n * 1e6)
                accepted(answers)
                rounds[SINGLE].append(rate(n, seconds))

                queue = open_queue(connection, "baseline")
                started = time.perf_counter()
                for _ in range(n):
                    queue.enqueue("rq_noop.noop", payload)
                rounds[RQ_ONE].append(rate(n, time.perf_counter() - started))

                raws = envelopes(n)
                batches = [
                    http_request("POST", "/v1/jobs/batch", JSON, b"[" + b",".join(raws[i : i + args.batch]) + b"]")
                    for i in range(0, n, args.batch)
                ]
                before = cpu_seconds(process.pid)
                seconds, answers = asyncio.run(drive(port, batches, args.batch_connections))
                cpu[BATCH].append((cpu_seconds(process.pid) - before) / n * 1e6)
                assert all(status == 200 for status, _ in answers), answers[:3]
                assert all(b'"status_code":202' in body and b'"error"' not in body for _, body in answers), answers[:1]
                rounds[BATCH].append(rate(n, seconds))

                data = [Queue.prepare_data("rq_noop.noop", (payload,)) for _ in range(n)]
                started = time.perf_counter()
                for i in range(0, n, args.batch):
                    queue.enqueue_many(data[i : i + args.batch])
                rounds[RQ_MANY].append(rate(n, time.perf_counter() - started))
                connection.flushall()  # each round on an empty Redis: the journal keeps its rows
        finally:
            serving.__exit__(None, None, None)
    finally:
        if noop is not None:
            stop(noop, 10)
        stop(redis_process, 10)
        shutil.rmtree(workdir, ignore_errors=True)

    table = Table(title=f"{n} jobs a round and path, medians of {args.rounds} rounds, {args.connections} connections, "
                        f"{os.cpu_count()} cores")
    table.add_column("path")
    table.add_column("per second", justify="right")
    table.add_column("server CPU per envelope (request)", justify="right")
    for name, values in rounds.items():
        table.add_row(NAMES[name] if name not in (BATCH, RQ_MANY) else f"{NAMES[name]}, {args.batch} a request",
                      f"{statistics.median(values):,.0f}",
                      f"{statistics.median(cpu[name]):,.0f} µs" if name in cpu else "")
    console.print(table)

    def ratios(ours: str, theirs: str) -> list[float]:
        return [a / b for a, b in zip(rounds[ours], rounds[theirs], strict=True)]

    console.print(
        f"supervisor over HTTP vs no-op: {statistics.median(ratios(SINGLE, NOOP)):.2f}×, "
        f"vs rq enqueue {statistics.median(ratios(SINGLE, RQ_ONE)):.2f}×; "
        f"batch endpoint vs rq enqueue_many {statistics.median(ratios(BATCH, RQ_MANY)):.2f}×"
    )
    report([
        Aim(f"supervisor over HTTP, one envelope a request, {args.connections} connections", rounds[SINGLE],
            at_least=3000, unit="/s"),
        Aim("  … / no-op POST on the same stack", ratios(SINGLE, NOOP), at_least=0.5),
        Aim("  … / rq Queue.enqueue, in-process", ratios(SINGLE, RQ_ONE), at_least=1.0),
        Aim(f"batch endpoint ({args.batch} a request) / rq enqueue_many", ratios(BATCH, RQ_MANY), at_least=1.0),
    ], console)


if __name__ == "__main__":
    main()
