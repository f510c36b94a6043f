"""The supervisor as every zeronode service is (zeronode.api.service): request ids, from the request to the
job's meta and the runner's lines; the one error body; HTTP metrics and build info; its OpenAPI
document's bodies; /docs offline."""

import json
from concurrent.futures import ThreadPoolExecutor

from rq.job import Job

from tests.support import service_checks


def test_request_ids_come_back(node):
    service_checks.check_request_ids(node.http, "/health")


def test_a_jobs_request_id_is_in_the_supervisors_and_the_runners_lines(node):
    pool = node.pool(1)
    envelope = node.sign("40 + 2")
    with service_checks.json_lines("zeronode.supervisor") as lines:
        response = node.http.post("/v1/jobs", content=envelope.to_json(), headers={"X-Request-Id": "deploy-42"})
    assert response.status_code == 202 and response.headers["x-request-id"] == "deploy-42"
    # Logged in the thread pool the submit runs in: the id follows the request there.
    assert [(line.get("request_id"), line["jobs"]) for line in lines if line["msg"] == "jobs accepted"] == [("deploy-42", [envelope.id])]
    assert Job.fetch(envelope.id, node.connection, serializer=node.supervisor.queue.serializer).meta["request_id"] == "deploy-42"
    ended = pool.wait_for_log(lambda entry: entry.get("msg") == "job ended" and entry.get("job") == envelope.id)
    assert ended["request_id"] == "deploy-42"
    assert node.wait(envelope.id).status == "finished"
    # A batch's jobs carry the batch request's id; a runner's lines between jobs carry none.
    batch = [node.sign("1"), node.sign("2")]
    answered = node.http.post("/v1/jobs/batch", content="[" + ",".join(e.to_json() for e in batch) + "]")
    made = answered.headers["x-request-id"]
    for envelope in batch:
        line = pool.wait_for_log(lambda entry, job=envelope.id: entry.get("msg") == "job ended" and entry.get("job") == job)
        assert line["request_id"] == made
    pool.stop(timeout=60)
    stopping = pool.wait_for_log(lambda entry: entry.get("msg") == "stop requested")
    assert "request_id" not in stopping


def test_refusals_have_the_one_body(node):
    service_checks.check_framework_errors(node.http, get_only="/health", bad_query="/v1/jobs?limit=0")
    refused = service_checks.error(node.post(b"{not json"), 400, "invalid_json")
    assert refused.message


def test_http_metrics_and_build_info(node):
    service_checks.check_metrics(node.http, "supervisor", route="/health", path="/health")
    node.post(node.sign("1"))
    node.post(b"[1]")
    service_checks.check_series(node.http, {
        'zeronode_supervisor_http_requests_total{method="POST",route="/v1/jobs",status="202"}': 1,
        'zeronode_supervisor_http_requests_total{method="POST",route="/v1/jobs",status="422"}': 1,
        'zeronode_supervisor_jobs_refused_total{reason="malformed"}': 1,
        "zeronode_supervisor_queued_jobs": 1,
    })


def test_every_write_declares_its_body(node):
    document = service_checks.check_openapi(node.http, {("post", "/v1/jobs"): "Envelope"})
    batch = service_checks.body_schema(document, "post", "/v1/jobs/batch")
    assert batch["type"] == "array" and batch["items"] == {"$ref": "#/components/schemas/Envelope"}
    envelope = document["components"]["schemas"]["Envelope"]
    assert {"script", "targets", "signatures"} <= set(envelope["properties"])
    # What Swagger would submit from the declared schema's example is what the route parses.
    assert json.loads(node.sign("1").to_json()).keys() <= set(envelope["properties"])


def test_docs_are_served_without_any_outside_host(node):
    service_checks.check_docs(node.http)


def test_concurrent_submits_are_each_answered_alone_with_their_own_request_id(node):
    # The one-envelope POSTs of concurrent requests are submitted together (supervisor.gathering): each keeps
    # its own answer, error body and request id.
    envelopes = [node.sign(str(i)) for i in range(10)]
    bodies = [e.to_json() for e in envelopes] + [envelopes[0].to_json(), "{not json"]

    def post(index: int):
        return node.http.post("/v1/jobs", content=bodies[index], headers={"X-Request-Id": f"req-{index}"})

    with ThreadPoolExecutor(len(bodies)) as pool:
        answers = list(pool.map(post, range(len(bodies))))
    assert [a.headers["x-request-id"] for a in answers] == [f"req-{i}" for i in range(len(bodies))]
    assert sorted(a.status_code for a in answers[:11]) == [200] + [202] * 10  # the repeated envelope: one of its two
    assert {a.json()["job_id"] for a in answers[:11]} == {e.id for e in envelopes}
    assert answers[11].status_code == 400 and answers[11].json()["reason"] == "invalid_json"
    serializer = node.supervisor.queue.serializer
    for index, envelope in enumerate(envelopes[1:], start=1):
        assert Job.fetch(envelope.id, node.connection, serializer=serializer).meta["request_id"] == f"req-{index}"
    assert Job.fetch(envelopes[0].id, node.connection, serializer=serializer).meta["request_id"] in ("req-0", "req-10")
