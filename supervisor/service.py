"""The supervisor's decisions, apart from HTTP: from signed envelopes to queued jobs.

For each envelope, in this order: verify it (signature, window, size), check
that it targets this node and that its signers meet the rights here (the
signer's roles and the signature policies: zeronode.node.authorizer), compile
the script, then claim its nonce and its id and enqueue it. The claims and the
enqueue are one Lua script (zeronode/node/queue/lua/accept.lua): atomic, so no envelope is
ever claimed without its job, and one round trip for a whole batch.
"""

from __future__ import annotations

import functools
import logging
import sqlite3
import threading
import time
from collections import OrderedDict
from dataclasses import dataclass, field

import redis
from prometheus_client import CollectorRegistry, Counter, Histogram
from rq.exceptions import InvalidJobOperation
from rq.job import Job, JobStatus
from rq.worker_registration import WORKERS_BY_QUEUE_KEY

import rhai
from zeronode import retry
from zeronode.api.errors import Refused, ServiceError, Unavailable
from zeronode.api.jobs import JobView, Status
from zeronode.logs import request_context
from zeronode.node.authorizer import Authorizer
from zeronode.node.identity import NodeIdentity
from zeronode.node.journal import Entry, Journal
from zeronode.node.queue.jobs import RUN_FUNCTION, RUNNER_DIED, open_queue, view
from zeronode.node.queue.durability import DurabilityCheck, VolatileQueue
from zeronode.node.queue.keys import NodeKeys
from zeronode.node.queue.rq_layout import ACCEPTED, DUPLICATE, ID_IN_USE, JobTemplate, Submission
from zeronode.node.settings import NodeSettings
from zeronode.protocol.envelope import Envelope, verify
from zeronode.protocol.errors import VerificationError
from zeronode.protocol.replay import ReplayGuard
from zeronode.protocol.ticket import check_membership

log = logging.getLogger("zeronode.supervisor")

COMPILED_CACHE_SIZE = 1024
WAITING = (JobStatus.QUEUED, JobStatus.SCHEDULED, JobStatus.DEFERRED)  # what rq's cancel may take off
MAX_BACKOFF = 60  # seconds: the longest wait before a job's retry


@dataclass(frozen=True)
class Accepted:
    job_id: str
    status: Status
    duplicate: bool = False


Submitted = Accepted | ServiceError  # one envelope's answer from submit_many


@dataclass
class Metrics:
    registry: CollectorRegistry = field(default_factory=CollectorRegistry)

    def __post_init__(self) -> None:
        self.accepted = Counter("zeronode_supervisor_jobs_accepted", "Jobs accepted", registry=self.registry)
        self.refused = Counter("zeronode_supervisor_jobs_refused", "Envelopes refused", ["reason"], registry=self.registry)
        self.verify_seconds = Histogram(
            "zeronode_supervisor_verify_duration_seconds",
            "Time to verify, authorise and compile one envelope",
            buckets=(0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.05),
            registry=self.registry,
        )


def log_accepted(accepted: list[tuple[int, Envelope]], request_ids: list[str | None]) -> None:
    """One info line for the jobs one call queued, with its request's id when they share one (a batch, a
    lone request); a debug line for each job, with its own request's. A line per job cost the supervisor
    a tenth of its time per envelope (bench/supervisor.py, 8 connections); a job's request id is in its
    meta, so the runner's lines about it carry the id whatever the level here."""
    if log.isEnabledFor(logging.DEBUG):
        for index, envelope in accepted:
            with request_context(request_ids[index]):
                log.debug("job accepted", extra={"job": envelope.id, "signer": envelope.signer})
    if log.isEnabledFor(logging.INFO):
        shared = {request_ids[index] for index, _ in accepted}
        with request_context(shared.pop() if len(shared) == 1 else None):
            log.info("jobs accepted", extra={"count": len(accepted), "jobs": [envelope.id for _, envelope in accepted]})


