"""Services kept on live nodes: coord moves a service's share off a node that went offline or is draining,
with the same envelope and a new placement ticket, and counts one copy when the old node comes back."""

import time

import pytest

from tests.support.waiting import wait_until
from zeronode.api.ledger import ScheduleChange, Usage
from zeronode.client.ledger import LedgerClient
from zeronode.protocol.envelope import Selector

from .conftest import tasks_by_node

FAILOVER = {"failover_after": 1.0, "failover_interval": 0.2}


@pytest.fixture
def three(control_plane):
    """Three nodes with room; a coord that moves shares after 1 s of a node's silence."""
    control_plane.coord = control_plane.make_coord(**FAILOVER)
    return [control_plane.add_node(free=Usage(vcpus=2, memory=1 << 30, disk=5 << 30)) for _ in range(3)]


def settled(control_plane, deployment_id: str, moves: int) -> dict:
    """The deployment once it shows `moves` moves and no task is still on its way."""
    def ready():
        view = control_plane.coord.deployment(deployment_id)
        busy = {"pending", "dispatched", "running"} & set(view["counts"])
        return view if len(view["history"]) == moves and not busy else None
    return wait_until(ready, 30, f"{moves} move(s) to settle")


def test_a_service_moves_off_an_offline_node_and_counts_once_when_it_returns(control_plane, three):
    envelope = control_plane.sign([], selector=Selector(count=1, kind="service"))
    [first] = control_plane.coord.submit(envelope)["placed"]
    assert settled(control_plane, envelope.id, 0)["counts"] == {"succeeded": 1}

    control_plane.heard(first, 1000)  # stopped reporting: offline, and past failover_after
    view = settled(control_plane, envelope.id, 1)
    [move] = view["history"]
    second = move["to"]
    assert (move["node"], move["reason"]) == (first, "offline") and second in three and second != first
    tasks = tasks_by_node(view)
    assert tasks[first]["state"] == "moved" and tasks[first]["moved_to"] == second
    assert tasks[second]["state"] == "succeeded" and tasks[second]["result"] == {"node": second}
    assert view["status"] == "succeeded" and view["counts"] == {"succeeded": 1, "moved": 1}
    assert view["placed"] == [first, second]
    assert control_plane.fleet.runs(second, envelope.id) == 1  # on coord's ticket: the envelope names nobody

    control_plane.heard(first, 0)  # back: still one copy counted, nothing moves again
    control_plane.heard(second, 0)
    again = settled(control_plane, envelope.id, 1)
    assert again["counts"] == {"succeeded": 1, "moved": 1} and control_plane.fleet.runs(first, envelope.id) == 1


def test_draining_moves_a_services_share_at_once_and_jobs_stay(control_plane, three):
    service = control_plane.sign([], selector=Selector(count=2, kind="service", strategy="spread"))
    job = control_plane.sign([], selector=Selector(count=2, strategy="spread"))
    placed = control_plane.coord.submit(service)["placed"]
    assert control_plane.coord.submit(job)["placed"] == placed  # the same fleet, the same choice
    settled(control_plane, service.id, 0)
    with LedgerClient(control_plane.ledger_url, control_plane.ledger_admin) as ledger:
        ledger.set_schedule(placed[0], ScheduleChange(schedule="draining", sequence=next(control_plane.sequence)))
    view = settled(control_plane, service.id, 1)
    [spare] = set(three) - set(placed)
    assert [(m["node"], m["to"], m["reason"]) for m in view["history"]] == [(placed[0], spare, "drained")]
    assert view["counts"] == {"succeeded": 2, "moved": 1}
    assert control_plane.coord.deployment(job.id)["history"] == []  # a one-shot job is not kept anywhere


def test_a_share_with_nowhere_to_go_waits_and_a_canceled_service_is_no_longer_kept(control_plane, three):
    envelope = control_plane.sign([], selector=Selector(count=3, kind="service"))
    placed = control_plane.coord.submit(envelope)["placed"]
    settled(control_plane, envelope.id, 0)
    control_plane.heard(placed[0], 1000)
    time.sleep(1.0)  # five rounds of failover
    assert control_plane.coord.deployment(envelope.id)["history"] == []  # every other node holds a share already
    spare = control_plane.add_node(free=Usage(vcpus=2, memory=1 << 30, disk=5 << 30))
    view = settled(control_plane, envelope.id, 1)
    assert view["history"][0]["to"] == spare
    assert control_plane.coord.cancel(envelope.id)["canceled_by"]
    control_plane.heard(spare, 1000)
    control_plane.heard(placed[0], 0)  # somewhere to go, if it were still kept
    time.sleep(1.0)
    assert len(control_plane.coord.deployment(envelope.id)["history"]) == 1
