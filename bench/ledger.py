"""The ledger under load: signed uptime reports per second, ledger processes on one PostgreSQL, listings at 100,000 nodes.

    .venv/bin/python bench/ledger.py [--nodes 3000] [--rounds 3] [--batch 500] [--connections 16]
                                     [--listing-sizes 1000,100000] [--no-postgres]

Every part runs `zeronode ledger` processes as an operator would, and drives
them over HTTP from a small asyncio HTTP/1.1 client on keep-alive connections,
with requests signed before the clock starts: the ledger, not the client, is
measured. Rounds alternate the phases, so a busy minute on a shared machine
falls on all of them.

1. One ledger process on SQLite (WAL), `--nodes` nodes each reporting once a
   phase with a later timestamp (so each report is a real update):
   (a) `GET /ping`, the app's no-op: the HTTP stack's own ceiling;
   (b) single reports, one signed `POST /v1/nodes/{id}/uptime` a request;
   (c) batches, `POST /v1/uptime/batch` carrying `--batch` copies of signed single requests.
2. 1, 2 and 4 ledger processes on one real PostgreSQL server this bench
   starts (tests.support.postgres), the same fleet's single reports shared
   out among them: reports/s for each, and how 2 and 4 scale on 1.
3. Every listing and lookup the API has, on a ledger of 1,000 and one of
   100,000 nodes (`--listing-sizes`, seeded with one bulk insert through the
   ledger's own tables): each one's time per request at the larger size over
   its time at the smaller. Pages are bounded (limit 100), so a listing that
   reads only its page stays flat.

Aims (issue 19): single reports ≥ 3,000/s and their ratio to the no-op;
batches ≥ 25,000 reports/s; 2 processes ≥ 1.5× one; every listing within 2×.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import http.client
import json
import os
import random
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import nacl.signing
from rich.console import Console
from rich.progress import track
from rich.table import Table

# The helpers live in the tests' support package, imported from the repository root; this directory
# comes off the path, as this very file would shadow the ledger package.
ROOT = Path(__file__).resolve().parents[1]
sys.path[:] = [str(ROOT), *(entry for entry in sys.path if Path(entry or ".").resolve() != ROOT / "bench")]
sys.path.insert(1, str(ROOT / "bench"))  # after the root: aims.py, not this file, is what it finds there

from aims import Aim, report  # noqa: E402
from ledger import schema  # noqa: E402
from ledger.database import Database  # noqa: E402
from tests.support.health import wait_healthy  # noqa: E402
from tests.support.http_load import drive, http_request  # noqa: E402
from tests.support.ports import free_port  # noqa: E402
from tests.support.postgres import postgres_server  # noqa: E402
from tests.support.processes import ZERONODE, stop  # noqa: E402
from zeronode.protocol import keys  # noqa: E402
from zeronode.protocol.signed_requests import (  # noqa: E402
    AUDIENCE_HEADER,
    KEY_HEADER,
    LEDGER,
    SIGNATURE_HEADER,
    TIMESTAMP_HEADER,
    request_signing_bytes,
)

console = Console()
NOOP, SINGLE, BATCHED = "noop", "single", "batched"
PROCESSES = (1, 2, 4)
FARMS = 5  # the seeded fleets' farms: at 1,000 nodes, each filter of the listings still matches a full page
BOOTED = int(time.time()) - 3600  # when the fleet's nodes booted


class Node:
    def __init__(self) -> None:
        self.key = nacl.signing.SigningKey.generate()
        self.public_key = keys.public_key_text(self.key)
        self.node_id = keys.node_id(self.public_key)

    def signed(self, method: str, target: str, body: str = "") -> dict[str, str]:
        """The four headers that sign `method target` with `body` for the ledger, now."""
        signed_at = int(time.time())
        signature = keys.sign(self.key, request_signing_bytes(method, target, LEDGER, signed_at, body.encode()))
        return {KEY_HEADER: self.public_key, AUDIENCE_HEADER: LEDGER, TIMESTAMP_HEADER: str(signed_at), SIGNATURE_HEADER: signature}

    def report(self, uptime: int, timestamp: int) -> dict:
        """A single-report request as signed by this node: target, headers, body."""
        body = json.dumps({"uptime": uptime, "timestamp": timestamp})
        target = f"/v1/nodes/{self.node_id}/uptime"
        return {"method": "POST", "target": target, "headers": self.signed("POST", target, body), "body": body}


def report_request(copy: dict) -> bytes:
    return http_request("POST", copy["target"], {"Content-Type": "application/json", **copy["headers"]}, copy["body"].encode())


def seed(database_url: str, public_keys: list[str], now: int) -> None:
    """Nodes put in the ledger's tables in one bulk insert (setup, not measured): a mix of farms, sizes,
    free capacity, schedules and states, so that every filter of the listings matches some of them."""
    db = Database(database_url)
    db.migrate()
    pick = random.Random(7)
    rows = []
    for public_key in public_keys:
        vcpus, state, schedule = pick.choice((4, 8, 16, 32, 64)), pick.random(), pick.random()
        rows.append({
            "node_id": keys.node_id(public_key), "public_key": public_key, "farm": f"farm-{pick.randrange(FARMS)}",
            "owner": None, "vcpus": vcpus, "memory": vcpus << 31, "disk": vcpus << 36, "supervisor_url": None,
            "mycelium_address": None, "version": "bench", "capabilities": {}, "labels": [],
            "registered_at": BOOTED, "updated_at": BOOTED, "restarts": 0,
            # a fifth never reported (offline); of the rest a fifth is degraded
            "last_report_at": None if state < 0.2 else now - 10, "last_uptime": None if state < 0.2 else now - 10 - BOOTED,
            "up_since": None if state < 0.2 else BOOTED, "degraded": state > 0.84,
            "health": None if state < 0.2 else {"disk": state <= 0.84},
            "schedule": "cordoned" if schedule < 0.2 else "active", "schedule_sequence": 0,
            "free_vcpus": pick.randrange(vcpus + 1), "free_memory": pick.randrange(vcpus << 31), "free_disk": pick.randrange(vcpus << 36),
            "reserved_vcpus": 0, "reserved_memory": 0, "reserved_disk": 0, "update_result": None,
        })
    with db.writing() as connection:
        for start in range(0, len(rows), 10_000):
            connection.execute(schema.nodes.insert(), rows[start : start + 10_000])
    db.close()


def random_public_key() -> str:
    """A made-up node key: listings read it back, nothing verifies with it."""
    return keys.b64url(os.urandom(32))


@contextlib.contextmanager
def ledgers(workdir: Path, database_url: str, count: int = 1, **settings: object) -> Iterator[list[int]]:
    """`count` ledger processes on `database_url` for the block; their ports."""
    processes, ports = [], []
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")]))}
    try:
        for _ in range(count):
            port = free_port()
            config = workdir / f"ledger-{port}.toml"
            lines = [f'database_url = "{database_url}"', f"port = {port}", "max_batch = 10000"]
            lines += [f"{name} = {json.dumps(value)}" for name, value in settings.items()]
            config.write_text("\n".join(lines) + "\n")
            processes.append(subprocess.Popen([ZERONODE, "ledger", "--config", str(config)], stderr=subprocess.DEVNULL, env=env))
            ports.append(port)
        for port, process in zip(ports, processes, strict=True):  # started together: each takes a second or two
            wait_healthy(f"http://127.0.0.1:{port}", 60, process)
        yield ports
    finally:
        for process in processes:
            stop(process, 30)


def rate(count: int, seconds: float) -> float:
    return count / seconds if seconds > 0 else float("inf")


class Clock:
    """Report timestamps: each phase's later than the last one's, so each report is a new one."""

    def __init__(self) -> None:
        self.last = 0
        self.booted = BOOTED  # as seed() has it: the reports carry on the seeded boot, no restart

    def next(self) -> int:
        self.last = max(int(time.time()), self.last + 1)
        return self.last


def singles(fleet: list[Node], clock: Clock) -> list[bytes]:
    timestamp = clock.next()
    return [report_request(node.report(timestamp - clock.booted, timestamp)) for node in fleet]


def measure_reports(ports: list[int], requests: list[bytes], connections: int) -> float:
    seconds, answers = asyncio.run(drive(ports, requests, connections))
    refused = [body for status, body in answers if status != 200]
    assert not refused, refused[:3]
    return rate(len(requests), seconds)


# -- 1. one process on SQLite ----------------------------------------------------


def one_process(args, workdir: Path, fleet: list[Node]) -> dict[str, list[float]]:
    rounds: dict[str, list[float]] = {NOOP: [], SINGLE: [], BATCHED: []}
    database_url = f"sqlite:///{workdir / 'ledger.db'}"
    clock = Clock()
    seed(database_url, [node.public_key for node in fleet], int(time.time()))
    with ledgers(workdir, database_url) as ports:
        ping = http_request("GET", "/ping")
        for _ in track(range(args.rounds), description="SQLite, one process: no-op, single, batched…", console=console):
            seconds, answers = asyncio.run(drive(ports, [ping] * len(fleet), args.connections))
            assert all(status == 200 for status, _ in answers)
            rounds[NOOP].append(rate(len(fleet), seconds))

            rounds[SINGLE].append(measure_reports(ports, singles(fleet, clock), args.connections))

            timestamp = clock.next()
            copies = [node.report(timestamp - clock.booted, timestamp) for node in fleet]
            batches = [
                http_request("POST", "/v1/uptime/batch", {"Content-Type": "application/json"},
                             json.dumps({"reports": copies[i : i + args.batch]}).encode())
                for i in range(0, len(copies), args.batch)
            ]
            seconds, answers = asyncio.run(drive(ports, batches, max(1, min(4, args.connections))))
            results = [item for status, body in answers for item in json.loads(body)]
            assert all(item["status_code"] == 200 and not item["duplicate"] for item in results), results[:3]
            assert len(results) == len(fleet)
            rounds[BATCHED].append(rate(len(fleet), seconds))
    return rounds


# -- 2. processes on one PostgreSQL --------------------------------------------------


def on_postgres(args, workdir: Path, fleet: list[Node]) -> dict[int, list[float]]:
    rounds: dict[int, list[float]] = {count: [] for count in PROCESSES}
    clock = Clock()
    with console.status("starting PostgreSQL…"), postgres_server("max_connections=200") as server:
        database_url = server.create_database()
        seed(database_url, [node.public_key for node in fleet], int(time.time()))
        with ledgers(workdir, database_url, max(PROCESSES)) as ports:
            for _ in track(range(args.rounds), description="PostgreSQL: 1, 2, 4 ledger processes…", console=console):
                for count in PROCESSES:
                    # As many clients for each count, enough to keep 4 processes busy: a report waits on the
                    # network, so 16 connections alone would measure the latency, not what the processes can do.
                    rounds[count].append(measure_reports(ports[:count], singles(fleet, clock), 4 * args.connections))
    return rounds


# -- 3. listings at 1,000 and 100,000 nodes ----------------------------------------------


def lookups(fleet_node: Node, node_ids: list[str], user_key: str) -> dict[str, tuple[str, bool]]:
    """Every read the API has that a fleet's size could slow down: name -> (target, signed by `fleet_node`)."""
    some_id, middle = node_ids[0], sorted(node_ids)[len(node_ids) // 2]
    reads = {
        "nodes": "/v1/nodes",
        "nodes, next page (after=)": f"/v1/nodes?after={middle}",
        "nodes ?ids= (20)": "/v1/nodes?ids=" + ",".join(node_ids[:20]),
        "nodes ?farm=": "/v1/nodes?farm=farm-3",
        "nodes ?schedule=cordoned": "/v1/nodes?schedule=cordoned",
        "nodes ?min_vcpus=64": "/v1/nodes?min_vcpus=64",
        "nodes ?min_memory=": f"/v1/nodes?min_memory={64 << 31}",
        "nodes ?min_disk=": f"/v1/nodes?min_disk={64 << 36}",
        # each of these matches about a quarter of the seeded nodes (seed())
        "nodes ?min_free_vcpus=16": "/v1/nodes?min_free_vcpus=16",
        "nodes ?min_free_memory=": f"/v1/nodes?min_free_memory={16 << 31}",
        "nodes ?min_free_disk=": f"/v1/nodes?min_free_disk={16 << 36}",
        "nodes, every filter": f"/v1/nodes?status=online&farm=farm-1&schedule=active&min_vcpus=8&min_free_vcpus=2&min_free_memory={1 << 30}",
        "node": f"/v1/nodes/{some_id}",
        "node's rights (signed)": f"/v1/nodes/{fleet_node.node_id}/rights",
        "user ?node=": f"/v1/users/{user_key}?node={some_id}",
        "policies": "/v1/policies",
        "releases": "/v1/releases",
        "follows": "/v1/follows",
        "channels": "/v1/channels",
    }
    for status in ("online", "degraded", "offline"):
        reads[f"nodes ?status={status}"] = f"/v1/nodes?status={status}"
    return {name: (target, name.endswith("(signed)")) for name, target in reads.items()}


def listing_times(ports: list[int], reads: dict[str, tuple[str, bool]], fleet_node: Node, repeat: int) -> dict[str, list[float]]:
    """Seconds per request of each read on each ledger (the median of `repeat`), the ledgers taking turns
    request by request, so that a busy moment of a shared machine falls on all of them alike."""
    times: dict[str, list[float]] = {}
    for name, (target, signed) in reads.items():
        headers = fleet_node.signed("GET", target) if signed else {}
        connections = [http.client.HTTPConnection("127.0.0.1", port, timeout=120) for port in ports]
        taken: list[list[float]] = [[] for _ in ports]
        for _ in range(repeat):
            for connection, seconds in zip(connections, taken, strict=True):
                connection.connect()  # uvicorn closes a connection idle for 5 s: while the other ledger reads a slow one
                started = time.perf_counter()
                connection.request("GET", target, headers=headers)
                response = connection.getresponse()
                body = response.read()
                seconds.append(time.perf_counter() - started)
                connection.close()
                assert response.status == 200, (name, body[:300])
        times[name] = [statistics.median(seconds) for seconds in taken]
    return times


def listings(args, workdir: Path) -> dict[str, list[float]]:
    """Per read: its time at the largest size over its time at the smallest, one value a round."""
    small, large = args.listing_sizes
    fleet_node, user = Node(), Node()  # a node that signs its rights request, a user to look up
    now = int(time.time())
    urls = {}
    with console.status(f"seeding ledgers of {small:,} and {large:,} nodes…"):
        for size in (small, large):
            urls[size] = f"sqlite:///{workdir / f'listing-{size}.db'}"
            made_up = [random_public_key() for _ in range(size - 1)]
            seed(urls[size], [fleet_node.public_key, *made_up], now)
            db = Database(urls[size])
            with db.writing() as connection:
                connection.execute(schema.users.insert(), {
                    "public_key": user.public_key, "name": "bench", "roles": ["deployer"], "nodes": [], "farms": ["farm-1"],
                    "created_at": now, "updated_at": now, "sequence": 1,
                })
                # a release rolled out on the default channel, which every node follows: the channels' progress
                connection.execute(schema.releases.insert(), {
                    "version": "1.0.0", "sha256": "0" * 64, "size": 1, "url": "https://example.org/1.0.0.tar",
                    "signatures": [], "signers": [], "hosted": False, "published_at": now, "published_by": user.public_key,
                })
                connection.execute(schema.channels.insert(), {
                    "name": "stable", "version": "1.0.0", "previous": None, "stage": "all", "paused": False, "halted": None,
                    "canary": {}, "window_seconds": 0, "stage_since": now, "sequence": 1,
                })
            db.close()
    node_ids = [keys.node_id(fleet_node.public_key)]
    reads = lookups(fleet_node, node_ids + [Node().node_id for _ in range(19)], user.public_key)
    ratios: dict[str, list[float]] = {name: [] for name in reads}
    # The seeded nodes' last reports stay recent (online, degraded) for the bench's length.
    with ledgers(workdir, urls[small], report_interval=3600) as (small_port,), \
            ledgers(workdir, urls[large], report_interval=3600) as (large_port,):
        listing_times([small_port, large_port], reads, fleet_node, 2)  # warm: SQLAlchemy's and SQLite's caches
        for _ in track(range(args.rounds), description=f"listings at {small:,} and {large:,} nodes…", console=console):
            for name, (at_small, at_large) in listing_times([small_port, large_port], reads, fleet_node, args.repeat).items():
                ratios[name].append(at_large / at_small)
    return ratios


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--nodes", type=int, default=3000, help="nodes, each reporting once a round and phase")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--batch", type=int, default=500, help="reports per batch request")
    parser.add_argument("--connections", type=int, default=16, help="concurrent keep-alive connections")
    parser.add_argument("--listing-sizes", default="1000,100000", help="the two fleet sizes the listings are timed at")
    parser.add_argument("--repeat", type=int, default=10, help="requests a listing is timed over, a round")
    parser.add_argument("--no-postgres", action="store_true", help="skip part 2 (where PostgreSQL is not installed)")
    args = parser.parse_args()
    args.listing_sizes = sorted(int(size) for size in args.listing_sizes.split(","))
    workdir = Path(tempfile.mkdtemp(prefix="zeronode-bench-ledger-"))
    try:
        with console.status(f"making {args.nodes} node keys…"):
            fleet = [Node() for _ in range(args.nodes)]
        alone = one_process(args, workdir, fleet)
        scaling = {} if args.no_postgres else on_postgres(args, workdir, fleet)
        flat = listings(args, workdir)
    finally:
        shutil.rmtree(workdir, ignore_errors=True)

    medians = {name: statistics.median(values) for name, values in alone.items()}
    single_vs_noop = [s / n for s, n in zip(alone[SINGLE], alone[NOOP], strict=True)]
    batched_vs_noop = [b / n for b, n in zip(alone[BATCHED], alone[NOOP], strict=True)]
    table = Table(title=f"{args.nodes} reports a phase, medians of {args.rounds} rounds, {os.cpu_count()} cores")
    table.add_column("path")
    table.add_column("per second", justify="right")
    table.add_row("SQLite, 1 process: no-op GET /ping (requests)", f"{medians[NOOP]:,.0f}")
    table.add_row("SQLite, 1 process: signed reports, one a request", f"{medians[SINGLE]:,.0f}")
    table.add_row(f"SQLite, 1 process: signed reports, {args.batch} a batch request", f"{medians[BATCHED]:,.0f}")
    for count, values in scaling.items():
        table.add_row(f"PostgreSQL, {count} process{'es' if count > 1 else ''}: signed reports, one a request",
                      f"{statistics.median(values):,.0f}")
    console.print(table)
    console.print(
        f"signed reports vs no-op: {statistics.median(single_vs_noop):.2f}× one a request, "
        f"{statistics.median(batched_vs_noop):.2f}× batched (median of {args.rounds} rounds)"
    )
    aims = [
        Aim("single reports, 1 process (SQLite)", alone[SINGLE], at_least=3000, unit="/s"),
        Aim("single reports / no-op GET /ping", single_vs_noop, at_least=0.5),
        Aim(f"batched reports ({args.batch} a request)", alone[BATCHED], at_least=25_000, unit="/s"),
    ]
    if scaling:
        for count in PROCESSES[1:]:
            # On 2 cores, 4 processes cannot beat 2: theirs is printed for information, against the same bound.
            aims.append(Aim(f"PostgreSQL: {count} ledger processes / 1", [n / one for n, one in zip(
                scaling[count], scaling[1], strict=True)], at_least=1.5))
    small, large = args.listing_sizes
    aims += [Aim(f"{name}: {large:,} / {small:,} nodes", values, at_most=2) for name, values in flat.items()]
    report(aims, console)


if __name__ == "__main__":
    main()
