"""`zeronode up --nodes 2` as a real process tree, and the control plane's failures end to end: a supervisor
killed mid-deployment, coord restarted mid-deployment, a node that stops reporting, and Ctrl-C."""

from __future__ import annotations

import json
import os
import signal
import subprocess
from pathlib import Path

import httpx
import pytest

from tests.support.health import healthy
from tests.support.processes import ZERONODE, alive
from tests.support.waiting import wait_until
from zeronode.client.coord import CoordClient
from zeronode.protocol import keys
from zeronode.protocol.envelope import new_envelope


@pytest.fixture(scope="module")
def cluster(tmp_path_factory):
    state = tmp_path_factory.mktemp("up")
    process = subprocess.Popen(
        [ZERONODE, "up", "--nodes", "2", "--state-dir", str(state)],
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
    )
    lines: list[str] = []
    for line in process.stdout:
        lines.append(line)
        if "zeronode is up" in line:
            break
    else:
        pytest.fail(f"zeronode up exited ({process.wait()}):\n{''.join(lines)}")
    info = json.loads((state / "cluster.json").read_text())
    info["up"], info["state"], info["output"] = process, state, lines
    info["admin"] = keys.load_private_key(Path(info["admin_key"]))
    yield info
    if process.poll() is None:
        process.send_signal(signal.SIGINT)
        process.wait(60)


def pids(cluster) -> dict[str, int]:
    """The cluster's processes now (`up` restarts one that dies, under a new pid)."""
    return json.loads((cluster["state"] / "cluster.json").read_text())["processes"]


def deploy(cluster, targets: list[str], script: str = "node_info().id", timeout: float = 60) -> dict:
    envelope = new_envelope(script, targets, cluster["admin"])
    with CoordClient(cluster["coord_url"]) as coord:
        coord.submit(envelope)
        *_, final = coord.follow(envelope.id, timeout=timeout)
    return final


def test_up_deployed_the_examples_and_deploys_to_both_nodes(cluster):
    output = "".join(cluster["output"])
    assert "hello.rhai" in output and "network_hello.rhai" in output and "succeeded (2 succeeded)" in output
    assert "skipped snapshot_and_clone.rhai: needs storage" in output
    nodes = [node["node_id"] for node in cluster["nodes"]]
    final = deploy(cluster, nodes)
    assert final["status"] == "succeeded"
    assert sorted(task["result"] for task in final["tasks"]) == sorted(nodes)  # each node ran it as itself


def test_a_supervisor_down_mid_deployment_is_retried_until_it_returns(cluster):
    node = cluster["nodes"][0]
    supervisor = pids(cluster)["node1-supervisor"]
    os.kill(supervisor, signal.SIGSTOP)  # hung: `up` cannot tell, so it does not restart it
    try:
        envelope = new_envelope("node_info().id", [node["node_id"]], cluster["admin"])
        with CoordClient(cluster["coord_url"]) as coord:
            coord.submit(envelope)
            retrying = wait_until(
                lambda: (t := coord.deployment(envelope.id)["tasks"][0])["attempts"] >= 1 and t, 60, "coord to retry"
            )
            assert retrying["state"] == "pending" and retrying["error"]["reason"] == "supervisor_unreachable"
            os.kill(supervisor, signal.SIGKILL)  # `up` restarts it, as a service manager would
            wait_until(lambda: pids(cluster)["node1-supervisor"] != supervisor, 30, "the supervisor's restart")
            *_, final = coord.follow(envelope.id, timeout=60)
    finally:
        if alive(supervisor):
            os.kill(supervisor, signal.SIGKILL)
    assert final["status"] == "succeeded" and final["tasks"][0]["result"] == node["node_id"]


def test_coord_restarted_mid_deployment_resumes_tracking(cluster):
    nodes = [node["node_id"] for node in cluster["nodes"]]
    envelope = new_envelope("sleep(2); node_info().id", nodes, cluster["admin"])
    with CoordClient(cluster["coord_url"]) as coord:
        coord.submit(envelope)
        wait_until(lambda: coord.deployment(envelope.id)["counts"].get("pending", 0) == 0, 20, "dispatch")
    coord_pid = pids(cluster)["coord"]
    os.kill(coord_pid, signal.SIGKILL)
    wait_until(lambda: pids(cluster)["coord"] != coord_pid, 30, "coord's restart by up")
    with CoordClient(cluster["coord_url"]) as coord:
        wait_until(lambda: healthy(cluster["coord_url"]), 30, "the new coord")
        *_, final = coord.follow(envelope.id, timeout=60)
    assert final["status"] == "succeeded" and sorted(t["result"] for t in final["tasks"]) == sorted(nodes)


