"""Deployments to many nodes through the coordinator: coord's CPU per node and the wall time from 100 to
10,000 nodes, against an ideal dispatcher and against one node at a time, in one run.

    .venv/bin/python bench/coord.py [--nodes 100,1000,3000,10000] [--latency 0.005] [--fleet-processes 2]

Real processes: redis-server, `zeronode ledger` (SQLite), `zeronode coord`, and the fleet simulator
(tests.support.fleet: every node's supervisor API, each on a loopback address of its own, as real nodes
have distinct origins) spread over --fleet-processes processes so that it is not the floor, answering
after --latency seconds (a network round trip to an edge node), each job taking --run-time. The largest
size's nodes are registered in the ledger and report free capacity; the client is a deployer on their farm.

For each size N:
- zeronode: one envelope whose selector asks for N nodes, submitted to coord and followed until all N
  are done. Coord chooses the nodes from the ledger and sends each the envelope with its placement
  ticket. Coord's CPU (user + system, from /proc) over the run, per node, and the wall time.
- ideal: this process hands an envelope and a ticket to the same N nodes and polls each job to its end
  on coord's schedule, with coord's HTTP client (aiohttp) and event loop (uvloop) and as many requests
  in flight as coord's `concurrency`, and nothing else: no store, no ledger, no retries, no replicas. The floor of a Python
  dispatcher on this machine.
- one at a time: POST, poll until done, next node, over a sample of nodes, scaled to N.

Also shown: the bytes each node is sent (envelope and ticket) against an envelope that names all N.
"""

from __future__ import annotations

import argparse
import asyncio
import concurrent.futures
import os
import resource
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import aiohttp
import httpx
import nacl.signing
import uvloop
from rich.console import Console
from rich.progress import track
from rich.table import Table

# The fleet simulator and the other helpers live in the tests' support package, imported from the
# repository root; this directory comes off the path, as its ledger.py would shadow the ledger package.
ROOT = Path(__file__).resolve().parents[1]
sys.path[:] = [str(ROOT), *(entry for entry in sys.path if Path(entry or ".").resolve() != ROOT / "bench")]

from tests.support.fleet import node_url  # noqa: E402
from tests.support.health import status, wait_healthy  # noqa: E402
from tests.support.nodes import CAPACITY, new_node_key, register_node  # noqa: E402
from tests.support.ports import free_port  # noqa: E402
from tests.support.processes import ZERONODE, stop  # noqa: E402
from tests.support.redis_server import start_redis_server  # noqa: E402
from tests.support.waiting import wait_until  # noqa: E402
from zeronode.api.ledger import NewUser, Usage  # noqa: E402
from zeronode.client.coord import CoordClient  # noqa: E402
from zeronode.client.ledger import LedgerClient  # noqa: E402
from zeronode.protocol import keys, ticket  # noqa: E402
from zeronode.protocol.envelope import Envelope, Selector, new_envelope  # noqa: E402
from zeronode.protocol.signed_requests import SignedRequestAuth  # noqa: E402

FARM = "bench"
CONCURRENCY = 256  # coord's default `concurrency`: the ideal dispatcher gets as many requests in flight
FIRST_POLL, POLL_FACTOR, MAX_POLL = 0.1, 1.5, 2.0  # coord.dispatcher's schedule
SEQUENTIAL_SAMPLE = 50
TICKS = os.sysconf("SC_CLK_TCK")

console = Console(width=max(Console().width, 140))


def register(ledger_url: str, fleet_port: int, index: int, key: nacl.signing.SigningKey) -> tuple[str, str]:
    """Node `index` registered and online in the ledger with all its capacity free, its supervisor in the
    fleet: (id, supervisor URL)."""
    url = node_url(fleet_port, index)
    free = Usage(vcpus=CAPACITY.vcpus, memory=CAPACITY.memory, disk=CAPACITY.disk)
    register_node(ledger_url, key, url, farm=FARM, version="bench", free=free)
    return keys.node_id(keys.public_key_text(key)), url


