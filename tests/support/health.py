"""Whether an HTTP service is up: it answers /health, or any request at all."""

from __future__ import annotations

import subprocess

import httpx

from .waiting import wait_until


def status(url: str) -> int | None:
    """The status a GET of `url` answers with; None while nothing answers there."""
    try:
        return httpx.get(url, timeout=1).status_code
    except httpx.HTTPError:
        return None


def healthy(base_url: str) -> bool:
    """Whether the service at `base_url` answers its /health with 200."""
    return status(f"{base_url}/health") == 200


def wait_healthy(base_url: str, timeout: float = 30, process: subprocess.Popen | None = None) -> None:
    """Wait until the service at `base_url` is healthy; fail sooner if `process` (the service's) exits."""
    wait_until(lambda: healthy(base_url), timeout, f"{base_url} to answer /health", interval=0.05, process=process)
