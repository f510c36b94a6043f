"""sal.registry: the one table of drivers, the node's SALs built from its settings, and its fingerprint."""

import subprocess
import sys

import pytest
from pydantic import ValidationError

from sal import capacity, registry
from sal.errors import SalError
from sal.hypervisor.drivers.cloud_hypervisor import CloudHypervisor
from sal.hypervisor.drivers.qemu import Qemu
from sal.images import ImagePolicy
from sal.network.drivers.mycelium.simulator import create_simulator
from sal.storage.drivers.btrfs import BtrfsStorage
from zeronode.api.ledger import Capabilities
from zeronode.node.settings import NodeSettings


def settings(base, **fields):
    return NodeSettings(state_dir=base / "state", **fields)


def hypervisor(tmp_path, choice, binary, qemu="no-such-qemu"):
    return registry.build("hypervisor", settings(tmp_path, storage_root=tmp_path, hypervisor=choice,
                                                 hypervisor_binary=binary, qemu_binary=qemu))


def test_simulated_or_real_is_chosen_by_setting_and_path(tmp_path):
    assert hypervisor(tmp_path, "simulated", "sh").binary is None
    assert hypervisor(tmp_path, "auto", "no-such-hypervisor").binary is None
    assert hypervisor(tmp_path, "auto", "sh").binary.endswith("/sh")
    with pytest.raises(SalError, match="not installed"):
        hypervisor(tmp_path, "cloud-hypervisor", "no-such-hypervisor")
    with pytest.raises(SalError, match="'no-such-qemu' is not installed"):
        hypervisor(tmp_path, "qemu", "sh")


def test_auto_picks_cloud_hypervisor_then_qemu_then_the_simulator(tmp_path):
    assert isinstance(hypervisor(tmp_path, "auto", "sh", qemu="sh"), CloudHypervisor)
    driver = hypervisor(tmp_path, "auto", "no-such-hypervisor", qemu="sh")
    assert isinstance(driver, Qemu) and driver.binary.endswith("/sh") and not driver.simulated
    driver = hypervisor(tmp_path, "auto", "no-such-hypervisor")
    assert isinstance(driver, CloudHypervisor) and driver.simulated and driver.name == "cloud-hypervisor"
    assert not hypervisor(tmp_path, "auto", "sh").simulated


def test_qemus_settings_reach_its_driver(tmp_path):
    node = settings(tmp_path, storage_root=tmp_path, hypervisor="qemu", qemu_binary="sh", qemu_acceleration="tcg",
                    kvm_probe_seconds=3)
    driver = registry.build("hypervisor", node)
    assert driver.acceleration.mode == "tcg" and driver.kvm_probe_seconds == 3
    assert driver.acceleration.memo.parent == node.vm_state_dir  # the KVM memo lives beside the VMs
    with pytest.raises(ValidationError, match="qemu_acceleration"):
        settings(tmp_path, qemu_acceleration="hvf")


def test_an_unknown_driver_is_refused_with_the_known_ones(tmp_path):
    # Refused even on a node without storage, where no hypervisor would be built: a typo shows at once.
    with pytest.raises(SalError, match="hypervisor = 'xen' is not a hypervisor driver; known: auto, cloud-hypervisor, qemu, simulated"):
        registry.NodeSals.from_settings(settings(tmp_path, hypervisor="xen"))
    with pytest.raises(SalError, match="storage_driver = 'zfs' is not a storage driver; known: btrfs"):
        registry.NodeSals.from_settings(settings(tmp_path, storage_driver="zfs"))
    with pytest.raises(SalError, match="network_driver = 'yggdrasil' is not a network driver; known: mycelium"):
        registry.NodeSals.from_settings(settings(tmp_path, network_driver="yggdrasil"))
    with pytest.raises(ValidationError, match="hypervisor"):  # not even a driver's name
        settings(tmp_path, hypervisor="Cloud Hypervisor")


