"""Coord choosing the nodes of a deployment by its selector: from the ledger's free capacity, health and
schedule, within the signer's rights; each chosen node runs it on coord's placement ticket."""

import nacl.signing
import pytest

from coord import placement
from zeronode.api.errors import Refused
from zeronode.api.ledger import ScheduleChange, Usage
from zeronode.client.ledger import LedgerClient
from zeronode.protocol.envelope import Selector

from .conftest import tasks_by_node

MIB = 1 << 20


def free(memory_mib: int, vcpus: int = 2) -> Usage:
    return Usage(vcpus=vcpus, memory=memory_mib * MIB, disk=5 << 30)


@pytest.fixture
def three(control_plane):
    """Nodes with 256, 512 and 1024 MiB free (of 1 GiB each)."""
    return {size: control_plane.add_node(free=free(size), labels=[f"size={size}"]) for size in (256, 512, 1024)}


def place(control_plane, **selector) -> dict:
    return control_plane.coord.submit(control_plane.sign([], selector=Selector(**selector)))


def test_binpack_fills_the_fullest_node_that_fits_and_spread_the_emptiest(control_plane, three):
    assert place(control_plane, count=1, min_memory_mib=200)["placed"] == [three[256]]
    assert place(control_plane, count=1, min_memory_mib=300)["placed"] == [three[512]]
    assert place(control_plane, count=2, min_memory_mib=200, strategy="spread")["placed"] == [three[1024], three[512]]
    assert place(control_plane, count=1, labels=["size=512"])["placed"] == [three[512]]


def test_the_chosen_nodes_run_it_on_coords_ticket(control_plane, three):
    envelope = control_plane.sign([three[256]], selector=Selector(count=2, min_memory_mib=400))
    answer = control_plane.coord.submit(envelope)
    assert answer["placed"] == [three[512], three[1024]]  # a named target is never placed again
    assert answer["targets"] == [three[256], three[512], three[1024]]
    *_, final = control_plane.coord.follow(envelope.id, timeout=30)
    assert final["status"] == "succeeded" and final["placed"] == answer["placed"]
    assert {node: task["result"] for node, task in tasks_by_node(final).items()} == {n: {"node": n} for n in answer["targets"]}
    assert control_plane.coord.submit(envelope) == {**answer, "duplicate": True}  # the same choice, not a new one


def test_too_few_nodes_with_room_refuse_the_deployment_and_store_nothing(control_plane, three):
    envelope = control_plane.sign([], selector=Selector(count=2, min_memory_mib=600))
    with pytest.raises(Refused) as refused:
        control_plane.coord.submit(envelope)
    assert (refused.value.status, refused.value.reason) == (422, "no_capacity")
    assert (refused.value.detail["found"], refused.value.detail["wanted"]) == (1, 2)
    assert control_plane.coord.deployments() == []
    with pytest.raises(Refused) as refused:  # one farm, at most one a farm
        place(control_plane, count=2, max_per_farm=1)
    assert refused.value.reason == "no_capacity"
    with pytest.raises(Refused) as refused:
        place(control_plane, count=1001)
    assert (refused.value.status, refused.value.reason) == (422, "too_many_targets")


def test_cordoned_degraded_offline_and_forbidden_nodes_are_never_chosen(control_plane, three):
    control_plane.coord = control_plane.make_coord(rights_ttl=0)  # sees the grant below at once
    degraded = control_plane.add_node(free=free(1024), health={"redis": True, "runners": False})
    offline = control_plane.add_node(online=False)
    elsewhere = control_plane.add_node(free=free(1024), farm="elsewhere")  # the client may not deploy there
    with LedgerClient(control_plane.ledger_url, control_plane.ledger_admin) as ledger:
        ledger.set_schedule(three[1024], ScheduleChange(schedule="cordoned", sequence=next(control_plane.sequence)))
        ledger.set_schedule(three[512], ScheduleChange(schedule="draining", sequence=next(control_plane.sequence)))
    assert place(control_plane, count=1, strategy="spread")["placed"] == [three[256]]
    with pytest.raises(Refused) as refused:
        place(control_plane, count=2)
    assert refused.value.reason == "no_capacity"
    control_plane.grant(control_plane.client_key, ["deployer"], farms=["test", "elsewhere"])
    assert place(control_plane, count=1, min_memory_mib=300)["placed"] == [elsewhere]
    chosen = place(control_plane, count=2, strategy="spread")["placed"]
    assert set(chosen) == {three[256], elsewhere} and degraded not in chosen and offline not in chosen


def test_a_selector_outside_the_signers_rights_or_farms_finds_nothing(control_plane, three):
    stranger = nacl.signing.SigningKey.generate()
    with pytest.raises(Refused) as refused:
        control_plane.coord.submit(control_plane.sign([], key=stranger, selector=Selector(count=1)))
    assert (refused.value.status, refused.value.reason) == (422, "no_capacity")
    with pytest.raises(Refused) as refused:
        place(control_plane, count=1, farms=["nowhere"])
    assert refused.value.reason == "no_capacity"
    assert place(control_plane, count=3, farms=["test"])["placed"] == [three[256], three[512], three[1024]]


def test_a_large_fleet_is_sampled_from_a_random_point_and_a_small_one_read_whole(control_plane, monkeypatch):
    """Scaled down: pages of 2 and a sample of 4 feasible nodes stand for pages of 1,000 and 1,000 nodes."""
    monkeypatch.setattr(placement, "PAGE", 2)
    monkeypatch.setattr(placement, "MIN_SCORED", 4)
    fullest = control_plane.add_node(free=free(900))
    for _ in range(8):
        control_plane.add_node(free=free(1024))
    # Binpack ranks the fullest first, but only the nodes sampled are ranked: from a random point, the
    # sample differs from one placement to the next, and no node is left out of every sample.
    chosen = [place(control_plane, count=1)["placed"][0] for _ in range(20)]  # each misses `fullest` at 5/9
    assert len(set(chosen)) > 1 and fullest in chosen
    # A sample as large as the fleet reads all of it, round from wherever it started: the best always wins.
    monkeypatch.setattr(placement, "MIN_SCORED", 100)
    assert {place(control_plane, count=1)["placed"][0] for _ in range(6)} == {fullest}
