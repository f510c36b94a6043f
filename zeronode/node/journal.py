"""The node's journal: each envelope it accepted, each run it started, and how each run ended.

Redis holds the queue, and a Redis that crashes or is wiped forgets what it
held: the jobs, the nonces it remembered, which jobs had already run. The
journal is what keeps a run to at most once per attempt even then. It is
SQLite in the node's state directory (0600), shared by the supervisor and
every runner:

    accept  the supervisor notes each envelope (id, signer, nonce, expiry) before
            queueing it, and asks first: an envelope that has started is never
            queued again, and another envelope with a used nonce is a replay
    claim   a runner claims each attempt before running it: one transaction that
            succeeds once per (envelope, attempt), and only after the attempt
            before ended in a failure or its runner died. fsynced
            (synchronous=FULL): not even a power cut lets an attempt run twice
    end     the runner writes the run's outcome here first, then to Redis, so
            a result outlives an outage, a wiped Redis and the runner itself

So a node whose Redis forgot a job still answers for it: never started (the
queue lost it: lost, QueueLost; sending the envelope again runs it once),
started by a runner still alive (started: each runner holds a lock file
while it lives), started by a runner since dead
(lost, ResultLost: it may have run, it never runs again), or ended (the
outcome, whole). Rows go once their envelope expired: an expired envelope is
neither accepted nor run.

Accepts and ends are not fsynced (synchronous=NORMAL: they survive any crash
of a process, not a power cut): a power cut can lose an acceptance, which then
reads as unknown to the node and is sent again, and never ran; or an ending,
which then reads as ResultLost.
"""

from __future__ import annotations

import fcntl
import json
import os
import re
import sqlite3
import threading
import time
import uuid
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime, timezone
from enum import Enum
from pathlib import Path

from zeronode.api.jobs import QUEUE_LOST, RESULT_LOST, JobView, ScriptError, Status
from zeronode.files import owned_like_parent
from zeronode.node.queue.jobs import NOT_RETRIED, Outcome

PRUNE_EVERY = 60.0  # seconds between deletions of expired rows
BUSY_TIMEOUT = 3.0  # seconds a writer waits for another (the supervisor and each runner write); below dead_after
RETRYABLE = (Status.FAILED, Status.TIMED_OUT)

SCHEMA = """
CREATE TABLE IF NOT EXISTS envelopes (
    id          TEXT PRIMARY KEY,
    signer      TEXT NOT NULL,
    nonce       TEXT NOT NULL,
    expires_at  REAL NOT NULL,
    accepted_at REAL,
    attempt     INTEGER NOT NULL DEFAULT 0,  -- the last attempt claimed; 0: none yet
    holder      TEXT,                        -- the runner process of that attempt (Holders)
    started_at  REAL,
    ended_at    REAL,                        -- NULL while the claimed attempt has not ended
    outcome     TEXT                         -- that attempt's Outcome, JSON
);
CREATE UNIQUE INDEX IF NOT EXISTS envelopes_nonce ON envelopes (signer, nonce);
CREATE INDEX IF NOT EXISTS envelopes_expiry ON envelopes (expires_at);
"""


class Claim(Enum):
    RUN = "run"  # this attempt is the caller's to run
    ENDED = "ended"  # it ran already: record its outcome, do not run it
    BUSY = "busy"  # another runner, still alive, is running this envelope
    REPLAYED = "replayed"  # another envelope holds this id, or used this signer's nonce


@dataclass(frozen=True)
class Entry:
    """One envelope as the journal knows it."""

    id: str
    signer: str
    nonce: str
    attempt: int
    holder: str | None  # the runner process of the last attempt (zeronode.node.journal.Holders)
    started_at: float | None
    ended_at: float | None
    outcome: Outcome | None

    @property
    def started(self) -> bool:
        return self.attempt > 0

    def status(self, holder_alive: bool) -> tuple[Status, ScriptError | None]:
        """What became of it, for a reader whose Redis no longer has the job."""
        if self.outcome is not None and self.ended_at is not None:
            return self.outcome.status, self.outcome.error
        if not self.started:
            return Status.LOST, ScriptError(type=QUEUE_LOST, message="the node's queue lost the job before it started; send the envelope again to run it")
        if holder_alive:
            return Status.STARTED, None
        return Status.LOST, ScriptError(type=RESULT_LOST, message="the job started but its result was lost with its runner; it is not run again")


