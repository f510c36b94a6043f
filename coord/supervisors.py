"""Talking to the nodes' supervisors: one small connection pool per node, and answers read warily.

A node has one supervisor, and a deployment asks it a few things in turn, so
a handful of connections per origin is plenty. One shared pool of hundreds of
connections would be worse: httpcore scans its whole pool for every request it
queues or finishes, which made that scan the coordinator's main cost in
bench/coord.py at a thousand nodes.

A supervisor's address comes from the node's own registration, so whatever
answers there is foreign until proven otherwise: redirects are never followed,
an answer is read up to a size cap and no further (uncompressed: a small gzip
can inflate without bound), and a refusal's text is kept only when it has the
shape of a zeronode error body (`refusal`), so coord never shows anyone the
body of whatever else a forged URL reached.
"""

from __future__ import annotations

import json
import re
import ssl
from dataclasses import dataclass
from typing import Any

import httpx

from zeronode.errors import ZeronodeError

CONNECTIONS_PER_NODE = 8
MAX_CLIENTS = 4096  # clients kept open at once; the least recently used is closed beyond that
ACCEPT_LIMIT = 64 * 1024  # bytes of an answer to POST /v1/jobs (an accept or a refusal)
JOB_LIMIT = 1024 * 1024  # bytes of a job view: its output is capped on the node, its result is not
REASON = re.compile(r"[a-z_]{1,40}")
MAX_MESSAGE = 300
CONTROL = re.compile(r"[\x00-\x1f\x7f]+")


class BadAnswer(ZeronodeError):
    """What a supervisor answered is not an answer coord reads: too large, compressed, or not its shape."""


@dataclass(frozen=True)
class Answer:
    status: int
    body: bytes  # at most the request's limit


class SupervisorClients:
    def __init__(self, *, timeout: float):
        self.timeout = timeout
        self._clients: dict[str, httpx.AsyncClient] = {}
        # Shared: building a context loads the CA bundle, tens of milliseconds per client otherwise.
        self._tls = ssl.create_default_context()

    def for_url(self, url: str) -> httpx.AsyncClient:
        origin = str(httpx.URL(url).copy_with(path="/", query=None, fragment=None))
        client = self._clients.pop(origin, None)
        if client is None:
            if len(self._clients) >= MAX_CLIENTS:
                oldest = next(iter(self._clients))
                self._clients.pop(oldest)  # closed when its last requests end, by the garbage collector
            limits = httpx.Limits(max_connections=CONNECTIONS_PER_NODE, max_keepalive_connections=CONNECTIONS_PER_NODE)
            client = httpx.AsyncClient(
                timeout=self.timeout, limits=limits, verify=self._tls, follow_redirects=False,
                headers={"accept-encoding": "identity"},
            )
        self._clients[origin] = client  # most recently used last
        return client

    async def exchange(self, method: str, url: str, *, limit: int, **kwargs: Any) -> Answer:
        """One request to a supervisor, its answer read up to `limit` bytes; BadAnswer beyond that or when
        compressed, httpx.HTTPError when the supervisor cannot be reached."""
        async with self.for_url(url).stream(method, url, **kwargs) as response:
            encoding = response.headers.get("content-encoding", "identity").strip().lower()
            if encoding not in ("", "identity"):
                raise BadAnswer(f"answered HTTP {response.status_code} with a {encoding[:20]!r}-encoded body")
            declared = response.headers.get("content-length", "")
            if declared.isdigit() and int(declared) > limit:
                raise BadAnswer(f"answered HTTP {response.status_code} with a body over {limit} bytes")
            body = bytearray()
            async for chunk in response.aiter_raw():
                body += chunk
                if len(body) > limit:
                    raise BadAnswer(f"answered HTTP {response.status_code} with a body over {limit} bytes")
        return Answer(response.status_code, bytes(body))

    async def aclose(self) -> None:
        for client in self._clients.values():
            await client.aclose()
        self._clients.clear()


def refusal(answer: Answer) -> tuple[str, str]:
    """(reason, message) of a supervisor's 4xx: its own only from a well-formed zeronode error body with a
    plain reason code, the message cut short; for anything else only the status, never the body's text."""
    try:
        detail = json.loads(answer.body)["detail"]
        reason, message = detail["reason"], detail["message"]
    except (ValueError, KeyError, TypeError):
        reason = message = None
    if isinstance(reason, str) and isinstance(message, str) and REASON.fullmatch(reason):
        return reason, clean(message)
    return "refused", f"node answered HTTP {answer.status}"


def clean(message: str) -> str:
    """A node's own words as coord shows them: control characters blanked, cut to MAX_MESSAGE characters."""
    message = CONTROL.sub(" ", message)
    return message if len(message) <= MAX_MESSAGE else message[: MAX_MESSAGE - 1] + "…"


def failure(error: httpx.HTTPError) -> str:
    """Why a supervisor could not be reached, in coord's words: a protocol error's text quotes the bytes
    that came back (an SSH banner, say), so only connect failures and timeouts keep theirs."""
    if isinstance(error, httpx.ConnectError | httpx.TimeoutException):
        return f"{type(error).__name__}: {error}"[:MAX_MESSAGE]
    return type(error).__name__
