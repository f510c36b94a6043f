"""Coord as every zeronode service is (zeronode.api.service): a submission's request id comes back, is in
its log line and goes with the envelope to each node; the one error body; HTTP metrics and build info;
its OpenAPI document's bodies; /docs offline."""

from tests.support import service_checks
from zeronode.protocol.signed_requests import COORD, SignedRequestAuth


def test_a_submissions_request_id_goes_to_every_node(control_plane):
    nodes = [control_plane.add_node(), control_plane.add_node()]
    envelope = control_plane.sign(nodes)
    http = control_plane.coord.http
    with service_checks.json_lines("zeronode.coord") as lines:
        response = http.post("/v1/deployments", content=envelope.to_json(), headers={"X-Request-Id": "release-2026.12"})
    assert response.status_code == 202 and response.headers["x-request-id"] == "release-2026.12"
    assert [line.get("request_id") for line in lines if line["msg"] == "deployment accepted"] == ["release-2026.12"]
    *_, final = control_plane.coord.follow(envelope.id, timeout=30)
    assert final["status"] == "succeeded"
    for node in nodes:
        assert control_plane.fleet.request_ids[(node, envelope.id)] == ["release-2026.12"]
    # Without one of its own, the id coord made for the submission is the one the nodes get.
    other = control_plane.sign([nodes[0]])
    made = http.post("/v1/deployments", content=other.to_json()).headers["x-request-id"]
    *_, done = control_plane.coord.follow(other.id, timeout=30)
    assert done["status"] == "succeeded"
    assert control_plane.fleet.request_ids[(nodes[0], other.id)] == [made]


def test_request_ids_and_refusals(control_plane):
    http = control_plane.coord.http
    service_checks.check_request_ids(http, "/health")
    service_checks.check_framework_errors(http, get_only="/health", bad_query="/v1/deployments?limit=0",
                                          auth=SignedRequestAuth(control_plane.client_key, COORD))
    service_checks.error(http.post("/v1/deployments", content=b"[]"), 422, "malformed")


def test_http_metrics_and_build_info(control_plane):
    service_checks.check_metrics(control_plane.coord.http, "coord", route="/health", path="/health")
    http = control_plane.coord.http
    http.get("/v1/deployments/abc/events")  # unsigned: 401, under its route's template
    service_checks.check_series(http, {
        'zeronode_coord_http_requests_total{method="GET",route="/v1/deployments/{deployment_id}/events",status="401"}': 1,
    })


def test_every_write_declares_its_body(control_plane):
    document = service_checks.check_openapi(control_plane.coord.http, {("post", "/v1/deployments"): "Envelope"})
    assert "selector" in document["components"]["schemas"]["Envelope"]["properties"]


def test_docs_are_served_without_any_outside_host(control_plane):
    service_checks.check_docs(control_plane.coord.http)
