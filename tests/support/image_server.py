"""Images served over HTTP on loopback from a thread (http.server), with Range requests and the ways servers fail."""

from __future__ import annotations

import re
import threading
from collections.abc import Callable
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

RANGE = re.compile(r"bytes=(\d+)-")


@dataclass
class Served:
    """One path's answer."""

    data: bytes = b""
    status: int = 200  # an error status answers with no body
    location: str | None = None  # answer 302 to there
    drops: int = 0  # how many of the next answers send half the body, then close the connection
    length: bool = True  # send Content-Length; without it the body ends when the connection closes
    ranges: bool = True  # honour Range; without, the whole body with 200
    halfway: Callable[[], None] | None = None  # called once half the body is sent, before the rest


class ImageServer:
    def __init__(self) -> None:
        self.paths: dict[str, Served] = {}
        self.requests: list[tuple[str, str | None]] = []  # (path, its Range header)
        self.server = ThreadingHTTPServer(("127.0.0.1", 0), _handler(self))
        self.server.daemon_threads = True
        self.thread = threading.Thread(target=self.server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
        self.thread.start()

    def serve(self, path: str, data: bytes = b"", **how) -> str:
        """Serve `data` at `path`; its URL."""
        self.paths[path] = Served(data, **how)
        return self.url(path)

    def url(self, path: str) -> str:
        host, port = self.server.server_address[:2]
        return f"http://{host}:{port}{path}"

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()


def _handler(images: ImageServer) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def log_message(self, *args) -> None:  # quiet
            pass

        def do_GET(self) -> None:  # noqa: N802 (http.server's name)
            images.requests.append((self.path, self.headers.get("range")))
            served = images.paths.get(self.path)
            self.close_connection = True
            if served is None or served.status != 200:
                return self._empty(404 if served is None else served.status)
            if served.location:
                return self._empty(302, location=served.location)
            start = 0
            match = RANGE.fullmatch(self.headers.get("range") or "")
            if match and served.ranges:
                start = int(match[1])
                if start >= len(served.data):
                    return self._empty(416, content_range=f"bytes */{len(served.data)}")
            body = served.data[start:]
            self.send_response(206 if start else 200)
            if start:
                self.send_header("content-range", f"bytes {start}-{len(served.data) - 1}/{len(served.data)}")
            if served.length:
                self.send_header("content-length", str(len(body)))
            self.send_header("connection", "close")
            self.end_headers()
            half = len(body) // 2
            try:
                self.wfile.write(body[:half])
                self.wfile.flush()
                if served.drops:
                    served.drops -= 1
                    return  # the connection closes with the body half sent
                if served.halfway:
                    served.halfway()
                self.wfile.write(body[half:])
            except ConnectionError:
                pass  # the client gave up (cancelled, too large): so may it

        def _empty(self, status: int, **headers: str) -> None:
            self.send_response(status)
            for name, value in headers.items():
                self.send_header(name.replace("_", "-"), value)
            self.send_header("content-length", "0")
            self.send_header("connection", "close")
            self.end_headers()

    return Handler
