"""Signed uptime reports ingested per second by one `zeronode ledger` process on SQLite, over HTTP.

    .venv/bin/python bench/ledger.py [--nodes 2000] [--rounds 3] [--batch 500] [--connections 16]

One ledger process (uvicorn, SQLite in WAL mode, every request signature
checked), and in the same run, alternating round after round:

(a) raw HTTP: `GET /ping`, the app's no-op endpoint: what the HTTP stack
    itself costs, the ceiling for one request a report;
(b) single reports: one signed `POST /v1/nodes/{id}/uptime` a report;
(c) batched: `POST /v1/uptime/batch` carrying `--batch` reports, each a copy
    of a single signed request, verified on its own.

Every node reports once a round with a later timestamp, so each report is a
real update, never a duplicate. The client is a small asyncio HTTP/1.1 loop on
keep-alive connections, with requests signed before the clock starts: the
ledger, not the client, is measured. Aim: 5,000 reports/s (300,000 nodes
reporting every minute).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import nacl.signing
from rich.console import Console
from rich.progress import track
from rich.table import Table

# The helpers live in the tests' support package, imported from the repository root; this directory
# comes off the path, as this very file would shadow the ledger package.
ROOT = Path(__file__).resolve().parents[1]
sys.path[:] = [str(ROOT), *(entry for entry in sys.path if Path(entry or ".").resolve() != ROOT / "bench")]

from ledger import nodes  # noqa: E402
from ledger.database import Database  # noqa: E402
from tests.support.health import wait_healthy  # noqa: E402
from tests.support.http_load import drive, http_request  # noqa: E402
from tests.support.ports import free_port  # noqa: E402
from tests.support.processes import ZERONODE, stop  # noqa: E402
from zeronode.api.ledger import Capacity, NodeRegistration  # noqa: E402
from zeronode.protocol import keys  # noqa: E402
from zeronode.protocol.signed_requests import (
    AUDIENCE_HEADER,
    KEY_HEADER,
    LEDGER,
    SIGNATURE_HEADER,
    TIMESTAMP_HEADER,
    request_signing_bytes,
)  # noqa: E402

console = Console()
NOOP, SINGLE, BATCHED = "noop", "single", "batched"


class Node:
    def __init__(self) -> None:
        self.key = nacl.signing.SigningKey.generate()
        self.public_key = keys.public_key_text(self.key)
        self.node_id = keys.node_id(self.public_key)

    def report(self, uptime: int, timestamp: int) -> dict:
        """A single-report request as signed by this node: target, headers, body."""
        body = json.dumps({"uptime": uptime, "timestamp": timestamp})
        target = f"/v1/nodes/{self.node_id}/uptime"
        signed_at = int(time.time())
        signature = keys.sign(self.key, request_signing_bytes("POST", target, LEDGER, signed_at, body.encode()))
        headers = {KEY_HEADER: self.public_key, AUDIENCE_HEADER: LEDGER, TIMESTAMP_HEADER: str(signed_at), SIGNATURE_HEADER: signature}
        return {"method": "POST", "target": target, "headers": headers, "body": body}


def register(database_url: str, fleet: list[Node]) -> None:
    """The fleet registered before the ledger starts (setup, not measured)."""
    db = Database(database_url)
    db.migrate()
    registration = NodeRegistration(farm="bench", capacity=Capacity(vcpus=4, memory=8 << 30, disk=1 << 40), version="bench")
    now = time.time()
    for node in fleet:
        nodes.register(db, node.public_key, registration, now)
    db.close()


def start_ledger(workdir: Path, database_url: str, port: int) -> subprocess.Popen:
    config = workdir / "ledger.toml"
    config.write_text(f'database_url = "{database_url}"\nport = {port}\nmax_batch = 10000\n')
    process = subprocess.Popen([ZERONODE, "ledger", "--config", str(config)], stderr=subprocess.DEVNULL)
    try:
        wait_healthy(f"http://127.0.0.1:{port}", 60, process)
    except AssertionError:
        stop(process, 10)
        raise
    return process


def rate(count: int, seconds: float) -> float:
    return count / seconds if seconds > 0 else float("inf")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--nodes", type=int, default=2000, help="nodes, each reporting once a round and phase")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--batch", type=int, default=500, help="reports per batch request")
    parser.add_argument("--connections", type=int, default=16, help="concurrent keep-alive connections")
    args = parser.parse_args()
    workdir = Path(tempfile.mkdtemp(prefix="zeronode-bench-ledger-"))
    database_url = f"sqlite:///{workdir / 'ledger.db'}"
    fleet = [Node() for _ in range(args.nodes)]
    booted = int(time.time()) - 1000
    last_timestamp = 0
    rounds: dict[str, list[float]] = {NOOP: [], SINGLE: [], BATCHED: []}
    ledger = None
    try:
        with console.status(f"registering {args.nodes} nodes, starting the ledger…"):
            register(database_url, fleet)
            port = free_port()
            ledger = start_ledger(workdir, database_url, port)

        def next_timestamp() -> int:
            nonlocal last_timestamp
            last_timestamp = max(int(time.time()), last_timestamp + 1)  # each phase's reports are new ones
            return last_timestamp

        ping = http_request("GET", "/ping")
        for _ in track(range(args.rounds), description="rounds: no-op, single, batched…", console=console):
            seconds, answers = asyncio.run(drive(port, [ping] * args.nodes, args.connections))
            assert all(status == 200 for status, _ in answers)
            rounds[NOOP].append(rate(args.nodes, seconds))

            timestamp = next_timestamp()
            singles = []
            for node in fleet:
                copy = node.report(timestamp - booted, timestamp)
                headers = {"Content-Type": "application/json", **copy["headers"]}
                singles.append(http_request("POST", copy["target"], headers, copy["body"].encode()))
            seconds, answers = asyncio.run(drive(port, singles, args.connections))
            refused = [body for status, body in answers if status != 200]
            assert not refused, refused[:3]
            rounds[SINGLE].append(rate(args.nodes, seconds))

            timestamp = next_timestamp()
            copies = [node.report(timestamp - booted, timestamp) for node in fleet]
            batches = [
                http_request("POST", "/v1/uptime/batch", {"Content-Type": "application/json"},
                             json.dumps({"reports": copies[i : i + args.batch]}).encode())
                for i in range(0, len(copies), args.batch)
            ]
            seconds, answers = asyncio.run(drive(port, batches, max(1, min(4, args.connections))))
            results = [item for status, body in answers for item in json.loads(body)]
            assert all(item["status_code"] == 200 and not item["duplicate"] for item in results), results[:3]
            assert len(results) == args.nodes
            rounds[BATCHED].append(rate(args.nodes, seconds))
    finally:
        if ledger is not None:
            stop(ledger, 30)
        shutil.rmtree(workdir, ignore_errors=True)

    results = {name: statistics.median(values) for name, values in rounds.items()}
    single_ratio = statistics.median(s / n for s, n in zip(rounds[SINGLE], rounds[NOOP], strict=True))
    batched_ratio = statistics.median(b / n for b, n in zip(rounds[BATCHED], rounds[NOOP], strict=True))
    table = Table(title=f"{args.nodes} reports a phase, medians of {args.rounds} rounds, {os.cpu_count()} cores, one ledger process")
    table.add_column("path")
    table.add_column("per second", justify="right")
    names = {
        NOOP: "no-op: GET /ping (requests)",
        SINGLE: "signed reports, one a request",
        BATCHED: f"signed reports, {args.batch} a batch request",
    }
    for name, per_second in results.items():
        table.add_row(names[name], f"{per_second:,.0f}")
    console.print(table)
    console.print(
        f"signed reports vs no-op: {single_ratio:.2f}× one a request, {batched_ratio:.2f}× batched "
        f"(median of {args.rounds} rounds); batched {results[BATCHED]:,.0f} reports/s (aim ≥ 5,000)"
    )


if __name__ == "__main__":
    main()
