"""A private redis-server for tests and benchmarks: on a Unix socket, no TCP, append-only as a node's.

Its files (the socket, and the append-only files under appendonlydir/) are in
the directory given. It persists as production does (append-only, fsync every
second: scripts/redis/zeronode-redis.conf), so what the tests see is what a
node runs on; `persistence="rdb"` or `"none"` starts a volatile one, for the
tests of the supervisor's refusal to run on it.
"""

from __future__ import annotations

import shutil
import subprocess
from collections.abc import Sequence
from pathlib import Path

import redis

from .waiting import wait_until

# The durability settings of a node's Redis, as scripts/redis/zeronode-redis.conf sets them.
PERSISTENCE = {
    "aof": ["--appendonly", "yes", "--appendfsync", "everysec", "--save", ""],
    "rdb": ["--appendonly", "no", "--save", "3600 1 300 100 60 10000"],  # Debian's packaged defaults
    "none": ["--appendonly", "no", "--save", ""],
}


def start_redis_server(
    directory: Path, timeout: float = 10, *, persistence: str = "aof", options: Sequence[str] = (),
) -> tuple[subprocess.Popen, Path]:
    """redis-server on `directory`/redis.sock, once it answers PING: (its process, the socket's path).
    `persistence`: "aof" (a node's: the default), or "rdb" or "none" (volatile); `options`: more
    command-line settings (e.g. "--rename-command", "CONFIG", "")."""
    binary = shutil.which("redis-server")
    if binary is None:
        raise RuntimeError("redis-server is not installed; run scripts/install-system-packages")
    socket = directory / "redis.sock"
    process = subprocess.Popen(
        [binary, "--port", "0", "--unixsocket", str(socket), "--unixsocketperm", "700",
         *PERSISTENCE[persistence], "--dir", str(directory), *options],
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


def wait_for_aof_written(connection: redis.Redis, timeout: float = 30) -> None:
    """Wait until a Redis made append-only at run time has written its first AOF (0.1 s here): until then it
    refuses to stop, and a SIGTERM waits out the caller's whole stop timeout."""

    def written() -> bool:
        persistence = connection.info("persistence")
        return not (persistence["aof_rewrite_in_progress"] or persistence["aof_rewrite_scheduled"])

    wait_until(written, timeout, "redis to write its first AOF")
