"""A runner pool's Prometheus metrics: what each runner counts, and how the pool adds them up.

    zeronode_runner_jobs_total{outcome}     attempts run, by how each ended: finished, failed, timed_out,
                                            canceled, interrupted (put back by a stopping runner)
    zeronode_runner_job_duration_seconds    how long a runner was busy with each, from its take to its finish
    zeronode_runner_busy                    runners running a job now

The runners are processes of their own (runner.pool), so each counts its own,
and prometheus_client's multiprocess mode adds them up: a runner writes its
values to memory-mapped files in a directory the pool made for it (the
PROMETHEUS_MULTIPROC_DIR its runners inherit), a few microseconds a job with
no system call, and the pool sums the files when Prometheus scrapes it
(runner.endpoint). The alternatives cost more on every job: counting in the
node's Redis adds commands to each job's round trip (and no Redis, no
metrics), and telling the pool over a pipe is a write a job. A runner that
dies keeps its counts in the sums (its files stay); its busy gauge goes with
it (the pool marks it dead). Counts start at zero with each pool, as any
process's do. The directory goes with its pool; one a pool killed with -9 left
(its name has the pool's pid) goes when the next pool starts.

Outside a pool (`zeronode runner --burst`, the benchmarks) the same metrics
count in memory, and nobody serves them.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from pathlib import Path

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, multiprocess

MULTIPROCESS_DIR = "PROMETHEUS_MULTIPROC_DIR"  # prometheus_client's variable: where a process writes its values
DIRECTORY_PREFIX = "zeronode-runner-metrics-"  # then the pool's pid, "-", and mkdtemp's random part
OUTCOMES = ("finished", "failed", "timed_out", "canceled", "interrupted")
# From a no-op script's few milliseconds to a VM's deployment of minutes.
DURATION_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300, 600)


class RunnerMetrics:
    """One runner's metrics (its process's files in a pool; in memory elsewhere). Registered nowhere:
    the pool reads them from the files."""

    def __init__(self) -> None:
        self.jobs = Counter(
            "zeronode_runner_jobs", "Attempts run by this node's runners, by outcome", ["outcome"], registry=None,
        )
        self.outcomes = {outcome: self.jobs.labels(outcome) for outcome in OUTCOMES}  # each series from the start, at 0
        self.duration = Histogram(
            "zeronode_runner_job_duration_seconds", "How long a runner was busy with a job, from its take to its finish",
            buckets=DURATION_BUCKETS, registry=None,
        )
        # livesum: the sum over the runners alive (the pool marks the dead ones).
        self.busy = Gauge("zeronode_runner_busy", "Runners running a job now", multiprocess_mode="livesum", registry=None)

    def started(self) -> None:
        self.busy.set(1)

    def ended(self, outcome: str, seconds: float) -> None:
        """A started job's attempt ended, `seconds` after its take: `outcome` is one of OUTCOMES."""
        (self.outcomes.get(outcome) or self.jobs.labels(outcome)).inc()
        self.duration.observe(seconds)
        self.busy.set(0)

    def left(self) -> None:
        """A started job left without being run here (delayed: another runner runs it): counted nowhere."""
        self.busy.set(0)


class PoolMetrics:
    """The pool's side: the directory its runners write to, and the registry that sums them for a scrape."""

    def __init__(self) -> None:
        remove_abandoned(Path(tempfile.gettempdir()))
        # 0700, and empty: no stale counts.
        self.directory = Path(tempfile.mkdtemp(prefix=f"{DIRECTORY_PREFIX}{os.getpid()}-"))
        os.environ[MULTIPROCESS_DIR] = str(self.directory)  # runners started from now on inherit it
        self.registry = CollectorRegistry()
        multiprocess.MultiProcessCollector(self.registry, path=str(self.directory))

    def runner_ended(self, pid: int) -> None:
        """A runner process is gone: its busy gauge leaves the sum; its counts stay."""
        multiprocess.mark_process_dead(pid, str(self.directory))

    def close(self) -> None:
        os.environ.pop(MULTIPROCESS_DIR, None)
        shutil.rmtree(self.directory, ignore_errors=True)


def remove_abandoned(parent: Path) -> None:
    """Remove the metrics directories of this user's pools that are gone (killed with -9: no close)."""
    for directory in parent.glob(f"{DIRECTORY_PREFIX}*-*"):
        pid = directory.name.removeprefix(DIRECTORY_PREFIX).split("-", 1)[0]
        if pid.isdigit() and directory.is_dir() and directory.stat().st_uid == os.getuid() and not _alive(int(pid)):
            shutil.rmtree(directory, ignore_errors=True)


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # another user's process
        return True
    return True
