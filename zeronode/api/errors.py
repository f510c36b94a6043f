"""A service's refusals, on both ends of the wire.

A service answers a request it will not or cannot serve with an HTTP status
and a JSON body `{"reason": CODE, "message": TEXT, ...}` (ErrorBody, the one
every service declares in its OpenAPI document). Earlier versions wrapped it
as `{"detail": {...}}`: `error_fields` reads both, so a fleet mid-update keeps
its reasons. On the
server side the handler raises `Refused` (the client's fault, 4xx) or
`Unavailable` (5xx: try again later) and zeronode.api.handlers writes the body.
On the client side `from_response` reads such a body back into the same
exception, so a refusal keeps its status, reason and message from one end to
the other. Transport failures (refused connection, timeout, DNS) are
`Unavailable` too: retrying later may help, retrying a `Refused` will not.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

import httpx
from pydantic import BaseModel, ConfigDict, Field

from zeronode.errors import ZeronodeError


class ErrorBody(BaseModel):
    """Every error answer of every zeronode service, 4xx and 5xx alike: why a request was not served, a
    reason code a program may act on and a message for a person."""

    model_config = ConfigDict(extra="allow")  # some refusals say more: a compile error's line and column

    reason: str = Field(examples=["not_found"])
    message: str = Field(examples=["no job 1234 on this node"])


class ServiceError(ZeronodeError):
    """A request a service did not serve: its HTTP `status` (None: never reached), `reason` code and message."""

    status: int | None = None
    reason = "error"
    headers: dict[str, str] = {}  # sent with the JSON body, e.g. Retry-After with a 429

    def __init__(self, message: str, *, status: int | None = None, reason: str | None = None, **detail: Any):
        super().__init__(message)
        if status is not None:
            self.status = status
        if reason is not None:
            self.reason = reason
        self.detail = detail

    def body(self) -> dict[str, Any]:
        """The JSON error body."""
        return {"reason": self.reason, "message": str(self), **self.detail}


class Refused(ServiceError):
    """The request was refused (4xx): asking the same again will not help. `reason` says why."""

    status = 400
    reason = "refused"

    def __init__(self, status: int, reason: str, message: str, **detail: Any):
        super().__init__(message, status=status, reason=reason, **detail)


class NotFound(Refused):
    """404: no such thing (a node the ledger does not know: register it)."""


class Conflict(Refused):
    """409: it clashes with what the service has (a reused id, a stale report)."""


class Unavailable(ServiceError):
    """The service could not be reached, timed out or failed (5xx): try again later."""

    status = 503
    reason = "unavailable"


REFUSALS: dict[int, type[Refused]] = {404: NotFound, 409: Conflict}


def error_fields(body: Any) -> dict[str, Any] | None:
    """The fields of a zeronode error body (`{"reason", "message", ...}`, or an older service's
    `{"detail": {...}}`), or None for anything else."""
    if isinstance(body, dict) and isinstance(body.get("detail"), dict) and "reason" not in body:
        body = body["detail"]
    return body if isinstance(body, dict) and "reason" in body and "message" in body else None


def detail_of(response: httpx.Response) -> tuple[str, str, dict[str, Any]]:
    """(reason, message, other fields) of a zeronode error body, or of whatever else a server sent."""
    try:
        detail = error_fields(response.json())
        reason, message = str(detail["reason"]), str(detail["message"])
    except (ValueError, KeyError, TypeError):  # not a zeronode service, or not one of its answers
        text = f"{response.status_code} {response.text.strip()[:200]}".strip()
        return "refused" if response.status_code < 500 else "unavailable", text, {}
    return reason, message, {k: v for k, v in detail.items() if k not in ("reason", "message")}


def from_response(response: httpx.Response, service: str) -> ServiceError:
    """The error a failed answer from `service` (say "the ledger") stands for."""
    reason, message, detail = detail_of(response)
    status = response.status_code
    if status >= 500:
        return Unavailable(f"{service} failed: {message or status} ({reason}, HTTP {status})", status=status, reason=reason)
    kind = REFUSALS.get(status, Refused)
    return kind(status, reason, f"{message} ({reason}, HTTP {status})", **detail)


def unreachable(error: httpx.HTTPError, service: str, url: object) -> Unavailable:
    """A transport failure (refused, reset, DNS, timeout) or an undecodable answer, as the Unavailable it is."""
    return Unavailable(f"{service} unreachable at {url}: {error or type(error).__name__}", reason="unreachable")


def problems(errors: Iterable[dict]) -> str:
    """Pydantic's (or FastAPI's) validation errors on one line: `where: what; ...`."""
    return "; ".join(f"{'.'.join(map(str, e['loc'])) or 'body'}: {e['msg']}" for e in errors)
