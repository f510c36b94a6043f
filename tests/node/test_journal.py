"""The node's journal: an envelope's attempt runs at most once, whatever the node's Redis forgets.

Runs are counted through a side effect outside Redis: each run of a script
creates a btrfs volume named after its envelope and the runs before it.
"""

from __future__ import annotations

import shutil
import subprocess
import sys
import time
import uuid

import httpx
import nacl.signing
import pytest
import redis
from rq.job import Job
from rq.serializers import JSONSerializer

from supervisor.app import create_app
from supervisor.service import Supervisor
from tests.node.conftest import RunnerPool
from tests.support.redis_server import start_redis_server
from tests.support.waiting import wait_until
from zeronode.api.jobs import QUEUE_LOST, RESULT_LOST, JobView, ScriptError, Status
from zeronode.node.authorizer import node_authorizer
from zeronode.node.identity import node_identity
from zeronode.node.journal import Claim, Journal
from zeronode.node.queue.jobs import Outcome
from zeronode.node.settings import NodeSettings
from zeronode.protocol import keys
from zeronode.protocol.envelope import new_envelope
from zeronode.protocol.signed_requests import SignedRequestAuth

# Each run makes one more volume MARK-0, MARK-1, ...: their number is how often the script ran.
COUNTING_SCRIPT = """
let runs = volume_list().filter(|v| v.name.starts_with(env.MARK)).len();
volume_create(#{ name: `${env.MARK}-${runs}` });
let started = timestamp();
while started.elapsed < parse_float(env.SECONDS) {}
runs + 1
"""


def runs(pool_dir, mark: str) -> int:
    return sum(1 for entry in pool_dir.iterdir() if entry.name.startswith(f"{mark}-"))


# -- the journal's decisions, on a real SQLite file -------------------------------------------


@pytest.fixture
def journal(tmp_path):
    journal = Journal(tmp_path / "state" / "journal.sqlite3")
    yield journal
    journal.close()


def finished(status: Status = Status.FINISHED, error: str | None = None) -> Outcome:
    return Outcome(status=status, value=1, error=ScriptError(type=error, message="m") if error else None)


def test_an_attempt_is_claimed_once_and_a_finished_envelope_never_again(journal, tmp_path):
    assert (tmp_path / "state" / "journal.sqlite3").stat().st_mode & 0o777 == 0o600
    assert journal.claim("e1", "signer", "n1", 2e9, 1)[0] is Claim.RUN
    assert journal.claim("e1", "signer", "n1", 2e9, 1)[0] is Claim.BUSY  # this process, alive, holds it
    journal.end("e1", finished())
    claim, entry = journal.claim("e1", "signer", "n1", 2e9, 2)
    assert claim is Claim.ENDED and entry.outcome.status == Status.FINISHED
    assert journal.claim("e1", "signer", "n1", 2e9, 1)[0] is Claim.ENDED


def test_a_failed_attempt_may_be_retried_and_only_by_the_next_attempt(journal):
    journal.claim("e2", "signer", "n2", 2e9, 1)
    journal.end("e2", finished(Status.FAILED, "ErrorRuntime"))
    assert journal.claim("e2", "signer", "n2", 2e9, 1)[0] is Claim.ENDED
    assert journal.claim("e2", "signer", "n2", 2e9, 2)[0] is Claim.RUN


def test_an_attempt_whose_runner_died_is_not_run_again_but_the_next_attempt_is(journal, tmp_path):
    # Another process claims and dies without ending the run.
    code = (
        "import sys; from zeronode.node.journal import Journal; "
        "print(Journal(sys.argv[1]).claim('e3', 'signer', 'n3', 2e9, 1)[0].name)"
    )
    claimed = subprocess.run([sys.executable, "-c", code, str(journal.path)], capture_output=True, text=True, check=True)
    assert claimed.stdout.strip() == "RUN"
    claim, entry = journal.claim("e3", "signer", "n3", 2e9, 1)
    assert claim is Claim.ENDED and entry.outcome is None
    assert journal.status(entry)[0] == Status.LOST and journal.status(entry)[1].type == RESULT_LOST
    assert journal.claim("e3", "signer", "n3", 2e9, 2)[0] is Claim.RUN


