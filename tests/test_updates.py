"""Nodes that update themselves (docs/operators.md, "Updating a fleet"), end to end on `zeronode up --nodes 3`.

Four releases are built from this checkout with `zeronode release build`: 0.2.0 and 0.3.0 as they are,
0.4.0 with a supervisor whose /health always fails, 0.5.0 to be tampered with on its server. Each is
published with two of the cluster's three release keys, through the CLI. The tests run in order, on one
cluster: node 1 moves 0.1.0 (the checkout) -> 0.2.0 -> 0.3.0 with a VM running and jobs queued across the
switch; node 2 refuses a tampered artifact; a staged rollout of 0.4.0 with node 1 as its canary rolls
node 1 back by itself and stops before nodes 2 and 3.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest

from tests.conftest import new_pool
from tests.support.netns import network_namespace
from tests.support.processes import ZERONODE
from tests.support.up import running_up
from tests.support.waiting import wait_until
from zeronode.api.errors import Refused
from zeronode.client.coord import CoordClient
from zeronode.client.ledger import LedgerClient
from zeronode.protocol.envelope import new_envelope
from zeronode.release.build import IGNORED

ROOT = Path(__file__).resolve().parents[1]
BROKEN_HEALTH = ('status_code=200 if status == "ok" else 503', "status_code=503")
UPDATE_TIMEOUT = 180  # download, install (pip, offline), switch, checks: about 20 s here, slower beside other tests


def build(version: str, output: Path, source: Path = ROOT) -> Path:
    env = {**os.environ, "SOURCE_DATE_EPOCH": "1700000000"}
    done = subprocess.run([ZERONODE, "release", "build", "--version", version, "--source", str(source), "--output", str(output)],
                          capture_output=True, text=True, timeout=600, env=env)
    assert done.returncode == 0, done.stderr
    return output / f"zeronode-{version}.tar"


@pytest.fixture(scope="module")
def artifacts(tmp_path_factory) -> dict[str, Path]:
    """Built before the cluster's network namespace: the build fetches the pinned wheels (pip's cache or PyPI)."""
    output = tmp_path_factory.mktemp("releases")
    broken = tmp_path_factory.mktemp("broken") / "src"
    shutil.copytree(ROOT, broken, ignore=IGNORED, symlinks=True)
    health = broken / "supervisor" / "routes" / "operations.py"
    text = health.read_text()
    assert BROKEN_HEALTH[0] in text
    health.write_text(text.replace(*BROKEN_HEALTH))
    return {"0.2.0": build("0.2.0", output), "0.3.0": build("0.3.0", output), "0.4.0": build("0.4.0", output, broken),
            "0.5.0": build("0.5.0", output)}


@pytest.fixture(scope="module")
def cluster(tmp_path_factory, btrfs_mount, artifacts):
    examples = tmp_path_factory.mktemp("examples")
    (examples / "hello.rhai").write_text("// needs: nothing\n40 + 2\n")
    with new_pool(btrfs_mount) as storage, network_namespace():
        with running_up(tmp_path_factory.mktemp("up"), "--nodes", "3", "--storage-root", str(storage), "--hypervisor",
                        "simulated", "--examples", str(examples)) as info:
            info["keys"] = Path(info["release_keys"])
            yield info


def node(cluster, index: int) -> dict:
    return cluster["nodes"][index - 1]


def ledger_node(cluster, index: int):
    with LedgerClient(cluster["ledger_url"]) as ledger:
        return ledger.node(node(cluster, index)["node_id"])


def cli_ok(cluster, *argv) -> str:
    done = cluster["cli"](*argv)
    assert done.returncode == 0, f"zeronode {' '.join(map(str, argv))}: {done.stderr}"
    return done.stdout


def publish(cluster, artifact: Path, *extra) -> dict:
    keys = cluster["keys"]
    return json.loads(cli_ok(cluster, "release", "publish", artifact, "--key", cluster["admin_key"],
                             "--release-key", keys / "release1.key", "--release-key", keys / "release3.key", *extra))


def follow(cluster, index: int, *what) -> None:
    cli_ok(cluster, "release", "follow", "--key", cluster["admin_key"], "--node", node(cluster, index)["node_id"], *what)


def deploy(cluster, index: int, script: str, timeout: float = 120) -> dict:
    envelope = new_envelope(script, [node(cluster, index)["node_id"]], cluster["admin"], timeout=60)
    with CoordClient(cluster["coord_url"], key=cluster["admin"]) as coord:
        coord.submit(envelope)
        *_, final = coord.follow(envelope.id, timeout=timeout)
    return final


def supervisor_version(cluster, index: int) -> str | None:
    try:
        return httpx.get(f"{node(cluster, index)['supervisor_url']}/health", timeout=2).json().get("version")
    except (httpx.HTTPError, ValueError):
        return None


def node_dir(cluster, index: int) -> Path:
    return cluster["state"] / f"node{index}"


def wait_for_update(cluster, index: int, version: str, results=("succeeded", "rolled_back", "refused")):
    """The node's report of its last update of `version`, once it has one with one of `results`."""
    def reported():
        record = ledger_node(cluster, index)
        update = record.update
        return record if update is not None and update.version == version and update.result in results else None

    return wait_until(reported, UPDATE_TIMEOUT, f"node {index} to report its update to {version}", interval=0.5)


