"""The example deployment scripts in scripts/examples run as written, on real SALs."""

import time
from pathlib import Path

import pytest

import rhai
from sal import registry
from sal.hypervisor import VmManager
from sal.hypervisor.drivers.cloud_hypervisor import CloudHypervisor
from sal.network.drivers.mycelium import MyceliumClient
from sal.storage.drivers.btrfs import BtrfsStorage

EXAMPLES = Path(__file__).resolve().parents[2] / "scripts" / "examples"


from .conftest import make_image


@pytest.fixture
def run_example(pool_dir, mycelium, short_dir):
    network = MyceliumClient(mycelium().url)
    network.add_peer(mycelium().endpoint)
    storage = BtrfsStorage(pool_dir)
    vms = VmManager(short_dir / "vms", storage, CloudHypervisor.simulator())
    engine = rhai.Engine()
    registry.register_all(engine, registry.NodeSals(storage=storage, network=network, vms=vms))
    printed = []

    def run(name, env=None):
        job = registry.JobContext(job_id="example", signer="s", node_id="node-1", deadline=time.monotonic() + 30)
        with registry.running(job):
            ast = engine.compile((EXAMPLES / name).read_text(), name=name)
            return engine.eval(ast, {"env": env or {}}, on_print=printed.append)

    run.printed = printed
    run.storage = storage
    yield run
    vms.stop_all(timeout=1)


def volumes_in(pool_dir):
    return sorted(p.name for p in pool_dir.iterdir() if not p.name.startswith("."))  # not the owners' records


def test_snapshot_and_clone(run_example, pool_dir):
    result = run_example("snapshot_and_clone.rhai", {"APP": "shop"})
    assert result == {"base": "shop-base", "golden": "shop-golden", "clone": "shop-clone-1", "clone_of_golden": True}
    assert run_example.printed == ["shop-golden is read-only: true; shop-clone-1 is writable"]
    assert volumes_in(pool_dir) == ["shop-base", "shop-clone-1", "shop-golden"]


def test_list_everything(run_example):
    run_example("snapshot_and_clone.rhai", {"APP": "blog"})
    result = run_example("list_everything.rhai")
    assert result["node"] == "node-1"
    assert [v["name"] for v in result["volumes"]] == ["blog-base", "blog-clone-1", "blog-golden"]
    assert result["vms"] == [] and result["hypervisor"] == "simulated"
    assert len(result["peers"]) == 1 and result["peers"][0].endswith("(alive)")
    assert result["overlay_ip"]


def test_hello(run_example):
    assert run_example("hello.rhai")["answer"] == 42


def test_deploy_vm_with_a_data_volume(run_example, pool_dir):
    make_image(run_example.storage, "debian")
    first = run_example("deploy_vm.rhai", {"NAME": "shop", "IMAGE": "debian"})
    assert first == {
        "name": "shop", "state": "Running", "hypervisor": "simulated", "console": "", "root": "shop-root",
        "volumes": ["shop-data"],
    }  # no console: no guest runs on the simulator, and the script does not wait for one
    assert run_example.printed[-1].startswith("shop is Running on simulated (pid ")
    assert run_example.storage.usage("shop-data").limit == 256 * 1024 * 1024
    assert run_example("deploy_vm.rhai", {"NAME": "shop", "IMAGE": "debian"}) == first  # a second run changes nothing
    assert volumes_in(pool_dir) == ["debian", "shop-data", "shop-root"]
    listed = run_example("list_everything.rhai")
    assert listed["vms"] == ["shop (Running)"]
