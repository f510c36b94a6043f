"""Where coord sends work, and what it believes of the answers: only to supervisor URLs it may use, no
redirect followed, answers capped and parsed strictly, and no foreign body ever shown in a deployment."""

import ipaddress
import json

import pytest
from fastapi import FastAPI, Request
from fastapi.responses import (
    JSONResponse,
    PlainTextResponse,
    RedirectResponse,
    Response,
    StreamingResponse,
)

from .conftest import tasks_by_node

SECRET = "TOPSECRET-admin-token-0451"


@pytest.fixture
def foreign(serve_app):
    """An HTTP service that is no supervisor (a loopback admin endpoint): its URL, and the paths it was asked."""
    app = FastAPI()
    asked: list[str] = []

    @app.api_route("/{path:path}", methods=["GET", "POST"])
    async def anything(path: str, request: Request) -> PlainTextResponse:
        asked.append(f"{request.method} /{path}")
        return PlainTextResponse(f"{SECRET} for /{path}")

    return serve_app(app), asked


def test_forged_supervisor_urls_fail_at_dispatch_and_nothing_is_sent(control_plane, foreign):
    url, asked = foreign
    port = url.rsplit(":", 1)[1]
    forged = [
        f"{url}/admin/secret?token=",  # loopback, allowed, but with a path: coord would call /admin/secret?token=/v1/jobs
        f"http://localhost:{port}",  # a name: it could resolve anywhere later
        "http://169.254.169.254",  # a cloud's metadata service: outside every allowed network
        f"http://admin:pw@127.0.0.1:{port}",  # user info
        f"ftp://127.0.0.1:{port}",
    ]
    nodes = [control_plane.add_node() for _ in forged]
    for node, supervisor_url in zip(nodes, forged, strict=True):
        control_plane.point_node_at(node, supervisor_url)
    final = control_plane.run(control_plane.sign(nodes))
    tasks = tasks_by_node(final)
    assert {(task["state"], task["error"]["reason"]) for task in tasks.values()} == {("failed", "forbidden_destination")}
    assert asked == [] and SECRET not in json.dumps(final)


def test_supervisors_outside_the_allowed_networks_are_not_sent_to(control_plane):
    coord = control_plane.make_coord(supervisor_networks=[ipaddress.ip_network("127.0.0.1/32")])
    inside, outside = control_plane.add_node(), control_plane.add_node()
    # Outside every replica's networks: the fixture's own coord, which shares the store and may step
    # any task, allows all of loopback, so a loopback address would be "outside" for one replica only.
    control_plane.point_node_at(outside, "http://10.255.255.1:8300")
    envelope = control_plane.sign([inside, outside])
    coord.submit(envelope)
    *_, final = coord.follow(envelope.id, timeout=30)
    tasks = tasks_by_node(final)
    assert tasks[inside]["state"] == "succeeded"
    assert (tasks[outside]["state"], tasks[outside]["error"]["reason"]) == ("failed", "forbidden_destination")
    assert control_plane.fleet.submissions == 1


def test_a_redirect_is_not_followed(control_plane, foreign):
    url, asked = foreign
    node = control_plane.add_node()
    control_plane.fleet.faults[node].append(RedirectResponse(f"{url}/steal", status_code=307))
    final = control_plane.run(control_plane.sign([node]))
    task = final["tasks"][0]
    assert (task["state"], task["error"]["reason"]) == ("failed", "bad_answer") and "307" in task["error"]["message"]
    assert asked == []


def test_only_a_well_formed_refusal_is_shown_and_never_a_foreign_body(control_plane):
    answers = {
        "teapot": PlainTextResponse(SECRET, status_code=418),
        "odd reason": JSONResponse({"reason": f"Not A Code {SECRET}", "message": SECRET}, status_code=403),
        # An older node's body, wrapped in "detail": read alike.
        "long message": JSONResponse({"detail": {"reason": "quota_exceeded", "message": "x" * 5000}}, status_code=403),
        "huge accept": Response(b"x" * (2 << 20), status_code=202),
        "huge refusal, chunked": StreamingResponse(iter([b"y" * 65536] * 4), status_code=403),
        "someone else's job": JSONResponse({"job_id": "not-this-envelope", "status": "queued"}, status_code=202),
        "compressed": Response(b"\x1f\x8b", status_code=403, headers={"content-encoding": "gzip"}),
    }
    nodes = {}
    for kind, answer in answers.items():
        nodes[kind] = control_plane.add_node()
        control_plane.fleet.faults[nodes[kind]].append(answer)
    final = control_plane.run(control_plane.sign(list(nodes.values())))
    errors = {kind: tasks_by_node(final)[node]["error"] for kind, node in nodes.items()}
    assert SECRET not in json.dumps(final)
    assert errors["teapot"]["reason"] == "refused" and errors["teapot"]["message"].endswith("node answered HTTP 418")
    assert errors["odd reason"]["reason"] == "refused" and errors["odd reason"]["message"].endswith("node answered HTTP 403")
    assert errors["long message"]["reason"] == "quota_exceeded" and len(errors["long message"]["message"]) < 400
    for kind in ("huge accept", "huge refusal, chunked", "someone else's job", "compressed"):
        assert errors[kind]["reason"] == "bad_answer", kind
    assert control_plane.fleet.jobs == {}


def test_coord_signs_its_polls_for_the_node(control_plane):
    node = control_plane.add_node()
    control_plane.fleet.admins.clear()  # the node no longer counts coord among its admins
    final = control_plane.run(control_plane.sign([node]))
    task = final["tasks"][0]
    # Refused as a reader (403), not as an unsigned or misaddressed request (401): coord signed for the node.
    assert (task["state"], task["error"]["reason"]) == ("failed", "not_authorized")
    assert "refused to show job" in task["error"]["message"]