def test_releases_are_published_with_two_of_three_keys_and_a_forged_upload_is_refused(cluster, artifacts):
    keys = cluster["keys"]
    one_key = cluster["cli"]("release", "publish", artifacts["0.2.0"], "--key", cluster["admin_key"],
                             "--release-key", keys / "release1.key")
    assert one_key.returncode == 1 and "signed by 1 of the trusted release keys; 2 are required" in one_key.stderr
    for version in ("0.2.0", "0.3.0", "0.4.0"):
        saved = publish(cluster, artifacts[version])
        assert saved["version"] == version and saved["hosted"] and len(saved["signers"]) == 2
    # The upload is not signed: the published digest vouches for the bytes, and other bytes are dropped.
    forged = artifacts["0.2.0"].read_bytes()[:-1] + b"x"
    answer = httpx.put(f"{cluster['ledger_url']}/v1/releases/0.2.0/artifact", content=forged)
    assert answer.status_code == 422 and answer.json()["reason"] == "digest_mismatch"
    listing = cli_ok(cluster, "release", "list")
    assert "0.4.0" in listing and "0.3.0" in listing and "the ledger" in listing


def test_a_node_moves_to_the_first_release_then_to_the_second_with_a_vm_and_queued_jobs_surviving(cluster):
    follow(cluster, 1, "--version", "0.2.0")
    record = wait_for_update(cluster, 1, "0.2.0")
    assert record.update.result == "succeeded", record.update
    assert record.version == "0.2.0" and supervisor_version(cluster, 1) == "0.2.0"
    assert os.readlink(node_dir(cluster, 1) / "current").endswith("versions/0.2.0")
    others = [ledger_node(cluster, index) for index in (2, 3)]
    assert [other.version for other in others] == ["0.1.0", "0.1.0"]  # they follow nothing with a release yet

    vm = deploy(cluster, 1, 'volume_create(#{ name: "upd-data", quota_mb: 64 }); '
                            'vm_create(#{ name: "upd-vm", image: "tiny", vcpus: 1, memory_mb: 128, disk_gb: 1 }); '
                            'vm_start("upd-vm").pid')
    assert vm["status"] == "succeeded", vm
    vmm = vm["tasks"][0]["result"]

    follow(cluster, 1, "--version", "0.3.0")
    installed = node_dir(cluster, 1) / "versions" / "0.3.0" / ".installed"
    wait_until(installed.exists, UPDATE_TIMEOUT, "0.3.0 installed on node 1", interval=0.05)
    # Queued right before the switch: the runners are restarted under them, and they run on the new version.
    envelopes = [new_envelope(f"sleep(1.0); {n}", [node(cluster, 1)["node_id"]], cluster["admin"]) for n in range(6)]
    with CoordClient(cluster["coord_url"], key=cluster["admin"]) as coord:
        for envelope in envelopes:
            coord.submit(envelope)
        record = wait_for_update(cluster, 1, "0.3.0")
        assert record.update.result == "succeeded", record.update
        finals = [list(coord.follow(envelope.id, timeout=120))[-1] for envelope in envelopes]
    assert [final["status"] for final in finals] == ["succeeded"] * 6
    assert sorted(final["tasks"][0]["result"] for final in finals) == list(range(6))
    assert supervisor_version(cluster, 1) == "0.3.0"
    info = deploy(cluster, 1, 'let vm = vm_info("upd-vm"); [vm.state, vm.pid]')
    state, pid = info["tasks"][0]["result"]
    assert state.lower() == "running" and pid == vmm  # the same VMM, untouched by the update
    nodes_table = cli_ok(cluster, "nodes")
    assert "0.3.0 succeeded" in nodes_table and nodes_table.count("0.1.0") == 2


