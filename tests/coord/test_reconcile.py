"""Coord and the nodes agree after a stall: a task's outcome is what its node recorded, whenever the node answers.

A supervisor stopped (SIGSTOP) after dispatch leaves its task unknown, never failed for the silence alone, and
its real result is taken when it answers; one stopped before it accepts fails as node_unresponsive after
`unresponsive_after`, not after the envelope's hour; a replica killed mid-step leaves its task to another within
a lease, and a step longer than a lease keeps its task; what a node's journal says of a lost job decides whether
it is sent again; and coord forwards the envelope it verified, in canonical JSON, one deployment per envelope id.
"""

import asyncio
import contextlib
import json
import logging
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from coord.dispatcher import JOB_STATES
from coord.store import Deployment, Store, TaskState, connect
from tests.support.fleet import node_url
from tests.support.health import status, wait_healthy
from tests.support.nodes import new_node_key, register_node
from tests.support.ports import free_port
from tests.support.processes import stop
from tests.support.waiting import wait_until
from zeronode.api.errors import Refused
from zeronode.api.jobs import QUEUE_LOST, RESULT_LOST, Status
from zeronode.client.coord import CoordClient
from zeronode.protocol import keys

REPO = Path(__file__).resolve().parents[2]


@pytest.fixture
def fleet_process(control_plane, tmp_path):
    """start(run_time) → (node id, process): a simulated supervisor in a process of its own, registered in
    the ledger and reporting (online), so a test can stop it as a hung supervisor stops: the kernel still
    takes connections and nothing answers them. Its jobs run on while it is stopped, as a node's runners do."""
    started: list[subprocess.Popen] = []

    def start(run_time: float) -> tuple[str, subprocess.Popen]:
        key, node = new_node_key()
        listed = tmp_path / f"fleet-{len(started)}.txt"
        listed.write_text(f"{node}\n")
        port = free_port()
        process = subprocess.Popen(
            [sys.executable, "-m", "tests.support.fleet", "--port", str(port), "--nodes", str(listed),
             f"--admin={keys.public_key_text(control_plane.coord_key)}", "--run-time", str(run_time)],
            cwd=REPO, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        )
        started.append(process)
        url = node_url(port, 0)
        wait_until(lambda: status(f"{url}/v1/jobs/none") == 404, 30, "the fleet process to listen", process=process)
        register_node(control_plane.ledger_url, key, url)
        return node, process

    yield start
    for process in started:
        with contextlib.suppress(ProcessLookupError):
            os.kill(process.pid, signal.SIGCONT)
        stop(process, 10)


@pytest.fixture
def thawed(control_plane):
    """The in-process fleet's frozen nodes are thawed at the end, so its server can stop."""
    yield control_plane.fleet.frozen
    control_plane.fleet.frozen.clear()


def task_of(coord, envelope) -> dict:
    return coord.deployment(envelope.id)["tasks"][0]


def states_until_final(coord, envelope, timeout: float = 30) -> tuple[list[str], dict]:
    """Every state the task was seen in while following the deployment, and its final view."""
    seen = []
    for progress in coord.follow(envelope.id, timeout=timeout):
        seen.append(progress["tasks"][0]["state"])
    return seen, progress


# -- a node that stops answering -----------------------------------------------------


def test_a_supervisor_stopped_after_dispatch_leaves_its_task_unknown_then_gives_its_result(control_plane, fleet_process):
    node, supervisor = fleet_process(run_time=2.0)  # the job finishes while its supervisor is stopped
    coord = control_plane.make_coord(db=1, request_timeout=0.5, unresponsive_after=2.0)
    envelope = control_plane.sign([node])
    coord.submit(envelope)
    wait_until(lambda: task_of(coord, envelope)["state"] in ("dispatched", "running"), 20, "dispatch")
    os.kill(supervisor.pid, signal.SIGSTOP)
    try:
        unknown = wait_until(lambda: (t := task_of(coord, envelope))["state"] == "unknown" and t, 20, "unknown")
        assert unknown["error"]["reason"] == "node_unreachable" and unknown["result"] is None
        # The ledger still hears from the node: after the configured wait its silence has a name, and the
        # task is still unknown, not failed.
        unresponsive = wait_until(
            lambda: (t := task_of(coord, envelope))["error"] and t["error"]["reason"] == "node_unresponsive" and t,
            20, "node_unresponsive",
        )
        assert unresponsive["state"] == "unknown"
        assert "reports to the ledger" in unresponsive["error"]["message"]
    finally:
        os.kill(supervisor.pid, signal.SIGCONT)
    *_, final = coord.follow(envelope.id, timeout=30)
    task = final["tasks"][0]
    assert (final["status"], task["state"], task["result"], task["error"]) == ("succeeded", "succeeded", {"node": node}, None)


