"""Talking to the nodes' supervisors: aiohttp, a few connections per node, and answers read warily.

Coord makes at least two requests per node of a deployment (hand over the
envelope, follow the job), so the HTTP client's own cost is most of coord's
cost per node. Measured on the 2-core development machine (a client-only loop
against a no-op uvicorn server), client CPU per request: httpx 660 µs alone,
1,360 µs at 16 concurrent and 3,660 µs at 256 (httpcore scans its pool for
every request it queues or finishes); aiohttp 120-190 µs whatever the
concurrency. So coord speaks to supervisors through one aiohttp session, at
most CONNECTIONS_PER_NODE connections to a node; the ledger, asked a few
times per deployment, stays on httpx like every other client.

A supervisor's address comes from the node's own registration, so whatever
answers there is foreign until proven otherwise: redirects are never followed,
cookies never kept, an answer is read up to a size cap and no further
(uncompressed: a small gzip can inflate without bound), and a refusal's text is
kept only when it has the shape of a zeronode error body (`refusal`), so coord
never shows anyone the body of whatever else a forged URL reached. A failure to
get any answer is `Unreachable`, with only the words of connect failures and
timeouts (`failure`): a protocol error's text quotes the bytes that came back.
"""

from __future__ import annotations

import asyncio
import json
import re
import ssl
from dataclasses import dataclass

import aiohttp
import nacl.signing
import yarl

from zeronode.api.errors import error_fields
from zeronode.errors import ZeronodeError
from zeronode.protocol.signed_requests import SignedRequestAuth

CONNECTIONS_PER_NODE = 8
ACCEPT_LIMIT = 64 * 1024  # bytes of an answer to POST /v1/jobs (an accept or a refusal)
JOB_LIMIT = 1024 * 1024  # bytes of a job view: its output is capped on the node, its result is not
REASON = re.compile(r"[a-z_]{1,40}")
MAX_MESSAGE = 300
CONTROL = re.compile(r"[\x00-\x1f\x7f]+")


class BadAnswer(ZeronodeError):
    """What a supervisor answered is not an answer coord reads: too large, compressed, or not its shape."""


class Unreachable(ZeronodeError):
    """No answer from a supervisor: refused, reset, timed out, or not HTTP. The message says why in coord's words."""


@dataclass(frozen=True)
class Answer:
    status: int
    body: bytes  # at most the request's limit


class SupervisorClients:
    """Requests to supervisors; those given an `audience` (a node id) are signed with coord's key for it."""

    def __init__(self, key: nacl.signing.SigningKey, *, timeout: float):
        self.timeout = timeout
        self.signer = SignedRequestAuth(key)
        self._session: aiohttp.ClientSession | None = None  # made in the running loop, at the first request

    def _open(self) -> aiohttp.ClientSession:
        if self._session is None:
            connector = aiohttp.TCPConnector(
                limit=0,  # the dispatcher's `concurrency` bounds requests in flight; this bounds each node's share
                limit_per_host=CONNECTIONS_PER_NODE, ssl=ssl.create_default_context(), ttl_dns_cache=300,
                happy_eyeballs_delay=None,  # one address a supervisor: tried alone, without racing
            )
            self._session = aiohttp.ClientSession(
                connector=connector, timeout=aiohttp.ClientTimeout(total=self.timeout), auto_decompress=False,
                cookie_jar=aiohttp.DummyCookieJar(), headers={"accept-encoding": "identity"},
            )
        return self._session

    async def exchange(
        self, method: str, url: str, *, limit: int, body: bytes = b"", headers: dict[str, str] | None = None,
        audience: str | None = None,
    ) -> Answer:
        """One request to a supervisor, its answer read up to `limit` bytes; BadAnswer beyond that or when
        compressed, Unreachable when no answer came."""
        target = yarl.URL(url, encoded=True)  # sent as written: the signature covers the path as sent
        headers = dict(headers or {})
        if audience is not None:
            headers.update(self.signer.headers(method, target.raw_path_qs, audience, body))
        try:
            async with self._open().request(method, target, data=body or None, headers=headers, allow_redirects=False) as response:
                status = response.status
                encoding = response.headers.get("content-encoding", "identity").strip().lower()
                if encoding not in ("", "identity"):
                    raise BadAnswer(f"answered HTTP {status} with a {encoding[:20]!r}-encoded body")
                declared = response.headers.get("content-length", "")
                if declared.isdigit() and int(declared) > limit:
                    raise BadAnswer(f"answered HTTP {status} with a body over {limit} bytes")
                answer = bytearray()
                async for chunk in response.content.iter_any():
                    answer += chunk
                    if len(answer) > limit:
                        raise BadAnswer(f"answered HTTP {status} with a body over {limit} bytes")
        except (aiohttp.ClientError, asyncio.TimeoutError) as exc:
            raise Unreachable(failure(exc)) from exc
        return Answer(status, bytes(answer))

    async def aclose(self) -> None:
        if self._session is not None:
            await self._session.close()
            self._session = None


def refusal(answer: Answer) -> tuple[str, str]:
    """(reason, message) of a supervisor's 4xx: its own only from a well-formed zeronode error body with a
    plain reason code, the message cut short; for anything else only the status, never the body's text."""
    try:
        detail = error_fields(json.loads(answer.body))
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


def failure(error: Exception) -> str:
    """Why a supervisor could not be reached, in coord's words: a protocol error's text quotes the bytes
    that came back (an SSH banner, say), so only connect failures and timeouts keep theirs."""
    if isinstance(error, asyncio.TimeoutError):
        return f"timed out after the request_timeout ({type(error).__name__})"
    if isinstance(error, aiohttp.ClientConnectorError):
        return f"{type(error).__name__}: {error.os_error.strerror or error.os_error}"[:MAX_MESSAGE]
    return type(error).__name__
