"""Many simulated supervisors in one process: the coordinator's scale tests and benchmark talk to
a thousand "nodes" without a thousand processes.

Each node has an origin of its own, as a real one does: the fleet listens on
one port of many loopback addresses (127.0.0.1, .2, ...: all of 127/8 is this
machine), and the address a request came in on says which node it is for
(`Fleet.nodes`; see `address` and `node_url`). A supervisor URL is a service's
root (zeronode.api.destinations), so no path could say it instead.

Each node answers the supervisor's job API (POST /v1/jobs, GET /v1/jobs/ID,
POST /v1/jobs/ID/cancel). Envelopes are verified for real and must target the
node; a job then runs for `run_time` seconds (no script is evaluated) and
finishes with {"node": NAME}. Reads and cancels must be signed requests
addressed to the node, by the job's signer or one of `admins` (the
coordinator), as a real supervisor wants them. `faults` lets a test make a node
answer its next requests with a status (503, a 4xx refusal) or with any
response it builds (a redirect, a huge or foreign body).

What a node's journal does is simulated too: `lose` makes the node's queue forget
a job as a wiped Redis would, and the node then shows it as lost (QueueLost: it
never started, and a new POST of its envelope runs it; ResultLost: it started,
and it never runs again); an envelope the node has seen is answered 200
duplicate with its job's status, never run twice. `frozen` nodes answer nothing
until thawed, as a supervisor stopped with SIGSTOP (its jobs run on, as a node's
runners would); `requests` and `bodies` tell what each node was sent.

    python -m tests.support.fleet --port 8301 --nodes nodes.txt --admin COORD_KEY --run-time 0.05
"""

from __future__ import annotations

import argparse
import asyncio
import socket
import time
from collections import defaultdict, deque
from dataclasses import dataclass, field
from pathlib import Path

from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse, Response

from zeronode.api.jobs import QUEUE_LOST, RESULT_LOST
from zeronode.protocol import ticket
from zeronode.protocol.envelope import verify
from zeronode.protocol.errors import VerificationError
from zeronode.protocol.signed_requests import verify_request

from .serving import BackgroundServer, listener, uvicorn_server


@dataclass
class SimulatedJob:
    id: str
    node: str
    signer: str
    accepted: float
    run_time: float
    canceled: bool = False
    lost: str | None = None  # zeronode.api.jobs.QUEUE_LOST or RESULT_LOST: the node's queue forgot it

    def status(self) -> str:
        if self.lost:
            return "lost"
        if self.canceled:
            return "canceled"
        elapsed = time.monotonic() - self.accepted
        return "queued" if elapsed < self.run_time / 2 else ("started" if elapsed < self.run_time else "finished")


@dataclass
class Fleet:
    run_time: float = 0.05
    latency: float = 0.0  # seconds each answer takes, as a network to edge nodes would add
    nodes: dict[tuple[str, int], str] = field(default_factory=dict)  # (address, port) → the node served there
    admins: set[str] = field(default_factory=set)  # keys that may read and cancel any job, and place: the coordinator's
    farm: str = "test"  # every simulated node's
    jobs: dict[tuple[str, str], SimulatedJob] = field(default_factory=dict)
    history: list[SimulatedJob] = field(default_factory=list)  # every job accepted to run, in order
    frozen: set[str] = field(default_factory=set)  # nodes whose supervisor answers nothing until thawed
    requests: dict[str, list[str]] = field(default_factory=lambda: defaultdict(list))  # node → "METHOD PATH" it was sent
    bodies: dict[tuple[str, str], list[bytes]] = field(default_factory=lambda: defaultdict(list))  # every POST of an envelope
    request_ids: dict[tuple[str, str], list[str | None]] = field(default_factory=lambda: defaultdict(list))  # and its X-Request-Id
    # node → what to answer its next requests: a status (a zeronode error body), or a whole response
    faults: dict[str, deque[int | Response]] = field(default_factory=lambda: defaultdict(deque))
    submissions: int = 0
    in_flight: int = 0
    most_in_flight: int = 0

    def serve(self, node: str, port: int, index: int) -> str:
        """Serve `node` at the fleet's address number `index` (on `port`); its supervisor URL."""
        self.nodes[(address(index), port)] = node
        return node_url(port, index)

    def lose(self, node: str, job_id: str, kind: str) -> None:
        """The node's queue forgets the job (its Redis was wiped); its journal says `kind`: QueueLost (the
        job never started) or ResultLost (it started)."""
        self.jobs[(node, job_id)].lost = kind

    def runs(self, node: str, job_id: str) -> int:
        """How many times the node ran (or is running) the envelope: jobs lost before they started do not count."""
        return sum(1 for job in self.history if (job.node, job.id) == (node, job_id) and job.lost != QUEUE_LOST)


