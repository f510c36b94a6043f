"""The soak (bench/soak.py) still runs, at a toy size: a real node under kill -9 of its runners, supervisor and
Redis, read back to the end, and everything it started cleaned up. Nothing here asserts what the soak measures
(that is the soak's own --check, at 3,000 jobs); only that it measures it."""

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

SOAK = Path(__file__).resolve().parent.parent / "bench" / "soak.py"

pytestmark = [
    pytest.mark.skipif(os.geteuid() != 0, reason="the soak loop-mounts a btrfs: run as root"),
    pytest.mark.skipif(not shutil.which("mkfs.btrfs") or not shutil.which("redis-server"),
                       reason="needs mkfs.btrfs and redis-server (scripts/install-system-packages)"),
]


def test_soak_runs_and_cleans_up(short_dir):
    jobs = 40
    result = subprocess.run(
        [sys.executable, str(SOAK), "--jobs", str(jobs), "--rate", "8", "--runners", "4", "--work-min", "0.1",
         "--work-max", "0.4", "--kill-every", "1.5", "2.5", "--pause", "0.3", "0.6", "--heartbeat", "0.5",
         "--dead-after", "2", "--drain-timeout", "30", "--seed", "13", "--workdir", str(short_dir)],
        capture_output=True, text=True, timeout=150, env={**os.environ, "COLUMNS": "200"},
    )
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    report = json.loads(result.stdout.strip().splitlines()[-1])

    assert report["submitted"] == jobs
    ended = report["finished"] + sum(report["failed"].values()) + report["lost_total"] + sum(report["not_ended"].values())
    assert ended == report["accepted"], report
    assert report["never_ran"] + report["ran_once"] + report["run_twice"] == report["accepted"], report
    assert sum(report["kills"].values()) >= 1, report
    for kill in report["kill_log"]:  # each kill was recovered from, and how long it took was measured
        if kill["kind"] == "runner":
            assert kill["replaced"] is not None, kill
        else:
            assert kill["accepts_again"] is not None, kill

    assert list(short_dir.iterdir()) == [], "the soak left its directory behind"
    assert str(short_dir) not in Path("/proc/mounts").read_text(), "the soak left its btrfs mounted"
