"""Fixtures shared by every test package: real servers, started and stopped by the tests."""

import shutil
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
import redis
import uvicorn


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
