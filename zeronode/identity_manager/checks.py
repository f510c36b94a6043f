"""Whether a new version works on this node, checked within the update window. Each check waits for its
part until the deadline; the first that fails names the part and why (CheckFailed), and the update is
rolled back (zeronode.identity_manager.updates).

    supervisor   /health answers 200 from the new version (its body names the version)
    runners      a runner started since the switch is registered on the node's queue (rq's worker registry)
    canary       a job signed by the node's own key goes through the node's own queue: accepted by the
                 supervisor, run by a runner in Rhai, its result read back (the whole path a deployment takes)
    report       the new version's identity manager registers and reports to the ledger once, and exits 0
    services     (zeronode.identity_manager.services) every service restarted is still the process it
                 started as: none crashed after its start, none is in a restart loop
"""

from __future__ import annotations

import time
from collections.abc import Callable
from datetime import datetime

import httpx
import nacl.signing
import redis
from rq import Queue, Worker

from zeronode.api.errors import error_fields
from zeronode.node.settings import NodeSettings
from zeronode.protocol.envelope import new_envelope
from zeronode.protocol.signed_requests import SignedRequestAuth
from zeronode.release.manifest import ReleaseError

CANARY_SCRIPT = "let answer = 40 + 2; answer"
CANARY_RESULT = 42
POLL = 0.25


class CheckFailed(ReleaseError):
    """A new version failed a health check: which and why."""


def _until(deadline: float, what: str, attempt: Callable[[], str | None]) -> None:
    """Call `attempt` until it returns None (passed) or the deadline; CheckFailed with its last complaint."""
    complaint = "not checked"
    while True:
        complaint = attempt()
        if complaint is None:
            return
        if time.monotonic() >= deadline:
            raise CheckFailed(f"{what}: {complaint}")
        time.sleep(POLL)


def supervisor(url: str, version: str, deadline: float) -> None:
    def attempt() -> str | None:
        try:
            response = httpx.get(f"{url}/health", timeout=2)
        except httpx.HTTPError as exc:
            return f"no answer from {url}/health ({type(exc).__name__})"
        try:
            body = response.json()
        except ValueError:
            body = {}
        if response.status_code != 200:
            return f"/health answered {response.status_code}: {str(body.get('status', response.text))[:200]}"
        if body.get("version") != version:
            return f"/health is from version {body.get('version')!r}, not {version}"
        return None

    _until(deadline, "supervisor", attempt)


def runners(settings: NodeSettings, since: float, deadline: float) -> None:
    connection = redis.Redis.from_url(settings.redis_url, socket_timeout=2, socket_connect_timeout=2)

    def attempt() -> str | None:
        try:
            workers = Worker.all(connection=connection, queue=Queue(settings.queue, connection=connection))
        except redis.RedisError as exc:
            return f"the node's Redis: {exc}"
        born = [w for w in workers if w.birth_date and _timestamp(w.birth_date) >= since - 1]
        return None if born else f"no runner started since the switch ({len(workers)} older ones registered)"

    with connection:
        _until(deadline, "runners", attempt)


def _timestamp(moment: datetime) -> float:
    return moment.timestamp()


def canary(url: str, node_id: str, key: nacl.signing.SigningKey, deadline: float) -> str | None:
    """Run the canary job; None when it ran, or why it could not be tried (a signature policy on this node
    that the node's own key cannot meet: the old version would refuse it too)."""
    envelope = new_envelope(CANARY_SCRIPT, [node_id], key, timeout=30, ttl=600)
    job_id: str | None = None
    skipped: str | None = None

    def submit() -> str | None:
        nonlocal job_id, skipped
        try:
            response = httpx.post(f"{url}/v1/jobs", content=envelope.to_json(), timeout=5,
                                  headers={"content-type": "application/json"})
        except httpx.HTTPError as exc:
            return f"submitting: {type(exc).__name__}"
        body = _json(response)
        reason = (error_fields(body) or {}).get("reason")
        if response.status_code == 403 and reason == "policy_not_met":
            skipped = "a signature policy covers this node: the node's own key cannot sign a canary job"
            return None
        if response.status_code >= 300:
            return f"submitting: {response.status_code} {str(body.get('detail', response.text))[:200]}"
        job_id = body["job_id"]
        return None

    _until(deadline, "canary job", submit)
    if skipped:
        return skipped
    auth = SignedRequestAuth(key, node_id)

    def finished() -> str | None:
        try:
            response = httpx.get(f"{url}/v1/jobs/{job_id}", timeout=5, auth=auth)
        except httpx.HTTPError as exc:
            return f"reading job {job_id}: {type(exc).__name__}"
        job = _json(response)
        status = job.get("status")
        if status == "finished" and job.get("result") == CANARY_RESULT:
            return None
        if status in ("failed", "timed_out", "canceled", "lost", "finished"):
            raise CheckFailed(f"canary job: {status}: {job.get('error') or job.get('result')}")
        return f"job {job_id} is {status or response.status_code}"

    _until(deadline, "canary job", finished)
    return None


def _json(response: httpx.Response) -> dict:
    try:
        body = response.json()
    except ValueError:
        return {}
    return body if isinstance(body, dict) else {}