def test_a_nonce_or_an_id_of_another_envelope_is_a_replay(journal):
    assert journal.accept([("e4", "signer", "n4", 2e9)]) == set()
    assert journal.accept([("e5", "signer", "n4", 2e9), ("e6", "other", "n4", 2e9)]) == {"e5"}
    assert journal.claim("e4", "signer", "another nonce", 2e9, 1)[0] is Claim.REPLAYED
    entry = journal.entry("e4")
    assert journal.status(entry)[0] == Status.LOST and journal.status(entry)[1].type == QUEUE_LOST


def test_a_script_that_outgrew_its_limits_is_not_retried(journal):
    journal.claim("e9", "signer", "n9", 2e9, 1)
    journal.end("e9", finished(Status.FAILED, "ResourceLimit"))
    assert journal.claim("e9", "signer", "n9", 2e9, 2)[0] is Claim.ENDED


def test_entries_are_pruned_well_after_expiry_and_never_while_their_run_goes_on(journal):
    now = time.time()
    journal.accept([("long gone", "signer", "n7", now - 7200), ("just expired", "signer", "n8", now - 60)])
    journal.claim("running", "signer", "n9", now - 7200, 1)  # a run that outlasts its envelope
    journal._last_prune = 0.0
    journal.accept([("new", "signer", "n10", now + 3600)])
    assert journal.entry("long gone") is None
    assert journal.entry("just expired") is not None  # verification still tolerates clock skew past expiry
    assert journal.entry("running") is not None and journal.entry("new") is not None


CLAIM_AT_ONCE = """
import sys, time
from pathlib import Path
from zeronode.node.journal import Journal
journal = Journal(sys.argv[1])
while not Path(sys.argv[2]).exists():
    time.sleep(0.001)
print(journal.claim("race", "signer", "n", 2e9, 1)[0].name, flush=True)
sys.stdin.read()  # alive until told: a live holder
"""


