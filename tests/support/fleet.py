"""Many simulated supervisors in one process: the coordinator's scale tests and benchmark talk to
a thousand "nodes" without a thousand processes.

Node NAME answers under /n/NAME with the supervisor's job API (POST /v1/jobs,
GET /v1/jobs/ID, POST /v1/jobs/ID/cancel). The fleet listens on several loopback
addresses (127.0.0.1, .2, ...: all of 127/8 is this machine) on one port, so
nodes can be spread over distinct origins as real ones are: see `node_url`. Envelopes are verified for real
and must target the node; a job then runs for `run_time` seconds (no script is
evaluated) and finishes with {"node": NAME}. `faults` lets a test make a node
answer 503 to its next requests, or refuse with a 4xx, as a real one might.

    python -m tests.support.fleet --port 8301 --addresses 64 --run-time 0.05
"""

from __future__ import annotations

import argparse
import asyncio
import socket
import time
from collections import defaultdict, deque
from dataclasses import dataclass, field

from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse

from zeronode.protocol.envelope import verify
from zeronode.protocol.errors import VerificationError

from .serving import BackgroundServer, listener, uvicorn_server


@dataclass
class SimulatedJob:
    id: str
    node: str
    signer: str
    accepted: float
    run_time: float
    canceled: bool = False

    def status(self) -> str:
        if self.canceled:
            return "canceled"
        elapsed = time.monotonic() - self.accepted
        return "queued" if elapsed < self.run_time / 2 else ("started" if elapsed < self.run_time else "finished")


@dataclass
class Fleet:
    run_time: float = 0.05
    latency: float = 0.0  # seconds each answer takes, as a network to edge nodes would add
    jobs: dict[tuple[str, str], SimulatedJob] = field(default_factory=dict)
    faults: dict[str, deque[int]] = field(default_factory=lambda: defaultdict(deque))  # node → statuses to answer next
    submissions: int = 0
    in_flight: int = 0
    most_in_flight: int = 0


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

    def fault(node: str) -> JSONResponse | None:
        if fleet.faults[node]:
            status = fleet.faults[node].popleft()
            return JSONResponse({"detail": {"reason": "simulated", "message": f"simulated {status}"}}, status_code=status)
        return None

    @app.post("/n/{node}/v1/jobs")
    async def submit(node: str, request: Request) -> JSONResponse:
        if refused := fault(node):
            return refused
        try:
            envelope = verify(await request.body()).envelope
        except VerificationError as exc:
            return JSONResponse({"detail": {"reason": exc.reason, "message": str(exc)}}, status_code=exc.http_status)
        if node not in envelope.targets:
            return JSONResponse({"detail": {"reason": "wrong_node", "message": f"not for {node}"}}, status_code=403)
        fleet.submissions += 1
        key = (node, envelope.id)
        if key in fleet.jobs:
            return JSONResponse({"job_id": envelope.id, "status": "queued", "duplicate": True}, status_code=200)
        fleet.jobs[key] = SimulatedJob(envelope.id, node, envelope.signer, time.monotonic(), fleet.run_time)
        return JSONResponse({"job_id": envelope.id, "status": "queued", "duplicate": False}, status_code=202)

    @app.get("/n/{node}/v1/jobs/{job_id}")
    async def job(node: str, job_id: str) -> JSONResponse:
        if refused := fault(node):
            return refused
        found = fleet.jobs.get((node, job_id))
        if found is None:
            return JSONResponse({"detail": {"reason": "not_found", "message": "no such job"}}, status_code=404)
        status = found.status()
        return JSONResponse({
            "id": job_id, "status": status, "node": node, "signer": found.signer,
            "result": {"node": node} if status == "finished" else None, "output": [], "error": None,
        })

    @app.post("/n/{node}/v1/jobs/{job_id}/cancel")
    async def cancel(node: str, job_id: str) -> JSONResponse:
        found = fleet.jobs.get((node, job_id))
        if found is None:
            return JSONResponse({"detail": {"reason": "not_found", "message": "no such job"}}, status_code=404)
        if found.status() != "finished":
            found.canceled = True
        return JSONResponse({"id": job_id, "status": found.status()})

    return app


def listeners(port: int, addresses: int) -> list[socket.socket]:
    """Listening sockets on 127.0.0.1 ... 127.0.0.N, all on `port` (0: a free one, the same for all)."""
    sockets: list[socket.socket] = []
    for index in range(addresses):
        sockets.append(listener(f"127.0.0.{index + 1}", port))
        port = sockets[-1].getsockname()[1]
    return sockets


def node_url(port: int, index: int, node: str, addresses: int) -> str:
    """Where the fleet serves node number `index` (named `node`): spread over the fleet's addresses."""
    return f"http://127.0.0.{index % addresses + 1}:{port}/n/{node}"


def serve(fleet: Fleet, sockets: list[socket.socket]) -> None:
    """Serve the fleet on `sockets` in the foreground, until interrupted."""
    uvicorn_server(create_fleet(fleet), lifespan="off").run(sockets=sockets)


def serve_in_background(fleet: Fleet, sockets: list[socket.socket]) -> BackgroundServer:
    """Serve the fleet on `sockets` from a thread of this process, until the result's `stop()`."""
    return BackgroundServer(create_fleet(fleet), sockets, lifespan="off")


def main() -> None:
    parser = argparse.ArgumentParser(description="Many simulated supervisors in one process.")
    parser.add_argument("--port", type=int, default=8301)
    parser.add_argument("--addresses", type=int, default=1, help="listen on 127.0.0.1 up to 127.0.0.N")
    parser.add_argument("--run-time", type=float, default=0.05, help="seconds each job takes")
    parser.add_argument("--latency", type=float, default=0.0, help="seconds each answer takes")
    args = parser.parse_args()
    serve(Fleet(run_time=args.run_time, latency=args.latency), listeners(args.port, args.addresses))


if __name__ == "__main__":
    main()
