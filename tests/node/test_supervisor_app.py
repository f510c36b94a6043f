"""The supervisor's app around its service: every route in the OpenAPI document, and the shared
JSON error bodies (zeronode.api.handlers), with the node's Redis away too."""

import httpx
import redis
from redis.backoff import NoBackoff
from redis.retry import Retry

from supervisor.app import create_app
from supervisor.service import Supervisor
from tests.support.answers import detail, openapi_routes
from zeronode.node.authorizer import node_authorizer

ROUTES = {
    ("POST", "/v1/jobs"),
    ("POST", "/v1/jobs/batch"),
    ("GET", "/v1/jobs/{job_id}"),
    ("GET", "/v1/jobs"),
    ("POST", "/v1/jobs/{job_id}/cancel"),
    ("GET", "/v1/vms/{name}/console"),
    ("GET", "/v1/vms/{name}/events"),
    ("GET", "/health"),
    ("GET", "/metrics"),
}


def test_openapi_lists_every_route(node):
    assert openapi_routes(node.http.get("/openapi.json")) == ROUTES


def test_errors_are_json_with_a_reason(node):
    assert detail(node.http.get("/v1/nothing-here")) == (404, "not_found")
    assert detail(node.http.delete("/v1/jobs")) == (405, "method_not_allowed")
    assert detail(node.http.get("/v1/jobs", params={"limit": 0})) == (422, "malformed")


def test_redis_away_is_503_not_500(node, serve_app):
    away = redis.Redis(unix_socket_path="/nonexistent/redis.sock", retry=Retry(NoBackoff(), 0))  # fail at once
    service = Supervisor(node.settings, away, node.identity, node_authorizer(node.settings, node.identity))
    with httpx.Client(base_url=serve_app(create_app(service)), timeout=10, auth=node.http.auth) as http:
        job = "00000000-0000-4000-8000-000000000000"
        submitted = http.post("/v1/jobs", content=node.sign("1").to_json())
        assert detail(submitted) == (503, "unavailable")
        # Every read path too, and each says when to try again.
        answers = [submitted, http.get(f"/v1/jobs/{job}"), http.get("/v1/jobs"), http.post(f"/v1/jobs/{job}/cancel")]
        assert [detail(answer) for answer in answers[1:]] == [(503, "store_unavailable")] * 3
        assert [answer.headers.get("retry-after") for answer in answers] == ["1"] * 4
        assert http.get("/health").status_code == 503
