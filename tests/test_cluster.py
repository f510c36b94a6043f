"""`zeronode up --nodes 2` as a real process tree, and the control plane's failures end to end: a supervisor
killed mid-deployment, coord restarted mid-deployment, a node that stops reporting, and Ctrl-C.

The module runs in a network namespace of its own (tests/support/netns.py): the nodes' VM networks (bridges,
taps, nft rules) are made there and go with it, and the test pings the example's guests through them."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import time
from pathlib import Path

import httpx
import pytest

from tests.conftest import new_pool
from tests.support.health import healthy
from tests.support.netns import network_namespace
from tests.support.processes import ZERONODE, alive
from tests.support.up import pids, running_up
from tests.support.waiting import wait_until
from zeronode.api.errors import Refused
from zeronode.api.ledger import NewUser, NodeRegistration
from zeronode.client.coord import CoordClient
from zeronode.client.ledger import LedgerClient
from zeronode.dev import guest
from zeronode.protocol import keys
from zeronode.protocol.envelope import new_envelope
from zeronode.protocol.signed_requests import SignedRequestAuth


@pytest.fixture(scope="module")
def storage(btrfs_mount):
    with new_pool(btrfs_mount) as path:
        yield path


@pytest.fixture(scope="module", autouse=True)
def namespace():
    guest.build(guest.default_cache())  # what `up` boots, built before the namespace: it downloads with apt-get
    with network_namespace() as name:
        yield name


@pytest.fixture(scope="module")
def cluster(tmp_path_factory, storage, namespace):
    with running_up(tmp_path_factory.mktemp("up"), "--nodes", "2", "--storage-root", str(storage)) as info:
        yield info


def deploy(cluster, targets: list[str], script: str = "node_info().id", timeout: float = 60) -> dict:
    envelope = new_envelope(script, targets, cluster["admin"])
    with CoordClient(cluster["coord_url"], key=cluster["admin"]) as coord:
        coord.submit(envelope)
        *_, final = coord.follow(envelope.id, timeout=timeout)
    return final


def test_up_deployed_the_examples_and_deploys_to_both_nodes(cluster):
    output = "".join(cluster["output"])
    assert "hello.rhai" in output and "network_hello.rhai" in output and "deploy_vm.rhai" in output
    assert "vm_on_mycelium.rhai" in output
    assert output.count("succeeded (2 succeeded)") == 6 and "skipped" not in output
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
        with CoordClient(cluster["coord_url"], key=cluster["admin"]) as coord:
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
    with CoordClient(cluster["coord_url"], key=cluster["admin"]) as coord:
        coord.submit(envelope)
        wait_until(lambda: coord.deployment(envelope.id)["counts"].get("pending", 0) == 0, 20, "dispatch")
    coord_pid = pids(cluster)["coord"]
    os.kill(coord_pid, signal.SIGKILL)
    wait_until(lambda: pids(cluster)["coord"] != coord_pid, 30, "coord's restart by up")
    with CoordClient(cluster["coord_url"], key=cluster["admin"]) as coord:
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
    status = zeronode("status", deployment, "--key", cluster["admin_key"])
    assert status.returncode == 0 and "succeeded (1 succeeded)" in status.stdout
    listed = zeronode("nodes")
    assert listed.returncode == 0 and all(node["node_id"] in listed.stdout for node in cluster["nodes"])
    jobs = zeronode("jobs", "--node", nodes[0], "--key", cluster["admin_key"])
    assert jobs.returncode == 0 and deployment in jobs.stdout and "finished" in jobs.stdout
    assert f'"{nodes[0]}"' in jobs.stdout  # results as JSON, as `status` shows them
    narrow = {**env, "COLUMNS": "80"}  # a pipe on an 80-column terminal: ids still whole, to paste into --target
    for argv, whole in ((["nodes"], nodes[0]), (["status", deployment, "--key", cluster["admin_key"]], nodes[0]),
                        (["jobs", "--node", nodes[0], "--key", cluster["admin_key"]], deployment)):
        shown = subprocess.run([ZERONODE, *argv], capture_output=True, text=True, timeout=120, env=narrow)
        assert shown.returncode == 0 and whole in shown.stdout, (argv, shown.stdout)

    failing = tmp_path / "fail.rhai"
    failing.write_text('throw "no";')
    failed = zeronode("deploy", str(failing), "--key", cluster["admin_key"], "--target", nodes[0], "--wait")
    assert failed.returncode == 1 and "script_error" in failed.stdout
    unknown = zeronode("status", "no-such-deployment", "--key", cluster["admin_key"])
    assert unknown.returncode == 1 and "no deployment no-such-deployment" in unknown.stderr
    nowhere = zeronode("deploy", str(script), "--key", cluster["admin_key"], "--target", nodes[0],
                       "--coord", "http://127.0.0.1:9")
    assert nowhere.returncode == 1 and "coordinator unreachable" in nowhere.stderr and "Traceback" not in nowhere.stderr



def test_up_says_what_to_export_for_its_ports(cluster):
    """Started on free ports (as tests start it), `up` prints the lines that point the client commands at it."""
    output = "".join(cluster["output"])
    assert f"export ZERONODE_LEDGER_URL={cluster['ledger_url']}" in output
    assert f"export ZERONODE_COORD_URL={cluster['coord_url']}" in output


def test_the_cli_lists_follows_prints_logs_and_cancels_deployments(cluster, cli, tmp_path):
    nodes = [node["node_id"] for node in cluster["nodes"]]
    admin = cluster["admin_key"]
    script = tmp_path / "talk.rhai"
    script.write_text('print(`on ${node_info().id}: [b]not bold[/b]`); print("second line"); 7')
    submitted = cli("deploy", script, "--key", admin, "--target", nodes[0], "--target", nodes[1], "--json")
    assert submitted.returncode == 0, submitted.stderr
    deployment = json.loads(submitted.stdout)["id"]

    followed = cli("logs", deployment, "--key", admin, "--follow", "--json")  # a JSON line a node, as each ends
    assert followed.returncode == 0, followed.stderr
    lines = [json.loads(line) for line in followed.stdout.splitlines()]
    assert sorted(line["node"] for line in lines) == sorted(nodes)
    for line in lines:
        assert line["state"] == "succeeded"
        assert line["output"] == [f"on {line['node']}: [b]not bold[/b]", "second line"]
    one = cli("logs", deployment, "--key", admin, "--node", nodes[1])
    assert one.returncode == 0 and f"on {nodes[1]}: [b]not bold[/b]" in one.stdout and nodes[0] not in one.stdout
    stranger = cli("logs", deployment, "--key", admin, "--node", "b" * 26)
    assert stranger.returncode == 1 and f"has no node {'b' * 26}" in stranger.stderr

    status = json.loads(cli("status", deployment, "--key", admin, "--json").stdout)
    assert status["status"] == "succeeded" and sorted(task["result"] for task in status["tasks"]) == [7, 7]
    listed = json.loads(cli("deployments", "--key", admin, "--json", "--status", "succeeded").stdout)
    assert deployment in [view["id"] for view in listed] and all(view["status"] == "succeeded" for view in listed)
    assert deployment in cli("deployments", "--key", admin).stdout  # the whole id, to paste
    shown = json.loads(cli("nodes", "--json").stdout)
    assert sorted(node["node_id"] for node in shown) == sorted(nodes)
    jobs = json.loads(cli("jobs", "--node", nodes[0], "--key", admin, "--json").stdout)
    assert [job["status"] for job in jobs if job["id"] == deployment] == ["finished"]

    slow = tmp_path / "slow.rhai"
    slow.write_text('print("started"); sleep(60); 1')
    waited = cli("deploy", slow, "--key", admin, "--target", nodes[0], "--wait", "--wait-timeout", "2")
    assert waited.returncode == 124, waited.stdout + waited.stderr
    slow_id = waited.stdout.split()[1]
    assert f"deployment {slow_id} has not ended after 2 s; it goes on" in waited.stderr
    canceled = cli("cancel", slow_id, "--key", admin)
    assert canceled.returncode == 0 and "cancel sent" in canceled.stdout, canceled.stderr
    ended = cli("status", slow_id, "--key", admin, "--wait", "--wait-timeout", "60", "--json")
    assert ended.returncode == 1 and json.loads(ended.stdout)["status"] == "canceled"


# -- trust at every hop, through `zeronode up --nodes 2` and the CLI --------------------------------------


@pytest.fixture(scope="module")
def cli(cluster):
    env = {**os.environ, "ZERONODE_COORD_URL": cluster["coord_url"], "ZERONODE_LEDGER_URL": cluster["ledger_url"],
           "COLUMNS": "250"}

    def zeronode(*args) -> subprocess.CompletedProcess:
        return subprocess.run([ZERONODE, *map(str, args)], capture_output=True, text=True, timeout=120, env=env)

    return zeronode


@pytest.fixture(scope="module")
def tenants(cluster, cli, tmp_path_factory):
    """Two deployers of the farm, granted in the ledger only (with `zeronode users add`), and a stranger."""
    folder = tmp_path_factory.mktemp("tenants")
    found = {}
    for name in ("alice", "bob", "mallory"):
        path = folder / f"{name}.key"
        found[name] = {"key_path": path, "public": cli("keygen", "--out", path).stdout.strip()}
        found[name]["key"] = keys.load_private_key(path)
    for name in ("alice", "bob"):
        granted = cli("users", "add", "--public-key", found[name]["public"], "--name", name, "--role", "deployer",
                      "--farm", "local", "--key", cluster["admin_key"])
        assert granted.returncode == 0, granted.stderr
    wait_until(lambda: all(found["bob"]["public"] in node_rights(cluster, node) for node in cluster["nodes"]), 30,
               "the nodes to fetch the grants")
    return found


def test_the_examples_guests_answer_on_their_mycelium_addresses(cluster):
    """scripts/examples/vm_on_mycelium.rhai pulled the tiny guest by URL and digest and started it with a data
    volume, an SSH key and a mycelium address, on each node: each guest answers ping there."""
    output = "".join(cluster["output"])
    assert "images: the tiny guest as a bundle at http://127.0.0.1:" in output
    nodes = [node["node_id"] for node in cluster["nodes"]]
    final = deploy(cluster, nodes, script='let vm = vm_info("demo-web"); [vm.mycelium_ip, vm.volumes, vm.image]')
    assert final["status"] == "succeeded", final
    addresses = []
    for task in final["tasks"]:
        address, volumes, image = task["result"]
        assert volumes == ["demo-web-data"] and image == "tiny-guest"
        addresses.append(address)
    assert len(set(addresses)) == 2  # each node's own /64
    for address in addresses:
        wait_until(lambda: subprocess.run(["ping", "-c", "1", "-W", "2", address], capture_output=True).returncode == 0,
                   90, f"the guest at {address} to answer ping")


def node_rights(cluster, node) -> str:
    path = cluster["state"] / f"node{node['index']}" / "rights.json"
    return path.read_text() if path.exists() else ""


def test_the_examples_vm_is_a_real_guest_whose_console_its_owner_reads_with_the_cli(cluster, cli, tenants):
    """`zeronode up` deployed scripts/examples/deploy_vm.rhai on each node: on QEMU here (no cloud-hypervisor),
    a real guest. Its owner (the admin who deployed it) reads its console and events; another signer cannot."""
    node = cluster["nodes"][0]["node_id"]
    assert "VMs run on qemu" in "".join(cluster["output"])  # `up` says which hypervisor runs the nodes' VMs
    logs = wait_until(lambda: (found := cli("vm", "logs", node, "demo-vm", "--key", cluster["admin_key"], "--lines", "500"))
                      and "ZN-READY" in found.stdout and found, 90, "the demo VM's ZN-READY from the CLI")
    assert logs.returncode == 0 and "ZN-HOSTNAME" in logs.stdout and "\x1b" not in logs.stdout  # escapes shown, not sent
    events = cli("vm", "events", node, "demo-vm", "--key", cluster["admin_key"])
    assert events.returncode == 0 and "created" in events.stdout and "started" in events.stdout
    stranger = cli("vm", "logs", node, "demo-vm", "--key", tenants["bob"]["key_path"])
    assert stranger.returncode == 1 and stranger.stderr.count("\n") == 1 and "no VM 'demo-vm'" in stranger.stderr


def test_a_deployer_granted_in_the_ledger_deploys_without_authorized_keys(cluster, cli, tenants, tmp_path):
    node = cluster["nodes"][0]
    assert tenants["alice"]["public"] not in (cluster["state"] / "node1" / "authorized_keys").read_text()
    script = tmp_path / "mine.rhai"
    script.write_text('volume_create(#{ name: "alice-data" }); vm_create(#{ name: "alice-vm", image: "tiny", memory_mb: 128 }); '
                      'print(`secret ${env.TOKEN}`); vm_list().map(|vm| vm.name)')
    deployed = cli("deploy", script, "--key", tenants["alice"]["key_path"], "--target", node["node_id"], "--env",
                   "TOKEN=s3cr3t", "--wait")
    assert deployed.returncode == 0, deployed.stdout + deployed.stderr
    assert '["alice-vm"]' in deployed.stdout  # alice's script sees her VM, not the examples' demo-vm


def test_tenants_on_a_node_cannot_see_or_touch_each_others_vms_and_volumes(cluster, tenants):
    node = cluster["nodes"][0]["node_id"]
    looks = '#{ vms: vm_list().map(|vm| vm.name), volumes: volume_list().map(|v| v.name) }'
    bob = run(cluster, tenants["bob"]["key"], [node], looks)["tasks"][0]
    assert bob["state"] == "succeeded"
    assert "alice-vm" not in bob["result"]["vms"] and "alice-data" not in bob["result"]["volumes"]
    assert "tiny" in bob["result"]["volumes"]  # the operator's shared image is everyone's to see
    for attempt in ('vm_stop("alice-vm")', 'vm_delete("alice-vm")', 'volume_delete("alice-data")',
                    'volume_snapshot(#{ source: "alice-data", name: "bobs-copy" })', 'vm_info("alice-vm")'):
        task = run(cluster, tenants["bob"]["key"], [node], attempt)["tasks"][0]
        # The same words as for a VM or volume that does not exist: another tenant's do not show.
        assert task["state"] == "failed" and ("no VM named 'alice-vm'" in task["error"]["message"]
                                              or "no volume 'alice-data'" in task["error"]["message"]), (attempt, task)
    taken = run(cluster, tenants["bob"]["key"], [node], 'volume_create(#{ name: "alice-data" })')["tasks"][0]
    assert "taken on this node" in taken["error"]["message"]
    admin = run(cluster, cluster["admin"], [node], looks)["tasks"][0]
    assert {"alice-vm", "demo-vm"} <= set(admin["result"]["vms"]) and "alice-data" in admin["result"]["volumes"]
    alice = run(cluster, tenants["alice"]["key"], [node], 'vm_delete("alice-vm"); volume_delete("alice-data"); vm_list().len()')
    assert alice["tasks"][0]["result"] == 0


def test_reads_need_the_signers_key(cluster, cli, tenants, tmp_path):
    node = cluster["nodes"][0]
    final = run(cluster, tenants["alice"]["key"], [node["node_id"]], 'print(`token ${env.TOKEN}`); 1', env={"TOKEN": "s3cr3t"})
    deployment, job = final["id"], final["tasks"][0]["job_id"]
    for url in (f"{cluster['coord_url']}/v1/deployments/{deployment}", f"{node['supervisor_url']}/v1/jobs/{job}"):
        response = httpx.get(url, timeout=10)
        assert response.status_code == 401 and response.json()["reason"] == "bad_signature"
        assert "s3cr3t" not in response.text
    shown = cli("status", deployment, "--key", tenants["alice"]["key_path"])
    assert shown.returncode == 0 and "succeeded" in shown.stdout
    other = cli("status", deployment, "--key", tenants["bob"]["key_path"])
    assert other.returncode == 1 and "not_authorized" in other.stderr and "s3cr3t" not in other.stdout + other.stderr
    bobs_jobs = cli("jobs", "--node", node["node_id"], "--key", tenants["bob"]["key_path"])
    assert bobs_jobs.returncode == 0 and job not in bobs_jobs.stdout
    alices_jobs = cli("jobs", "--node", node["node_id"], "--key", tenants["alice"]["key_path"])
    assert alices_jobs.returncode == 0 and job in alices_jobs.stdout


def test_coord_refuses_an_unauthorised_signer_and_a_forged_destination(cluster, tenants):
    mallory = tenants["mallory"]["key"]
    # A "node" of mallory's own, pointing at the ledger's users endpoint: refused at registration.
    registration = {"farm": "local", "capacity": {"vcpus": 1, "memory": 1, "disk": 1}, "version": "0",
                    "supervisor_url": f"{cluster['ledger_url']}/v1/users"}
    with LedgerClient(cluster["ledger_url"], mallory) as ledger:
        with pytest.raises(Refused) as refused:
            ledger.register(NodeRegistration.model_validate(registration))
    assert refused.value.reason == "forbidden_destination"
    # Submitting to the real nodes without rights there: refused before any task exists.
    envelope = new_envelope("1", [node["node_id"] for node in cluster["nodes"]], mallory)
    with CoordClient(cluster["coord_url"], key=mallory) as coord:
        with pytest.raises(Refused) as refused:
            coord.submit(envelope)
        assert (refused.value.status, refused.value.reason) == (403, "not_authorized")
    with CoordClient(cluster["coord_url"], key=cluster["admin"]) as coord:
        with pytest.raises(Refused) as missing:
            coord.deployment(envelope.id)
    assert missing.value.status == 404


def test_a_revoked_deployer_is_refused_by_coord_and_by_the_nodes(cluster, cli, tenants):
    node = cluster["nodes"][1]
    bob = tenants["bob"]
    revoked = cli("users", "revoke", "--public-key", bob["public"], "--key", cluster["admin_key"])
    assert revoked.returncode == 0, revoked.stderr
    try:
        with CoordClient(cluster["coord_url"], key=bob["key"]) as coord:
            wait_until(lambda: refusal(lambda: coord.submit(new_envelope("1", [node["node_id"]], bob["key"]))) == "not_authorized",
                       30, "coord to refuse bob")
        # The bound: rights_refresh (5 s here) plus a request.
        wait_until(lambda: post_to_node(node, new_envelope("1", [node["node_id"]], bob["key"])) == "not_authorized",
                   30, "the node to refuse bob")
    finally:
        cli("users", "add", "--public-key", bob["public"], "--name", "bob", "--role", "deployer", "--farm", "local",
            "--key", cluster["admin_key"])
        wait_until(lambda: all(bob["public"] in node_rights(cluster, n) for n in cluster["nodes"]), 30, "bob back")


def test_a_two_of_three_policy_is_met_only_by_two_distinct_signers(cluster, cli, tenants, tmp_path):
    node = cluster["nodes"][1]
    alice, bob, third = tenants["alice"], tenants["bob"], tenants["mallory"]
    policy = ("--scope", "node", "--target", node["node_id"])
    added = cli("policies", "set", *policy, "--threshold", "2", "--signer", alice["public"], "--signer", bob["public"],
                "--signer", third["public"], "--key", cluster["admin_key"])
    assert added.returncode == 0, added.stderr
    listed = cli("policies", "list")
    assert listed.returncode == 0 and node["node_id"] in listed.stdout and "2 of 3" in listed.stdout
    try:
        script, signed, cosigned = tmp_path / "two.rhai", tmp_path / "one.json", tmp_path / "two.json"
        script.write_text("node_info().id")
        assert cli("sign", script, "--key", alice["key_path"], "--target", node["node_id"], "--out", signed).returncode == 0
        alone = cli("submit", signed, "--key", alice["key_path"])
        assert alone.returncode == 1 and "policy_not_met" in alone.stderr
        # The same envelope signed twice by one key is no second signer.
        twice = cli("cosign", signed, "--key", alice["key_path"])
        assert twice.returncode == 1 and "already signed" in twice.stderr
        wait_until(lambda: "policies\": [{" in node_rights(cluster, node), 30, "the node to fetch the policy")
        assert post_to_node(node, json.loads(signed.read_text())) == "policy_not_met"
        assert cli("cosign", signed, "--key", bob["key_path"], "--out", cosigned).returncode == 0
        both = cli("submit", cosigned, "--key", alice["key_path"], "--wait")
        assert both.returncode == 0, both.stdout + both.stderr
    finally:
        assert cli("policies", "remove", *policy, "--key", cluster["admin_key"]).returncode == 0
        wait_until(lambda: "policies\": []" in node_rights(cluster, node), 30, "the node to drop the policy")


def test_replayed_grants_and_cross_node_requests_are_refused(cluster, tenants):
    admin, bob = cluster["admin"], tenants["bob"]
    # A grant captured on the wire, replayed after the user was changed since: refused, nothing changes.
    user = {"public_key": bob["public"], "name": "bob", "roles": ["operator"], "farms": ["local"], "nodes": [],
            "sequence": time.time_ns() // 1_000_000}
    captured = httpx.Client(base_url=cluster["ledger_url"]).build_request("POST", "/v1/users", json=user)
    captured = next(SignedRequestAuth(admin, "ledger").auth_flow(captured))
    with LedgerClient(cluster["ledger_url"], admin) as ledger:
        ledger.create_user(NewUser(public_key=bob["public"], name="bob", roles=["deployer"], farms=["local"],
                                   sequence=user["sequence"] + 1))
        replayed = httpx.Client().send(captured)
        assert (replayed.status_code, replayed.json()["reason"]) == (409, "stale_sequence")
        assert ledger.user(bob["public"]).roles == ["deployer"]
    # A cancel signed for node 1, sent to node 2: refused.
    first, second = cluster["nodes"]
    envelope = new_envelope("sleep(5); 1", [second["node_id"]], admin)
    assert httpx.post(f"{second['supervisor_url']}/v1/jobs", content=envelope.to_json()).status_code == 202
    response = httpx.post(f"{second['supervisor_url']}/v1/jobs/{envelope.id}/cancel", auth=SignedRequestAuth(admin, first["node_id"]))
    assert (response.status_code, response.json()["reason"]) == (401, "wrong_audience")


def run(cluster, key, targets: list[str], script: str, env: dict | None = None) -> dict:
    envelope = new_envelope(script, targets, key, env=env)
    with CoordClient(cluster["coord_url"], key=key) as coord:
        coord.submit(envelope)
        *_, final = coord.follow(envelope.id, timeout=60)
    return final


def refusal(call) -> str | None:
    try:
        call()
    except Refused as exc:
        return exc.reason
    return None


def post_to_node(node, envelope) -> str | None:
    body = envelope.to_json() if hasattr(envelope, "to_json") else json.dumps(envelope)
    response = httpx.post(f"{node['supervisor_url']}/v1/jobs", content=body, timeout=10)
    return response.json()["reason"] if response.status_code >= 400 else None

def test_ctrl_c_stops_every_process(cluster):
    up = cluster["up"]
    up.send_signal(signal.SIGINT)
    assert up.wait(60) == 0
    said = up.stdout.read()
    assert "did not stop" not in said, said  # every service heeds SIGTERM: none had to be killed
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


def test_up_once_runs_the_examples_then_stops_everything(tmp_path, short_dir):
    """`--once` exits 0 when every example succeeded, and leaves no process behind. (Every example, VMs
    included, runs with storage in the module's cluster; Ctrl-C's cleanup with VMs running is tested there too.)"""
    examples = tmp_path / "examples"
    examples.mkdir()
    (examples / "hello.rhai").write_text('print("hello"); node_info().id')
    result = subprocess.run(
        [ZERONODE, "up", "--once", "--state-dir", str(short_dir), "--no-loop-storage", "--examples", str(examples)],
        capture_output=True, text=True, timeout=300, env={**os.environ, "COLUMNS": "200"},
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert "hello.rhai" in result.stdout and result.stdout.count("succeeded (1 succeeded)") == 1
    left = subprocess.run(["pgrep", "-f", str(short_dir)], capture_output=True, text=True).stdout
    assert left == "", f"processes left behind: {left}"


def test_up_started_again_on_its_state_dir_finds_its_keys_nodes_and_volumes(short_dir, tmp_path):
    """A state dir is a cluster: `up` started on it again keeps its admin key and node ids, mounts its btrfs
    image again as it was (a volume made by the first run is there for the second), and says where to find it."""
    examples = tmp_path / "examples"
    examples.mkdir()
    (examples / "keep.rhai").write_text(
        '// needs: storage\n'
        'let had = "kept" in volume_list().map(|v| v.name);\n'
        'if !had { volume_create(#{ name: "kept", quota_mb: 16 }); }\n'
        '#{ node: node_info().id, had: had }\n'
    )
    argv = [ZERONODE, "up", "--once", "--state-dir", str(short_dir), "--hypervisor", "simulated", "--examples", str(examples)]
    runs = []
    for _ in range(2):
        result = subprocess.run(argv, capture_output=True, text=True, timeout=300, env={**os.environ, "COLUMNS": "200"})
        assert result.returncode == 0, result.stdout + result.stderr
        described = json.loads((short_dir / "cluster.json").read_text())
        runs.append((result.stdout, [node["node_id"] for node in described["nodes"]],
                     (short_dir / "admin.key").read_bytes(), described))
    (first, first_nodes, first_key, _), (second, second_nodes, second_key, described) = runs
    assert "storage: a btrfs image loop-mounted" in first and "keep.rhai" in first
    assert f'"had":false,"node":"{first_nodes[0]}"' in first.replace(" ", "")
    assert f'"had":true,"node":"{first_nodes[0]}"' in second.replace(" ", "")  # the same node, its volume kept
    assert second_nodes == first_nodes and second_key == first_key
    if (described["ledger_url"], described["coord_url"]) != ("http://127.0.0.1:8400", "http://127.0.0.1:8200"):
        assert f"export ZERONODE_LEDGER_URL={described['ledger_url']}" in second  # taken: the lines to export
    else:
        assert "the client commands find it at their defaults" in second
    assert subprocess.run(["findmnt", str(short_dir / "storage")], capture_output=True).returncode == 1  # unmounted
    assert (short_dir / "storage.img").is_file()  # kept for the next start
