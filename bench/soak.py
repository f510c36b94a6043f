"""Soak: thousands of signed jobs on one real node under random kill -9 of its runners, supervisor and Redis.

    sudo .venv/bin/python bench/soak.py [--jobs 3000] [--rate 10] [--runners 10] [--volatile]

Real processes on this machine (root is needed for the loop mount):

    redis-server        in a directory of its own, append-only (--appendonly yes --appendfsync everysec);
                        with --volatile: no persistence at all (a restart comes back empty)
    btrfs               a sparse image, mkfs.btrfs, loop-mounted: the node's storage_root
    zeronode supervisor the node's HTTP service, on a free port
    zeronode runner     --pool N (the pool starts its own runners again)

A signer is a deployer in the node's authorized_keys. --jobs envelopes are posted
at --rate a second, each re-posted unchanged on a 5xx answer or a connection error
until it is answered (the node must de-duplicate it: a second answer is 200, the
same job). Each script takes a volume mark on the btrfs when it starts
(`s-JOB-N`), sleeps 0.2-1 s, and takes another when its work is done (`r-JOB-N`),
N being the first free number: the marks count runs outside Redis. Meanwhile a
chaos thread kills with SIGKILL, every 5-15 s (and never before the last kill
has been recovered from), in shuffled rounds: a busy runner (the pool starts
another), the supervisor or redis-server (started again after a short pause).

Then every accepted job is read back (GET /v1/jobs/ID, signed by the signer)
until it ended or --drain-timeout passed, and the marks on disk are counted:
no `r-` mark = never ran (to the end), one = ran once, more = run twice; more
than one `s-` mark = started again (by design after its runner was killed:
such a job is retried). Recovery, a kill's time to:

    runner      its job ended (ended_at; finished by another runner, when retries are left), and a new
                runner took its place in the pool
    supervisor  a new envelope is accepted again (a probe posted from the kill on), and a job ended
                after the kill (jobs moving: read in Redis's registries)
    redis       redis-server answers again, an envelope is accepted again, a job ended again

A table and one JSON line (the last line of the output) say it all. Every process
and the loop mount are cleaned up on exit, Ctrl-C included (--keep keeps the
directory: logs/, the AOF). --check exits 1 unless nothing was lost or run twice
and every accepted job ended.
"""

from __future__ import annotations

import argparse
import collections
import concurrent.futures
import contextlib
import json
import os
import queue
import random
import re
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from pathlib import Path

import httpx
import nacl.signing
import redis
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

# The helpers live in the tests' support package, imported from the repository root; this directory
# comes off the path (its ledger.py and coord.py would shadow the packages of those names).
ROOT = Path(__file__).resolve().parents[1]
sys.path[:] = [str(ROOT), *(entry for entry in sys.path if Path(entry or ".").resolve() != ROOT / "bench")]

from tests.support.processes import ZERONODE, alive, stop  # noqa: E402
from zeronode.node.identity import node_identity  # noqa: E402
from zeronode.node.process import die_with_parent  # noqa: E402
from zeronode.node.queue.jobs import open_queue  # noqa: E402
from zeronode.node.settings import NodeSettings  # noqa: E402
from zeronode.protocol import keys  # noqa: E402
from zeronode.protocol.envelope import new_envelope  # noqa: E402
from zeronode.protocol.signed_requests import SignedRequestAuth  # noqa: E402

console = Console()

ENDED = {"finished", "failed", "canceled", "timed_out", "lost"}
KINDS = ("runner", "supervisor", "redis")
QUEUE = "soak"
UNKNOWN = "unknown to node"  # GET answered 404: the node forgot the job (a Redis that lost it)
RUNNER_AIM = 15.0  # seconds: issue 13's aim for a dead runner's job

# Marks a run on the btrfs, outside Redis: `s-JOB-N` when it starts, `r-JOB-N` when its work is done,
# N the first number not taken (VolumeExists: try the next), so two runs of a job leave two marks.
SCRIPT = r"""
fn mark(kind, id) {
    let n = 0;
    loop {
        try {
            volume_create(#{ name: `${kind}-${id}-${n}` });
            return n;
        } catch (err) {
            n += 1;
            if n >= 20 { throw err; }
        }
    }
}
let run = mark("s", job.id);
sleep(parse_float(env.WORK));
let done = mark("r", job.id);
#{ run: run, done: done }
"""
MARK = re.compile(r"^([sr])-([0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12})-(\d+)$")
PROBE_SCRIPT = "40 + 2"  # the chaos thread's probe of "accepts again": no mark, no work


# -- processes ------------------------------------------------------------------------------------------


class Spawner:
    """Starts every child process from one thread that lives as long as the soak. A child asks the
    kernel for SIGTERM when its parent dies (die_with_parent), and Linux sends it when the *thread*
    that forked it ends: a restart done from a short-lived thread would be stopped with it."""

    def __init__(self) -> None:
        self.requests: queue.Queue = queue.Queue()
        self.thread = threading.Thread(target=self._serve, name="spawner", daemon=True)
        self.thread.start()

    def _serve(self) -> None:
        while (item := self.requests.get()) is not None:
            start, future = item
            try:
                future.set_result(start())
            except BaseException as exc:  # noqa: BLE001 - handed to the caller
                future.set_exception(exc)

    def popen(self, argv: list[str], log: Path) -> subprocess.Popen:
        def start() -> subprocess.Popen:
            with open(log, "ab") as output:
                return subprocess.Popen(
                    argv, stdin=subprocess.DEVNULL, stdout=output, stderr=output, cwd=log.parent,
                    start_new_session=True,  # Ctrl-C reaches the soak alone, which stops them in order
                    preexec_fn=die_with_parent,  # and none outlives the soak, however it ends
                )

        future: concurrent.futures.Future = concurrent.futures.Future()
        self.requests.put((start, future))
        return future.result(30)

    def close(self) -> None:
        self.requests.put(None)


