"""Structured logs: one JSON object a line, on stderr.

    log = logging.getLogger("zeronode.supervisor")
    log.info("job accepted", extra={"job": job_id, "signer": key})
    -> {"ts": "2026-11-21T17:59:01.123Z", "level": "info", "logger": "zeronode.supervisor", "msg": "job accepted", "job": "...", "signer": "..."}

A line written while a request is served carries that request's id (`request_id`): the services' middleware
(zeronode.api.middleware) sets it for each HTTP request, and a runner for each job it runs (the id the
request that queued the job had). A context variable, so that it follows a request into the thread pool
(Starlette copies the context there) and never leaks into another's lines.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import sys
import time
from collections.abc import Iterator
from contextvars import ContextVar

# Attributes every LogRecord has: whatever else a record carries came from `extra=`. uvicorn adds
# `color_message`, its message with ANSI colour codes for a terminal: never in a JSON line.
_STANDARD = set(vars(logging.LogRecord("", 0, "", 0, "", None, None))) | {"message", "asctime", "taskName", "color_message"}
LEVEL_VARIABLE = "ZERONODE_LOG_LEVEL"  # debug, info, warning, error: every service's log level
REQUEST_ID: ContextVar[str | None] = ContextVar("zeronode_request_id", default=None)


@contextlib.contextmanager
def request_context(request_id: str | None) -> Iterator[None]:
    """Every line logged inside carries `request_id` (None: none)."""
    token = REQUEST_ID.set(request_id)
    try:
        yield
    finally:
        REQUEST_ID.reset(token)


class JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        entry = {
            "ts": time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(record.created)) + f".{int(record.msecs):03d}Z",
            "level": record.levelname.lower(),
            "logger": record.name,
            "msg": record.getMessage(),
        }
        if (request_id := REQUEST_ID.get()) is not None:
            entry["request_id"] = request_id
        entry.update((key, value) for key, value in vars(record).items() if key not in _STANDARD)
        if record.exc_info:
            entry["exc"] = self.formatException(record.exc_info)
        return json.dumps(entry, default=str)


def setup(level: str | None = None) -> None:
    """Send every log line to stderr as JSON (call once, at a process's start), at `level`, else
    $ZERONODE_LOG_LEVEL, else info. A level that is not one is refused (ValueError) rather than ignored."""
    level = (level or os.environ.get(LEVEL_VARIABLE) or "info").upper()
    if level not in ("DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL"):
        raise ValueError(f"{LEVEL_VARIABLE}={level.lower()!r}: one of debug, info, warning, error, critical")
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(JsonFormatter())
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level)
    # A line per request is theirs at info; at debug everything shows. httpx's were two thirds of the
    # identity manager's log.
    for noisy in ("uvicorn.access", "httpx", "httpcore"):
        logging.getLogger(noisy).setLevel(logging.DEBUG if level == "DEBUG" else logging.WARNING)
