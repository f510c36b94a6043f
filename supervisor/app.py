"""The supervisor's HTTP API (FastAPI). The decisions live in supervisor.service.

    POST /v1/jobs                 a signed envelope   -> 202 {job_id, status, duplicate}
    POST /v1/jobs/batch           [envelopes]         -> 200 [{status_code, job_id, status} | {status_code, error}]
    GET  /v1/jobs/{id}            signed by the job's signer or a node admin: status, timestamps, result, output, error
    GET  /v1/jobs?status=&limit=  signed: the reader's jobs (a node admin's: all) by status
    POST /v1/jobs/{id}/cancel     signed request by the job's signer or a node admin
    GET  /v1/vms/{name}/console   signed by the VM's owner or a node admin: its serial console (?lines=&boot=),
                                  or from a byte on (?offset=, for followers)
    GET  /v1/vms/{name}/events    signed likewise: what happened to the VM
    GET  /health, GET /metrics    open, and without job data; /health names the queue's persistence

Signed requests are addressed to this node (its id is their audience).

The routes are in supervisor.routes, one router per resource. Errors are JSON:
{"reason": ..., "message": ...} with a 4xx status for the client's
faults, never a traceback. Every answer carries its request's X-Request-Id,
which a submit stores with its job (the runner logs it with the job's lines);
/docs is Swagger UI, served from the node (zeronode.api.service). The service's work (verification, Redis, compiling)
runs in FastAPI's thread pool, not on the event loop, so a large batch does not
hold up /health; the one-envelope submits of concurrent requests go there
together (supervisor.gathering).

The node's Redis must be append-only (zeronode.node.queue.durability): at
start, `check_queue_at_start` refuses a volatile one (VolatileQueue) unless
allow_volatile_queue, and lets an unreachable one be (the accept path checks
before it queues anything); /health reads the persistence again on every
probe, and answers 503 while it is one the node may not run on.
"""

from __future__ import annotations

import logging

import redis
from fastapi import FastAPI
from prometheus_client.core import GaugeMetricFamily

from supervisor.gathering import SubmitGatherer
from supervisor.routes import jobs, operations, vms
from supervisor.service import Supervisor
from supervisor.vms import VmReader
from zeronode.api import handlers
from zeronode.api.auth import SignedRequest
from zeronode.api.routing import add_routers
from zeronode.api.service import service_app
from zeronode.node.queue.durability import describe

log = logging.getLogger("zeronode.supervisor")


class QueueDepth:
    """Reads the queue's depth when Prometheus scrapes, not on every job."""

    def __init__(self, supervisor: Supervisor):
        self.supervisor = supervisor

    def collect(self):
        depth = GaugeMetricFamily("zeronode_supervisor_queued_jobs", "Jobs waiting in the node's queue")
        try:
            depth.add_metric([], self.supervisor.queue_depth())
        except Exception:  # Redis away: report nothing rather than fail the scrape
            return
        yield depth


def check_queue_at_start(supervisor: Supervisor) -> str | None:
    """The queue's persistence, checked as the supervisor starts: raises VolatileQueue (not append-only,
    and allow_volatile_queue is off: the supervisor must not start). None when Redis cannot be reached:
    the supervisor starts all the same, and its accept path checks once Redis answers."""
    where = describe(supervisor.connection)
    try:
        mode = supervisor.durability.ensure()
    except redis.RedisError as exc:
        log.warning("the node's redis cannot be reached at start; its persistence is checked once it answers",
                    extra={"redis": where, "error": str(exc)})
        return None
    log.info("queue persistence", extra={"redis": where, "persistence": mode})
    return mode


def create_app(supervisor: Supervisor) -> FastAPI:
    app = service_app("zeronode supervisor", "supervisor", supervisor.metrics.registry)
    supervisor.metrics.registry.register(QueueDepth(supervisor))
    app.state.supervisor = supervisor
    app.state.submits = SubmitGatherer(supervisor)  # the one-envelope POSTs, gathered into submit_many
    app.state.signed_request = SignedRequest(supervisor.node_id)  # addressed to this node; the protocol's window
    handlers.install(app, log, log_refusals=False)  # refusals are counted and logged by the service, which sees batches' too
    app.state.vms = VmReader(supervisor.settings, supervisor.authorizer)
    add_routers(app, jobs.router, operations.router, vms.router)
    return app