def test_a_supervisor_stopped_before_accepting_fails_as_unresponsive_after_the_wait(control_plane, fleet_process, caplog):
    caplog.set_level(logging.WARNING, logger="zeronode.coord")
    node, supervisor = fleet_process(run_time=0.2)
    coord = control_plane.make_coord(db=1, request_timeout=0.5, unresponsive_after=2.0)
    os.kill(supervisor.pid, signal.SIGSTOP)
    envelope = control_plane.sign([node])  # valid for an hour: what coord waited out before
    coord.submit(envelope)
    *_, final = coord.follow(envelope.id, timeout=30)
    task = final["tasks"][0]
    assert (final["status"], task["state"], task["error"]["reason"]) == ("failed", "failed", "node_unresponsive")
    assert "reports to the ledger" in task["error"]["message"] and task["job_id"] is None
    assert task["attempts"] > 1  # retried, and logged once, when its supervisor went silent
    silent = [record for record in caplog.records if record.getMessage() == "supervisor unreachable"]
    assert [record.node for record in silent] == [node]


def test_a_silent_node_fails_its_task_only_past_the_envelopes_expiry(control_plane, thawed):
    control_plane.fleet.run_time = 60
    coord = control_plane.make_coord(db=1, request_timeout=0.5, reconcile_margin=1.0, unresponsive_after=60)
    node = control_plane.add_node()
    envelope = control_plane.sign([node], ttl=4)
    coord.submit(envelope)
    wait_until(lambda: task_of(coord, envelope)["state"] in ("dispatched", "running"), 20, "dispatch")
    thawed.add(node)
    seen, final = states_until_final(coord, envelope)
    task = final["tasks"][0]
    assert "unknown" in seen and (task["state"], task["error"]["reason"]) == ("failed", "node_unreachable")
    assert "the envelope expired" in task["error"]["message"] and "is unknown" in task["error"]["message"]


# -- replicas ------------------------------------------------------------------------


def test_a_replica_killed_mid_step_leaves_its_task_to_another(control_plane, services, tmp_path, thawed):
    node = control_plane.add_node()
    thawed.add(node)  # the doomed replica's dispatch hangs there: it dies mid-step
    state, port = tmp_path / "doomed", free_port()
    keys.save_private_key(control_plane.coord_key, state / "coord.key")
    config = tmp_path / "doomed.toml"
    config.write_text(  # its lease is the default one: how soon its tasks are another's is what is tested
        f'state_dir = "{state}"\nredis_url = "{control_plane.redis_url(1)}"\nledger_url = "{control_plane.ledger_url}"\n'
        f'port = {port}\nsupervisor_networks = ["127.0.0.0/8"]\nrequest_timeout = 120\n'
    )
    doomed = services("coord", "--config", config)
    url = f"http://127.0.0.1:{port}"
    wait_healthy(url, 30, doomed.process)
    envelope = control_plane.sign([node])
    with CoordClient(url, key=control_plane.client_key) as client:
        client.submit(envelope)
    wait_until(lambda: control_plane.fleet.requests[node], 20, "the doomed replica's dispatch to reach the node")
    os.kill(doomed.process.pid, signal.SIGKILL)
    doomed.process.wait(10)
    thawed.discard(node)  # the node takes the dead replica's request late, as a slow one would
    survivor = control_plane.make_coord(db=1)
    *_, final = survivor.follow(envelope.id, timeout=20)  # generous: a few leases
    task = final["tasks"][0]
    assert (final["status"], task["result"]) == ("succeeded", {"node": node})
    assert control_plane.fleet.runs(node, envelope.id) == 1  # sent twice, run once


def test_a_step_longer_than_its_lease_keeps_its_task(control_plane, thawed):
    first = control_plane.make_coord(db=1, lease=2.0, request_timeout=60)
    node = control_plane.add_node()
    thawed.add(node)
    envelope = control_plane.sign([node])
    first.submit(envelope)
    wait_until(lambda: control_plane.fleet.requests[node], 20, "the dispatch to reach the node")
    second = control_plane.make_coord(db=1, lease=2.0)
    time.sleep(6)  # three leases: without renewals the second replica would take the task and send it again
    thawed.discard(node)
    *_, final = second.follow(envelope.id, timeout=20)
    assert final["status"] == "succeeded"
    assert [r for r in control_plane.fleet.requests[node] if r.startswith("POST")] == ["POST /v1/jobs"]


