"""A node's services in processes of their own, as a node runs them (for benches and tests)."""

from __future__ import annotations

import contextlib
import subprocess
from collections.abc import Iterator
from pathlib import Path

from zeronode.node.settings import NodeSettings

from .health import wait_healthy
from .ports import free_port
from .processes import ZERONODE, stop


@contextlib.contextmanager
def supervisor_process(settings: NodeSettings, workdir: Path) -> Iterator[tuple[str, subprocess.Popen]]:
    """`zeronode supervisor` on `settings` (its state directory, Redis and queue) and a free port, once it
    answers /health: (its URL, its process). Its logs are dropped."""
    port = free_port()
    config = workdir / "node.toml"
    config.write_text(
        f'state_dir = "{settings.state_dir}"\nredis_url = "{settings.redis_url}"\nqueue = "{settings.queue}"\nport = {port}\n'
    )
    process = subprocess.Popen([ZERONODE, "supervisor", "--config", str(config)], stderr=subprocess.DEVNULL)
    try:
        wait_healthy(f"http://127.0.0.1:{port}", 60, process)
        yield f"http://127.0.0.1:{port}", process
    finally:
        stop(process, 30)
