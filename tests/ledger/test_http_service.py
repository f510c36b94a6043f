"""The ledger as every zeronode service is (zeronode.api.service): request ids in answers and log lines,
the one error body, HTTP metrics and build info, its OpenAPI document's bodies, and /docs offline."""

from tests.support import service_checks

from .conftest import REGISTRATION


def test_request_ids_come_back_and_are_in_the_log_lines(ledger, node_key):
    service_checks.check_request_ids(ledger.http, "/ping")
    with service_checks.json_lines("zeronode.ledger") as lines:
        refused = ledger.http.post("/v1/users", content=b"{}", headers={"X-Request-Id": "ledger-trace-7"})
    assert refused.status_code == 401 and refused.headers["x-request-id"] == "ledger-trace-7"
    assert [line["request_id"] for line in lines if line["msg"] == "request refused"] == ["ledger-trace-7"]


def test_framework_errors_have_the_one_body(ledger):
    service_checks.check_framework_errors(ledger.http, get_only="/ping", bad_query="/v1/nodes?limit=many")


def test_http_metrics_and_build_info(ledger, node_key):
    service_checks.check_metrics(ledger.http, "ledger", route="/v1/nodes/{node_id}", path="/v1/nodes/" + "a" * 26,
                                 status=404)  # no such node: a refusal is counted under its route too
    ledger.signed("POST", "/v1/nodes", node_key, REGISTRATION)
    service_checks.check_series(ledger.http, {
        'zeronode_ledger_http_requests_total{method="POST",route="/v1/nodes",status="201"}': 1,
        'zeronode_ledger_node_registrations_total{kind="created"}': 1,
    })


def test_every_write_declares_its_body(ledger):
    document = service_checks.check_openapi(ledger.http, {
        ("post", "/v1/uptime/batch"): "UptimeBatch", ("post", "/v1/nodes/{node_id}/uptime"): "UptimeReport",
        ("post", "/v1/nodes"): "NodeRegistration", ("post", "/v1/users"): "NewUser", ("post", "/v1/policies"): "PolicyChange",
        ("post", "/v1/releases"): "ReleaseNew", ("post", "/v1/channels/{name}"): "ChannelChange",
        ("post", "/v1/follows"): "FollowChange", ("post", "/v1/nodes/{node_id}/schedule"): "ScheduleChange",
    })
    assert "reports" in document["components"]["schemas"]["UptimeBatch"]["properties"]
    artifact = service_checks.body_schema(document, "put", "/v1/releases/{version}/artifact", "application/octet-stream")
    assert artifact["format"] == "binary"


def test_docs_are_served_without_any_outside_host(ledger):
    service_checks.check_docs(ledger.http)


def test_the_uptime_report_answered_beneath_fastapi_is_served_like_every_route(ledger, node_key, registered):
    """ledger.routes.report_route: request ids, metrics under the route's template, refusals with the one body, logged."""
    refused = ledger.http.post(f"/v1/nodes/{registered}/uptime", content=iter([b"{}"]))  # no Content-Length
    assert refused.status_code == 411 and refused.json()["reason"] == "length_required"
    unsigned = ledger.http.post(f"/v1/nodes/{registered}/uptime", content=b"{}", headers={"X-Request-Id": "report-7"})
    assert (unsigned.status_code, unsigned.json()["reason"], unsigned.headers["x-request-id"]) == (401, "bad_signature", "report-7")
    with service_checks.json_lines("zeronode.ledger") as lines:
        stale = ledger.report(node_key, uptime=10, timestamp=int(ledger.clock()) - 3600)
    assert stale.status_code == 422 and stale.json()["reason"] == "clock_skew"
    assert [line["reason"] for line in lines if line["msg"] == "request refused"] == ["clock_skew"]
    accepted = ledger.report(node_key, uptime=100)
    assert accepted.status_code == 200 and accepted.headers["content-type"] == "application/json"
    assert accepted.json()["uptime"] == 100 and "x-request-id" in accepted.headers
    assert ledger.http.get(f"/v1/nodes/{registered}/uptime").status_code == 405  # another method goes on to FastAPI
    service_checks.check_series(ledger.http, {
        'zeronode_ledger_http_requests_total{method="POST",route="/v1/nodes/{node_id}/uptime",status="200"}': 1,
        'zeronode_ledger_http_requests_total{method="POST",route="/v1/nodes/{node_id}/uptime",status="401"}': 1,
        'zeronode_ledger_reports_accepted_total': 1,
    })
