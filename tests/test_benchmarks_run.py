"""The benchmarks still run (at toy sizes): they are how speed claims are checked, so they must not rot.
Nothing here asserts a speed; only that each prints its ratio line, and that a bench with aims writes
them where `make bench` collects them (bench/aims.py)."""

import json
import statistics
import subprocess
import sys
from pathlib import Path

import pytest

BENCH = Path(__file__).resolve().parent.parent / "bench"
# These report what they measure (wall times, scaling with fleet size) without a bound to meet.
WITHOUT_AIMS = {"coord.py", "membership.py", "vm_boot.py"}


@pytest.mark.parametrize(
    ("script", "args", "ratio_line"),
    [
        ("rhai_eval.py", ["--seconds", "0.05"], "cached AST with 3 callbacks:"),
        ("verify.py", ["--envelopes", "100", "--rounds", "1"], "cost ratio full/raw:"),
        ("rights.py", ["--envelopes", "100", "--users", "10", "--rounds", "1"], "rights check per envelope:"),
        ("pipeline.py", ["--jobs", "40", "--rounds", "1"], "runner vs rq SimpleWorker:"),
        ("runner.py", ["--jobs", "40", "--rounds", "1"], "runner vs arq:"),
        ("supervisor.py", ["--jobs", "200", "--rounds", "1"], "supervisor over HTTP vs no-op:"),
        # PostgreSQL included: the server starts in a few seconds.
        ("ledger.py", ["--nodes", "40", "--rounds", "1", "--batch", "10", "--listing-sizes", "50,200", "--repeat", "2"],
         "signed reports vs no-op:"),
        ("coord.py", ["--nodes", "20", "--latency", "0.001"], "fan-out vs one at a time:"),
        ("membership.py", ["--nodes", "10,100", "--repeat", "5"], "named / placed"),
        ("vm_boot.py", ["--rounds", "1", "--together", "1", "--guest-cache", str(BENCH.parent / ".cache" / "guest")],
         "deploy → guest, qemu"),
    ],
)
def test_benchmark_runs(script, args, ratio_line, tmp_path):
    aims_file = tmp_path / "aims.jsonl"
    result = subprocess.run(
        [sys.executable, str(BENCH / script), *args], capture_output=True, text=True, timeout=300,
        env={"COLUMNS": "200", "PATH": str(Path(sys.executable).parent) + ":/usr/bin:/bin:/usr/sbin:/sbin",
             "ZERONODE_BENCH_AIMS": str(aims_file)},
    )
    assert result.returncode == 0, result.stderr[-2000:]
    assert ratio_line in result.stdout
    if script in WITHOUT_AIMS:
        return
    aims = [json.loads(line) for line in aims_file.read_text().splitlines()]
    assert aims and all(aim["bench"] == Path(script).stem and aim["rounds"] for aim in aims)
    summary = subprocess.run([sys.executable, str(BENCH / "aims.py"), str(aims_file)], capture_output=True,
                             text=True, timeout=60, env={"COLUMNS": "200"})
    assert summary.returncode == 0, summary.stderr[-2000:]
    met = sum(
        statistics.median(a["rounds"]) >= a["at_least"] if a["at_least"] is not None
        else statistics.median(a["rounds"]) <= a["at_most"]
        for a in aims
    )
    assert f"every aim of this run: {met} of {len(aims)} met" in summary.stdout
