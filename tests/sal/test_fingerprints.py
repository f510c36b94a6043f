"""Each driver's fingerprint: which driver runs, whether a simulator stands in, what it can do.
Cheap, without side effects, never raising."""

import httpx

from sal.fingerprint import SIMULATOR_HEADER, Fingerprint
from sal.hypervisor.drivers.cloud_hypervisor import CloudHypervisor
from sal.network.drivers.mycelium import MyceliumClient
from sal.network.drivers.mycelium.simulator import SimulatedNode, create_simulator
from sal.storage.drivers.btrfs import BtrfsStorage

MYCELIUM_FEATURES = ("peers", "routes", "messages", "topics", "replies", "pubkey_lookup")


def test_a_fingerprint_as_json():
    assert Fingerprint("btrfs", version="v6.2", features=("snapshots",)).as_dict() == {
        "driver": "btrfs", "simulated": False, "version": "v6.2", "features": ["snapshots"],
    }


def test_btrfs_is_real_and_says_what_it_can_do(pool_dir, tmp_path):
    fingerprint = BtrfsStorage(pool_dir).fingerprint()
    assert (fingerprint.driver, fingerprint.simulated) == ("btrfs", False)
    assert fingerprint.features == ("snapshots", "quotas", "send_receive")
    assert fingerprint.version.startswith("v")  # btrfs-progs'
    assert BtrfsStorage(tmp_path).fingerprint().features == ()  # not on a btrfs: nothing would work


def test_mycelium_tells_the_simulator_from_the_daemon(serve_app):
    node = SimulatedNode()
    simulated = MyceliumClient(serve_app(create_simulator(node)))
    assert simulated.fingerprint() == Fingerprint("mycelium", simulated=True, features=MYCELIUM_FEATURES)
    assert simulated.address() == node.ip

    # The daemon's own answer has no simulator header: that is all that tells them apart.
    daemon = httpx.MockTransport(lambda request: httpx.Response(200, json=node.info()))
    assert MyceliumClient(transport=daemon).fingerprint() == Fingerprint("mycelium", features=MYCELIUM_FEATURES)


def test_every_answer_of_the_mycelium_simulator_is_marked(serve_app):
    url = serve_app(create_simulator())
    for path in ("/api/v1/admin", "/api/v1/admin/peers", "/api/v1/pubkey/400::1", "/nowhere"):
        assert httpx.get(url + path).headers[SIMULATOR_HEADER] == "mycelium", path


def test_an_unreachable_daemon_gives_a_fingerprint_not_an_error():
    unreachable = MyceliumClient("http://127.0.0.1:9")
    assert unreachable.fingerprint() == Fingerprint("mycelium")  # not simulated, no features, no version
    assert unreachable.address() is None
    assert MyceliumClient("not a url").fingerprint() == Fingerprint("mycelium")


def test_cloud_hypervisors_simulator_says_it_is_one(vmm):
    fingerprint = CloudHypervisor.simulator().fingerprint()
    assert (fingerprint.driver, fingerprint.simulated) == ("cloud-hypervisor", True)
    # What the simulated release's binary says it is (`cloud-hypervisor --version`: "v53.0"), as its vmm.ping does.
    assert fingerprint.version == "v53.0" == vmm.ping()["build_version"]
    assert fingerprint.features == ("kernel_boot", "firmware_boot", "disks", "taps", "pause", "reboot", "hotplug",
                                    "snapshot")


def test_the_real_cloud_hypervisor_reports_its_binarys_version(short_dir):
    # Stand-ins for the binary's `--version` only (cloud-hypervisor is not installed here): what it prints, parsed.
    binary = short_dir / "cloud-hypervisor"
    binary.write_text("#!/bin/sh\necho 'cloud-hypervisor v40.0.0'\n")
    binary.chmod(0o755)
    fingerprint = CloudHypervisor.installed(str(binary)).fingerprint()
    assert (fingerprint.driver, fingerprint.simulated, fingerprint.version) == ("cloud-hypervisor", False, "v40.0.0")
    silent = short_dir / "silent"
    silent.write_text("#!/bin/sh\nexit 1\n")
    silent.chmod(0o755)
    assert CloudHypervisor(str(silent)).fingerprint().version is None
    assert CloudHypervisor(str(short_dir / "gone")).fingerprint().version is None
