"""`zeronode up` as a real process tree for a test module: started, read, and stopped with Ctrl-C."""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.support.processes import ZERONODE
from zeronode.protocol import keys


@contextlib.contextmanager
def running_up(state: Path, *args: str) -> Iterator[dict]:
    """`zeronode up --state-dir STATE ARGS...` once it says it is up: its cluster.json, with `up` (the process),
    `state`, `output` (its lines so far), `admin` (the admin's key) and `cli` (runs `zeronode` against it)."""
    process = subprocess.Popen(
        # Free ports: test modules run side by side, and none may answer where another test expects nothing.
        [ZERONODE, "up", "--state-dir", str(state), "--free-ports", *args],
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env={**os.environ, "COLUMNS": "200"},
        # Ctrl-C (SIGINT) stops it: not ignored, even when the tests themselves run as a background job, which
        # the shell starts with SIGINT ignored (and Python then keeps it so).
        preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL),
    )
    lines: list[str] = []
    for line in process.stdout:
        lines.append(line)
        if "zeronode is up" in line:
            break
    else:
        pytest.fail(f"zeronode up exited ({process.wait()}):\n{''.join(lines)}")
    info = json.loads((state / "cluster.json").read_text())
    info["up"], info["state"], info["output"] = process, state, lines
    info["admin"] = keys.load_private_key(Path(info["admin_key"]))
    env = {**os.environ, "ZERONODE_COORD_URL": info["coord_url"], "ZERONODE_LEDGER_URL": info["ledger_url"], "COLUMNS": "250"}

    def cli(*argv) -> subprocess.CompletedProcess:
        return subprocess.run([ZERONODE, *map(str, argv)], capture_output=True, text=True, timeout=120, env=env)

    info["cli"] = cli
    try:
        yield info
    finally:
        if process.poll() is None:
            process.send_signal(signal.SIGINT)
            process.wait(60)


def pids(cluster: dict) -> dict[str, int]:
    """The cluster's processes now (`up` restarts one that dies, under a new pid)."""
    return json.loads((cluster["state"] / "cluster.json").read_text())["processes"]
