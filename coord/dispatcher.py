"""Moving tasks forward: dispatch each to its node's supervisor, then follow the job to its end.

A task's life, one step at a time (each step is one claim from the store):

    pending ──POST /v1/jobs──▶ dispatched ──GET /v1/jobs/ID──▶ running ──▶ succeeded | failed | canceled

- pending: the ledger says where the node is. Unknown → failed. Offline → wait,
  failed after `offline_wait`. A supervisor URL coord may not send to (a path,
  a name, an address outside the node's mycelium /64 and `supervisor_networks`)
  → failed as forbidden_destination, nothing sent. The supervisor answers
  202/200 accepting this envelope → dispatched; 4xx (bad signature, not
  authorised, wrong node...) → failed for good, with its reason; a redirect or
  an answer too large or of the wrong shape → failed as bad_answer (coord.supervisors);
  unreachable or 5xx → retried with capped backoff until the envelope expires.
- dispatched/running: the job is polled (signed by coord for the node), quickly
  at first, then every 2 s. An unreachable supervisor is retried until
  `lost_after`; a job the node no longer knows (its Redis was wiped) is
  dispatched again. The node itself retries a failing script as the envelope's
  `retries` say, so a failed job is final here.
- canceled deployment: pending tasks end as canceled; dispatched ones get a cancel
  signed by the coordinator (an admin on the nodes) and are followed to their end.

Every step runs in one replica's event loop, up to `concurrency` at a time, so
a deployment to a thousand nodes costs about a thousand / concurrency round trips.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time

import httpx
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
    failure,
    refusal,
)
from zeronode import retry
from zeronode.api.destinations import check_supervisor_url
from zeronode.api.errors import Refused, Unavailable
from zeronode.api.jobs import JobView, Status
from zeronode.protocol.signed_requests import AUDIENCE_HEADER, SignedRequestAuth

log = logging.getLogger("zeronode.coord")

JOB_STATES = {
    Status.QUEUED: TaskState.DISPATCHED,
    Status.STARTED: TaskState.RUNNING,
    Status.FINISHED: TaskState.SUCCEEDED,
    Status.FAILED: TaskState.FAILED,
    Status.TIMED_OUT: TaskState.FAILED,
    Status.CANCELED: TaskState.CANCELED,
}
MAX_BACKOFF = 30.0
FIRST_POLL = 0.1  # seconds after dispatch; then every 1.5 times longer, up to MAX_POLL_INTERVAL
MAX_POLL_INTERVAL = 2.0


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
        self.auth = SignedRequestAuth(key)  # each request names its node as the audience
        self.wake = asyncio.Event()  # set when new work arrives, so the loop need not wait for its next poll
        self.on_final = on_final or (lambda task: None)
        # The immutable part of each deployment (envelope, expiry, targets), read once: a future, so the
        # steps of a thousand-node deployment that start together share one read.
        self._deployments: dict[str, asyncio.Future[Deployment | None]] = {}

    # -- the loop ------------------------------------------------------------------

    async def run(self, stop: asyncio.Event) -> None:
        running: set[asyncio.Task] = set()
        while not stop.is_set():
            room = self.settings.concurrency - len(running)
            claimed = []
            if room > 0:
                try:
                    claimed = await self.store.claim(room, self.settings.lease)
                except Exception as exc:  # Redis away: keep trying, quietly enough
                    log.warning("cannot claim tasks", extra={"error": str(exc)})
                    await asyncio.sleep(1.0)
            for deployment_id, node in claimed:
                step = asyncio.create_task(self.step(deployment_id, node))
                running.add(step)
                step.add_done_callback(running.discard)
            if not claimed:
                self.wake.clear()
                try:
                    await asyncio.wait_for(self.wake.wait(), timeout=0.05)
                except TimeoutError:
                    pass
        for step in running:
            step.cancel()

    async def step(self, deployment_id: str, node: str) -> None:
        try:
            deployment = await self._deployment(deployment_id)
            task, canceled_by = await self.store.task(deployment_id, node)
            if deployment is None or task is None or task.state.final:
                if task is not None:
                    await self.store.save(task, task.state, next_step_at=None)
                return
            previous = task.state
            if previous == TaskState.PENDING:
                next_at = await self._dispatch(deployment, task, canceled_by)
            else:
                next_at = await self._track(task, canceled_by)
            await self.store.save(task, previous, next_step_at=next_at)
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
        try:
            answer = await self.supervisors.exchange(
                "POST", f"{base}/v1/jobs", limit=ACCEPT_LIMIT,
                content=deployment.envelope, headers={"content-type": "application/json"},
            )
        except BadAnswer as exc:
            return self._fail(task, "bad_answer", f"supervisor of {task.node} {exc}")
        except httpx.HTTPError as exc:
            return self._retry(task, "supervisor_unreachable", f"supervisor of {task.node} unreachable: {failure(exc)}")
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

    def _destination(self, record: NodeRecord) -> str:
        """The node's supervisor URL as coord may use it (zeronode.api.destinations), or Refused: the ledger
        checks it at registration, but records from before that check, or a ledger that was not asked, exist."""
        return check_supervisor_url(
            record.supervisor_url or "", mycelium_address=record.mycelium_address, networks=self.settings.supervisor_networks
        )

    # -- dispatched or running: follow the job ---------------------------------------

    async def _track(self, task: Task, canceled_by: str | None) -> float | None:
        now = time.time()
        if task.unreachable_since is not None:  # the node may have moved: ask the ledger where it is now
            with contextlib.suppress(Unavailable, Refused):  # Refused: a new URL coord may not use is not followed
                record = await self.nodes.get(task.node)
                if record and record.supervisor_url:
                    task.supervisor_url = self._destination(record)
        url = (task.supervisor_url or "").rstrip("/")
        if canceled_by and not task.cancel_sent:
            await self._send_cancel(url, task)
        try:
            # Signed by coord for this node: supervisors show a job only to its signer or a node admin.
            answer = await self.supervisors.exchange(
                "GET", f"{url}/v1/jobs/{task.job_id}", limit=JOB_LIMIT, auth=self.auth, headers={AUDIENCE_HEADER: task.node}
            )
        except BadAnswer as exc:
            return self._fail(task, "bad_answer", f"supervisor of {task.node} {exc}")
        except httpx.HTTPError as exc:
            return self._unreachable(task, now, failure(exc))
        if answer.status == 404:  # the node lost the job (its Redis was wiped): hand it over again
            task.state, task.job_id = TaskState.PENDING, None
            return now
        if 300 <= answer.status < 400:
            return self._fail(task, "bad_answer", f"supervisor of {task.node} answered HTTP {answer.status}, not a job")
        if answer.status in (401, 403):  # coord may not read the job there: asking again will not help
            reason, message = refusal(answer)
            return self._fail(task, reason, f"node {task.node} refused to show job {task.job_id}: {message}")
        if answer.status != 200:
            return self._unreachable(task, now, f"answered {answer.status}")
        task.unreachable_since = None
        try:
            job = JobView.model_validate_json(answer.body)
        except ValidationError:
            job = None
        if job is None or job.id != task.job_id:
            return self._fail(task, "bad_answer", f"supervisor of {task.node} answered something that is not job {task.job_id}")
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
        task.state = state
        task.polls += 1
        return now + retry.delay(task.polls, first=FIRST_POLL, factor=1.5, cap=MAX_POLL_INTERVAL)

    async def _send_cancel(self, url: str, task: Task) -> None:
        try:
            answer = await self.supervisors.exchange(
                "POST", f"{url}/v1/jobs/{task.job_id}/cancel", limit=JOB_LIMIT, auth=self.auth, headers={AUDIENCE_HEADER: task.node}
            )
            task.cancel_sent = answer.status < 500
        except BadAnswer:
            task.cancel_sent = True  # it answered; what it said is not ours to read
        except httpx.HTTPError:
            pass  # sent again at the next step

    # -- outcomes --------------------------------------------------------------------

    def _end(self, task: Task, state: TaskState, error: TaskError | None) -> None:
        task.state, task.error = state, error
        return None

    def _fail(self, task: Task, reason: str, message: str) -> None:
        return self._end(task, TaskState.FAILED, TaskError(reason=reason, message=message))

    def _retry(self, task: Task, reason: str, message: str) -> float:
        task.attempts += 1
        task.error = TaskError(reason=reason, message=f"{message} (attempt {task.attempts}, retrying)")
        return time.time() + retry.delay(task.attempts - 1, first=0.5, cap=MAX_BACKOFF)

    def _unreachable(self, task: Task, now: float, why: str) -> float | None:
        task.unreachable_since = task.unreachable_since or now
        if now - task.unreachable_since >= self.settings.lost_after:
            return self._fail(task, "node_unreachable", f"lost contact with node {task.node}: {why}")
        task.polls += 1
        return now + retry.delay(min(task.polls, 10), first=0.5, factor=1.5, cap=MAX_POLL_INTERVAL * 2)