def tail(path: Path, lines: int = 15) -> str:
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
    except OSError:
        return ""


def wait_for(condition, timeout: float, interval: float = 0.05, abort: threading.Event | None = None):
    """`condition()`'s first true value within `timeout` s (exceptions mean "not yet"), else None."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline and not (abort and abort.is_set()):
        with contextlib.suppress(Exception):
            if value := condition():
                return value
        time.sleep(interval)
    return None


class Node:
    """One node on this machine: redis-server, a loop-mounted btrfs, the supervisor, a runner pool."""

    def __init__(self, args: argparse.Namespace, spawner: Spawner):
        self.args = args
        self.spawner = spawner
        self.workdir = Path(tempfile.mkdtemp(prefix="zn-soak-", dir=args.workdir))  # short: a socket path
        self.logs = self.workdir / "logs"
        self.redis_dir = self.workdir / "redis"
        self.mount = self.workdir / "mnt"
        self.image = self.workdir / "btrfs.img"
        self.storage_root = self.mount / "pool"
        self.state_dir = self.workdir / "state"
        for directory in (self.logs, self.redis_dir, self.mount, self.state_dir):
            directory.mkdir()
        self.socket = self.redis_dir / "redis.sock"
        self.mounted = False
        self.redis: subprocess.Popen | None = None
        self.supervisor: subprocess.Popen | None = None
        self.pool: subprocess.Popen | None = None
        self.port = 0
        self.url = ""
        self.node_id = ""
        self.signer = nacl.signing.SigningKey.generate()
        queue_ = open_queue(redis.Redis(unix_socket_path=str(self.socket)), QUEUE)  # key names only: no command sent
        self.queue_key = queue_.key
        self.wip_key = queue_.started_job_registry.key
        self.ended_keys = (queue_.finished_job_registry.key, queue_.failed_job_registry.key, queue_.canceled_job_registry.key)

    # -- setup ---------------------------------------------------------------------

    def start(self) -> None:
        self.make_btrfs()
        self.start_redis()
        self.write_settings()
        self.start_supervisor()
        if not wait_for(self.accepting, 60):
            raise RuntimeError(f"the supervisor did not answer /health:\n{tail(self.logs / 'supervisor.log')}")
        self.pool = self.spawner.popen(
            [ZERONODE, "runner", "--pool", str(self.args.runners), "--config", str(self.config)], self.logs / "runner.log"
        )
        if not wait_for(lambda: len(self.runner_pids()) == self.args.runners and self.workers() >= self.args.runners, 90,
                        interval=0.2):
            raise RuntimeError(f"the runner pool did not start its runners:\n{tail(self.logs / 'runner.log')}")

    def make_btrfs(self) -> None:
        if os.geteuid() != 0:
            raise RuntimeError("the soak loop-mounts a btrfs image: run it as root")
        if not shutil.which("mkfs.btrfs"):
            raise RuntimeError("mkfs.btrfs is missing; run scripts/install-system-packages")
        with open(self.image, "wb") as file:
            file.truncate(self.args.image_mb * 1024 * 1024)  # sparse: costs what the volumes use
        subprocess.run(["mkfs.btrfs", "-q", str(self.image)], check=True, capture_output=True)
        subprocess.run(["mount", "-o", "loop", str(self.image), str(self.mount)], check=True, capture_output=True)
        self.mounted = True
        self.storage_root.mkdir()

    def write_settings(self) -> None:
        settings = NodeSettings(state_dir=self.state_dir, redis_url=f"unix://{self.socket}", queue=QUEUE)
        self.node_id = node_identity(settings).node_id  # the node key, made now (the services load it)
        settings.authorized_keys_path.write_text(f"{keys.public_key_text(self.signer)} deployer  # the soak's signer\n")
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        values: dict[str, object] = {
            "state_dir": self.state_dir, "redis_url": f"unix://{self.socket}", "queue": QUEUE, "host": "127.0.0.1",
            "port": self.port, "storage_root": self.storage_root, "hypervisor": "simulated",
        }
        if self.args.heartbeat is not None:
            values["heartbeat_interval"] = self.args.heartbeat
        if self.args.dead_after is not None:
            values["dead_after"] = self.args.dead_after
        if self.args.volatile and "allow_volatile_queue" in NodeSettings.model_fields:
            values["allow_volatile_queue"] = True  # a node that refuses a Redis without persistence, unless told
        self.config = self.workdir / "node.toml"
        self.config.write_text("".join(f"{key} = {toml_value(value)}\n" for key, value in values.items()))

    # -- the processes -----------------------------------------------------------------

    def start_redis(self) -> None:
        persistence = ["--appendonly", "no"] if self.args.volatile else ["--appendonly", "yes", "--appendfsync", "everysec"]
        self.redis = self.spawner.popen(
            [shutil.which("redis-server") or "redis-server", "--port", "0", "--unixsocket", str(self.socket),
             "--unixsocketperm", "700", "--dir", str(self.redis_dir), "--save", "", *persistence],
            self.logs / "redis.log",
        )

    def redis_answers(self) -> bool:
        client = redis.Redis(unix_socket_path=str(self.socket), socket_timeout=1)
        try:
            return bool(client.ping())  # LOADING (an AOF being read back) raises BusyLoadingError: not yet
        finally:
            client.close()

    def start_supervisor(self) -> None:
        self.supervisor = self.spawner.popen([ZERONODE, "supervisor", "--config", str(self.config)], self.logs / "supervisor.log")

    def accepting(self) -> bool:
        return httpx.get(f"{self.url}/health", timeout=1).status_code == 200

    def connection(self) -> redis.Redis:
        return redis.Redis(unix_socket_path=str(self.socket), socket_timeout=2, socket_connect_timeout=2)

    def workers(self) -> int:
        client = self.connection()
        try:
            return client.scard(f"rq:workers:{QUEUE}")
        finally:
            client.close()

    def runner_pids(self) -> list[int]:
        """The pool's live runner processes (multiprocessing's spawned children; not its resource tracker)."""
        if self.pool is None or self.pool.poll() is not None:
            return []
        pids: list[int] = []
        for task in Path(f"/proc/{self.pool.pid}/task").iterdir():
            with contextlib.suppress(OSError):
                pids += [int(pid) for pid in (task / "children").read_text().split()]
        runners = []
        for pid in pids:
            with contextlib.suppress(OSError):
                if b"spawn_main" in Path(f"/proc/{pid}/cmdline").read_bytes() and alive(pid):
                    runners.append(pid)
        return runners

    def busy_runners(self, client: redis.Redis) -> dict[int, str]:
        """pid → the job each runner process is running now, from the executions in rq's started registry."""
        composites = [c.decode() for c in client.zrange(self.wip_key, 0, -1)]
        with client.pipeline(transaction=False) as pipe:
            for composite in composites:
                pipe.hget(f"rq:execution:{composite}", "worker_name")
                pipe.hmget(f"rq:job:{composite.split(':')[0]}", "status", "worker_name")
            answers = pipe.execute()
        busy: dict[int, str] = {}
        for composite, name, (status, job_worker) in zip(composites, answers[::2], answers[1::2], strict=True):
            if name and status == b"started" and job_worker == name:
                with contextlib.suppress(ValueError, IndexError):
                    busy[int(name.decode().rsplit(".", 2)[1])] = composite.split(":")[0]  # HOST.PID.INDEX
        return busy

    # -- the end -----------------------------------------------------------------------

    def marks(self) -> dict[str, collections.Counter]:
        """job id → Counter of its marks on the btrfs ('s': runs started, 'r': runs done)."""
        found: dict[str, collections.Counter] = collections.defaultdict(collections.Counter)
        if self.storage_root.is_dir():
            for entry in os.scandir(self.storage_root):
                if match := MARK.match(entry.name):
                    found[match.group(2)][match.group(1)] += 1
        return found

    def stop(self) -> None:
        for name in ("pool", "supervisor", "redis"):  # the runners first: they finish their jobs on a live Redis
            process = getattr(self, name)
            if process is not None:
                with contextlib.suppress(Exception):
                    stop(process, 60 if name == "pool" else 20, group=True)
        if self.mounted:
            for attempt in range(10):
                lazy = ["-l"] if attempt == 9 else []
                if subprocess.run(["umount", *lazy, str(self.mount)], check=False, capture_output=True).returncode == 0:
                    self.mounted = False
                    break
                time.sleep(0.5)
        if self.args.keep or self.mounted:
            console.print(f"left in place: {self.workdir}" + (" (still mounted!)" if self.mounted else ""))
        else:
            shutil.rmtree(self.workdir, ignore_errors=True)