def test_a_tampered_artifact_is_refused_before_anything_is_installed(cluster, artifacts, tmp_path):
    served = tmp_path / "served"
    served.mkdir()
    shutil.copy(artifacts["0.5.0"], served / "zeronode-0.5.0.tar")
    server = subprocess.Popen([sys.executable, "-m", "http.server", "--bind", "127.0.0.1", "--directory", str(served), "0"],
                              stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        port = int(server.stdout.readline().split("port ")[1].split()[0])
        url = f"http://127.0.0.1:{port}/zeronode-0.5.0.tar"
        saved = publish(cluster, artifacts["0.5.0"], "--url", url)
        assert saved["url"] == url and not saved["hosted"]
        data = bytearray((served / "zeronode-0.5.0.tar").read_bytes())
        data[len(data) // 2] ^= 0xFF  # one byte, same size: only the digest tells
        (served / "zeronode-0.5.0.tar").write_bytes(bytes(data))
        follow(cluster, 2, "--version", "0.5.0")
        record = wait_for_update(cluster, 2, "0.5.0")
    finally:
        server.terminate()
        server.wait()
    assert record.update.result == "refused" and "sha256" in record.update.reason and "tampered" in record.update.reason
    assert record.version == "0.1.0" and supervisor_version(cluster, 2) == "0.1.0"
    assert not (node_dir(cluster, 2) / "versions" / "0.5.0").exists()


def test_a_rollout_stops_after_its_canary_fails_and_the_canary_rolls_back_by_itself(cluster):
    follow(cluster, 1)  # back to the default: the channel stable
    cli_ok(cluster, "release", "promote", "0.4.0", "--key", cluster["admin_key"], "--canary-node", node(cluster, 1)["node_id"],
           "--window", "5")
    started = time.monotonic()
    record = wait_for_update(cluster, 1, "0.4.0")
    assert record.update.result == "rolled_back", record.update
    assert "supervisor: /health answered 503" in record.update.reason
    assert time.monotonic() - started < UPDATE_TIMEOUT
    assert record.version == "0.3.0" and supervisor_version(cluster, 1) == "0.3.0"
    assert os.readlink(node_dir(cluster, 1) / "current").endswith("versions/0.3.0")
    assert deploy(cluster, 1, "40 + 2")["tasks"][0]["result"] == 42  # and keeps serving

    status = json.loads(cli_ok(cluster, "release", "status", "stable", "--json"))[0]
    assert status["stage"] == "canary" and status["paused"] and node(cluster, 1)["node_id"] in status["halted"]
    assert status["progress"]["rolled_back"] == 1 and status["progress"]["target"] == 0
    shown = cli_ok(cluster, "release", "status")
    assert "rolled back: 1" in shown and "halted: canary node" in shown and "answered 503" in shown
    # Nodes 2 and 3 were never told to take it, and the node does not try 0.4.0 again.
    time.sleep(3)
    assert [ledger_node(cluster, index).version for index in (2, 3)] == ["0.1.0", "0.1.0"]
    assert not (node_dir(cluster, 3) / "versions").exists()
    failed = json.loads((node_dir(cluster, 1) / "updates" / "failed.json").read_text())
    assert "0.4.0" in failed


def test_an_older_release_is_not_installed_unless_rolled_back_to(cluster):
    with LedgerClient(cluster["ledger_url"]) as ledger:
        with pytest.raises(Refused) as refused:
            ledger.channel("beta")
    assert refused.value.reason == "unknown_channel"
    follow(cluster, 1, "--channel", "beta")
    cli_ok(cluster, "release", "promote", "0.2.0", "--channel", "beta", "--key", cluster["admin_key"])
    record = wait_for_update(cluster, 1, "0.2.0", results=("refused",))
    assert "older than the running 0.3.0" in record.update.reason
    assert supervisor_version(cluster, 1) == "0.3.0"
    # An operator's rollback is the one way to an older version: beta goes 0.2.0 -> 0.3.0 -> back to 0.2.0.
    cli_ok(cluster, "release", "promote", "0.3.0", "--channel", "beta", "--key", cluster["admin_key"])
    paused = json.loads(cli_ok(cluster, "release", "pause", "beta", "--key", cluster["admin_key"]))
    assert paused["paused"] and paused["version"] == "0.3.0" and paused["previous"] == "0.2.0"
    no_previous = cluster["cli"]("release", "rollback", "stable", "--key", cluster["admin_key"])
    assert no_previous.returncode == 1 and "nothing_to_roll_back" in no_previous.stderr
    assert len(no_previous.stderr.strip().splitlines()) == 1  # one line, no traceback
    rolled = json.loads(cli_ok(cluster, "release", "rollback", "beta", "--key", cluster["admin_key"]))
    assert rolled["stage"] == "rolled_back"
    record = wait_for_update(cluster, 1, "0.2.0", results=("succeeded", "rolled_back"))
    assert record.update.result == "succeeded" and record.version == "0.2.0" and supervisor_version(cluster, 1) == "0.2.0"
