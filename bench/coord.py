"""A deployment to many nodes through the coordinator, against doing it one node at a time, in one run.

    .venv/bin/python bench/coord.py [--nodes 1000] [--latency 0.005]

Real processes: redis-server, `zeronode ledger` (SQLite), `zeronode coord`, and one
`python -m tests.support.fleet` serving every node's supervisor API (each on a
loopback address of its own, as real nodes have distinct origins) with
`--latency` seconds per answer (a network round trip to an edge node) and jobs that
take `--run-time`. N nodes are registered in the ledger and report uptime; the
client is a deployer on their farm, and the fleet lets coord read every job.

Baseline (a): a client that deploys node after node: POST the envelope to the
node's supervisor, poll until its job is done, next node. zeronode (b): one
envelope targeting all N, submitted to coord, followed until every node is done.
The ratio a/b is how many times faster the fan-out is; b expressed in baseline
"nodes' worth" says how many sequential round trips it cost.
"""

from __future__ import annotations

import argparse
import concurrent.futures
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx
import nacl.signing
from rich.console import Console
from rich.progress import track

# The fleet simulator and the other helpers live in the tests' support package, imported from the
# repository root; this directory comes off the path, as its ledger.py would shadow the ledger package.
ROOT = Path(__file__).resolve().parents[1]
sys.path[:] = [str(ROOT), *(entry for entry in sys.path if Path(entry or ".").resolve() != ROOT / "bench")]

from tests.support.fleet import node_url  # noqa: E402
from tests.support.health import status, wait_healthy  # noqa: E402
from tests.support.nodes import new_node_key, register_node  # noqa: E402
from tests.support.ports import free_port  # noqa: E402
from tests.support.processes import ZERONODE, stop  # noqa: E402
from tests.support.redis_server import start_redis_server  # noqa: E402
from tests.support.waiting import wait_until  # noqa: E402
from zeronode.api.ledger import NewUser  # noqa: E402
from zeronode.client.coord import CoordClient  # noqa: E402
from zeronode.client.ledger import LedgerClient  # noqa: E402
from zeronode.protocol import keys  # noqa: E402
from zeronode.protocol.envelope import new_envelope  # noqa: E402
from zeronode.protocol.signed_requests import SignedRequestAuth  # noqa: E402

FARM = "bench"

console = Console()


def register(ledger_url: str, fleet_port: int, index: int, key: nacl.signing.SigningKey) -> tuple[str, str]:
    """Node `index` registered and online in the ledger, its supervisor in the fleet: (id, supervisor URL)."""
    url = node_url(fleet_port, index)
    register_node(ledger_url, key, url, farm=FARM, version="bench")
    return keys.node_id(keys.public_key_text(key)), url


def sequential(client: nacl.signing.SigningKey, nodes: list[tuple[str, str]]) -> float:
    envelope = new_envelope("42", [node for node, _ in nodes], client)
    started = time.perf_counter()
    with httpx.Client(timeout=30) as http:
        for node, url in track(nodes, description="(a) one node at a time", console=console, transient=True):
            job = http.post(f"{url}/v1/jobs", content=envelope.to_json()).json()["job_id"]
            reads = SignedRequestAuth(client, node)  # a supervisor shows a job to its signer, addressed to it
            while http.get(f"{url}/v1/jobs/{job}", auth=reads).json()["status"] != "finished":
                time.sleep(0.005)
    return time.perf_counter() - started


def fan_out(client: nacl.signing.SigningKey, nodes: list[tuple[str, str]], coord_url: str) -> tuple[float, dict]:
    envelope = new_envelope("42", [node for node, _ in nodes], client)
    started = time.perf_counter()
    with CoordClient(coord_url, key=client) as coord:
        coord.submit(envelope)
        *_, final = coord.follow(envelope.id, timeout=600, tasks=False)
    return time.perf_counter() - started, final


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--nodes", type=int, default=1000)
    parser.add_argument("--latency", type=float, default=0.005, help="seconds per supervisor answer")
    parser.add_argument("--run-time", type=float, default=0.05, help="seconds each job runs")
    args = parser.parse_args()

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
        node_keys = [new_node_key() for _ in range(args.nodes)]
        (state / "nodes.txt").write_text("".join(f"{node_id}\n" for _, node_id in node_keys))
        loopback = 'supervisor_networks = ["127.0.0.0/8"]\n'  # where the fleet's supervisors are
        (state / "ledger.toml").write_text(
            f'data_dir = "{state}/ledger"\nport = {ledger_port}\nreport_interval = 600\n'
            f'admins = ["{keys.public_key_text(admin)}"]\n{loopback}'
        )
        (state / "coord.toml").write_text(
            f'state_dir = "{state}/coord"\nport = {coord_port}\nledger_url = "{ledger_url}"\n'
            f'redis_url = "unix://{redis_socket}"\nmax_targets = {max(args.nodes, 1000)}\n{loopback}'
        )
        ledger = spawn(ZERONODE, "ledger", "--config", str(state / "ledger.toml"))
        fleet = spawn(sys.executable, "-m", "tests.support.fleet", "--port", str(fleet_port),
                      "--nodes", str(state / "nodes.txt"), f"--admin={keys.public_key_text(coord_key)}",
                      "--latency", str(args.latency), "--run-time", str(args.run_time))
        wait_healthy(ledger_url, 60, ledger)
        fleet_job = f"{node_url(fleet_port, 0)}/v1/jobs/x"  # answers 404: the fleet has no health route
        wait_until(lambda: status(fleet_job) is not None, 60, "the fleet to answer", interval=0.05, process=fleet)
        coord = spawn(ZERONODE, "coord", "--config", str(state / "coord.toml"))
        wait_healthy(coord_url, 60, coord)

        with concurrent.futures.ThreadPoolExecutor(8) as pool:
            futures = [pool.submit(register, ledger_url, fleet_port, index, key) for index, (key, _) in enumerate(node_keys)]
            nodes = [f.result() for f in track(futures, description="registering nodes", console=console, transient=True)]
        with LedgerClient(ledger_url, admin) as ledger_client:
            ledger_client.create_user(NewUser(
                public_key=keys.public_key_text(client), name="bench", roles=["deployer"], farms=[FARM], sequence=1
            ))

        baseline = sequential(client, nodes)
        ours, final = fan_out(client, nodes, coord_url)
        assert final["counts"] == {"succeeded": args.nodes}, final["counts"]
        per_node = baseline / args.nodes
        console.print(f"nodes: {args.nodes}; supervisor answer latency {args.latency * 1000:.1f} ms; job run time "
                      f"{args.run_time * 1000:.0f} ms; {os.cpu_count()} CPUs")
        console.print(f"(a) one node at a time: {baseline:.2f} s ({per_node * 1000:.1f} ms a node)")
        console.print(f"(b) coord fan-out:      {ours:.2f} s, all {args.nodes} succeeded "
                      f"(= {ours / per_node:.0f} sequential nodes' worth)")
        console.print(f"fan-out vs one at a time: {baseline / ours:.1f}x")
    finally:
        for process in reversed(processes):
            process.terminate()
        for process in processes:
            stop(process, 10)
        shutil.rmtree(state, ignore_errors=True)


if __name__ == "__main__":
    main()