def journal_view(entry: Entry, node_id: str, holder_alive: bool) -> JobView:
    """A job as the journal knows it: whole if its run ended, else what became of it."""
    status, error = entry.status(holder_alive)
    outcome = entry.outcome if entry.ended_at is not None else None
    return JobView(
        id=entry.id,
        status=status,
        node=node_id,
        signer=entry.signer,
        started_at=_when(entry.started_at),
        ended_at=_when(entry.ended_at),
        attempts=entry.attempt,
        result=outcome.value if outcome else None,
        output=outcome.output if outcome else [],
        output_truncated=outcome.output_truncated if outcome else False,
        error=error,
        duration=outcome.duration if outcome else None,
    )


def _when(stamp: float | None) -> datetime | None:
    return datetime.fromtimestamp(stamp, timezone.utc) if stamp is not None else None


class Holders:
    """Which runner processes are alive, told by lock files: each process holds an exclusive flock on
    HOLDERS/ID.lock while it lives, and the kernel lets go when it dies (kill -9, a crash, a reboot).
    Unlike a pid, this holds across pid namespaces (a runner in another container) and pid reuse."""

    def __init__(self, directory: Path):
        self.directory = directory
        self._mine: str | None = None
        self._fd: int | None = None

    def mine(self) -> str:
        """This process's holder id, locked on first use (a fork gets its own: the pid is checked)."""
        if self._mine is None or self._mine.split(".")[0] != str(os.getpid()):
            _private_dir(self.directory)
            holder = f"{os.getpid()}.{uuid.uuid4().hex}"
            fd = os.open(self.directory / f"{holder}.lock", os.O_CREAT | os.O_RDWR, 0o600)
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            owned_like_parent(self.directory / f"{holder}.lock")
            self._mine, self._fd = holder, fd
        return self._mine

    def alive(self, holder: str) -> bool:
        if holder == self._mine:
            return True
        if not HOLDER.fullmatch(holder):
            return False
        path = self.directory / f"{holder}.lock"
        try:
            fd = os.open(path, os.O_RDWR)
        except FileNotFoundError:
            return False
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            return True
        finally:
            os.close(fd)  # our probe's lock, if we got it, goes with the descriptor
        path.unlink(missing_ok=True)  # its process is gone: so is its file
        return False


HOLDER = re.compile(r"[0-9]{1,10}\.[0-9a-f]{32}")


def _private_dir(path: Path) -> None:
    if not path.is_dir():
        path.mkdir(mode=0o700, parents=True, exist_ok=True)
        owned_like_parent(path)


