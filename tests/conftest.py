"""Fixtures shared by every test package: real servers and a real btrfs, made and removed by the tests."""

import contextlib
import json
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from pathlib import Path

import btrfsutil
import pytest
import redis
import uvicorn


def collect_json_lines(stream, into: list[dict]) -> threading.Thread:
    """Append each JSON log line a process writes on `stream` to `into` (plain lines as {"msg": line})."""

    def read() -> None:
        for line in stream:
            try:
                into.append(json.loads(line))
            except ValueError:
                into.append({"msg": line.rstrip()})

    reader = threading.Thread(target=read, daemon=True)
    reader.start()
    return reader


@pytest.fixture(scope="session")
def zn():
    """Run the installed `zeronode` command as a user would: zn("verify", path) -> CompletedProcess."""
    binary = shutil.which("zeronode", path=str(Path(sys.executable).parent))
    assert binary, "the zeronode console script is not installed in this environment"

    def run(*args: str, **kwargs) -> subprocess.CompletedProcess:
        return subprocess.run([binary, *map(str, args)], capture_output=True, text=True, timeout=60, **kwargs)

    return run


@pytest.fixture(scope="session")
def redis_server(tmp_path_factory):
    """A private redis-server on a Unix socket, for the whole session."""
    binary = shutil.which("redis-server")
    assert binary, "redis-server is not installed; run scripts/install-system-packages"
    directory = tmp_path_factory.mktemp("redis")
    socket = directory / "redis.sock"
    process = subprocess.Popen(
        [binary, "--port", "0", "--unixsocket", str(socket), "--unixsocketperm", "700",
         "--save", "", "--appendonly", "no", "--dir", str(directory)],
        stdout=subprocess.DEVNULL,
    )
    client = redis.Redis(unix_socket_path=str(socket))
    deadline = time.monotonic() + 10
    while True:
        try:
            client.ping()
            break
        except (redis.ConnectionError, FileNotFoundError):
            if process.poll() is not None or time.monotonic() > deadline:
                process.kill()
                raise RuntimeError("redis-server did not start") from None
            time.sleep(0.02)
    yield socket
    process.terminate()
    process.wait(10)


@pytest.fixture
def redis_client(redis_server):
    """A client of the session's Redis, emptied before each test."""
    client = redis.Redis(unix_socket_path=str(redis_server))
    client.flushall()
    yield client
    client.close()


@pytest.fixture
def serve_app():
    """Serve an ASGI app with uvicorn on a free loopback port; returns its base URL."""
    servers = []

    def start(app) -> str:
        listener = socket.socket()
        # Accepted sockets inherit this; without it uvicorn answers each request 40 ms late (delayed ACK).
        listener.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        listener.bind(("127.0.0.1", 0))
        server = uvicorn.Server(uvicorn.Config(app, log_level="warning", lifespan="on"))
        thread = threading.Thread(target=server.run, kwargs={"sockets": [listener]}, daemon=True)
        thread.start()
        servers.append((server, thread, listener))
        deadline = time.monotonic() + 10
        while not server.started:
            assert thread.is_alive() and time.monotonic() < deadline, "uvicorn did not start"
            time.sleep(0.01)
        host, port = listener.getsockname()
        return f"http://{host}:{port}"

    yield start
    for server, thread, listener in servers:
        server.should_exit = True
        thread.join(10)
        listener.close()


@pytest.fixture
def short_dir():
    """A directory with a short path: a UNIX socket's path must fit in 107 bytes, and tmp_path's may not."""
    path = Path(tempfile.mkdtemp(prefix="zn-", dir="/tmp"))
    yield path
    shutil.rmtree(path, ignore_errors=True)


# -- a real btrfs, loop-mounted (root is available on these machines) --


@pytest.fixture(scope="session")
def btrfs_mount(tmp_path_factory):
    assert os.geteuid() == 0, "the btrfs tests mount a loop device: run them as root"
    assert shutil.which("mkfs.btrfs"), "mkfs.btrfs is missing; run scripts/install-system-packages"
    base = tmp_path_factory.mktemp("btrfs")
    image, mount = base / "pool.img", base / "mnt"
    mount.mkdir()
    with open(image, "wb") as file:
        file.truncate(512 * 1024 * 1024)
    subprocess.run(["mkfs.btrfs", "-q", str(image)], check=True, capture_output=True)
    subprocess.run(["mount", "-o", "loop", str(image), str(mount)], check=True, capture_output=True)
    try:
        yield mount
    finally:
        subprocess.run(["umount", "-l", str(mount)], check=False, capture_output=True)


def remove_pool(path):
    for entry in sorted(path.iterdir(), reverse=True) if path.exists() else []:
        if not entry.is_symlink() and entry.is_dir() and btrfsutil.is_subvolume(entry):
            if btrfsutil.get_subvolume_read_only(entry):
                btrfsutil.set_subvolume_read_only(entry, False)
            btrfsutil.delete_subvolume(entry, recursive=True)
    shutil.rmtree(path, ignore_errors=True)


@contextlib.contextmanager
def new_pool(btrfs_mount):
    """A fresh, empty pool directory on the btrfs, removed with all its volumes afterwards."""
    path = btrfs_mount / f"pool-{uuid.uuid4().hex[:8]}"
    path.mkdir()
    try:
        yield path
    finally:
        remove_pool(path)


@pytest.fixture
def pool_dir(btrfs_mount):
    with new_pool(btrfs_mount) as path:
        yield path


@pytest.fixture
def second_pool_dir(btrfs_mount):
    """Another pool: where a volume sent from `pool_dir` is received."""
    with new_pool(btrfs_mount) as path:
        yield path