def create_fleet(fleet: Fleet | None = None) -> FastAPI:
    fleet = fleet or Fleet()
    app = FastAPI(title="simulated supervisors", openapi_url=None, docs_url=None, redoc_url=None)
    app.state.fleet = fleet

    @app.middleware("http")
    async def count_in_flight(request: Request, call_next):
        fleet.in_flight += 1
        fleet.most_in_flight = max(fleet.most_in_flight, fleet.in_flight)
        try:
            await asyncio.sleep(fleet.latency)
            return await call_next(request)
        finally:
            fleet.in_flight -= 1

    def node_of(request: Request) -> str | None:
        host, port = request.scope["server"]
        return fleet.nodes.get((host, port))

    async def arrived(request: Request) -> str | None:
        """The node the request is for, once it is not frozen (the request counted as it arrives)."""
        node = node_of(request)
        if node is not None:
            fleet.requests[node].append(f"{request.method} {request.url.path}")
            while node in fleet.frozen:
                await asyncio.sleep(0.02)
        return node

    def fault(node: str) -> Response | None:
        if fleet.faults[node]:
            planned = fleet.faults[node].popleft()
            if isinstance(planned, Response):
                return planned
            return refused(planned, "simulated", f"simulated {planned}")
        return None

    def refused(status: int, reason: str, message: str) -> JSONResponse:
        return JSONResponse({"reason": reason, "message": message}, status_code=status)

    async def reader(request: Request, node: str, job: SimulatedJob) -> Response | None:
        """None when the request is signed for `node` by the job's signer or an admin; else the refusal."""
        target = request.scope.get("raw_path") or request.url.path.encode()
        if query := request.scope.get("query_string"):
            target += b"?" + query
        try:
            key = verify_request(request.method, target.decode(), dict(request.headers), await request.body(), audience=node)
        except VerificationError as exc:
            return refused(401, exc.reason, str(exc))
        if key != job.signer and key not in fleet.admins:
            return refused(403, "not_authorized", f"{key} may not see job {job.id}")
        return None

    @app.post("/v1/jobs")
    async def submit(request: Request) -> Response:
        node = await arrived(request)
        if node is None:
            return refused(404, "no_node", "no node is served at this address")
        if planned := fault(node):
            return planned
        try:
            verified = verify(await request.body())
            # As a supervisor: named, or placed here by a ticket from a placer it trusts (the coordinator).
            ticket.check_membership(verified, node, fleet.farm, ticket=request.headers.get(ticket.HEADER), placers=fleet.admins)
        except VerificationError as exc:
            return refused(exc.http_status, exc.reason, str(exc))
        envelope = verified.envelope
        fleet.submissions += 1
        key = (node, envelope.id)
        fleet.bodies[key].append(await request.body())
        fleet.request_ids[key].append(request.headers.get("x-request-id"))
        known = fleet.jobs.get(key)
        if known is not None and known.lost != QUEUE_LOST:  # seen: never run twice
            return JSONResponse({"job_id": envelope.id, "status": known.status(), "duplicate": True}, status_code=200)
        fleet.jobs[key] = SimulatedJob(envelope.id, node, envelope.signer, time.monotonic(), fleet.run_time)
        fleet.history.append(fleet.jobs[key])
        return JSONResponse({"job_id": envelope.id, "status": "queued", "duplicate": False}, status_code=202)

    @app.get("/v1/jobs/{job_id}")
    async def job(job_id: str, request: Request) -> Response:
        node = await arrived(request)
        if node is None:
            return refused(404, "no_node", "no node is served at this address")
        if planned := fault(node):
            return planned
        found = fleet.jobs.get((node, job_id))
        if found is None:
            return refused(404, "not_found", "no such job")
        if refusal := await reader(request, node, found):
            return refusal
        status = found.status()
        error = None
        if found.lost:
            started = "it started; its result is gone" if found.lost == RESULT_LOST else "it never started"
            error = {"type": found.lost, "message": f"the node's queue lost job {job_id}: {started}"}
        return JSONResponse({
            "id": job_id, "status": status, "node": node, "signer": found.signer,
            "result": {"node": node} if status == "finished" else None, "output": [], "error": error,
        })

    @app.post("/v1/jobs/{job_id}/cancel")
    async def cancel(job_id: str, request: Request) -> Response:
        node = await arrived(request)
        found = fleet.jobs.get((node, job_id)) if node else None
        if found is None:
            return refused(404, "not_found", "no such job")
        if refusal := await reader(request, node, found):
            return refusal
        if found.status() not in ("finished", "lost"):
            found.canceled = True
        return JSONResponse({"id": job_id, "status": found.status()})

    return app


