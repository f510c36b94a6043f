"""Fixtures shared by every test package: real servers and a real btrfs, made and removed by the tests."""

import contextlib
import os
import shutil
import subprocess
import tempfile
import uuid
from dataclasses import dataclass
from pathlib import Path

import btrfsutil
import pytest
import redis

from sal.network.drivers.mycelium.simulator import SimulatedNode, create_simulator
from tests.support.image_server import ImageServer
from tests.support.processes import ZERONODE, ZeronodeProcess, stop
from tests.support.redis_server import start_redis_server
from tests.support.serving import BackgroundServer, listener


@pytest.fixture(scope="session")
def zn():
    """Run the installed `zeronode` command as a user would: zn("verify", path) -> CompletedProcess."""
    assert ZERONODE, "the zeronode console script is not installed in this environment"

    def run(*args: str, **kwargs) -> subprocess.CompletedProcess:
        return subprocess.run([ZERONODE, *map(str, args)], capture_output=True, text=True, timeout=60, **kwargs)

    return run


@pytest.fixture
def services():
    """services(*args) -> ZeronodeProcess: `zeronode ARGS...` as a process, stopped at the end of the test."""
    started: list[ZeronodeProcess] = []

    def start(*args) -> ZeronodeProcess:
        started.append(ZeronodeProcess(*args))
        return started[-1]

    yield start
    for service in started:
        service.stop()


@pytest.fixture(scope="session")
def tiny_guest():
    """zeronode's tiny Linux guest (zeronode.dev.guest): Debian's cloud kernel and busybox, built once into the
    repository's .cache/ (downloaded with apt-get on the first run)."""
    from zeronode.dev import guest

    return guest.build(Path(__file__).resolve().parent.parent / ".cache" / "guest")


@pytest.fixture(scope="session")
def redis_server(tmp_path_factory):
    """A private redis-server on a Unix socket, for the whole session."""
    process, socket = start_redis_server(tmp_path_factory.mktemp("redis"))
    yield socket
    stop(process, 10)


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
    servers: list[BackgroundServer] = []

    def start(app) -> str:
        servers.append(BackgroundServer(app))
        return servers[-1].url

    yield start
    for server in servers:
        server.stop()


@dataclass(frozen=True)
class SimulatedMycelium:
    url: str  # its API
    endpoint: str  # what its peers dial: tcp://127.0.0.1:LISTEN_PORT
    node: SimulatedNode


@pytest.fixture
def mycelium():
    """start(node=None) → a simulated mycelium node with the daemon's two listeners on loopback: its API,
    and the listen port its peers dial."""
    servers: list[BackgroundServer] = []

    def start(node: SimulatedNode | None = None) -> SimulatedMycelium:
        sockets = [listener(), listener()]
        node = node or SimulatedNode()
        node.listen_port = sockets[1].getsockname()[1]
        servers.append(BackgroundServer(create_simulator(node), sockets))
        return SimulatedMycelium(servers[-1].url, f"tcp://127.0.0.1:{node.listen_port}", node)

    yield start
    for server in servers:
        server.stop()


@pytest.fixture
def image_server():
    """Images served over HTTP on loopback (tests/support/image_server.py): serve(path, data, ...) -> its URL."""
    server = ImageServer()
    yield server
    server.stop()


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
        file.truncate(8 * 1024**3)  # sparse: VM disks may be as large as the pool, which holds what is written
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
