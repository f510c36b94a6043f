"""The runner pool's HTTP endpoint (runner.endpoint) on a real socket: /health's two answers, /metrics, and
every other request answered with the services' JSON error body, never the standard library's HTML page."""

from __future__ import annotations

import json
import socket

import httpx
import pytest
from prometheus_client import CollectorRegistry, Counter

from runner.endpoint import Endpoint


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
