"""A runner pool's HTTP endpoint, on `runner_metrics_host:runner_metrics_port` (local by default):

    GET /metrics   the runners' Prometheus metrics, summed over the pool's runners (runner.metrics)
    GET /health    200 {"status": "ok", "runners": alive, "size": N, "version"} while the pool's monitor
                   reaches Redis; 503 {"status": "redis unavailable", ...} otherwise

Open, as the other services' /metrics and /health are, and without job data.
Anything else is a 404 (405 for another method) with the services' error body,
{"detail": {"reason", "message"}}. A thread of the standard library's HTTP
server in the pool's process: two read-only pages do not need a web framework
in a process whose work is starting and watching its runners.
"""

from __future__ import annotations

import json
import logging
import threading
from collections.abc import Callable
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, generate_latest

log = logging.getLogger("zeronode.runner")

Health = Callable[[], tuple[bool, dict[str, Any]]]  # (healthy, what /health says)


class Endpoint:
    def __init__(self, host: str, port: int, registry: CollectorRegistry, health: Health):
        handler = type("Handler", (_Handler,), {"registry": registry, "health": staticmethod(health)})
        self.server = ThreadingHTTPServer((host, port), handler)  # raises OSError: the address is taken, say
        self.server.daemon_threads = True
        self.thread = threading.Thread(target=self.server.serve_forever, name="runner-endpoint", daemon=True)

    @property
    def address(self) -> tuple[str, int]:
        return self.server.server_address[:2]

    def start(self) -> None:
        self.thread.start()

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()


class _Handler(BaseHTTPRequestHandler):
    registry: CollectorRegistry
    health: Health
    server_version = "zeronode-runner"
    sys_version = ""

    def do_GET(self) -> None:  # noqa: N802 (the standard library's name)
        path = self.path.split("?", 1)[0]
        if path == "/metrics":
            self._send(200, CONTENT_TYPE_LATEST, generate_latest(self.registry))
        elif path == "/health":
            healthy, body = self.health()
            self._json(200 if healthy else 503, body)
        else:
            self._error(404, "not_found", "this endpoint serves /metrics and /health")

    def do_POST(self) -> None:  # noqa: N802
        self._error(405, "method_not_allowed", "this endpoint serves GET /metrics and GET /health")

    do_PUT = do_DELETE = do_PATCH = do_POST  # noqa: N815

    def send_error(self, code: int, message: str | None = None, explain: str | None = None) -> None:
        """What the standard library answers on its own (a malformed request, an unknown method), as JSON too."""
        self.close_connection = True
        reason = {400: "malformed", 414: "malformed", 431: "malformed", 501: "method_not_allowed"}.get(code, "bad_request")
        self._error(code, reason, message or HTTPStatus(code).phrase)

    def _error(self, status: int, reason: str, message: str) -> None:
        self._json(status, {"detail": {"reason": reason, "message": message}})

    def _json(self, status: int, body: dict[str, Any]) -> None:
        self._send(status, "application/json", json.dumps(body).encode())

    def _send(self, status: int, content_type: str, body: bytes) -> None:
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 (the standard library's signature)
        log.debug("runner endpoint request", extra={"request": format % args})
