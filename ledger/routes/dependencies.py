"""What the ledger's handlers take from their app, as typed dependencies, and who may read or write.

The objects are the ones ledger.app.create_app puts on app.state. Every
dependency here is `async`: FastAPI runs a plain `def` one in its thread pool,
and the report endpoint's SQLite path stays inline on the event loop.
"""

from __future__ import annotations

import secrets
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Annotated

from fastapi import Depends, Request

from ledger.database import Database
from ledger.gathering import ReportGatherer
from ledger.metrics import Metrics
from ledger.settings import LedgerSettings
from zeronode.api.auth import signer
from zeronode.api.errors import Refused

MAX_BODY = 4 * 1024 * 1024


@dataclass(frozen=True)
class Ledger:
    """What every handler may need of its app: one dependency, as each one costs a request some microseconds."""

    settings: LedgerSettings
    db: Database
    clock: Callable[[], float]  # the ledger's time, for signatures, reports and status (a test's clock in the tests)
    metrics: Metrics
    reports: ReportGatherer  # where single uptime reports are stored, in groups


def ledger_of(request: Request) -> Ledger:
    """What the app was made with. The uptime report, the ledger's hot path, calls this directly:
    each dependency FastAPI resolves costs a request tens of microseconds (see supervisor.routes)."""
    return request.app.state.ledger


async def _ledger(request: Request) -> Ledger:
    return ledger_of(request)


LedgerDep = Annotated[Ledger, Depends(_ledger)]


def declared_length(headers: Mapping[str, str]) -> int:
    """The length a write declares, at most MAX_BODY, known before anything is read: no unbounded read."""
    declared = headers.get("content-length", "")
    if not declared.isdigit():
        raise Refused(411, "length_required", "a write must declare its Content-Length")
    if int(declared) > MAX_BODY:
        raise Refused(413, "too_large", f"request body over {MAX_BODY} bytes")
    return int(declared)


async def require_declared_length(request: Request) -> None:
    declared_length(request.headers)


async def write_signer(request: Request) -> str:
    """The key that signed a write, checked once its length is known to be bounded (the check reads the body)."""
    await require_declared_length(request)
    return await signer(request)


WriteSigner = Annotated[str, Depends(write_signer)]


async def require_read_token(request: Request, ledger: LedgerDep) -> None:
    """Reads are open, or need `Authorization: Bearer TOKEN` when the settings have a read_token."""
    settings = ledger.settings
    if settings.read_token is None:
        return
    given = request.headers.get("authorization", "")
    if not secrets.compare_digest(given.encode(), f"Bearer {settings.read_token}".encode()):
        raise Refused(401, "bad_token", "reads need 'Authorization: Bearer TOKEN' with the ledger's read token")
