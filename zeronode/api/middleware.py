"""The one middleware every service runs: each HTTP request's id, and its count and duration in Prometheus.

Request ids. A request may bring its own `X-Request-Id` (coord sends the
deployment's to the supervisor, a client or a proxy may send one): it is kept
when it is short and of safe characters (REQUEST_ID), else a new one is made.
The answer carries it back in the same header, every log line written while
the request is served carries it (zeronode.logs.REQUEST_ID), and handlers find
it in `request.state.request_id` (the supervisor stores it with the job).

Metrics, named `zeronode_<service>_http_...`: requests counted by route
template (`/v1/jobs/{job_id}`, never the path itself, so a scan of made-up
paths adds no series: an unknown path is `unmatched`), method and status; and
their duration, by route and method. The route is the one the router matched
(Starlette leaves it in the scope).

It is pure ASGI, not Starlette's BaseHTTPMiddleware (which runs the app in a
task of its own and copies every body through a stream): on the supervisor's
submit path it costs one dictionary lookup for the series and two
observations. A request that raises past it is answered 500 by Starlette's
outermost middleware, above this one: zeronode.api.handlers adds the id there.
"""

from __future__ import annotations

import re
import secrets
import time
from collections.abc import Awaitable, Callable, MutableMapping
from typing import Any

from prometheus_client import CollectorRegistry, Counter, Histogram

from zeronode.logs import REQUEST_ID

HEADER = "X-Request-Id"
_HEADER_KEY = HEADER.lower().encode()
# What an incoming id may be: up to 64 letters, digits and `._:-` (a UUID, a ULID, a trace id). Anything
# else (longer, spaces, quotes, control characters) is replaced, so that an id is safe in a log line and a header.
REQUEST_ID_PATTERN = re.compile(rb"[A-Za-z0-9._:-]{1,64}")
METHODS = frozenset({"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"})  # any other: "other"
UNMATCHED = "unmatched"
# From a no-op (a fraction of a millisecond) to a long poll (coord's ?wait= is at most 60 s).
BUCKETS = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0)

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
ASGIApp = Callable[[Scope, Callable[[], Awaitable[Message]], Callable[[Message], Awaitable[None]]], Awaitable[None]]


def new_request_id() -> str:
    """A fresh id: 16 hex digits, unique enough to find one request's lines among a day's."""
    return secrets.token_hex(8)


def incoming_request_id(headers: list[tuple[bytes, bytes]]) -> str | None:
    """The request's own X-Request-Id, if it is one we keep."""
    for name, value in headers:
        if name == _HEADER_KEY:
            return value.decode("ascii") if REQUEST_ID_PATTERN.fullmatch(value) else None
    return None


class HttpMetrics:
    """`zeronode_<service>_http_requests_total` and `..._http_request_duration_seconds` in `registry`."""

    def __init__(self, service: str, registry: CollectorRegistry):
        self.requests = Counter(
            f"zeronode_{service}_http_requests", "HTTP requests answered, by route template, method and status",
            ["route", "method", "status"], registry=registry,
        )
        self.duration = Histogram(
            f"zeronode_{service}_http_request_duration_seconds", "Time to answer an HTTP request, by route template and method",
            ["route", "method"], buckets=BUCKETS, registry=registry,
        )
        # (route, method, status) -> its two series: labels() takes a lock and builds a key on every call.
        self._series: dict[tuple[str, str, int], tuple[Any, Any]] = {}

    def observe(self, route: str, method: str, status: int, seconds: float) -> None:
        key = (route, method, status)
        series = self._series.get(key)
        if series is None:
            series = self._series[key] = (self.requests.labels(route, method, str(status)), self.duration.labels(route, method))
        series[0].inc()
        series[1].observe(seconds)


class RequestMiddleware:
    """Request ids and HTTP metrics for `app` (see the module's docstring)."""

    def __init__(self, app: ASGIApp, metrics: HttpMetrics):
        self.app = app
        self.metrics = metrics

    async def __call__(self, scope: Scope, receive, send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        request_id = incoming_request_id(scope["headers"]) or new_request_id()
        scope.setdefault("state", {})["request_id"] = request_id
        id_header = (_HEADER_KEY, request_id.encode("ascii"))
        status = 500  # unless an answer starts: what Starlette answers an error that got past the handlers

        async def send_with_id(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
                message["headers"] = [*message.get("headers", ()), id_header]
            await send(message)

        token = REQUEST_ID.set(request_id)
        started = time.perf_counter()
        try:
            await self.app(scope, receive, send_with_id)
        finally:
            elapsed = time.perf_counter() - started
            REQUEST_ID.reset(token)
            route = scope.get("route")
            method = scope["method"]
            self.metrics.observe(
                getattr(route, "path", UNMATCHED) if route is not None else UNMATCHED,
                method if method in METHODS else "other", status, elapsed,
            )