def free_port() -> int:
    import socket

    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def toml_value(value: object) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (int, float)):
        return repr(value)
    return json.dumps(str(value))  # a TOML basic string is a JSON string


# -- the jobs -------------------------------------------------------------------------------------------


@dataclass
class Submission:
    id: str
    raw: str
    work: float
    posts: int = 0
    sent_at: float | None = None
    answered_at: float | None = None
    code: int | None = None  # the answer that ended the posting: 202, 200 (a duplicate), a refusal
    reason: str | None = None  # a refusal's reason, or "gave up"

    @property
    def accepted(self) -> bool:
        return self.code in (200, 202)


@dataclass
class Kill:
    kind: str
    at: float  # wall clock (time.time()), comparable with the jobs' ended_at
    pid: int
    queue_depth: int | None = None
    job: str | None = None  # runner: the job it was running
    pause: float | None = None  # supervisor, redis: how long it stayed dead
    ready: float | None = None  # redis answers PING again; seconds after the kill
    accepts_again: float | None = None  # a probe envelope is accepted; seconds after the kill
    moving_again: float | None = None  # a job ended after the kill (after Redis answered again, for redis)
    replaced: float | None = None  # runner: the pool runs N runners again, the dead one not among them
    job_ended: float | None = None  # runner: its job's ended_at, seconds after the kill
    job_status: str | None = None
    job_attempts: int | None = None
    note: str | None = None
    probe: str = ""  # supervisor, redis: the envelope posted to see the node accept again