def test_a_node_that_stops_reporting_fails_deployments_as_offline(cluster):
    node = cluster["nodes"][1]
    identity = pids(cluster)["node2-identity"]
    os.kill(identity, signal.SIGSTOP)  # hung: no reports, and `up` does not restart it
    ledger = httpx.Client(base_url=cluster["ledger_url"])
    wait_until(lambda: ledger.get(f"/v1/nodes/{node['node_id']}").json()["status"] == "offline", 30, "offline")
    final = deploy(cluster, [node["node_id"]])
    task = final["tasks"][0]
    assert task["error"], (final["status"], task)
    assert (final["status"], task["error"]["reason"]) == ("failed", "node_offline")
    assert "is offline (waited 5 s)" in task["error"]["message"]
    os.kill(identity, signal.SIGCONT)


def test_the_cli_deploys_and_shows_nodes_jobs_and_status(cluster, tmp_path):
    script = tmp_path / "where.rhai"
    script.write_text('print("here"); node_info().id')
    nodes = [node["node_id"] for node in cluster["nodes"][:1]]
    env = {**os.environ, "ZERONODE_COORD_URL": cluster["coord_url"], "ZERONODE_LEDGER_URL": cluster["ledger_url"],
           "COLUMNS": "250"}

    def zeronode(*args):
        return subprocess.run([ZERONODE, *args], capture_output=True, text=True, timeout=120, env=env)

    deployed = zeronode("deploy", str(script), "--key", cluster["admin_key"], "--target", nodes[0], "--wait")
    assert deployed.returncode == 0, deployed.stderr
    deployment = deployed.stdout.split()[1]
    assert f'"{nodes[0]}"' in deployed.stdout and "succeeded" in deployed.stdout
    status = zeronode("status", deployment)
    assert status.returncode == 0 and "succeeded (1 succeeded)" in status.stdout
    listed = zeronode("nodes")
    assert listed.returncode == 0 and all(node["node_id"] in listed.stdout for node in cluster["nodes"])
    jobs = zeronode("jobs", "--node", nodes[0])
    assert jobs.returncode == 0 and deployment in jobs.stdout and "finished" in jobs.stdout

    failing = tmp_path / "fail.rhai"
    failing.write_text('throw "no";')
    failed = zeronode("deploy", str(failing), "--key", cluster["admin_key"], "--target", nodes[0], "--wait")
    assert failed.returncode == 1 and "script_error" in failed.stdout
    unknown = zeronode("status", "no-such-deployment")
    assert unknown.returncode == 1 and "no deployment no-such-deployment" in unknown.stderr
    nowhere = zeronode("deploy", str(script), "--key", cluster["admin_key"], "--target", nodes[0],
                       "--coord", "http://127.0.0.1:9")
    assert nowhere.returncode == 1 and "coordinator unreachable" in nowhere.stderr and "Traceback" not in nowhere.stderr


def test_ctrl_c_stops_every_process(cluster):
    up = cluster["up"]
    up.send_signal(signal.SIGINT)
    assert up.wait(60) == 0
    left = [name for name, pid in pids(cluster).items() if alive(pid)]
    assert left == []
    # The runner pools' own children (runner processes) are gone too.
    assert not subprocess.run(["pgrep", "-f", str(cluster["state"])], capture_output=True).stdout


def test_up_says_what_to_install_when_redis_is_missing(tmp_path):
    result = subprocess.run(
        [ZERONODE, "up", "--once", "--state-dir", str(tmp_path)], capture_output=True, text=True, timeout=60,
        env={"PATH": str(Path(ZERONODE).parent), "HOME": str(tmp_path)},
    )
    assert result.returncode == 1
    assert "redis-server is not installed: sudo apt-get install redis-server" in result.stderr


def test_up_with_storage_runs_every_example_and_leaves_no_vm_behind(pool_dir, short_dir):
    result = subprocess.run(
        [ZERONODE, "up", "--once", "--state-dir", str(short_dir), "--storage-root", str(pool_dir)],
        capture_output=True, text=True, timeout=300, env={**os.environ, "COLUMNS": "200"},
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert "skipped" not in result.stdout
    for example in ("deploy_vm.rhai", "list_everything.rhai", "snapshot_and_clone.rhai"):
        assert example in result.stdout
    assert result.stdout.count("succeeded (1 succeeded)") == 5
    assert (pool_dir / "node1" / "demo-vm-root").is_dir()  # the VM's root disk, a clone of the image
    left = subprocess.run(["pgrep", "-f", str(short_dir)], capture_output=True, text=True).stdout
    assert left == "", f"processes left behind: {left}"