def backoff(retries: int) -> list[int]:
    """Seconds to wait before each retry: 1, 2, 4, ... capped at a minute."""
    return [int(retry.delay(attempt, cap=MAX_BACKOFF)) for attempt in range(retries)]


class Supervisor:
    def __init__(self, settings: NodeSettings, connection: redis.Redis, identity: NodeIdentity, authorizer: Authorizer):
        self.settings = settings
        self.connection = connection
        self.node_id = identity.node_id
        self.authorizer = authorizer
        self.queue = open_queue(connection, settings.queue)
        self.keys = NodeKeys(settings.queue)
        self.guard = ReplayGuard(connection, prefix=self.keys.replay_prefix, options=settings.verify)
        self.journal = Journal(settings.journal_path, keep_after_expiry=max(3600.0, 2 * settings.verify.skew))
        self.durability = DurabilityCheck(connection, settings.allow_volatile_queue)  # at start, and before accepting
        self.engine = rhai.Engine(**settings.limits.engine_kwargs())  # to compile, never to run
        self._compiled: OrderedDict[str, None] = OrderedDict()
        self._compiled_lock = threading.Lock()  # requests run in FastAPI's thread pool
        self.metrics = Metrics()

    # -- accepting -------------------------------------------------------

    def submit(self, raw: bytes | str, ticket: str | None = None, request_id: str | None = None) -> Accepted:
        """Accept one envelope (with coord's placement ticket, when it placed it here), or raise Refused."""
        outcome = self.submit_many([raw], [ticket], [request_id])[0]
        if isinstance(outcome, ServiceError):
            raise outcome
        return outcome

    def submit_many(
        self, raws: list[bytes | str], tickets: list[str | None] | None = None,
        request_ids: list[str | None] | None = None,
    ) -> list[Submitted]:
        """Accept several envelopes with shared Redis round trips; one answer each, in order. Each envelope's
        request id (zeronode.api.middleware: a batch's envelopes share theirs) is kept in its job's meta, the
        runner logs the job's lines with it, and the lines logged here about the envelope carry it."""
        request_ids = request_ids or [None] * len(raws)
        answers: list[Accepted | ServiceError | None] = [None] * len(raws)
        checked: list[tuple[int, Envelope]] = []
        placed: dict[str, str] = {}  # envelope id -> the ticket that placed it here
        for index, raw in enumerate(raws):
            ticket = tickets[index] if tickets else None
            try:
                envelope = self.check(raw, ticket)
            except Refused as rejection:
                answers[index] = rejection
                continue
            checked.append((index, envelope))
            if ticket is not None and self.node_id not in envelope.targets:
                placed[envelope.id] = ticket
        if checked:
            try:
                self.durability.ensure()
                self._claim_and_enqueue(checked, answers, placed, request_ids)
            except redis.RedisError as exc:
                log.error("redis unavailable", extra={"error": str(exc)})
                for index, _ in checked:
                    answers[index] = Unavailable("the node's queue is unavailable; try again")
            except sqlite3.Error as exc:  # the journal (a full disk, say): nothing queued without it
                log.error("journal unavailable", extra={"error": str(exc)})
                for index, _ in checked:
                    answers[index] = Unavailable("the node's journal is unavailable; try again")
            except VolatileQueue as exc:  # a Redis that came back without append-only: accept nothing it could lose
                log.error("queue volatile", extra={"error": str(exc)})
                for index, _ in checked:
                    answers[index] = Unavailable(str(exc), reason="queue_volatile")
        for answer, request_id in zip(answers, request_ids, strict=True):
            if isinstance(answer, ServiceError):
                self.metrics.refused.labels(answer.reason).inc()
                if isinstance(answer, Refused):  # the caller's fault; the node's own (Unavailable) is logged above
                    with request_context(request_id):
                        log.info("envelope refused", extra={"reason": answer.reason, "status": answer.status,
                                                            "error": str(answer)[:500]})
            elif answer is not None and not answer.duplicate:
                self.metrics.accepted.inc()
        return answers  # type: ignore[return-value]

    def check(self, raw: bytes | str, ticket: str | None = None) -> Envelope:
        """Everything that needs no Redis: verify, target (or placement ticket), authorise, compile."""
        started = time.perf_counter()
        try:
            verified = verify(raw, options=self.settings.verify)
            envelope = verified.envelope
            if self.node_id not in envelope.targets:
                check_membership(verified, self.node_id, self.settings.farm, ticket=ticket, placers=self.settings.placers)
            self.authorizer.authorize(verified)
        except VerificationError as exc:
            raise Refused(exc.http_status, exc.reason, str(exc)) from None
        self.compile(envelope.script)
        self.metrics.verify_seconds.observe(time.perf_counter() - started)
        return envelope

    def compile(self, script: str) -> None:
        with self._compiled_lock:
            if script in self._compiled:
                self._compiled.move_to_end(script)
                return
        try:
            self.engine.compile(script, name="script")
        except rhai.RhaiError as exc:
            raise Refused(
                422, "compile_error", str(exc), line=exc.line, column=exc.column, error=exc.message
            ) from None
        with self._compiled_lock:
            self._compiled[script] = None
            if len(self._compiled) > COMPILED_CACHE_SIZE:
                self._compiled.popitem(last=False)

    def _claim_and_enqueue(
        self, checked: list[tuple[int, Envelope]], answers: list, placed: dict[str, str], request_ids: list[str | None],
    ) -> None:
        """The journal first (what this node ever accepted and ran, whatever Redis remembers),
        then one round trip: claim each envelope's id and nonce and queue its job, atomically."""
        checked = self._consult_journal(checked, answers)
        if not checked:
            return
        now = time.time()
        submissions = [
            self._submission(envelope, now, placed.get(envelope.id), request_ids[index]) for index, envelope in checked
        ]
        codes = self.template.accept(submissions)
        duplicates = []
        accepted: list[tuple[int, Envelope]] = []
        for (index, envelope), code in zip(checked, codes, strict=True):
            if code == ACCEPTED:
                answers[index] = Accepted(envelope.id, Status.QUEUED)
                accepted.append((index, envelope))
            elif code == DUPLICATE:
                duplicates.append((index, envelope.id))
            elif code == ID_IN_USE:
                answers[index] = Refused(409, "id_in_use", f"job id {envelope.id} belongs to another envelope")
            else:
                answers[index] = Refused(409, "replayed", f"nonce {envelope.nonce} of this signer was already used")
        if accepted:
            log_accepted(accepted, request_ids)
        if duplicates:  # the same envelope again: answer with its job as it stands
            jobs = Job.fetch_many([job_id for _, job_id in duplicates], self.connection, serializer=self.queue.serializer)
            for (index, job_id), job in zip(duplicates, jobs, strict=True):
                answers[index] = (
                    Accepted(job_id, view(job).status, duplicate=True)
                    if job is not None
                    else Refused(410, "gone", f"job {job_id} has ended and its record is no longer kept")
                )

    def _consult_journal(self, checked: list[tuple[int, Envelope]], answers: list) -> list[tuple[int, Envelope]]:
        """Answer the envelopes this node has run already (never queued again) and the replays Redis
        forgot; note the rest in the journal. Returns those left to queue."""
        entries = self.journal.entries(envelope.id for _, envelope in checked)
        to_queue: list[tuple[int, Envelope]] = []
        ran: list[tuple[int, Entry]] = []
        for index, envelope in checked:
            entry = entries.get(envelope.id)
            if entry is not None and (entry.signer, entry.nonce) != (envelope.signer, envelope.nonce):
                answers[index] = Refused(409, "id_in_use", f"job id {envelope.id} belongs to another envelope")
            elif entry is not None and entry.started:
                ran.append((index, entry))
            else:
                to_queue.append((index, envelope))
        replayed = self.journal.accept(
            (envelope.id, envelope.signer, envelope.nonce, envelope.expires_at)
            for _, envelope in to_queue if envelope.id not in entries
        )
        for index, envelope in to_queue:
            if envelope.id in replayed:
                answers[index] = Refused(409, "replayed", f"nonce {envelope.nonce} of this signer was already used")
        if ran:  # it started once: its job as Redis has it, or as the journal does
            jobs = Job.fetch_many([entry.id for _, entry in ran], self.connection, serializer=self.queue.serializer)
            for (index, entry), job in zip(ran, jobs, strict=True):
                status = view(job).status if job is not None else self.journal.status(entry)[0]
                answers[index] = Accepted(entry.id, status, duplicate=True)
        return [(index, envelope) for index, envelope in to_queue if envelope.id not in replayed]

    @functools.cached_property
    def template(self) -> JobTemplate:
        return JobTemplate(self.queue, RUN_FUNCTION)  # made on first use: Redis may be down at start

    def _submission(
        self, envelope: Envelope, now: float, ticket: str | None = None, request_id: str | None = None,
    ) -> Submission:
        validity = self.guard.ttl(envelope, now)
        return Submission(
            job_id=envelope.id,
            payload=envelope.canonical_json().decode(),  # what was verified, in one spelling
            ticket=ticket,  # the runner checks it again
            owner=f"{envelope.signer}:{envelope.nonce}",
            id_key=self.keys.owner(envelope.id),
            # The id stays claimed while its job's record may exist (accept.lua also checks the record).
            id_ttl=validity + self.settings.result_ttl,
            nonce_key=self.guard.key(envelope),
            nonce_ttl=validity,
            description=f"zeronode job {envelope.id}",
            timeout=envelope.timeout,  # informational: runners enforce the timeout inside Rhai
            result_ttl=self.settings.result_ttl,
            failure_ttl=self.settings.result_ttl,
            meta={"node": self.node_id, "signer": envelope.signer, "retries": envelope.retries, "attempts": 0,
                  "request_id": request_id},
            retry_intervals=backoff(envelope.retries),
        )

    # -- reading: a job is its signer's, and every node admin's --------------

    def job(self, job_id: str, reader: str) -> JobView:
        """The job as Redis has it; what the journal knows when Redis forgot it, is away, or says its
        runner died (the journal knows whether it did, and how the run ended if it did not)."""
        try:
            job = Job.fetch_many([job_id], self.connection, serializer=self.queue.serializer)[0]
        except redis.RedisError:
            entry = self.journal.entry(job_id)
            if entry is not None and self._may_read(reader, entry.signer):
                return self.journal.view(entry, self.node_id)
            raise
        found = view(job) if job is not None and self._may_read(reader, (job.meta or {}).get("signer")) else None
        if found is not None and not (found.error and found.error.type == RUNNER_DIED):
            return found
        entry = self.journal.entry(job_id)
        if entry is not None and self._may_read(reader, entry.signer):
            if found is None or entry.ended_at is not None or self.journal.alive(entry):
                return self.journal.view(entry, self.node_id)
        if found is not None:
            return found
        raise Refused(404, "not_found", f"no job {job_id} on this node")

    def _may_read(self, reader: str, signer: str | None) -> bool:
        return reader == signer or self.authorizer.oversees_jobs(reader)

    def jobs(self, reader: str, status: Status | None = None, limit: int = 100) -> list[JobView]:
        """The newest jobs `reader` may read: its own, or every job for a node admin or an observer."""
        admin = self.authorizer.oversees_jobs(reader)
        # A deployer's jobs may be few among many: look further back, then keep its own.
        ids = self._job_ids(status, limit if admin else min(10 * limit, 10_000))
        jobs = Job.fetch_many(ids, self.connection, serializer=self.queue.serializer)
        views = [view(job) for job in jobs if job is not None and (admin or (job.meta or {}).get("signer") == reader)]
        if status is not None:
            views = [v for v in views if v.status == status]  # failed and timed_out share a registry
        return views[:limit]

    def _job_ids(self, status: Status | None, limit: int) -> list[str]:
        registries = {
            Status.QUEUED: lambda: self.queue.get_job_ids(0, limit - 1) + self.queue.scheduled_job_registry.get_job_ids(0, limit - 1),
            Status.STARTED: lambda: self.queue.started_job_registry.get_job_ids(0, limit - 1, cleanup=False),
            Status.FINISHED: lambda: self.queue.finished_job_registry.get_job_ids(0, limit - 1, desc=True),
            Status.FAILED: lambda: self.queue.failed_job_registry.get_job_ids(0, limit - 1, desc=True),
            Status.TIMED_OUT: lambda: self.queue.failed_job_registry.get_job_ids(0, limit - 1, desc=True),
            Status.CANCELED: lambda: self.queue.canceled_job_registry.get_job_ids(0, limit - 1, desc=True),
            Status.LOST: lambda: [],  # lost jobs are the ones Redis no longer lists: ask for them one by one
        }
        if status is not None:
            return list(dict.fromkeys(registries[status]()))[:limit]
        ids: list[str] = []
        for source in (Status.STARTED, Status.QUEUED, Status.FINISHED, Status.FAILED, Status.CANCELED):
            ids.extend(registries[source]())
        return list(dict.fromkeys(ids))[:limit]

    def _fetch_for(self, job_id: str, reader: str) -> Job:
        """The job, if `reader` may read and cancel it: its signer, a node admin or an observer. For anyone
        else the answer is the one a missing job gets: other tenants' job ids are not revealed."""
        job = Job.fetch_many([job_id], self.connection, serializer=self.queue.serializer)[0]
        if job is None or not self._may_read(reader, (job.meta or {}).get("signer")):
            raise Refused(404, "not_found", f"no job {job_id} on this node")
        return job

    # -- cancelling ------------------------------------------------------

    def cancel(self, job_id: str, requester: str) -> JobView:
        """Stop a queued or running job, at the request of its signer, a node admin or an observer."""
        job = self._fetch_for(job_id, requester)
        status = view(job).status
        if status == Status.CANCELED:
            return view(job)
        if status in (Status.FINISHED, Status.FAILED, Status.TIMED_OUT):
            raise Refused(409, "already_ended", f"job {job_id} has already ended ({status})")
        # The flag first: it stops a running script through its runner, and keeps a
        # runner from starting the job should one take it between here and rq's cancel.
        self.connection.set(self.keys.cancel(job_id), requester, ex=self.settings.result_ttl)
        if job.get_status(refresh=True) in WAITING:
            try:
                job.cancel()
                job.cleanup(self.settings.result_ttl)
            except InvalidJobOperation:
                pass  # canceled meanwhile (by a runner that found the flag, or another request)
        log.info("job cancel requested", extra={"job": job_id, "by": requester})
        return view(Job.fetch(job_id, self.connection, serializer=self.queue.serializer))

    # -- health ----------------------------------------------------------

    def queue_depth(self) -> int:
        return self.queue.count

    def runner_pool(self) -> dict[str, int]:
        """The runners registered on the node's queue (rq's worker registry), the jobs running (the started
        registry, which a runner's take writes: our runners do not keep rq's per-worker state), and the jobs
        waiting: counts only, for /health and coord's fleet dashboard. Reads only; raises RedisError."""
        with self.connection.pipeline(transaction=False) as pipe:
            pipe.scard(WORKERS_BY_QUEUE_KEY % self.queue.name)  # what rq's Worker.count counts
            pipe.zcard(self.queue.started_job_registry.key)
            pipe.llen(self.queue.key)
            registered, running, queued = pipe.execute()
        return {"registered": registered, "running": running, "queued": queued}

    def healthy(self) -> bool:
        try:
            return bool(self.connection.ping())
        except redis.RedisError:
            return False