class Stats:
    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.counts: collections.Counter = collections.Counter()
        self.kills: list[Kill] = []
        self.progress_events: list[float] = []  # wall times at which some job ended (seen in Redis)
        self.ended_in_redis = 0

    def count(self, what: str, n: int = 1) -> None:
        with self.lock:
            self.counts[what] += n


def poster(url: str, stats: Stats, give_up: float, abort: threading.Event):
    """post(raw) -> (status code, reason): the same envelope again on 5xx or a lost connection, until answered."""
    client = httpx.Client(base_url=url, timeout=10, headers={"content-type": "application/json"})

    def post(raw: str, submission: Submission | None = None) -> tuple[int | None, str | None]:
        deadline = time.monotonic() + give_up
        while not abort.is_set():
            if submission is not None:
                submission.posts += 1
            try:
                answer = client.post("/v1/jobs", content=raw)
            except httpx.TransportError as exc:
                stats.count(f"connection error ({type(exc).__name__})")
                answer = None
            if answer is not None:
                if answer.status_code in (200, 202):
                    return answer.status_code, None
                if answer.status_code < 500:
                    try:
                        reason = answer.json()["reason"]
                    except (ValueError, KeyError, TypeError):
                        reason = answer.text[:80]
                    return answer.status_code, reason
                stats.count(f"answered {answer.status_code}")
            if time.monotonic() > deadline:
                return None, "gave up"
            time.sleep(0.1)
        return None, "aborted"

    return post


class Chaos(threading.Thread):
    """Kills, in shuffled rounds of the kinds asked for, one process every --kill-every seconds."""

    def __init__(self, node: Node, args: argparse.Namespace, stats: Stats, rng: random.Random,
                 stop_event: threading.Event, abort: threading.Event, log):
        super().__init__(name="chaos", daemon=True)
        self.node, self.args, self.stats, self.rng = node, args, stats, rng
        self.stop_event, self.abort, self.log = stop_event, abort, log
        self.reader = httpx.Client(base_url=node.url, timeout=5, auth=SignedRequestAuth(node.signer, node.node_id))
        self.post = poster(node.url, stats, 300, abort)
        self.error: BaseException | None = None

    def run(self) -> None:
        try:
            self._run()
        except BaseException as exc:  # noqa: BLE001 - reported by the main thread
            self.error = exc
            self.abort.set()

    def _run(self) -> None:
        kinds: list[str] = []
        if not self.args.kinds:
            return
        next_at = time.monotonic() + self.rng.uniform(*self.args.kill_every)
        while not self.stop_event.wait(max(0.0, next_at - time.monotonic())):
            if not kinds:
                kinds = list(self.args.kinds)
                self.rng.shuffle(kinds)
            kind = kinds.pop()
            started = time.monotonic()
            kill = getattr(self, f"kill_{kind}")()
            if kill is None:
                next_at = time.monotonic() + 1
                continue
            with self.stats.lock:
                self.stats.kills.append(kill)
            self.log(describe(kill))
            # The next kill comes --kill-every after this one, and never before this one is recovered from.
            next_at = max(started + self.rng.uniform(*self.args.kill_every), time.monotonic() + 1)
            if self.abort.is_set():
                return

    def queue_depth(self, client: redis.Redis) -> int | None:
        with contextlib.suppress(redis.RedisError):
            return client.llen(self.node.queue_key)
        return None

    def kill_runner(self) -> Kill | None:
        client = self.node.connection()
        try:
            pids = self.node.runner_pids()
            try:
                busy = {pid: job for pid, job in self.node.busy_runners(client).items() if pid in pids}
            except redis.RedisError:
                busy = {}
            if not pids:
                return None
            pid = self.rng.choice(sorted(busy)) if busy else self.rng.choice(pids)
            depth = self.queue_depth(client)
        finally:
            client.close()
        at = time.time()
        os.kill(pid, signal.SIGKILL)
        kill = Kill("runner", at, pid, depth, job=busy.get(pid), note=None if pid in busy else "idle runner")
        if wait_for(lambda: pid not in (now := self.node.runner_pids()) and len(now) == self.args.runners, 60,
                    interval=0.05, abort=self.abort):
            kill.replaced = time.time() - at
        if kill.job:
            view = wait_for(lambda: self.ended_view(kill.job), self.args.recovery_timeout, interval=0.1, abort=self.abort)
            if view:
                kill.job_status, kill.job_attempts = view["status"], view.get("attempts")
                ended = timestamp(view.get("ended_at")) or view["seen_at"]
                kill.job_ended = ended - at
                if kill.job_ended < 0:
                    kill.note = "its job had ended just before the kill"
                    kill.job_ended = None
            else:
                kill.note = "aborted" if self.abort.is_set() else "its job did not end within --recovery-timeout"
        return kill

    def ended_view(self, job_id: str) -> dict | None:
        answer = self.reader.get(f"/v1/jobs/{job_id}")
        if answer.status_code == 404:
            return {"status": UNKNOWN, "seen_at": time.time()}
        if answer.status_code == 200 and answer.json()["status"] in ENDED:
            return {**answer.json(), "seen_at": time.time()}
        return None

    def kill_supervisor(self) -> Kill | None:
        kill = self._kill("supervisor", self.node.supervisor)
        if kill is not None:
            self.node.start_supervisor()
            self.accepts_again(kill, kill.probe)
        return kill

    def kill_redis(self) -> Kill | None:
        kill = self._kill("redis", self.node.redis)
        if kill is None:
            return None
        for _ in range(3):  # an AOF it cannot read back would stop it at once: the log says why
            self.node.start_redis()
            if wait_for(self.node.redis_answers, 120, abort=self.abort):
                kill.ready = time.time() - kill.at
                break
            if self.node.redis.poll() is None:
                break
            self.log(f"[red]redis-server did not start again:[/red]\n{tail(self.node.logs / 'redis.log')}")
        else:
            raise RuntimeError("redis-server does not start again: see the log above")
        self.accepts_again(kill, kill.probe)
        return kill

    def _kill(self, kind: str, process) -> Kill | None:
        """kill -9 one of the node's servers, then the pause before it is started again (the caller's)."""
        if process is None or process.poll() is not None:
            return None
        client = self.node.connection()
        depth = self.queue_depth(client)
        client.close()
        probe = self.probe()
        at = time.time()
        os.kill(process.pid, signal.SIGKILL)
        process.wait()
        kill = Kill(kind, at, process.pid, depth, pause=self.rng.uniform(*self.args.pause))
        kill.probe = probe
        time.sleep(kill.pause)
        return kill

    def probe(self) -> str:
        return new_envelope(PROBE_SCRIPT, [self.node.node_id], self.node.signer, timeout=5).to_json()

    def accepts_again(self, kill: Kill, probe: str) -> None:
        code, reason = self.post(probe)
        if code in (200, 202):
            kill.accepts_again = time.time() - kill.at
            self.stats.count("probes accepted")
        else:
            kill.note = f"probe not accepted: {code} {reason}"


