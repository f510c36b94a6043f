"""Moving tasks forward: dispatch each to its node's supervisor, then follow the job to its end.

A task's life, one step at a time (each step is one claim from the store):

    pending ──POST /v1/jobs──▶ dispatched ──GET /v1/jobs/ID──▶ running ──▶ succeeded | failed | canceled | moved
                                   │    ▲                        │
                      no answer    ▼    │ the node answers again │ no answer
                                 unknown ◀───────────────────────┘

- pending: the ledger says where the node is. Unknown → failed. Offline → wait,
  failed after `offline_wait`. A supervisor URL coord may not send to (a path,
  a name, an address outside the node's mycelium /64 and `supervisor_networks`)
  → failed as forbidden_destination, nothing sent. The supervisor answers
  202/200 accepting this envelope → dispatched (a 200 duplicate of one it ran
  already is followed the same way: the node never runs an envelope twice);
  4xx (bad signature, not authorised, wrong node...) → failed for good, with its
  reason; a redirect or an answer too large or of the wrong shape → failed as
  bad_answer (coord.supervisors); 5xx → retried with capped backoff until the
  envelope expires; no answer at all (refused, timing out) while the ledger says
  the node is online → retried, then failed as node_unresponsive after
  `unresponsive_after`.
- dispatched/running: the job is polled (signed by coord for the node), quickly
  at first, then every 2 s. What the node recorded is the task's outcome,
  however late it says it:
  - no answer (unreachable, timing out, a 5xx) → unknown, never failed on that
    alone; its error says why (node_unreachable; node_unresponsive once the
    ledger has said the node is online for `unresponsive_after` of silence;
    node_offline when the ledger says so). Polled again with a backoff growing
    to 30 s until the node answers, or until the envelope's expiry plus
    `reconcile_margin` has passed: only then failed, with that reason.
  - 404: the node does not know the envelope at all → dispatched again.
  - lost with QueueLost: accepted, never started, its queue lost it → dispatched
    again (the node runs it once).
  - lost with ResultLost (or any other lost): it started and may have run →
    failed as lost, never sent again.
  The node itself retries a failing script as the envelope's `retries` say, so
  a failed job is final here.
- canceled deployment: pending tasks end as canceled; dispatched ones get a cancel
  signed by the coordinator (an admin on the nodes) and are followed to their end.
- a service's share moved to another node (coord.failover): a job still on the
  old node gets the same cancel, and the task ends as moved whatever the job did.

Every step runs in one replica's event loop, up to `concurrency` at a time, so
a deployment to a thousand nodes costs about a thousand / concurrency round trips.
A claimed task is leased to its replica for `lease` seconds, renewed every
third of that while its step runs (a heartbeat): a replica that dies mid-step
leaves its tasks to another within a lease.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time

import nacl.signing
from pydantic import BaseModel, ValidationError

from coord.nodes import NodeDirectory, NodeRecord
from coord.settings import CoordSettings
from coord.store import Deployment, Store, Task, TaskError, TaskState
from coord.supervisors import (
    ACCEPT_LIMIT,
    JOB_LIMIT,
    Answer,
    BadAnswer,
    SupervisorClients,
    Unreachable,
    clean,
    refusal,
)
from zeronode import retry
from zeronode.api.destinations import check_supervisor_url
from zeronode.api.errors import Refused, Unavailable
from zeronode.api.jobs import QUEUE_LOST, JobView, Status
from zeronode.api.middleware import HEADER as REQUEST_ID_HEADER, new_request_id
from zeronode.protocol import ticket

log = logging.getLogger("zeronode.coord")

JOB_STATES = {
    Status.QUEUED: TaskState.DISPATCHED,
    Status.STARTED: TaskState.RUNNING,
    Status.FINISHED: TaskState.SUCCEEDED,
    Status.FAILED: TaskState.FAILED,
    Status.TIMED_OUT: TaskState.FAILED,
    Status.CANCELED: TaskState.CANCELED,
    Status.LOST: TaskState.FAILED,  # unless the node says it never started (QueueLost): see Dispatcher._lost
}
if set(JOB_STATES) != set(Status):  # pragma: no cover - a status added to the wire and not here
    raise AssertionError(f"JOB_STATES does not map {set(Status) - set(JOB_STATES)}")
MAX_BACKOFF = 30.0
FIRST_POLL = 0.1  # seconds after dispatch; then every 1.5 times longer, up to MAX_POLL_INTERVAL
MAX_POLL_INTERVAL = 2.0
FIRST_RECONCILE = 0.5  # seconds between polls of a silent node at first; a quarter of its silence later, up to:
MAX_RECONCILE_INTERVAL = 30.0
MAX_REDISPATCHES = 10  # a node that loses the same unstarted job more often than this is not sent it again


class Accepted(BaseModel):
    """What coord reads of a supervisor's accept (POST /v1/jobs: 202 or 200 {job_id, status, duplicate})."""

    job_id: str