class Journal:
    """One connection to the node's journal; safe to share between threads."""

    def __init__(self, path: Path, keep_after_expiry: float = 3600.0):
        """`keep_after_expiry`: seconds a row outlives its envelope's expiry (more than the clock skew
        verification tolerates, or an envelope still acceptable could find its row gone)."""
        self.path = Path(path)
        self.keep_after_expiry = keep_after_expiry
        self.path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
        os.close(os.open(self.path, os.O_CREAT | os.O_RDWR, 0o600))  # SQLite gives its -wal and -shm these modes
        owned_like_parent(self.path)  # and, running as root, their owner too
        self.holders = Holders(self.path.parent / "holders")
        self._db = sqlite3.connect(self.path, timeout=BUSY_TIMEOUT, isolation_level=None, check_same_thread=False)
        self._writers = WriterQueue(self.path.with_name(self.path.name + ".lock"))
        self._lock = threading.Lock()
        self._last_prune = 0.0
        with self._lock:
            self._db.execute("PRAGMA journal_mode=WAL")
            self._db.execute("PRAGMA synchronous=NORMAL")
            self._db.executescript(SCHEMA)

    def close(self) -> None:
        with self._lock:
            self._db.close()
            self._writers.close()

    # -- the supervisor ------------------------------------------------------

    def entries(self, ids: Iterable[str]) -> dict[str, Entry]:
        ids = list(ids)
        if not ids:
            return {}
        marks = ",".join("?" * len(ids))
        with self._lock:
            rows = self._db.execute(
                f"SELECT id, signer, nonce, attempt, holder, started_at, ended_at, outcome FROM envelopes WHERE id IN ({marks})", ids
            ).fetchall()
        return {row[0]: _entry(row) for row in rows}

    def entry(self, envelope_id: str) -> Entry | None:
        return self.entries([envelope_id]).get(envelope_id)

    def alive(self, entry: Entry) -> bool:
        """Whether the runner of the entry's last attempt still lives."""
        return entry.holder is not None and self.holders.alive(entry.holder)

    def status(self, entry: Entry) -> tuple[Status, ScriptError | None]:
        return entry.status(self.alive(entry))

    def view(self, entry: Entry, node_id: str) -> JobView:
        return journal_view(entry, node_id, self.alive(entry))

    def accept(self, envelopes: Iterable[tuple[str, str, str, float]]) -> set[str]:
        """Note envelopes (id, signer, nonce, expires_at) about to be queued, in one transaction.
        Returns the ids refused as replays: another envelope of the same signer used the nonce."""
        now = time.time()
        replayed: set[str] = set()
        with self._lock, self._writers, _transaction(self._db):
            for envelope_id, signer, nonce, expires_at in envelopes:
                try:
                    self._db.execute(
                        "INSERT INTO envelopes (id, signer, nonce, expires_at, accepted_at) VALUES (?, ?, ?, ?, ?) "
                        "ON CONFLICT (id) DO NOTHING",
                        (envelope_id, signer, nonce, expires_at, now),
                    )
                except sqlite3.IntegrityError:  # (signer, nonce) taken by another id
                    replayed.add(envelope_id)
        self._prune(now)
        return replayed

    def _prune(self, now: float) -> None:
        if now - self._last_prune < PRUNE_EVERY:
            return
        self._last_prune = now
        with self._lock:  # a run that outlasts its envelope keeps its row until it ends
            self._db.execute(
                "DELETE FROM envelopes WHERE expires_at < ? AND NOT (attempt > 0 AND ended_at IS NULL)",
                (now - self.keep_after_expiry,),
            )

    # -- the runners -----------------------------------------------------------

    def claim(self, envelope_id: str, signer: str, nonce: str, expires_at: float, attempt: int) -> tuple[Claim, Entry | None]:
        """Claim `attempt` of an envelope for this process, durably. RUN: run it; otherwise the entry says why not."""
        return self.claim_many([(envelope_id, signer, nonce, expires_at, attempt)])[0]

    def claim_many(self, attempts: list[tuple[str, str, str, float, int]]) -> list[tuple[Claim, Entry | None]]:
        """Claim attempts (envelope id, signer, nonce, expires_at, attempt) for this process in one durable
        transaction: one fsync for them all (a runner claims the jobs it took together). One verdict each."""
        holder = self.holders.mine()
        verdicts: list[tuple[Claim, Entry | None]] = []
        with self._lock:
            self._db.execute("PRAGMA synchronous=FULL")
            try:
                with self._writers, _transaction(self._db):
                    for envelope_id, signer, nonce, expires_at, attempt in attempts:
                        verdicts.append(self._claim(holder, envelope_id, signer, nonce, expires_at, attempt))
            finally:
                self._db.execute("PRAGMA synchronous=NORMAL")
        return verdicts

    def _claim(self, holder: str, envelope_id: str, signer: str, nonce: str, expires_at: float,
               attempt: int) -> tuple[Claim, Entry | None]:
        row = self._db.execute(
            "SELECT id, signer, nonce, attempt, holder, started_at, ended_at, outcome FROM envelopes WHERE id = ?",
            (envelope_id,),
        ).fetchone()
        entry = _entry(row) if row else None
        if entry is not None and (entry.signer, entry.nonce) != (signer, nonce):
            return Claim.REPLAYED, entry  # the id is another envelope's
        verdict = _verdict(entry, attempt, entry is not None and self.alive(entry))
        if verdict is not Claim.RUN:
            return verdict, entry
        try:
            self._db.execute(
                "INSERT INTO envelopes (id, signer, nonce, expires_at, attempt, holder, started_at) "
                "VALUES (?, ?, ?, ?, ?, ?, ?) ON CONFLICT (id) DO UPDATE SET attempt = excluded.attempt, "
                "holder = excluded.holder, started_at = excluded.started_at, ended_at = NULL, outcome = NULL",
                (envelope_id, signer, nonce, expires_at, attempt, holder, time.time()),
            )
        except sqlite3.IntegrityError:
            return Claim.REPLAYED, entry
        return Claim.RUN, entry

    def end(self, envelope_id: str, outcome: Outcome) -> None:
        """Write the outcome of the attempt this process claimed (never over another's)."""
        self.end_many([(envelope_id, outcome)])

    def end_many(self, ends: list[tuple[str, Outcome]]) -> None:
        """Write the outcomes (envelope id, outcome) of attempts this process claimed, in one transaction."""
        now, holder = time.time(), self.holders.mine()
        rows = [(now, outcome.model_dump_json(), envelope_id, holder) for envelope_id, outcome in ends]
        with self._lock, self._writers, _transaction(self._db):
            self._db.executemany("UPDATE envelopes SET ended_at = ?, outcome = ? WHERE id = ? AND holder = ?", rows)

    def end_abandoned(self, envelope_id: str, outcome: Outcome) -> None:
        """Write the outcome of an attempt whose runner died before its end (a runner pool does, for the
        runner its script's memory ended); never over a live runner's."""
        entry = self.entry(envelope_id)
        if entry is None or entry.ended_at is not None or self.alive(entry):
            return
        with self._lock:
            self._db.execute(
                "UPDATE envelopes SET ended_at = ?, outcome = ? WHERE id = ? AND holder IS ? AND ended_at IS NULL",
                (time.time(), outcome.model_dump_json(), envelope_id, entry.holder),
            )