def describe(kill: Kill) -> str:
    parts = [f"kill -9 {kill.kind} (pid {kill.pid}, queue {kill.queue_depth})"]
    for name in ("pause", "ready", "accepts_again", "replaced", "job_ended"):
        if (value := getattr(kill, name)) is not None:
            parts.append(f"{name.replace('_', ' ')} {value:.1f} s")
    if kill.job_status:
        parts.append(f"job {kill.job_status} after {kill.job_attempts} attempts")
    if kill.note:
        parts.append(kill.note)
    return ", ".join(parts)


def timestamp(text: str | None) -> float | None:
    if not text:
        return None
    moment = datetime.fromisoformat(text.replace("Z", "+00:00"))
    return (moment if moment.tzinfo else moment.replace(tzinfo=UTC)).timestamp()


def watch_progress(node: Node, stats: Stats, stop_event: threading.Event) -> None:
    """Every 0.1 s, how many jobs ended (rq's finished, failed and canceled registries): when that grows, jobs move.
    After Redis was away the count starts afresh (it may have lost some)."""
    client = node.connection()
    last: int | None = None
    while not stop_event.wait(0.1):
        try:
            with client.pipeline(transaction=False) as pipe:
                for key in node.ended_keys:
                    pipe.zcard(key)
                count = sum(pipe.execute())
        except redis.RedisError:
            last = None
            continue
        if last is not None and count > last:
            with stats.lock:
                stats.progress_events.append(time.time())
        stats.ended_in_redis = count
        last = count


def first_after(events: list[float], moment: float) -> float | None:
    return next((event for event in events if event > moment), None)


# -- the run --------------------------------------------------------------------------------------------


def soak(args: argparse.Namespace) -> dict:
    rng = random.Random(args.seed)
    stats = Stats()
    spawner = Spawner()
    node = Node(args, spawner)
    stop_chaos, stop_watch, abort = threading.Event(), threading.Event(), threading.Event()
    chaos: Chaos | None = None
    started = time.time()
    console.print(f"soak in {node.workdir}: {args.jobs} jobs at {args.rate}/s, {args.runners} runners, "
                  f"{'volatile Redis' if args.volatile else 'append-only Redis (everysec)'}, kills: {', '.join(args.kinds) or 'none'}")
    try:
        with console.status("starting redis-server, btrfs, the supervisor and the runner pool…"):
            node.start()
        submissions = []
        for _ in range(args.jobs):
            work = round(rng.uniform(args.work_min, args.work_max), 3)
            envelope = new_envelope(SCRIPT, [node.node_id], node.signer, timeout=args.timeout, retries=args.retries,
                                    ttl=args.ttl, env={"WORK": f"{work}"})
            submissions.append(Submission(envelope.id, envelope.to_json(), work))
        watcher = threading.Thread(target=watch_progress, args=(node, stats, stop_watch), name="watch", daemon=True)
        watcher.start()
        columns = (TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn())
        with Progress(*columns, console=console) as progress:
            submitted = progress.add_task("submitted", total=args.jobs)
            ended = progress.add_task("ended (Redis)", total=args.jobs)
            chaos = Chaos(node, args, stats, rng, stop_chaos, abort, progress.console.log)
            chaos.start()
            poster_thread = threading.Thread(
                target=submit_all, args=(node, args, submissions, stats, abort, lambda: progress.advance(submitted)),
                name="submit", daemon=True,
            )
            poster_thread.start()
            while poster_thread.is_alive():
                progress.update(ended, completed=min(stats.ended_in_redis, args.jobs), description=kills_line(stats, "ended (Redis),"))
                poster_thread.join(0.2)
            stop_chaos.set()
            while chaos.is_alive():
                progress.update(ended, completed=min(stats.ended_in_redis, args.jobs), description=kills_line(stats, "ending the last kill…"))
                chaos.join(0.2)
            if chaos.error:
                raise chaos.error
            accepted = [s for s in submissions if s.accepted]
            progress.update(ended, description="ended (read back)", total=len(accepted), completed=0)
            views = drain(node, args, accepted, abort, lambda done: progress.update(ended, completed=done))
        stop_watch.set()
        marks = node.marks()
        return report(args, node, submissions, views, marks, stats, time.time() - started)
    finally:
        signal.signal(signal.SIGINT, signal.SIG_IGN)  # a second Ctrl-C must not leave the mount behind
        abort.set()
        stop_chaos.set()
        stop_watch.set()
        if chaos is not None:
            chaos.join(30)
        with console.status("stopping the runners, the supervisor, redis-server; unmounting…"):
            node.stop()
        spawner.close()