def cpu_of(pid: int) -> float:
    """Seconds of CPU (user and system) process `pid` has used."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / TICKS


def own_cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def placed(count: int, client: nacl.signing.SigningKey) -> Envelope:
    return new_envelope("42", [], client, selector=Selector(count=count, farms=[FARM]))


def sequential(client: nacl.signing.SigningKey, nodes: list[tuple[str, str]]) -> float:
    """Seconds a node, deploying to `nodes` one after the other (each named by the envelope)."""
    envelope = new_envelope("42", [node for node, _ in nodes], client)
    started = time.perf_counter()
    with httpx.Client(timeout=30) as http:
        for node, url in track(nodes, description="one node at a time", console=console, transient=True):
            job = http.post(f"{url}/v1/jobs", content=envelope.to_json()).json()["job_id"]
            reads = SignedRequestAuth(client, node)  # a supervisor shows a job to its signer, addressed to it
            while http.get(f"{url}/v1/jobs/{job}", auth=reads).json()["status"] != "finished":
                time.sleep(0.005)
    return (time.perf_counter() - started) / len(nodes)


async def ideal(nodes: list[tuple[str, str]], envelope: Envelope, coord_key: nacl.signing.SigningKey) -> tuple[float, float]:
    """(seconds of wall, seconds of this process's CPU) for the ideal dispatcher to run `envelope` on `nodes`."""
    body, digest = envelope.canonical_json(), ticket.envelope_digest(envelope)
    signer = SignedRequestAuth(coord_key)
    in_flight = asyncio.Semaphore(CONCURRENCY)
    connector = aiohttp.TCPConnector(limit=0, limit_per_host=8)
    async with aiohttp.ClientSession(connector=connector, timeout=aiohttp.ClientTimeout(total=120)) as session:

        async def one(node: str, url: str) -> None:
            headers = {"content-type": "application/json", ticket.HEADER: ticket.issue_for(envelope.id, digest, node, coord_key)}
            async with in_flight, session.post(f"{url}/v1/jobs", data=body, headers=headers) as answer:
                if answer.status != 202:
                    raise RuntimeError(f"{node} answered {answer.status}: {await answer.text()}")
            delay, path = FIRST_POLL, f"/v1/jobs/{envelope.id}"
            while True:
                await asyncio.sleep(delay)  # outside the semaphore: a wait holds no request slot
                async with in_flight, session.get(f"{url}{path}", headers=signer.headers("GET", path, node, b"")) as answer:
                    if (await answer.json())["status"] == "finished":
                        return
                delay = min(delay * POLL_FACTOR, MAX_POLL)

        cpu, started = own_cpu(), time.perf_counter()
        await asyncio.gather(*(one(node, url) for node, url in nodes))
        return time.perf_counter() - started, own_cpu() - cpu


def through_coord(
    envelope: Envelope, client: nacl.signing.SigningKey, coord_url: str, pids: dict[str, int], profile: Path | None
) -> dict:
    """Wall seconds and each process's CPU seconds for coord to place and run `envelope`; with `profile`,
    py-spy samples coord meanwhile into that file (collapsed stacks)."""
    profiler = None
    if profile is not None:
        profiler = subprocess.Popen([str(Path(sys.executable).parent / "py-spy"), "record", "-p", str(pids["coord"]),
                                     "-r", "250", "-f", "raw", "-o", str(profile), "--nonblocking"], stdout=subprocess.DEVNULL)
        time.sleep(1.0)  # attached
    before = {name: cpu_of(pid) for name, pid in pids.items()}
    started = time.perf_counter()
    with CoordClient(coord_url, key=client, timeout=60) as coord:
        accepted = coord.submit(envelope)
        *_, final = coord.follow(envelope.id, timeout=900, tasks=False)
    wall = time.perf_counter() - started
    if profiler is not None:
        profiler.send_signal(signal.SIGINT)  # py-spy writes what it sampled
        profiler.wait(60)
    if final["counts"] != {"succeeded": envelope.selector.count}:
        with CoordClient(coord_url, key=client) as coord:
            failed = [task["error"] for task in coord.deployment(envelope.id)["tasks"] if task["error"]][:3]
        raise SystemExit(f"coord's deployment ended {final['counts']}: {failed}")
    return {"wall": wall, "placed": accepted["placed"], **{name: cpu_of(pid) - before[name] for name, pid in pids.items()}}


def spread(values: list[float], scale: float = 1.0, digits: int = 2) -> str:
    """The median, and with several rounds ± half their range, in percent of the median."""
    median = statistics.median(values) * scale
    if len(values) == 1 or not median:
        return f"{median:.{digits}f}"
    return f"{median:.{digits}f} ±{(max(values) - min(values)) * scale / 2 / median:.0%}"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--nodes", default="100,1000,3000,10000", help="sizes, comma-separated")
    parser.add_argument("--latency", type=float, default=0.005, help="seconds per supervisor answer")
    parser.add_argument("--run-time", type=float, default=0.05, help="seconds each job runs")
    parser.add_argument("--fleet-processes", type=int, default=2)
    parser.add_argument("--rounds", type=int, default=1, help="deployments per size")
    parser.add_argument("--profile", type=Path, help="py-spy coord during the largest size's last round into this file")
    args = parser.parse_args()
    sizes = sorted({int(size) for size in args.nodes.split(",")})
    total = sizes[-1]

    state = Path(tempfile.mkdtemp(prefix="zn-bench-coord-"))
    processes: list[subprocess.Popen] = []

    def spawn(*argv: str) -> subprocess.Popen:
        processes.append(subprocess.Popen(argv, cwd=ROOT, stdout=subprocess.DEVNULL, stderr=open(state / f"{len(processes)}.log", "wb")))
        return processes[-1]

    try:
        redis_process, redis_socket = start_redis_server(state)
        processes.append(redis_process)
        ledger_port, coord_port, fleet_port = free_port(), free_port(), free_port()
        ledger_url, coord_url = f"http://127.0.0.1:{ledger_port}", f"http://127.0.0.1:{coord_port}"
        admin, client, coord_key = keys.generate(), keys.generate(), keys.generate()
        (state / "coord").mkdir()
        keys.save_private_key(coord_key, state / "coord" / "coord.key")
        node_keys = [new_node_key() for _ in range(total)]
        (state / "nodes.txt").write_text("".join(f"{node_id}\n" for _, node_id in node_keys))
        loopback = 'supervisor_networks = ["127.0.0.0/8"]\n'  # where the fleet's supervisors are
        (state / "ledger.toml").write_text(
            f'data_dir = "{state}/ledger"\nport = {ledger_port}\nreport_interval = 3600\n'
            f'admins = ["{keys.public_key_text(admin)}"]\n{loopback}'
        )
        (state / "coord.toml").write_text(
            f'state_dir = "{state}/coord"\nport = {coord_port}\nledger_url = "{ledger_url}"\n'
            f'redis_url = "unix://{redis_socket}"\nmax_targets = {max(total, 1000)}\n'
            f'submissions_per_minute = 1000\nconcurrency = {CONCURRENCY}\n{loopback}'
        )
        ledger = spawn(ZERONODE, "ledger", "--config", str(state / "ledger.toml"))
        share = -(-total // args.fleet_processes)
        fleets = [
            spawn(sys.executable, "-m", "tests.support.fleet", "--port", str(fleet_port), "--nodes", str(state / "nodes.txt"),
                  "--slice", f"{first}:{first + share}", f"--admin={keys.public_key_text(coord_key)}",
                  "--latency", str(args.latency), "--run-time", str(args.run_time), "--farm", FARM)
            for first in range(0, total, share)
        ]
        wait_healthy(ledger_url, 60, ledger)
        for first, fleet in zip(range(0, total, share), fleets, strict=True):
            answering = f"{node_url(fleet_port, first)}/v1/jobs/x"  # answers 404: the fleet has no health route
            wait_until(lambda url=answering: status(url) is not None, 120, "the fleet to answer", interval=0.05, process=fleet)
        coord = spawn(ZERONODE, "coord", "--config", str(state / "coord.toml"))
        wait_healthy(coord_url, 60, coord)

        with concurrent.futures.ThreadPoolExecutor(8) as pool:
            futures = [pool.submit(register, ledger_url, fleet_port, index, key) for index, (key, _) in enumerate(node_keys)]
            nodes = [f.result() for f in track(futures, description=f"registering {total} nodes", console=console, transient=True)]
        urls = dict(nodes)
        with LedgerClient(ledger_url, admin) as ledger_client:
            ledger_client.create_user(NewUser(
                public_key=keys.public_key_text(client), name="bench", roles=["deployer"], farms=[FARM], sequence=1
            ))

        per_node_sequential = sequential(client, nodes[:SEQUENTIAL_SAMPLE])
        pids = {"coord": coord.pid, "ledger": ledger.pid, "redis": redis_process.pid,
                **{f"fleet{i}": fleet.pid for i, fleet in enumerate(fleets)}}
        table = Table(title=f"coord fan-out: {os.cpu_count()} CPUs, supervisor latency {args.latency * 1000:.1f} ms, "
                            f"job run time {args.run_time * 1000:.0f} ms, {args.rounds} round(s) (median, range)",
                      title_justify="left")
        # Wall: seconds; CPU: each process's µs a node; bytes: what a node is sent (a selector's envelope and its
        # ticket, against an envelope naming all N).
        for column in ("nodes", "coord s", "ideal s", "×", "coord µs", "ideal µs", "×", "ledger µs", "fleet µs",
                       "bytes", "named"):
            table.add_column(column, justify="right", no_wrap=True)
        for size in sizes:
            runs = [through_coord(placed(size, client), client, coord_url, pids,
                                  args.profile if size == total and last == args.rounds - 1 else None)
                    for last in range(args.rounds)]
            chosen = [(node, urls[node]) for node in runs[0]["placed"]]
            ideals = [uvloop.run(ideal(chosen, placed(size, client), coord_key)) for _ in range(args.rounds)]
            coord_wall, ideal_wall = [r["wall"] for r in runs], [w for w, _ in ideals]
            coord_cpu, ideal_cpu = [r["coord"] / size for r in runs], [c / size for _, c in ideals]
            fleet_cpu = [sum(r[name] for name in r if name.startswith("fleet")) / size for r in runs]
            sample = placed(size, client)
            sent = len(sample.canonical_json()) + len(ticket.issue(sample, nodes[0][0], coord_key))
            named = len(new_envelope("42", [node for node, _ in nodes[:size]], client).canonical_json())
            table.add_row(
                str(size), spread(coord_wall), spread(ideal_wall),
                spread([c / i for c, i in zip(coord_wall, ideal_wall, strict=True)], digits=1),
                spread(coord_cpu, 1e6, 0), spread(ideal_cpu, 1e6, 0),
                spread([c / i for c, i in zip(coord_cpu, ideal_cpu, strict=True)], digits=1),
                spread([r["ledger"] / size for r in runs], 1e6, 0), spread(fleet_cpu, 1e6, 0), str(sent), str(named),
            )
        console.print(table)
        console.print(f"one node at a time: {per_node_sequential * 1000:.1f} ms a node (over {min(total, SEQUENTIAL_SAMPLE)})")
        biggest = statistics.median(coord_wall)
        console.print(f"fan-out vs one at a time: {per_node_sequential * sizes[-1] / biggest:.1f}x at {sizes[-1]} nodes")
    finally:
        for process in reversed(processes):
            process.terminate()
        for process in processes:
            stop(process, 10)
        shutil.rmtree(state, ignore_errors=True)


if __name__ == "__main__":
    main()