def _accepted_job(answer: Answer) -> str | None:
    try:
        return Accepted.model_validate_json(answer.body).job_id
    except ValidationError:
        return None


class Dispatcher:
    def __init__(
        self,
        store: Store,
        nodes: NodeDirectory,
        supervisors: SupervisorClients,
        settings: CoordSettings,
        key: nacl.signing.SigningKey,
        *,
        on_final=None,
    ):
        self.store = store
        self.nodes = nodes
        self.supervisors = supervisors
        self.settings = settings
        self.key = key  # signs the placement tickets of the nodes coord chose (its requests: SupervisorClients)
        self.wake = asyncio.Event()  # set when new work arrives, so the loop need not wait for its next poll
        self.on_final = on_final or (lambda task: None)
        # The immutable part of each deployment (envelope, expiry, targets), read once: a future, so the
        # steps of a thousand-node deployment that start together share one read.
        self._deployments: dict[str, asyncio.Future[Deployment | None]] = {}

    # -- the loop ------------------------------------------------------------------

    async def run(self, stop: asyncio.Event) -> None:
        # Each running step, and the lease it holds: (deployment, node, the score its lease set in the store).
        running: dict[asyncio.Task, tuple[str, str, float]] = {}
        heartbeat = asyncio.create_task(self._heartbeat(running, stop))
        while not stop.is_set():
            room = self.settings.concurrency - len(running)
            claimed, now = [], time.time()
            if room > 0:
                try:
                    claimed = await self.store.claim(room, self.settings.lease, now=now)
                except Exception as exc:  # Redis away: keep trying, quietly enough
                    log.warning("cannot claim tasks", extra={"error": str(exc)})
                    await asyncio.sleep(1.0)
            for deployment_id, node in claimed:
                step = asyncio.create_task(self.step(deployment_id, node))
                running[step] = (deployment_id, node, now + self.settings.lease)
                step.add_done_callback(lambda done: running.pop(done, None))
            if not claimed:
                self.wake.clear()
                try:
                    await asyncio.wait_for(self.wake.wait(), timeout=0.05)
                except TimeoutError:
                    pass
        heartbeat.cancel()
        for step in list(running):
            step.cancel()

    async def _heartbeat(self, running: dict[asyncio.Task, tuple[str, str, float]], stop: asyncio.Event) -> None:
        """Renew the leases of the running steps every third of a lease, so that a step longer than a lease
        (a slow supervisor, request_timeout) keeps its task, and a short lease still frees a dead replica's."""
        while not stop.is_set():
            await asyncio.sleep(self.settings.lease / 3)
            leases = list(running.items())
            if not leases:
                continue
            until = time.time() + self.settings.lease
            try:
                renewed = await self.store.renew([lease for _, lease in leases], until)
            except Exception as exc:  # Redis away: the steps' own saves will fail too; the leases run out
                log.warning("cannot renew leases", extra={"error": str(exc)})
                continue
            for step, (deployment_id, node, _) in leases:
                if step in running and (deployment_id, node) in renewed:
                    running[step] = (deployment_id, node, until)

    async def step(self, deployment_id: str, node: str) -> None:
        try:
            deployment = await self._deployment(deployment_id)
            task, canceled_by = await self.store.task(deployment_id, node)
            if task is None:  # its records expired: nothing to step, ever
                await self.store.forget(deployment_id, node)
                return
            if deployment is None or task.state.final:
                await self.store.save(task, task.state, next_step_at=None, read=task.updated)
                return
            previous, read = task.state, task.updated
            if previous == TaskState.PENDING:
                next_at = await self._dispatch(deployment, task, canceled_by)
            else:
                next_at = await self._track(deployment, task, canceled_by)
            if not await self.store.save(task, previous, next_step_at=next_at, read=read):
                # Another replica stepped it meanwhile (this one stalled past its lease): its progress stands.
                log.info("task stepped elsewhere meanwhile", extra={"deployment": deployment_id, "node": node})
                return
            if next_at is None:
                log.info("task ended", extra={"deployment": deployment_id, "node": node, "state": task.state.value})
                self.on_final(task)
        except Exception:  # a bug or Redis away: the lease brings the task back
            log.exception("step failed", extra={"deployment": deployment_id, "node": node})

    async def _deployment(self, deployment_id: str) -> Deployment | None:
        """The deployment, loaded (and its targets looked up in the ledger) once however many steps ask at once."""
        loading = self._deployments.get(deployment_id)
        if loading is None:
            if len(self._deployments) >= 1000:  # bounded: the oldest goes
                self._deployments.pop(next(iter(self._deployments)))
            loading = self._deployments[deployment_id] = asyncio.ensure_future(self._load(deployment_id))
        try:
            return await asyncio.shield(loading)
        except Exception:
            self._deployments.pop(deployment_id, None)  # asked again at the next step
            raise

    async def _load(self, deployment_id: str) -> Deployment | None:
        deployment = await self.store.deployment(deployment_id)
        if deployment is None:
            self._deployments.pop(deployment_id, None)
        else:  # where the targets are and whether they are online, as of now: what dispatch decides on
            await self.nodes.prefetch(deployment.targets)
        return deployment

    # -- pending: find the node and hand it the envelope -----------------------------

    async def _dispatch(self, deployment: Deployment, task: Task, canceled_by: str | None) -> float | None:
        now = time.time()
        if canceled_by:
            return self._end(task, TaskState.CANCELED, TaskError(reason="canceled", message="canceled before dispatch"))
        if now > deployment.expires_at:
            return self._fail(task, "expired", f"the envelope expired before node {task.node} accepted it")
        try:
            record = await self.nodes.get(task.node)
        except Unavailable as exc:
            return self._retry(task, "ledger_unavailable", str(exc))
        if record is None:
            return self._fail(task, "unknown_node", f"node {task.node} is not in the ledger")
        if not record.online:
            task.offline_since = task.offline_since or now
            task.unreachable_since = None  # silence while offline is the offline wait's, not unresponsiveness
            if now - task.offline_since >= self.settings.offline_wait:
                waited = f"waited {self.settings.offline_wait:.0f} s"
                return self._fail(task, "node_offline", f"node {task.node} is offline ({waited})")
            return now + min(1.0, self.settings.offline_wait / 5 or 0.1)
        task.offline_since = None
        if not record.supervisor_url:
            return self._fail(task, "no_supervisor", f"node {task.node} registered no supervisor URL")
        try:
            base = self._destination(record)
        except Refused as exc:
            return self._fail(task, exc.reason, f"node {task.node}: {exc}")
        # The submission's request id, so that the node's lines for this job (its supervisor's and its
        # runner's) are found with coord's; deployments stored before coord kept one get a new one.
        headers = {"content-type": "application/json", REQUEST_ID_HEADER: deployment.request_id or new_request_id()}
        if deployment.digest:  # nodes coord chose need its word for it (a node the envelope names ignores it)
            headers[ticket.HEADER] = ticket.issue_for(deployment.id, deployment.digest, task.node, self.key)
        try:
            answer = await self.supervisors.exchange(
                "POST", f"{base}/v1/jobs", limit=ACCEPT_LIMIT, body=deployment.envelope_bytes, headers=headers
            )
        except BadAnswer as exc:
            return self._fail(task, "bad_answer", f"supervisor of {task.node} {exc}")
        except Unreachable as exc:
            return self._silent_before_accepting(task, now, str(exc))
        task.unreachable_since = None  # it answered
        if answer.status in (200, 202):
            if _accepted_job(answer) != deployment.id:
                return self._fail(task, "bad_answer", f"supervisor of {task.node} answered {answer.status} without accepting the envelope")
            task.state, task.job_id, task.polls, task.error = TaskState.DISPATCHED, deployment.id, 0, None
            task.supervisor_url = base
            return now + FIRST_POLL
        if answer.status >= 500:
            return self._retry(task, "supervisor_error", f"supervisor of {task.node} answered {answer.status}")
        if answer.status < 400:  # a redirect (never followed) or a success that is not an accept
            return self._fail(task, "bad_answer", f"supervisor of {task.node} answered HTTP {answer.status}, not an accept")
        reason, message = refusal(answer)
        return self._fail(task, reason, f"node {task.node} refused the envelope: {message}")

    def _silent_before_accepting(self, task: Task, now: float, why: str) -> float | None:
        """The supervisor did not answer a dispatch (refused, timed out) though the ledger says the node is
        online: retried, and failed as node_unresponsive once that has lasted `unresponsive_after`."""
        self._went_silent(task, now, why)
        silent = now - task.unreachable_since
        if silent >= self.settings.unresponsive_after:
            return self._fail(
                task, "node_unresponsive",
                f"node {task.node} reports to the ledger but its supervisor has not answered for {silent:.0f} s: {why}",
            )
        next_at = self._retry(task, "supervisor_unreachable", f"supervisor of {task.node} unreachable: {why}")
        return min(next_at, task.unreachable_since + self.settings.unresponsive_after)

    def _destination(self, record: NodeRecord) -> str:
        """The node's supervisor URL as coord may use it (zeronode.api.destinations), or Refused: the ledger
        checks it at registration, but records from before that check, or a ledger that was not asked, exist."""
        return check_supervisor_url(
            record.supervisor_url or "", mycelium_address=record.mycelium_address, networks=self.settings.supervisor_networks
        )

    # -- dispatched or running: follow the job ---------------------------------------

    async def _track(self, deployment: Deployment, task: Task, canceled_by: str | None) -> float | None:
        now = time.time()
        record = None  # what the ledger says of the node, asked only while its supervisor is silent
        if task.unreachable_since is not None:  # the node may have moved: ask the ledger where it is now
            with contextlib.suppress(Unavailable):
                record = await self.nodes.get(task.node)
            if record and record.supervisor_url:
                with contextlib.suppress(Refused):  # a new URL coord may not use is not followed
                    task.supervisor_url = self._destination(record)
        url = (task.supervisor_url or "").rstrip("/")
        if (canceled_by or task.moved_to) and not task.cancel_sent:  # a share moved elsewhere must not run here too
            await self._send_cancel(url, task)
        try:
            # Signed by coord for this node: supervisors show a job only to its signer or a node admin.
            answer = await self.supervisors.exchange("GET", f"{url}/v1/jobs/{task.job_id}", limit=JOB_LIMIT, audience=task.node)
        except BadAnswer as exc:
            return self._fail(task, "bad_answer", f"supervisor of {task.node} {exc}")
        except Unreachable as exc:
            return self._unknown(deployment, task, now, str(exc), record)
        if answer.status == 404:  # the node does not know the envelope at all (its Redis and journal lost)
            task.unreachable_since = None
            return self._again(task, now, f"node {task.node} does not know job {task.job_id}")
        if 300 <= answer.status < 400:
            return self._fail(task, "bad_answer", f"supervisor of {task.node} answered HTTP {answer.status}, not a job")
        if answer.status in (401, 403):  # coord may not read the job there: asking again will not help
            reason, message = refusal(answer)
            return self._fail(task, reason, f"node {task.node} refused to show job {task.job_id}: {message}")
        if answer.status != 200:
            return self._unknown(deployment, task, now, f"answered HTTP {answer.status}", record)
        task.unreachable_since = None
        try:
            job = JobView.model_validate_json(answer.body)
        except ValidationError:
            job = None
        if job is None or job.id != task.job_id:
            return self._fail(task, "bad_answer", f"supervisor of {task.node} answered something that is not job {task.job_id}")
        if job.status == Status.LOST:
            return self._lost(task, now, job)
        state = JOB_STATES[job.status]
        if state == TaskState.SUCCEEDED:
            task.result, task.output = job.result, job.output
            return self._end(task, state, None)
        if state in (TaskState.FAILED, TaskState.CANCELED):
            task.output = job.output
            reason = "canceled" if state == TaskState.CANCELED else ("timed_out" if job.status == Status.TIMED_OUT else "script_error")
            error = job.error
            detail = TaskError(
                reason=reason,
                message=f"{error.type}: {error.message}" if error else job.status.value,
                line=error.line if error else None,
            )
            return self._end(task, state, detail)
        task.state, task.error = state, None
        task.polls += 1
        return now + retry.delay(task.polls, first=FIRST_POLL, factor=1.5, cap=MAX_POLL_INTERVAL)

    def _lost(self, task: Task, now: float, job: JobView) -> float | None:
        """The node's queue lost the job; its journal says whether it started. Never started (QueueLost):
        sending the envelope again runs it once. Started (ResultLost, or anything else it may say): it may
        have run, so it is never sent again."""
        error = job.error
        if error is not None and error.type == QUEUE_LOST:
            return self._again(task, now, f"node {task.node} lost job {task.job_id} before it started ({clean(error.message)})")
        said = clean(f"{error.type}: {error.message}") if error else "lost"
        task.output = job.output
        return self._fail(
            task, "lost", f"node {task.node} lost job {task.job_id} after it started (it may have run; not sent again): {said}"
        )

    def _again(self, task: Task, now: float, why: str) -> float | None:
        """Hand the envelope over again (the node does not have the job, and never ran it)."""
        if task.moved_to:  # nothing runs here, and nothing will: it runs on the node it moved to
            return self._end(task, TaskState.MOVED, TaskError(reason="moved", message=f"{why}; moved to {task.moved_to}"))
        if task.redispatches >= MAX_REDISPATCHES:
            return self._fail(task, "lost", f"{why}, after it was handed over {task.redispatches + 1} times: given up")
        task.redispatches += 1
        task.state, task.job_id, task.polls = TaskState.PENDING, None, 0
        task.error = TaskError(reason="redispatched", message=f"{why}: handed over again")
        return now

    async def _send_cancel(self, url: str, task: Task) -> None:
        try:
            answer = await self.supervisors.exchange("POST", f"{url}/v1/jobs/{task.job_id}/cancel", limit=JOB_LIMIT, audience=task.node)
            task.cancel_sent = answer.status < 500
        except BadAnswer:
            task.cancel_sent = True  # it answered; what it said is not ours to read
        except Unreachable:
            pass  # sent again at the next step

    # -- outcomes --------------------------------------------------------------------

    def _end(self, task: Task, state: TaskState, error: TaskError | None) -> None:
        """The task's outcome; a share of a service that moved elsewhere ends as moved, whatever it did here."""
        task.state, task.error = (TaskState.MOVED if task.moved_to else state), error
        return None

    def _fail(self, task: Task, reason: str, message: str) -> None:
        return self._end(task, TaskState.FAILED, TaskError(reason=reason, message=message))

    @staticmethod
    def _went_silent(task: Task, now: float, why: str) -> None:
        """Mark when the task's supervisor stopped answering; logged once, when it starts (each retry is not)."""
        if task.unreachable_since is None:
            log.warning("supervisor unreachable", extra={"node": task.node, "state": task.state.value, "error": why})
        task.unreachable_since = task.unreachable_since or now

    def _retry(self, task: Task, reason: str, message: str) -> float:
        task.attempts += 1
        task.error = TaskError(reason=reason, message=f"{message} (attempt {task.attempts}, retrying)")
        return time.time() + retry.delay(task.attempts - 1, first=0.5, cap=MAX_BACKOFF)

    def _unknown(self, deployment: Deployment, task: Task, now: float, why: str, record: NodeRecord | None) -> float | None:
        """The supervisor of a dispatched job does not answer: what the job became is unknown, not failed.
        Asked again, less and less often, until the envelope's expiry plus `reconcile_margin`; then failed."""
        self._went_silent(task, now, why)
        silent = now - task.unreachable_since
        lasting = f" for {silent:.0f} s" if silent >= 1 else ""
        if record is not None and not record.online:
            reason, what = "node_offline", f"node {task.node} is offline and has not answered{lasting}"
        elif record is not None and silent >= self.settings.unresponsive_after:
            reason, what = "node_unresponsive", f"node {task.node} reports to the ledger but its supervisor has not answered{lasting}"
        else:
            reason, what = "node_unreachable", f"the supervisor of {task.node} has not answered{lasting}"
        deadline = deployment.expires_at + self.settings.reconcile_margin
        if now >= deadline:
            return self._fail(
                task, reason, f"{what} ({why}), and the envelope expired {now - deployment.expires_at:.0f} s ago: "
                f"what became of job {task.job_id} is unknown",
            )
        task.state = TaskState.UNKNOWN
        task.error = TaskError(reason=reason, message=f"{what} ({why}): job {task.job_id} is followed until it answers")
        task.polls += 1
        return min(now + min(MAX_RECONCILE_INTERVAL, max(FIRST_RECONCILE, silent / 4)), deadline)