def kills_line(stats: Stats, prefix: str) -> str:
    with stats.lock:
        counts = collections.Counter(kill.kind for kill in stats.kills)
    return f"{prefix} kills: " + ", ".join(f"{kind} {counts[kind]}" for kind in KINDS)


def submit_all(node: Node, args, submissions: list[Submission], stats: Stats, abort: threading.Event, advance) -> None:
    """Post every envelope at --rate a second from --submitters threads. A ticket waits for a free submitter,
    so during an outage the rate pauses, and after it resumes at the same rate (no burst)."""
    tickets: queue.Queue = queue.Queue(maxsize=1)

    def submitter() -> None:
        post = poster(node.url, stats, args.give_up, abort)
        while (submission := tickets.get()) is not None:
            submission.sent_at = time.time()
            submission.code, submission.reason = post(submission.raw, submission)
            submission.answered_at = time.time()
            advance()

    threads = [threading.Thread(target=submitter, name=f"submit-{i}", daemon=True) for i in range(args.submitters)]
    for thread in threads:
        thread.start()
    base = time.monotonic()
    for index, submission in enumerate(submissions):
        due = base + index / args.rate
        if abort.wait(max(0.0, due - time.monotonic())):
            break
        while not abort.is_set():
            try:
                tickets.put(submission, timeout=0.2)
                break
            except queue.Full:
                continue
        if time.monotonic() - due > 1.0:  # held up by an outage: go on at the steady rate from here
            base = time.monotonic() - index / args.rate
    for _ in threads:
        tickets.put(None)
    for thread in threads:
        thread.join()


def drain(node: Node, args, accepted: list[Submission], abort: threading.Event, update) -> dict[str, dict]:
    """Read every accepted job (signed by its signer) until each ended or --drain-timeout passed: id → its view.
    A 404 is final: the node does not know the job (status UNKNOWN)."""
    local = threading.local()
    views: dict[str, dict] = {}

    def read(job_id: str) -> tuple[str, dict | None]:
        if not hasattr(local, "client"):
            local.client = httpx.Client(base_url=node.url, timeout=10, auth=SignedRequestAuth(node.signer, node.node_id))
        try:
            answer = local.client.get(f"/v1/jobs/{job_id}")
        except httpx.TransportError:
            return job_id, None
        if answer.status_code == 404:
            return job_id, {"status": UNKNOWN}
        return job_id, answer.json() if answer.status_code == 200 else None

    pending = [s.id for s in accepted]
    deadline = time.monotonic() + args.drain_timeout
    with concurrent.futures.ThreadPoolExecutor(8) as readers:
        while pending and not abort.is_set():
            for job_id, view in readers.map(read, pending):
                if view is not None:
                    views[job_id] = view
            pending = [job_id for job_id in pending if views.get(job_id, {}).get("status") not in ENDED | {UNKNOWN}]
            update(len(accepted) - len(pending))
            if time.monotonic() > deadline:
                break
            if pending:
                abort.wait(1.0)
    return views


# -- the report -----------------------------------------------------------------------------------------


def summary(values: list[float]) -> dict:
    values = [v for v in values if v is not None]
    if not values:
        return {"n": 0, "median": None, "max": None}
    return {"n": len(values), "median": round(statistics.median(values), 2), "max": round(max(values), 2)}


