"""The benchmarks still run (at toy sizes): they are how speed claims are checked, so they must not rot.
Nothing here asserts a speed; only that each prints its ratio line."""

import subprocess
import sys
from pathlib import Path

import pytest

BENCH = Path(__file__).resolve().parent.parent / "bench"


@pytest.mark.parametrize(
    ("script", "args", "ratio_line"),
    [
        ("rhai_eval.py", ["--seconds", "0.05"], "cached AST with 3 callbacks:"),
        ("verify.py", ["--envelopes", "100", "--rounds", "1"], "cost ratio full/raw:"),
        ("rights.py", ["--envelopes", "100", "--users", "10", "--rounds", "1"], "rights check per envelope:"),
        ("pipeline.py", ["--jobs", "40", "--rounds", "1"], "runner vs rq SimpleWorker:"),
        ("runner.py", ["--jobs", "40", "--rounds", "1"], "runner vs arq:"),
        ("ledger.py", ["--nodes", "40", "--rounds", "1", "--batch", "10"], "signed reports vs no-op:"),
        ("coord.py", ["--nodes", "20", "--latency", "0.001"], "fan-out vs one at a time:"),
        ("membership.py", ["--nodes", "10,100", "--repeat", "5"], "named / placed"),
        ("vm_boot.py", ["--rounds", "1", "--together", "1", "--guest-cache", str(BENCH.parent / ".cache" / "guest")],
         "deploy → guest, qemu"),
    ],
)
def test_benchmark_runs(script, args, ratio_line):
    result = subprocess.run(
        [sys.executable, str(BENCH / script), *args], capture_output=True, text=True, timeout=300,
        env={"COLUMNS": "200", "PATH": str(Path(sys.executable).parent) + ":/usr/bin:/bin:/usr/sbin:/sbin"},
    )
    assert result.returncode == 0, result.stderr[-2000:]
    assert ratio_line in result.stdout
