"""The coordinator against a real ledger and simulated supervisors: dispatch, tracking, retries, refusals,
cancel, replicas, and fan-out to many nodes at once."""

import json

import httpx
import nacl.signing
import pytest

from zeronode.api.errors import Refused
from zeronode.protocol.signed_requests import COORD, SignedRequestAuth

from .conftest import tasks_by_node


def test_a_deployment_runs_on_every_target(control_plane):
    nodes = [control_plane.add_node() for _ in range(3)]
    final = control_plane.run(control_plane.sign(nodes))
    assert final["status"] == "succeeded" and final["counts"] == {"succeeded": 3}
    for node, task in tasks_by_node(final).items():
        assert task["result"] == {"node": node} and task["job_id"] == final["id"] and task["error"] is None
    listed = control_plane.coord.deployments()
    assert [d["id"] for d in listed] == [final["id"]] and listed[0]["status"] == "succeeded"


def test_offline_nodes_fail_with_their_reason_and_unknown_ones_are_refused(control_plane):
    online, offline = control_plane.add_node(), control_plane.add_node(online=False)
    final = control_plane.run(control_plane.sign([online, offline]))
    tasks = tasks_by_node(final)
    assert final["status"] == "failed"
    assert tasks[online]["state"] == "succeeded"
    assert (tasks[offline]["state"], tasks[offline]["error"]["reason"]) == ("failed", "node_offline")
    assert "offline (waited 1 s)" in tasks[offline]["error"]["message"]
    unknown, made_up = "a" * 26, "not-a-node-id"
    with pytest.raises(Refused) as refused:  # nobody has rights on a node the ledger does not know
        control_plane.coord.submit(control_plane.sign([online, unknown, made_up]))
    assert (refused.value.status, refused.value.reason) == (403, "not_authorized")
    assert {node: why["reason"] for node, why in refused.value.detail["nodes"].items()} == {
        unknown: "unknown_node", made_up: "unknown_node"
    }


def test_5xx_is_retried_and_4xx_is_final(control_plane):
    flaky, refusing = control_plane.add_node(), control_plane.add_node()
    control_plane.fleet.faults[flaky].extend([503, 502])
    control_plane.fleet.faults[refusing].append(403)
    final = control_plane.run(control_plane.sign([flaky, refusing]))
    tasks = tasks_by_node(final)
    assert (tasks[flaky]["state"], tasks[flaky]["attempts"]) == ("succeeded", 2)
    assert (tasks[refusing]["state"], tasks[refusing]["attempts"]) == ("failed", 0)
    assert tasks[refusing]["error"]["reason"] == "simulated" and "refused the envelope" in tasks[refusing]["error"]["message"]
    assert control_plane.fleet.submissions == 1  # only the flaky node's third try got through to a job


def submitted_and_dispatched(control_plane, node: str):
    """An envelope for `node`, submitted, once coord has handed it to the node."""
    envelope = control_plane.sign([node])
    control_plane.coord.submit(envelope)
    for progress in control_plane.coord.follow(envelope.id, timeout=10):
        if progress["tasks"][0]["state"] in ("dispatched", "running"):
            return envelope
    raise AssertionError(f"never dispatched: {progress}")


def test_a_job_the_node_lost_is_dispatched_again(control_plane):
    control_plane.fleet.run_time = 1.0
    node = control_plane.add_node()
    envelope = submitted_and_dispatched(control_plane, node)
    del control_plane.fleet.jobs[(node, envelope.id)]  # the node's Redis was wiped
    *_, final = control_plane.coord.follow(envelope.id, timeout=20)
    assert final["status"] == "succeeded" and control_plane.fleet.submissions == 2