def report(args, node: Node, submissions: list[Submission], views: dict[str, dict], marks: dict, stats: Stats,
           duration: float) -> dict:
    accepted = [s for s in submissions if s.accepted]
    by_status: dict[str, collections.Counter] = collections.defaultdict(collections.Counter)
    for s in accepted:
        view = views.get(s.id) or {"status": "never read"}
        error = (view.get("error") or {}).get("type") if isinstance(view.get("error"), dict) else None
        by_status[view["status"]][error or "-"] += 1
    killed_jobs = {kill.job for kill in stats.kills if kill.kind == "runner" and kill.job}
    done_counts = {s.id: marks.get(s.id, collections.Counter())["r"] for s in submissions}
    start_counts = {s.id: marks.get(s.id, collections.Counter())["s"] for s in submissions}
    accepted_ids = {s.id for s in accepted}
    started_again = [i for i in accepted_ids if start_counts[i] > 1]
    never_ran = [i for i in accepted_ids if done_counts[i] == 0]
    finished_without_mark = [i for i in never_ran if (views.get(i) or {}).get("status") == "finished"]
    not_ended = {status: sum(c.values()) for status, c in by_status.items() if status not in ENDED | {UNKNOWN}}
    lost = {**{error: n for error, n in by_status.get("lost", {}).items()}, **({UNKNOWN: sum(by_status[UNKNOWN].values())} if UNKNOWN in by_status else {})}
    failed = {f"{status}: {error}": n for status in ("failed", "timed_out", "canceled") for error, n in by_status.get(status, {}).items()}
    refused = collections.Counter(f"{s.code} {s.reason}" for s in submissions if not s.accepted)

    kills = stats.kills
    events = sorted(stats.progress_events)
    for kill in kills:
        if kill.kind in ("supervisor", "redis"):
            after = kill.at + (kill.ready or 0.0)
            if (moment := first_after(events, after)) is not None:
                kill.moving_again = moment - kill.at
    of = lambda kind, name: summary([getattr(k, name) for k in kills if k.kind == kind])  # noqa: E731
    recovery = {
        "runner": {"job_ended": of("runner", "job_ended"), "replaced": of("runner", "replaced")},
        "supervisor": {"accepts_again": of("supervisor", "accepts_again"), "jobs_moving_again": of("supervisor", "moving_again")},
        "redis": {"answers_again": of("redis", "ready"), "accepts_again": of("redis", "accepts_again"),
                  "jobs_moving_again": of("redis", "moving_again")},
    }
    result = {
        "commit": commit(), "jobs": args.jobs, "rate": args.rate, "runners": args.runners, "retries": args.retries,
        "persistence": "none (volatile)" if args.volatile else "appendonly everysec",
        "duration_s": round(duration, 1),
        "submitted": len(submissions),
        "accepted": len(accepted),
        "accepted_as_duplicate_on_repost": sum(1 for s in accepted if s.code == 200),
        "reposted": sum(1 for s in submissions if s.posts > 1),
        "not_accepted": dict(refused),
        "finished": sum(by_status.get("finished", {}).values()),
        "failed": failed,
        "lost": lost,
        "lost_total": sum(lost.values()),
        "not_ended": not_ended,
        "never_ran": len(never_ran),
        "never_ran_by_status": dict(collections.Counter((views.get(i) or {}).get("status", "never read") for i in never_ran)),
        "finished_without_a_done_mark": len(finished_without_mark),
        "ran_once": sum(1 for i in accepted_ids if done_counts[i] == 1),
        "run_twice": sum(1 for i in accepted_ids if done_counts[i] > 1),
        "run_twice_ids": sorted(i for i in accepted_ids if done_counts[i] > 1)[:20],
        "started_again": len(started_again),
        "started_again_after_its_runner_was_killed": sum(1 for i in started_again if i in killed_jobs),
        "ran_without_being_accepted": sum(1 for s in submissions if not s.accepted and done_counts[s.id]),
        "answers_while_posting": {k: v for k, v in stats.counts.items() if k != "probes accepted"},
        "kills": dict(collections.Counter(kill.kind for kill in kills)),
        "runner_aim_s": RUNNER_AIM,
        "runner_jobs_ended_within_aim": sum(1 for k in kills if k.job_ended is not None and k.job_ended <= RUNNER_AIM),
        "recovery_s": recovery,
        "kill_log": [{k: (round(v, 3) if isinstance(v, float) else v) for k, v in asdict(kill).items() if k != "probe"} for kill in kills],
    }
    return result


def commit() -> str | None:
    """The checked-out commit (read only: `git rev-parse`), for the record."""
    try:
        answer = subprocess.run(["git", "-C", str(ROOT), "rev-parse", "--short", "HEAD"], capture_output=True, text=True,
                                check=False, timeout=5)
    except (OSError, subprocess.TimeoutExpired):
        return None
    return answer.stdout.strip() or None


