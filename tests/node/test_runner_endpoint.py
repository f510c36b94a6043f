"""The runner pool's HTTP endpoint (runner.endpoint) on a real socket: /health's two answers, /metrics, and
every other request answered with the services' JSON error body, never the standard library's HTML page;
and where the pool's runners write their metrics (runner.metrics)."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import tempfile

import httpx
import pytest
from prometheus_client import CollectorRegistry, Counter

from runner.endpoint import Endpoint
from runner.metrics import DIRECTORY_PREFIX, MULTIPROCESS_DIR, PoolMetrics


@pytest.fixture
def endpoint():
    registry = CollectorRegistry()
    Counter("zeronode_runner_jobs", "Attempts", ["outcome"], registry=registry).labels("finished").inc(3)
    state = {"healthy": True}
    served = Endpoint("127.0.0.1", 0, registry, lambda: (state["healthy"], {"status": "ok" if state["healthy"] else "redis unavailable"}))
    served.start()
    yield f"http://127.0.0.1:{served.address[1]}", state, served.address
    served.stop()


def test_health_answers_503_while_the_pool_is_unhealthy(endpoint):
    url, state, _ = endpoint
    assert httpx.get(f"{url}/health").json() == {"status": "ok"}
    state["healthy"] = False
    answer = httpx.get(f"{url}/health")
    assert (answer.status_code, answer.json()) == (503, {"status": "redis unavailable"})


def test_metrics_are_prometheus_text(endpoint):
    answer = httpx.get(f"{endpoint[0]}/metrics?x=1")
    assert answer.headers["content-type"].startswith("text/plain")
    assert 'zeronode_runner_jobs_total{outcome="finished"} 3.0' in answer.text


def test_other_requests_get_the_services_error_body(endpoint):
    url, _, address = endpoint
    for answer, status, reason in [
        (httpx.get(f"{url}/v1/jobs"), 404, "not_found"),
        (httpx.delete(f"{url}/metrics"), 405, "method_not_allowed"),
        (httpx.head(f"{url}/health"), 501, "method_not_allowed"),
    ]:
        assert answer.status_code == status
        if answer.request.method != "HEAD":
            assert answer.json()["detail"]["reason"] == reason
    with socket.create_connection(address, timeout=10) as raw:
        raw.sendall(b"GET /metrics HTTP/1.1\r\nHost: x\r\n" + b"X-Long: " + b"x" * 70_000 + b"\r\n\r\n")
        reply = raw.makefile("rb").read().decode()
    head, _, body = reply.partition("\r\n\r\n")
    assert head.startswith("HTTP/1.0 431") and json.loads(body)["detail"]["reason"] == "malformed"


def test_a_pool_removes_the_metrics_directories_of_pools_that_are_gone(tmp_path, monkeypatch):
    """A pool killed with -9 leaves its runners' metrics files; the next pool on the machine removes them,
    and never a live pool's."""
    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path))
    finished = subprocess.Popen(["true"])  # a process that has exited: its pid is no one's (for now)
    finished.wait()
    abandoned = tmp_path / f"{DIRECTORY_PREFIX}{finished.pid}-abc"
    live = tmp_path / f"{DIRECTORY_PREFIX}{os.getppid()}-def"
    for directory in (abandoned, live):
        directory.mkdir()
        (directory / "counter_1.db").write_bytes(b"")
    metrics = PoolMetrics()
    try:
        assert metrics.directory.parent == tmp_path and metrics.directory.name.startswith(f"{DIRECTORY_PREFIX}{os.getpid()}-")
        assert not abandoned.exists() and live.exists()
        assert os.environ[MULTIPROCESS_DIR] == str(metrics.directory)
    finally:
        metrics.close()
    assert not metrics.directory.exists() and MULTIPROCESS_DIR not in os.environ