def test_envelopes_are_verified_here_too(control_plane):
    node = control_plane.add_node()
    envelope = control_plane.sign([node])
    tampered = json.loads(envelope.to_json())
    tampered["script"] = "666"
    for body, status, reason in [
        (json.dumps(tampered), 401, "bad_signature"),
        ("{not json", 400, "invalid_json"),
        (json.dumps({**tampered, "extra": 1}), 422, "malformed"),
    ]:
        with pytest.raises(Refused) as refused:
            control_plane.coord.submit(body)
        assert (refused.value.status, refused.value.reason) == (status, reason)
    assert control_plane.coord.submit(envelope)["duplicate"] is False
    assert control_plane.coord.submit(envelope)["duplicate"] is True  # the same envelope again: the same deployment
    other = control_plane.sign([node]).model_copy(update={"id": envelope.id, "signatures": []})
    with pytest.raises(Refused) as reused:
        control_plane.coord.submit(other.signed_by(control_plane.client_key))
    assert (reused.value.status, reused.value.reason) == (409, "id_in_use")
    with pytest.raises(Refused) as missing:
        control_plane.coord.deployment("no-such-deployment")
    assert missing.value.status == 404


def test_cancel_by_the_signer_stops_queued_and_running_work(control_plane):
    control_plane.fleet.run_time = 30
    node = control_plane.add_node()
    envelope = submitted_and_dispatched(control_plane, node)
    with pytest.raises(Refused) as stranger:
        control_plane.coord.cancel(envelope.id, nacl.signing.SigningKey.generate())
    assert stranger.value.status == 403
    unsigned = control_plane.coord.http.post(f"/v1/deployments/{envelope.id}/cancel")
    assert unsigned.status_code == 401 and unsigned.json()["reason"] == "bad_signature"
    control_plane.coord.cancel(envelope.id, control_plane.client_key)
    *_, final = control_plane.coord.follow(envelope.id, timeout=10)
    assert final["status"] == "canceled" and final["canceled_by"]
    assert control_plane.fleet.jobs[(node, envelope.id)].canceled  # the node was told, with coord's signature


def test_two_replicas_on_one_store_dispatch_each_task_once(control_plane):
    second = control_plane.make_coord()
    nodes = [control_plane.add_node() for _ in range(30)]
    envelope = control_plane.sign(nodes)
    control_plane.coord.submit(envelope)
    *_, final = second.follow(envelope.id, timeout=30)  # either replica answers for any deployment
    assert final["counts"] == {"succeeded": 30}
    assert control_plane.fleet.submissions == 30


def test_fan_out_is_concurrent(control_plane):
    control_plane.fleet.latency = 0.3  # a slow network: one node at a time would take 100 x 0.3 s per request
    nodes = [control_plane.add_node() for _ in range(100)]
    final = control_plane.run(control_plane.sign(nodes), timeout=60)
    assert final["counts"] == {"succeeded": 100}
    assert control_plane.fleet.most_in_flight >= 20  # many supervisors were asked at once, not one by one


def test_progress_as_server_sent_events(control_plane):
    node = control_plane.add_node()
    envelope = control_plane.sign([node])
    control_plane.coord.submit(envelope)
    url = f"{str(control_plane.coord.http.base_url).rstrip('/')}/v1/deployments/{envelope.id}/events"
    with httpx.stream("GET", url, auth=SignedRequestAuth(control_plane.client_key, COORD), timeout=30) as events:
        states = [json.loads(line[6:])["status"] for line in events.iter_lines() if line.startswith("data: ")]
    assert states[-1] == "succeeded" and len(states) >= 2
    stranger = httpx.get(url, auth=SignedRequestAuth(nacl.signing.SigningKey.generate(), COORD), timeout=30)
    assert stranger.status_code == 403 and stranger.json()["reason"] == "not_authorized"


def test_health_and_metrics_are_open_and_show_no_deployment(control_plane):
    assert control_plane.coord.http.get("/health").json()["status"] == "ok"
    node = control_plane.add_node()
    final = control_plane.run(control_plane.sign([node]))
    with control_plane.client(None) as anyone:
        health, metrics = anyone.http.get("/health").text, anyone.http.get("/metrics").text
    assert "zeronode_coord_deployments_accepted_total 1.0" in metrics
    assert 'zeronode_coord_tasks_ended_total{state="succeeded"} 1.0' in metrics
    for private in (final["id"], final["signer"], node):
        assert private not in metrics and private not in health