def _verdict(entry: Entry | None, attempt: int, holder_alive: bool) -> Claim:
    if entry is None or not entry.started:
        return Claim.RUN
    if entry.ended_at is None:  # the last attempt has not ended: it runs yet, or its runner died
        if holder_alive:
            return Claim.BUSY
        return Claim.RUN if attempt > entry.attempt else Claim.ENDED
    outcome = entry.outcome
    retryable = outcome is not None and outcome.status in RETRYABLE and not (outcome.error and outcome.error.type in NOT_RETRIED)
    if attempt > entry.attempt and retryable:
        return Claim.RUN  # a retry of a failed attempt
    return Claim.ENDED


def _entry(row: tuple) -> Entry:
    envelope_id, signer, nonce, attempt, holder, started_at, ended_at, outcome = row
    return Entry(
        id=envelope_id, signer=signer, nonce=nonce, attempt=attempt, holder=holder, started_at=started_at, ended_at=ended_at,
        outcome=Outcome.model_validate(json.loads(outcome)) if outcome else None,
    )


class WriterQueue:
    """The journal's writers, one at a time across processes, in the order the kernel wakes them (an flock on a
    file beside the journal). SQLite alone makes a writer that finds the database locked sleep and try again,
    1 ms, then 2, 5, 10... (its busy handler): two runners writing every few milliseconds did so all the time,
    and ran slower together than one alone (bench/runner.py: 1,008 jobs/s for two, 2,343 for one).
    Bounded as SQLite's wait is: past BUSY_TIMEOUT the writer goes on, and SQLite's own wait decides."""

    POLL = 0.0002  # seconds between tries while another process writes (a claim's fsync: about a millisecond)

    def __init__(self, path: Path):
        self._fd = os.open(path, os.O_CREAT | os.O_RDWR, 0o600)
        owned_like_parent(path)
        self._held = False

    def __enter__(self) -> None:
        deadline = time.monotonic() + BUSY_TIMEOUT
        while True:
            try:
                fcntl.flock(self._fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                self._held = True
                return
            except BlockingIOError:
                if time.monotonic() > deadline:
                    return
                time.sleep(self.POLL)

    def __exit__(self, *_: object) -> None:
        if self._held:
            self._held = False
            fcntl.flock(self._fd, fcntl.LOCK_UN)

    def close(self) -> None:
        os.close(self._fd)


class _transaction:
    """BEGIN IMMEDIATE ... COMMIT (or ROLLBACK): the write lock from the start, so two claims serialise."""

    def __init__(self, db: sqlite3.Connection):
        self.db = db

    def __enter__(self) -> None:
        self.db.execute("BEGIN IMMEDIATE")

    def __exit__(self, exc_type, *_: object) -> None:
        if exc_type is None:
            try:
                self.db.execute("COMMIT")
                return
            except sqlite3.Error:
                if self.db.in_transaction:  # a failed COMMIT (a full disk) leaves it open, the write lock held
                    self.db.execute("ROLLBACK")
                raise
        if self.db.in_transaction:
            self.db.execute("ROLLBACK")
