"""Structured logs: one JSON object a line, on stderr.

    log = logging.getLogger("zeronode.supervisor")
    log.info("job accepted", extra={"job": job_id, "signer": key})
    -> {"ts": "2026-11-21T17:59:01.123Z", "level": "info", "logger": "zeronode.supervisor", "msg": "job accepted", "job": "...", "signer": "..."}
"""

from __future__ import annotations

import json
import logging
import sys
import time

# Attributes every LogRecord has: whatever else a record carries came from `extra=`.
_STANDARD = set(vars(logging.LogRecord("", 0, "", 0, "", None, None))) | {"message", "asctime", "taskName"}


class JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        entry = {
            "ts": time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(record.created)) + f".{int(record.msecs):03d}Z",
            "level": record.levelname.lower(),
            "logger": record.name,
            "msg": record.getMessage(),
        }
        entry.update((key, value) for key, value in vars(record).items() if key not in _STANDARD)
        if record.exc_info:
            entry["exc"] = self.formatException(record.exc_info)
        return json.dumps(entry, default=str)


def setup(level: str = "info") -> None:
    """Send every log line to stderr as JSON (call once, at a process's start)."""
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(JsonFormatter())
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level.upper())
    for noisy in ("uvicorn.access",):
        logging.getLogger(noisy).setLevel(logging.WARNING)
