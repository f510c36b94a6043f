"""Placement, cordon, drain and failover through `zeronode up --nodes 3` and the CLI: coord chooses nodes by
their reported free capacity and health, the nodes run what it placed on its tickets, and a service moves off
a node that stops reporting or is drained. (No storage: the nodes run scripts, not VMs.)"""

from __future__ import annotations

import json
import os
import signal

import httpx
import pytest

from tests.support.nodes import new_node_key, register_node
from tests.support.up import pids, running_up
from tests.support.waiting import wait_until
from zeronode.api.ledger import Usage
from zeronode.client.coord import CoordClient
from zeronode.client.ledger import LedgerClient

MIB = 1 << 20


@pytest.fixture(scope="module")
def cluster(tmp_path_factory):
    with running_up(tmp_path_factory.mktemp("up3"), "--nodes", "3", "--no-loop-storage") as info:
        with LedgerClient(info["ledger_url"]) as ledger:
            wait_until(lambda: all(n.free is not None and n.status == "online" for n in ledger.nodes(farm="local")), 30,
                       "the nodes to report their free capacity and health")
        yield info


@pytest.fixture(scope="module")
def script(tmp_path_factory):
    path = tmp_path_factory.mktemp("scripts") / "where.rhai"
    path.write_text("node_info().id")
    return path


@pytest.fixture(scope="module")
def full_node(cluster):
    """A fourth node in the farm, online and healthy, with 64 MiB free: no room for what the tests ask."""
    key, node_id = new_node_key()
    register_node(cluster["ledger_url"], key, "http://127.0.0.1:9", farm="local",
                  free=Usage(vcpus=8, memory=64 * MIB, disk=1 << 30), health={"redis": True, "runners": True})
    return node_id


def local(cluster) -> list[str]:
    return [node["node_id"] for node in cluster["nodes"]]


def chosen(output: str) -> list[str]:
    """The nodes `zeronode deploy` says coord chose."""
    return output.split("chosen by coord: ", 1)[1].split(")", 1)[0].split(", ")


def test_deploy_places_by_free_capacity_and_never_on_a_node_without_room(cluster, script, full_node):
    cli = cluster["cli"]
    deployed = cli("deploy", script, "--key", cluster["admin_key"], "--farm", "local", "--count", "3",
                   "--min-memory", "1024", "--wait")
    assert deployed.returncode == 0, deployed.stdout + deployed.stderr
    assert sorted(chosen(deployed.stdout)) == sorted(local(cluster)) and full_node not in deployed.stdout
    assert "succeeded (3 succeeded)" in deployed.stdout
    for node in local(cluster):  # each ran it, and said so: the script's result is its node's id
        assert f'"{node}"' in deployed.stdout

    four = cli("deploy", script, "--key", cluster["admin_key"], "--count", "4", "--min-memory", "1024")
    assert four.returncode == 1 and "no_capacity" in four.stderr and "3 of the 4" in four.stderr
    assert "Traceback" not in four.stderr
    assert cli("deploy", script, "--key", cluster["admin_key"]).returncode == 1  # neither --target nor --count
    listed = cli("nodes", "--farm", "local")
    assert listed.returncode == 0 and "active" in listed.stdout and " of " in listed.stdout


def test_a_cordoned_node_gets_nothing_new_and_uncordoned_it_does(cluster, script):
    cli, first = cluster["cli"], local(cluster)[0]
    cordoned = cli("node", "cordon", first, "--key", cluster["admin_key"])
    assert cordoned.returncode == 0 and json.loads(cordoned.stdout)["schedule"] == "cordoned", cordoned.stderr
    try:
        two = cli("deploy", script, "--key", cluster["admin_key"], "--count", "2", "--min-memory", "1024", "--wait")
        assert two.returncode == 0 and first not in chosen(two.stdout), two.stdout
        assert cli("deploy", script, "--key", cluster["admin_key"], "--count", "3", "--min-memory", "1024").returncode == 1
    finally:
        assert cli("node", "uncordon", first, "--key", cluster["admin_key"]).returncode == 0
    three = cli("deploy", script, "--key", cluster["admin_key"], "--count", "3", "--min-memory", "1024")
    assert three.returncode == 0, three.stderr


def test_a_service_moves_off_a_drained_node_and_off_one_that_stops_reporting(cluster, script):
    """Within offline_after (6 s in `up`), failover_after (2 s) and one dispatch, the service runs elsewhere."""
    cli, nodes = cluster["cli"], local(cluster)
    deployed = cli("deploy", script, "--key", cluster["admin_key"], "--count", "1", "--min-memory", "1024", "--service",
                   "--wait")
    assert deployed.returncode == 0, deployed.stdout + deployed.stderr
    service = deployed.stdout.split()[1]
    [first] = chosen(deployed.stdout)

    def moves(count: int) -> dict:
        with CoordClient(cluster["coord_url"], key=cluster["admin"]) as coord:
            return wait_until(
                lambda: (v := coord.deployment(service))["counts"].get("succeeded") and len(v["history"]) == count
                and not {"pending", "dispatched", "running"} & set(v["counts"]) and v,
                60, f"move {count} of the service",
            )

    assert cli("node", "drain", first, "--key", cluster["admin_key"]).returncode == 0
    try:
        view = moves(1)
    finally:
        assert cli("node", "uncordon", first, "--key", cluster["admin_key"]).returncode == 0
    second = view["history"][0]["to"]
    assert view["history"][0]["reason"] == "drained" and second in nodes and second != first

    index = nodes.index(second) + 1
    identity = pids(cluster)[f"node{index}-identity"]
    os.kill(identity, signal.SIGSTOP)  # hung: no reports, and `up` does not restart it
    try:
        view = moves(2)
    finally:
        os.kill(identity, signal.SIGCONT)
    third = view["history"][1]["to"]
    assert (view["history"][1]["node"], view["history"][1]["reason"]) == (second, "offline") and third not in (second,)
    assert {t["node"]: t["result"] for t in view["tasks"] if t["state"] == "succeeded"} == {third: third}
    assert view["counts"] == {"succeeded": 1, "moved": 2} and view["status"] == "succeeded"
    shown = cli("status", service, "--key", cluster["admin_key"])
    assert shown.returncode == 0 and "moved" in shown.stdout and f"to {third}: offline" in shown.stdout, shown.stdout
    ledger = httpx.Client(base_url=cluster["ledger_url"])
    wait_until(lambda: ledger.get(f"/v1/nodes/{second}").json()["status"] == "online", 30, "the node back online")
    assert moves(2)["counts"] == {"succeeded": 1, "moved": 2}  # back, and still one copy counted
