"""A private redis-server for tests and benchmarks: on a Unix socket, no TCP, nothing persisted."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import redis

from .waiting import wait_until


def start_redis_server(directory: Path, timeout: float = 10) -> tuple[subprocess.Popen, Path]:
    """redis-server on `directory`/redis.sock, once it answers PING: (its process, the socket's path)."""
    binary = shutil.which("redis-server")
    if binary is None:
        raise RuntimeError("redis-server is not installed; run scripts/install-system-packages")
    socket = directory / "redis.sock"
    process = subprocess.Popen(
        [binary, "--port", "0", "--unixsocket", str(socket), "--unixsocketperm", "700",
         "--save", "", "--appendonly", "no", "--dir", str(directory)],
        stdout=subprocess.DEVNULL,
    )
    client = redis.Redis(unix_socket_path=str(socket))
    try:
        wait_until(client.ping, timeout, "redis-server to answer", interval=0.02, process=process,
                   ignoring=(redis.ConnectionError, FileNotFoundError))
    except AssertionError as failure:
        process.kill()
        process.wait()
        raise RuntimeError(f"redis-server did not start: {failure}") from None
    finally:
        client.close()
    return process, socket
