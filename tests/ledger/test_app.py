"""The ledger's app around its modules: every route in the OpenAPI document, and a 503 with the
shared JSON body (zeronode.api.handlers) when the database is away."""

import logging
import time

import httpx
import nacl.signing

from ledger.app import create_app
from ledger.database import Database
from ledger.settings import LedgerSettings
from tests.support.answers import openapi_routes
from zeronode.protocol import keys
from zeronode.protocol.signed_requests import LEDGER, SignedRequestAuth

ROUTES = {
    ("POST", "/v1/nodes"),
    ("GET", "/v1/nodes"),
    ("GET", "/v1/nodes/{node_id}"),
    ("POST", "/v1/nodes/{node_id}/schedule"),
    ("GET", "/v1/nodes/{node_id}/rights"),
    ("POST", "/v1/nodes/{node_id}/uptime"),
    ("POST", "/v1/uptime/batch"),
    ("POST", "/v1/users"),
    ("GET", "/v1/users/{public_key}"),
    ("POST", "/v1/policies"),
    ("GET", "/v1/policies"),
    ("POST", "/v1/releases"),
    ("GET", "/v1/releases"),
    ("GET", "/v1/releases/{version}"),
    ("PUT", "/v1/releases/{version}/artifact"),
    ("GET", "/v1/releases/{version}/artifact"),
    ("POST", "/v1/channels/{name}"),
    ("GET", "/v1/channels"),
    ("GET", "/v1/channels/{name}"),
    ("POST", "/v1/follows"),
    ("GET", "/v1/follows"),
    ("GET", "/health"),
    ("GET", "/ping"),
    ("GET", "/metrics"),
}


def test_openapi_lists_every_route_and_needs_no_read_token(make_ledger):
    assert openapi_routes(make_ledger(read_token="s3cret").get("/openapi.json")) == ROUTES


def test_a_database_away_is_503(tmp_path, serve_app):
    db = Database(f"sqlite:///{tmp_path / 'gone' / 'ledger.db'}")
    (tmp_path / "gone").rmdir()  # nothing is open yet: the first request finds no database to open
    with httpx.Client(base_url=serve_app(create_app(LedgerSettings(data_dir=tmp_path), db)), timeout=10) as http:
        response = http.get("/v1/nodes")
        assert response.status_code == 503
        assert response.json() == {"reason": "database_unavailable", "message": "database unavailable"}
        node = nacl.signing.SigningKey.generate()  # the report's own route (ledger.routes.report_route) says the same
        node_id = keys.node_id(keys.public_key_text(node))
        report = http.post(f"/v1/nodes/{node_id}/uptime", content=b'{"uptime": 5, "timestamp": %d}' % time.time(),
                           auth=SignedRequestAuth(node, LEDGER))
        assert (report.status_code, report.json()["reason"], report.headers["retry-after"]) == (503, "database_unavailable", "1")
        assert http.get("/health").status_code == 503
    db.close()


def test_a_refusal_is_logged_with_its_reason(ledger, caplog):
    caplog.set_level(logging.INFO, logger="zeronode.ledger")
    assert ledger.get(f"/v1/nodes/{'a' * 26}").status_code == 404
    [record] = [record for record in caplog.records if record.getMessage() == "request refused"]
    assert (record.reason, record.status, record.path) == ("unknown_node", 404, f"/v1/nodes/{'a' * 26}")