def address(index: int) -> str:
    """The fleet's loopback address number `index`: 127.0.0.1 ... 127.0.0.254, 127.0.1.1 ..."""
    return f"127.0.{index // 254}.{index % 254 + 1}"


def listeners(port: int, addresses: int, first: int = 0) -> list[socket.socket]:
    """Listening sockets on `addresses` addresses from number `first`, all on `port` (0: a free one, the same for all)."""
    sockets: list[socket.socket] = []
    for index in range(first, first + addresses):
        sockets.append(listener(address(index), port))
        port = sockets[-1].getsockname()[1]
    return sockets


def node_url(port: int, index: int) -> str:
    """The supervisor URL of the node at the fleet's address number `index`."""
    return f"http://{address(index)}:{port}"


def serve(fleet: Fleet, sockets: list[socket.socket]) -> None:
    """Serve the fleet on `sockets` in the foreground, until interrupted."""
    uvicorn_server(create_fleet(fleet), lifespan="off").run(sockets=sockets)


def serve_in_background(fleet: Fleet, sockets: list[socket.socket]) -> BackgroundServer:
    """Serve the fleet on `sockets` from a thread of this process, until the result's `stop()`."""
    return BackgroundServer(create_fleet(fleet), sockets, lifespan="off")


def main() -> None:
    parser = argparse.ArgumentParser(description="Many simulated supervisors in one process.")
    parser.add_argument("--port", type=int, default=8301)
    parser.add_argument("--nodes", type=Path, required=True, help="node ids, one a line: line i is served at address i")
    parser.add_argument("--slice", default="0:", help="FIRST:END of those lines, served by this process (several share a fleet)")
    parser.add_argument("--admin", action="append", default=[], help="a key that may read any job (the coordinator's)")
    parser.add_argument("--run-time", type=float, default=0.05, help="seconds each job takes")
    parser.add_argument("--latency", type=float, default=0.0, help="seconds each answer takes")
    parser.add_argument("--farm", default="test", help="every node's farm (what a selector's farms must admit)")
    args = parser.parse_args()
    fleet = Fleet(run_time=args.run_time, latency=args.latency, admins=set(args.admin), farm=args.farm)
    nodes = args.nodes.read_text().split()
    first, end = (int(bound) if bound else None for bound in args.slice.split(":"))
    first = first or 0
    served = nodes[first:end]
    for index, node in enumerate(served, start=first):
        fleet.serve(node, args.port, index)
    serve(fleet, listeners(args.port, len(served), first))


if __name__ == "__main__":
    main()