def print_report(result: dict) -> None:
    console.print(f"soak at {result['commit'] or 'an unknown commit'} (plus any uncommitted changes): {result['jobs']} jobs "
                  f"at {result['rate']}/s, {result['runners']} runners, {result['retries']} retries each, Redis persistence "
                  f"{result['persistence']}, {result['duration_s']} s")
    jobs = Table(title="jobs")
    jobs.add_column("jobs")
    jobs.add_column("count", justify="right")
    rows = [
        ("submitted", result["submitted"]),
        ("accepted", result["accepted"]),
        ("  of which re-posted and answered 200 (de-duplicated)", result["accepted_as_duplicate_on_repost"]),
        *((f"not accepted: {reason}", n) for reason, n in result["not_accepted"].items()),
        ("finished", result["finished"]),
        *((f"failed: {reason}", n) for reason, n in sorted(result["failed"].items())),
        *((f"lost: {reason}", n) for reason, n in sorted(result["lost"].items())),
        ("lost, in all (must be 0 with append-only persistence)", result["lost_total"]),
        *((f"not ended: {status}", n) for status, n in sorted(result["not_ended"].items())),
        ("never ran (no done mark on the btrfs)", result["never_ran"]),
        ("ran once", result["ran_once"]),
        ("run twice (must be 0 with append-only persistence)", result["run_twice"]),
        ("started again (a retried run)", result["started_again"]),
        ("  of which after its runner was killed", result["started_again_after_its_runner_was_killed"]),
        ("finished, but no done mark", result["finished_without_a_done_mark"]),
        ("ran, but not accepted", result["ran_without_being_accepted"]),
    ]
    for name, count in rows:
        jobs.add_row(name, str(count))
    console.print(jobs)

    recovery = Table(title=f"recovery after kill -9, seconds from the kill ({result['runner_jobs_ended_within_aim']} of "
                           f"{result['kills'].get('runner', 0)} runner kills' jobs ended within {RUNNER_AIM:.0f} s)")
    for column in ("kill", "kills", "until", "n", "median", "max"):
        recovery.add_column(column, justify="left" if column in ("kill", "until") else "right")
    names = {"job_ended": f"its job ended (aim ≤ {RUNNER_AIM:.0f} s)", "replaced": "the pool replaced it",
             "accepts_again": "an envelope is accepted", "jobs_moving_again": "a job ended",
             "answers_again": "redis-server answers"}
    for kind, metrics in result["recovery_s"].items():
        for index, (metric, values) in enumerate(metrics.items()):
            fmt = lambda v: "-" if v is None else f"{v:.2f}"  # noqa: E731
            recovery.add_row(kind if index == 0 else "", str(result["kills"].get(kind, 0)) if index == 0 else "",
                             names[metric], str(values["n"]), fmt(values["median"]), fmt(values["max"]))
    console.print(recovery)
    if result["answers_while_posting"]:
        console.print("answers that made a client post again: " + ", ".join(f"{k} ×{v}" for k, v in result["answers_while_posting"].items()))


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--jobs", type=int, default=3000, help="envelopes to submit (default 3000)")
    parser.add_argument("--rate", type=float, default=10.0, help="envelopes a second (default 10)")
    parser.add_argument("--runners", type=int, default=10, help="runners in the pool (default 10; keep rate × mean work well below)")
    parser.add_argument("--work-min", type=float, default=0.2, help="seconds of work a job does, at least")
    parser.add_argument("--work-max", type=float, default=1.0, help="seconds of work a job does, at most")
    parser.add_argument("--retries", type=int, default=2, help="each envelope's retries (a dead runner's job is retried)")
    parser.add_argument("--timeout", type=int, default=30, help="each envelope's timeout, s")
    parser.add_argument("--ttl", type=int, default=6 * 3600, help="each envelope's validity, s")
    parser.add_argument("--kill-every", type=float, nargs=2, default=(5.0, 15.0), metavar=("MIN", "MAX"),
                        help="seconds between kills, drawn uniformly (default 5 15)")
    parser.add_argument("--pause", type=float, nargs=2, default=(0.5, 2.0), metavar=("MIN", "MAX"),
                        help="seconds a killed supervisor or redis-server stays dead (default 0.5 2)")
    parser.add_argument("--kinds", default=",".join(KINDS), help="what to kill: runner,supervisor,redis (empty: nothing)")
    parser.add_argument("--volatile", action="store_true", help="Redis without persistence (a restart comes back empty)")
    parser.add_argument("--heartbeat", type=float, default=None, help="the node's heartbeat_interval (default: the node's, 2 s)")
    parser.add_argument("--dead-after", type=float, default=None, help="the node's dead_after (default: the node's, 10 s)")
    parser.add_argument("--submitters", type=int, default=8, help="threads posting envelopes")
    parser.add_argument("--give-up", type=float, default=300.0, help="seconds one envelope is re-posted before giving up")
    parser.add_argument("--drain-timeout", type=float, default=300.0, help="seconds to wait for the accepted jobs to end")
    parser.add_argument("--recovery-timeout", type=float, default=120.0, help="seconds to wait for a killed runner's job")
    parser.add_argument("--image-mb", type=int, default=4096, help="the btrfs image's size (sparse)")
    parser.add_argument("--workdir", default="/tmp", help="where the soak's directory goes (keep it short: a socket path)")
    parser.add_argument("--seed", type=int, default=None)
    parser.add_argument("--keep", action="store_true", help="keep the soak's directory (logs, AOF) afterwards")
    parser.add_argument("--json", type=Path, default=None, help="also write the result to this file")
    parser.add_argument("--check", action="store_true", help="exit 1 unless none lost, none run twice and all ended")
    args = parser.parse_args(argv)
    args.kinds = [kind for kind in args.kinds.split(",") if kind]
    if unknown := set(args.kinds) - set(KINDS):
        parser.error(f"--kinds: unknown {', '.join(sorted(unknown))}; known: {', '.join(KINDS)}")
    if args.jobs < 1 or args.rate <= 0 or args.runners < 1 or args.work_min > args.work_max:
        parser.error("--jobs, --rate and --runners must be positive, --work-min at most --work-max")
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    if not ZERONODE:
        console.print("the zeronode command is not installed in this Python's environment (make install)")
        return 2
    if args.rate * (args.work_min + args.work_max) / 2 > 0.8 * args.runners:
        console.print(f"[yellow]warning: {args.rate}/s of {(args.work_min + args.work_max) / 2:.2f} s jobs keeps more than "
                      f"80% of {args.runners} runners busy: the queue will grow, and recovery times with it[/yellow]")

    def terminate(_signum, _frame):
        raise KeyboardInterrupt

    signal.signal(signal.SIGTERM, terminate)  # cleaned up like Ctrl-C
    try:
        result = soak(args)
    except KeyboardInterrupt:
        console.print("interrupted: everything stopped and unmounted")
        return 130
    print_report(result)
    if args.json:
        args.json.write_text(json.dumps(result, indent=2))
    print(json.dumps(result, separators=(",", ":")), flush=True)
    if args.check:
        bad = result["lost_total"] or result["run_twice"] or result["not_ended"] or result["accepted"] < result["submitted"]
        return 1 if bad else 0
    return 0


if __name__ == "__main__":
    sys.exit(main())