def test_the_settings_name_each_sals_driver(pool_dir, short_dir):
    image_key = "0RbXPySqhJiLsZ_4Mv-wRqC6H0bDtQ29ercHV1WQ524"
    sals = registry.NodeSals.from_settings(
        settings(short_dir, storage_root=pool_dir, hypervisor="simulated", mycelium_url="http://127.0.0.1:9",
                 max_image_bytes=1024, trusted_image_keys=[image_key], require_signed_images=True)
    )
    try:
        assert isinstance(sals.storage, BtrfsStorage) and sals.storage.root == pool_dir.resolve()
        assert sals.vms.kind == "simulated" and sals.vms.driver.name == "cloud-hypervisor"
        assert sals.vms.state_dir == short_dir / "state" / "vms"
        assert sals.images.storage is sals.storage
        assert sals.images.policy == ImagePolicy(max_bytes=1024, trusted_keys=(image_key,), require_signed=True)
        assert sals.network.address() is None  # nothing answers there
    finally:
        sals.network.close()
    assert registry.NodeSals.from_settings(settings(short_dir)) == registry.NodeSals(ratios=capacity.Ratios())  # configured: nothing
    with pytest.raises(ValidationError, match="trusted_image_keys: public key must be 32 bytes"):
        settings(short_dir, trusted_image_keys=["not-a-key"])


def test_the_nodes_fingerprint(pool_dir, tmp_path, serve_app):
    node = settings(tmp_path, storage_root=pool_dir, hypervisor="simulated", mycelium_url=serve_app(create_simulator()))
    capabilities = registry.fingerprint(node)
    assert capabilities == {
        "hypervisor": CloudHypervisor.simulator().fingerprint().as_dict(),
        "storage": {"driver": "btrfs", "simulated": False, "version": capabilities["storage"]["version"],
                    "features": ["snapshots", "quotas", "send_receive"]},
        "network": {"driver": "mycelium", "simulated": True, "version": None,
                    "features": ["peers", "routes", "messages", "topics", "replies", "pubkey_lookup"]},
    }
    assert capabilities["storage"]["version"].startswith("v")  # btrfs-progs'
    assert capabilities["hypervisor"]["simulated"] and "kernel_boot" in capabilities["hypervisor"]["features"]
    assert Capabilities.model_validate(capabilities).hypervisor.simulated  # what the ledger takes
    assert not (tmp_path / "state").exists()  # no VM directory made: a fingerprint has no side effects


def test_a_fingerprint_reports_what_the_node_lacks_as_none(tmp_path):
    not_a_dir = tmp_path / "file"
    not_a_dir.write_text("")
    for storage_root in (None, tmp_path / "absent", not_a_dir):
        assert registry.fingerprint(settings(tmp_path, storage_root=storage_root, hypervisor="simulated")) == {
            "hypervisor": None, "storage": None, "network": None,  # no storage: no VM disks, no VMs
        }
    assert not (tmp_path / "absent").exists() and not (tmp_path / "state").exists()
    # cloud-hypervisor named but not installed, and an unknown driver: reported as missing, not raised.
    missing_binary = settings(tmp_path, storage_root=tmp_path, hypervisor="cloud-hypervisor", hypervisor_binary="no-such")
    assert registry.fingerprint(missing_binary)["hypervisor"] is None
    assert registry.fingerprint(settings(tmp_path, storage_root=tmp_path, hypervisor="xen"))["hypervisor"] is None
    missing_qemu = settings(tmp_path, storage_root=tmp_path, hypervisor="qemu", qemu_binary="no-such")
    assert registry.fingerprint(missing_qemu)["hypervisor"] is None


# btrfsutil is the optional [btrfs] extra: in a process where it cannot be imported, the node's
# identity manager still registers (storage reported as absent) and a runner says what to install.
WITHOUT_BTRFSUTIL = """
import sys, tempfile
class NoBtrfsutil:
    def find_spec(self, name, path=None, target=None):
        if name == "btrfsutil":
            raise ImportError("not installed")
sys.meta_path.insert(0, NoBtrfsutil())
from sal.errors import SalError
from sal.registry import NodeSals
from zeronode.identity_manager.host import registration
from zeronode.node.settings import NodeSettings
settings = NodeSettings(state_dir=tempfile.mkdtemp(), storage_root=tempfile.mkdtemp())
print(registration(settings).capabilities.storage)
try:
    NodeSals.from_settings(settings)
except SalError as exc:
    print(exc)
"""


def test_without_the_btrfs_extra_the_identity_manager_still_registers_and_runners_say_why():
    result = subprocess.run([sys.executable, "-c", WITHOUT_BTRFSUTIL], capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr
    assert result.stdout.splitlines() == [
        "None",
        "the btrfs storage driver needs btrfsutil: pip install 'zeronode[btrfs]' (not installed)",
    ]
