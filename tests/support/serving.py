"""ASGI apps served by uvicorn on loopback sockets: from a thread of the caller's process, or in the foreground."""

from __future__ import annotations

import socket
import threading

import uvicorn

from .waiting import wait_until


def listener(host: str = "127.0.0.1", port: int = 0) -> socket.socket:
    """A TCP socket bound to (host, port) (0: a free port) for uvicorn to listen on."""
    sock = socket.socket()
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    # Accepted sockets inherit this; without it uvicorn answers small requests 40 ms late (delayed ACK).
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    sock.bind((host, port))
    return sock


def uvicorn_server(app, *, lifespan: str = "on") -> uvicorn.Server:
    """A quiet uvicorn server for `app` (warnings only), to be run on sockets of the caller's."""
    return uvicorn.Server(uvicorn.Config(app, log_level="warning", lifespan=lifespan))


class BackgroundServer:
    """`app` served in a daemon thread on `sockets` (one new loopback listener by default), until `stop()`."""

    def __init__(self, app, sockets: list[socket.socket] | None = None, *, lifespan: str = "on", timeout: float = 10):
        self.sockets = sockets or [listener()]
        self.server = uvicorn_server(app, lifespan=lifespan)
        self.thread = threading.Thread(target=self.server.run, kwargs={"sockets": self.sockets}, daemon=True)
        self.thread.start()
        wait_until(self._started, timeout, "uvicorn to start", interval=0.01)

    def _started(self) -> bool:
        if not self.server.started and not self.thread.is_alive():
            raise AssertionError("uvicorn did not start: its thread ended")
        return self.server.started

    @property
    def port(self) -> int:
        return self.sockets[0].getsockname()[1]

    @property
    def url(self) -> str:
        """The base URL of the first socket: http://HOST:PORT."""
        host, port = self.sockets[0].getsockname()
        return f"http://{host}:{port}"

    def stop(self) -> None:
        self.server.should_exit = True
        self.thread.join(10)
        for sock in self.sockets:
            sock.close()