def test_a_step_saves_only_over_the_record_it_read(redis_server, redis_client):
    async def scenario():
        store = Store(connect(f"unix://{redis_server}"))
        deployment = Deployment(
            id="d", signer="s", created=time.time(), envelope="{}", expires_at=int(time.time()) + 60, targets=["n"]
        )
        assert await store.create(deployment)
        task, _ = await store.task("d", "n")
        mine, theirs = task.model_copy(), task.model_copy()
        theirs.state = TaskState.DISPATCHED  # another replica, which took the task while this one stalled
        assert await store.save(theirs, TaskState.PENDING, next_step_at=time.time() + 1, read=task.updated)
        mine.state = TaskState.FAILED
        assert not await store.save(mine, TaskState.PENDING, next_step_at=None, read=task.updated)
        stored = await store.deployment("d")
        assert stored.counts == {"dispatched": 1}
        assert [t.state for t in await store.tasks(stored)] == [TaskState.DISPATCHED]
        await store.redis.aclose()

    asyncio.run(scenario())


# -- what the node's journal says of a lost job ----------------------------------------


def test_every_job_status_has_a_task_state():
    assert set(JOB_STATES) == set(Status)


def test_a_job_lost_before_it_started_is_sent_again_and_runs_once(control_plane):
    control_plane.fleet.run_time = 4.0  # queued for its first 2 s
    node = control_plane.add_node()
    envelope = control_plane.sign([node])
    control_plane.coord.submit(envelope)
    wait_until(lambda: (node, envelope.id) in control_plane.fleet.jobs, 20, "dispatch")
    control_plane.fleet.lose(node, envelope.id, QUEUE_LOST)
    *_, final = control_plane.coord.follow(envelope.id, timeout=30)
    task = final["tasks"][0]
    assert (final["status"], task["result"], task["redispatches"], task["error"]) == ("succeeded", {"node": node}, 1, None)
    assert len(control_plane.fleet.bodies[(node, envelope.id)]) == 2  # handed over again...
    assert control_plane.fleet.runs(node, envelope.id) == 1  # ...and run once


def test_a_job_lost_after_it_started_fails_as_lost_and_is_never_sent_again(control_plane):
    control_plane.fleet.run_time = 4.0
    node = control_plane.add_node()
    envelope = control_plane.sign([node])
    control_plane.coord.submit(envelope)
    wait_until(lambda: (node, envelope.id) in control_plane.fleet.jobs, 20, "dispatch")
    control_plane.fleet.lose(node, envelope.id, RESULT_LOST)
    *_, final = control_plane.coord.follow(envelope.id, timeout=30)
    task = final["tasks"][0]
    assert (final["status"], task["state"], task["error"]["reason"]) == ("failed", "failed", "lost")
    assert "ResultLost: the node's queue lost job" in task["error"]["message"]  # the node's own words
    assert len(control_plane.fleet.bodies[(node, envelope.id)]) == 1
    assert control_plane.fleet.runs(node, envelope.id) == 1


# -- what coord forwards -----------------------------------------------------------------


def test_an_envelope_with_a_key_twice_is_refused_or_forwarded_as_coord_read_it(control_plane):
    node = control_plane.add_node()
    envelope = control_plane.sign([node], script="42")
    canonical = envelope.canonical_json().decode()
    assert canonical.count('"script":"42"') == 1
    # A parser that keeps a key's first value reads 666; pydantic's (and Python's) keep the last.
    twice = canonical.replace('"script":"42"', '"script":"666","script":"42"')
    try:
        control_plane.coord.submit(twice)
    except Refused as refused:  # a strict parser's answer
        assert 400 <= refused.status < 500
        with pytest.raises(Refused) as missing:
            control_plane.coord.deployment(envelope.id)
        assert missing.value.status == 404 and control_plane.fleet.bodies == {}
        return
    *_, final = control_plane.coord.follow(envelope.id, timeout=30)
    assert final["status"] == "succeeded"
    assert control_plane.fleet.bodies[(node, envelope.id)] == [canonical.encode()]  # what coord verified, each key once


def test_submissions_are_one_deployment_by_envelope_not_by_bytes(control_plane):
    coord = control_plane.make_coord(db=1, submissions_per_minute=1)
    node = control_plane.add_node()
    envelope = control_plane.sign([node], env={"B": "2", "A": "1"})
    assert coord.submit(envelope)["duplicate"] is False
    fields = json.loads(envelope.to_json())
    respelled = json.dumps(dict(reversed(fields.items())), indent=2)  # the same envelope, other bytes
    assert coord.submit(respelled)["duplicate"] is True  # answered before the quota (one a minute) is spent
    other = control_plane.sign([node], script="43").model_copy(update={"id": envelope.id, "signatures": []})
    with pytest.raises(Refused) as reused:
        coord.submit(other.signed_by(control_plane.client_key))
    assert (reused.value.status, reused.value.reason) == (409, "id_in_use")
    *_, final = coord.follow(envelope.id, timeout=30)
    assert final["status"] == "succeeded"
    assert control_plane.fleet.bodies[(node, envelope.id)] == [envelope.canonical_json()]
