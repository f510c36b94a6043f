"""The coordinator's app: every route in the OpenAPI document, refusals counted by reason, and
the shared JSON error bodies (zeronode.api.handlers), with its Redis away too."""

import json

import httpx
import nacl.signing
import redis.asyncio as redis
from redis.asyncio.retry import Retry
from redis.backoff import NoBackoff

from coord.app import create_app
from coord.settings import CoordSettings
from tests.support.answers import detail, openapi_routes
from zeronode.protocol.signed_requests import COORD, SignedRequestAuth

ROUTES = {
    ("POST", "/v1/deployments"),
    ("GET", "/v1/deployments"),
    ("GET", "/v1/deployments/{deployment_id}"),
    ("GET", "/v1/deployments/{deployment_id}/events"),
    ("POST", "/v1/deployments/{deployment_id}/cancel"),
    ("GET", "/health"),
    ("GET", "/metrics"),
    ("POST", "/dashboard/session"),
    ("DELETE", "/dashboard/session"),
    ("GET", "/dashboard/api/nodes"),
    ("GET", "/dashboard/api/nodes/{node_id}"),
    ("GET", "/dashboard/api/deployments"),
    ("GET", "/dashboard/api/deployments/{deployment_id}"),
    ("GET", "/dashboard/api/deployments/{deployment_id}/events"),
    ("GET", "/dashboard/api/failures"),
}


def test_openapi_lists_every_route(control_plane):
    assert openapi_routes(control_plane.coord.http.get("/openapi.json")) == ROUTES


def test_refusals_are_json_and_counted_by_reason(control_plane):
    http = control_plane.coord.http
    tampered = json.loads(control_plane.sign([control_plane.add_node()]).to_json())
    tampered["script"] = "666"
    assert detail(http.post("/v1/deployments", content=json.dumps(tampered))) == (401, "bad_signature")
    signed = SignedRequestAuth(control_plane.client_key, COORD)
    assert detail(http.get("/v1/deployments", params={"limit": 0}, auth=signed)) == (422, "malformed")
    assert detail(http.get("/v1/nothing-here")) == (404, "not_found")
    assert 'zeronode_coord_deployments_refused_total{reason="bad_signature"} 1.0' in http.get("/metrics").text


def test_redis_away_is_503(control_plane, tmp_path, serve_app):
    away = redis.Redis(unix_socket_path="/nonexistent/redis.sock", retry=Retry(NoBackoff(), 0))  # fail at once
    settings = CoordSettings(state_dir=tmp_path / "away", ledger_url=control_plane.ledger_url)
    url = serve_app(create_app(settings, away, nacl.signing.SigningKey.generate()))
    with httpx.Client(base_url=url, timeout=10) as http:
        envelope = control_plane.sign([control_plane.add_node()])
        assert detail(http.post("/v1/deployments", content=envelope.to_json())) == (503, "store_unavailable")
        signed = SignedRequestAuth(control_plane.client_key, COORD)
        assert detail(http.get(f"/v1/deployments/{envelope.id}", auth=signed)) == (503, "store_unavailable")
        assert http.get("/health").status_code == 503