def test_two_runners_claiming_one_attempt_at_once_run_it_once(journal, tmp_path):
    start = tmp_path / "go"
    claimants = [
        subprocess.Popen([sys.executable, "-c", CLAIM_AT_ONCE, str(journal.path), str(start)],
                         stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
        for _ in range(4)
    ]
    time.sleep(1)  # all of them waiting
    start.touch()
    verdicts = sorted(claimant.stdout.readline().strip() for claimant in claimants)
    for claimant in claimants:
        claimant.communicate("")
    assert verdicts == ["BUSY", "BUSY", "BUSY", "RUN"]


# -- a node whose Redis forgets, with real processes ------------------------------------------


class Redis:
    """A private redis-server that the test kills with -9 and starts again on the same socket and directory."""

    def __init__(self, directory, persistence: str):
        self.directory = directory
        self.persistence = persistence
        self.process, self.socket = start_redis_server(directory, persistence=persistence)

    def kill(self) -> None:
        self.process.kill()
        self.process.wait()

    def restart(self) -> None:
        self.process, _ = start_redis_server(self.directory, persistence=self.persistence)

    def stop(self) -> None:
        self.kill()


@pytest.fixture(params=["none", "aof"])
def fragile_node(request, tmp_path, pool_dir, serve_app):
    """A node on a private Redis, with each persistence zeronode supports: none (allow_volatile_queue) and append-only."""
    redis_dir = tmp_path / "redis"
    redis_dir.mkdir()
    server = Redis(redis_dir, request.param)
    state = tmp_path / "state"
    config = tmp_path / "node.toml"
    config.write_text(
        f'state_dir = "{state}"\nredis_url = "unix://{server.socket}"\nstorage_root = "{pool_dir}"\n'
        "heartbeat_interval = 0.5\ndead_after = 3.0\nstop_grace = 5.0\nallow_volatile_queue = true\n"
        "[limits]\nmax_operations = 100000000000\n"  # the scripts' time, not their operations, bounds them
    )
    settings = NodeSettings.load(config)
    identity = node_identity(settings)
    client = nacl.signing.SigningKey.generate()
    settings.authorized_keys_path.write_text(f"{keys.public_key_text(client)} deployer admin\n")
    connection = redis.Redis(unix_socket_path=str(server.socket))
    service = Supervisor(settings, connection, identity, node_authorizer(settings, identity))
    reader = SignedRequestAuth(client, identity.node_id)
    pools: list[RunnerPool] = []
    with httpx.Client(base_url=serve_app(create_app(service)), timeout=30, auth=reader) as http:
        yield FragileNode(server, config, identity.node_id, client, http, pools, connection)
        for pool in pools:
            pool.stop(timeout=60)
    connection.close()
    server.stop()


class FragileNode:
    def __init__(self, redis_server: Redis, config, node_id: str, client, http: httpx.Client, pools: list, connection):
        self.redis = redis_server
        self.connection = connection
        self.config = config
        self.node_id = node_id
        self.client = client
        self.http = http
        self.pools = pools

    def envelope(self, mark: str, seconds: float = 0.0, **kwargs):
        return new_envelope(COUNTING_SCRIPT, [self.node_id], self.client, env={"MARK": mark, "SECONDS": str(seconds)}, **kwargs)

    def post(self, envelope) -> httpx.Response:
        return self.http.post("/v1/jobs", content=envelope.to_json())

    def job(self, job_id: str) -> JobView:
        response = self.http.get(f"/v1/jobs/{job_id}")
        assert response.status_code == 200, response.text
        return JobView.model_validate(response.json())

    def wait(self, job_id: str, until, timeout: float = 60) -> JobView:
        return wait_until(lambda: (view := self.job(job_id)) and until(view) and view, timeout, f"job {job_id}", interval=0.1)

    def pool(self, size: int = 1) -> RunnerPool:
        pool = RunnerPool(self.config, size)
        self.pools.append(pool)
        return pool


def ended(view: JobView) -> bool:
    return view.status not in (Status.QUEUED, Status.STARTED)


def test_a_wiped_redis_loses_queued_work_and_says_so_but_never_runs_an_envelope_twice(fragile_node, pool_dir):
    node = fragile_node
    ran, queued = (node.envelope(f"m{uuid.uuid4().hex[:8]}") for _ in range(2))
    assert node.post(ran).status_code == 202
    pool = node.pool()
    assert node.wait(ran.id, ended).status == Status.FINISHED
    pool.stop(timeout=60)
    node.pools.remove(pool)
    assert node.post(queued).status_code == 202  # no runner: it waits in the queue

    node.redis.kill()
    node.redis.restart()

    # The node still knows both: one ran (its whole outcome kept), one never started (lost, if Redis kept nothing).
    done = node.job(ran.id)
    assert done.status == Status.FINISHED and done.result == 1
    waiting = node.job(queued.id)
    if node.redis.persistence == "none":
        assert waiting.status == Status.LOST and waiting.error.type == QUEUE_LOST
    else:
        assert waiting.status == Status.QUEUED

    # The envelope that ran is not queued again; the lost one is, and runs once; the nonce stays spent.
    again = node.post(ran)
    assert again.status_code == 200 and again.json()["duplicate"] and again.json()["status"] == "finished"
    assert node.post(queued).status_code == (202 if node.redis.persistence == "none" else 200)
    replay = new_envelope(COUNTING_SCRIPT, [node.node_id], node.client, env={"MARK": "x", "SECONDS": "0"})
    replay = replay.model_copy(update={"nonce": ran.nonce, "signatures": []}).signed_by(node.client)
    assert node.post(replay).status_code == 409 and node.post(replay).json()["reason"] == "replayed"
    node.pool()
    assert node.wait(queued.id, ended).status == Status.FINISHED
    assert runs(pool_dir, ran.env["MARK"]) == 1
    assert runs(pool_dir, queued.env["MARK"]) == 1


def test_a_redis_outage_longer_than_dead_after_ends_a_run_once_not_as_a_dead_runner(fragile_node, pool_dir):
    node = fragile_node
    envelope = node.envelope(f"m{uuid.uuid4().hex[:8]}", seconds=3.0)  # ends while Redis is away
    node.pool()
    assert node.post(envelope).status_code == 202
    node.wait(envelope.id, lambda view: view.status == Status.STARTED)
    node.redis.kill()
    # Twice dead_after without Redis: the run ends meanwhile, and its runner cannot beat or record it.
    wait_until(lambda: runs(pool_dir, envelope.env["MARK"]) == 1, 30, "the run's volume")
    time.sleep(6)
    node.redis.restart()  # without persistence it is empty, and only the journal knows the job now
    view = node.wait(envelope.id, ended)
    assert view.status == Status.FINISHED and view.result == 1 and view.attempts == 1
    assert runs(pool_dir, envelope.env["MARK"]) == 1
    if node.redis.persistence == "aof":  # Redis kept the job: its runner waited to record the end there, as rq's own
        job = wait_until(lambda: (job := Job.fetch(envelope.id, node.connection, serializer=JSONSerializer)) and job.get_status() == "finished" and job, 30, "rq's status")
        assert "outcome" in job.meta


@pytest.mark.parametrize("fragile_node", ["aof"], indirect=True)
def test_a_redis_that_comes_back_older_hands_out_a_job_that_ran_and_it_is_not_run_again(fragile_node, pool_dir):
    """Redis restarted from an older copy of its files (a restore, a lost fsync): the job is queued again
    there, and the runner that takes it finds in the journal that it ran; Redis gets its outcome."""
    node = fragile_node
    envelope = node.envelope(f"m{uuid.uuid4().hex[:8]}")
    assert node.post(envelope).status_code == 202
    time.sleep(1.5)  # appendfsync everysec: the accept is on disk
    older = node.redis.directory.parent / "redis-older"
    shutil.copytree(node.redis.directory / "appendonlydir", older)
    node.pool()
    assert node.wait(envelope.id, ended).status == Status.FINISHED
    node.redis.kill()
    shutil.rmtree(node.redis.directory / "appendonlydir")
    shutil.copytree(older, node.redis.directory / "appendonlydir")
    node.redis.restart()
    job = wait_until(lambda: (job := Job.fetch(envelope.id, node.connection, serializer=JSONSerializer))
                     and job.get_status() == "finished" and job, 60, "the job, queued again, recorded as it ran")
    assert job.meta["outcome"]["value"] == 1 and job.meta["attempts"] == 1
    assert runs(pool_dir, envelope.env["MARK"]) == 1
    assert node.job(envelope.id).result == 1


@pytest.mark.parametrize("fragile_node", ["aof"], indirect=True)  # a Redis that comes back empty has no heartbeats to misread
def test_a_run_that_outlasts_a_redis_outage_is_not_taken_for_a_dead_runners(fragile_node, pool_dir):
    node = fragile_node
    envelope = node.envelope(f"m{uuid.uuid4().hex[:8]}", seconds=10.0)  # still running when Redis is back
    node.pool()
    assert node.post(envelope).status_code == 202
    node.wait(envelope.id, lambda view: view.status == Status.STARTED)
    node.redis.kill()
    time.sleep(6)  # twice dead_after: every heartbeat Redis restores is stale
    node.redis.restart()
    view = node.wait(envelope.id, ended)
    assert view.status == Status.FINISHED and view.attempts == 1, view
    assert runs(pool_dir, envelope.env["MARK"]) == 1
