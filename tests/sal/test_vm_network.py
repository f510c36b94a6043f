"""The VM network (sal.vmnet): each VM on the node's mycelium /64 through a bridge and taps zeronode makes.

The tests that make interfaces run in a fresh network namespace each
(tests/support/netns.py), with the mycelium simulator started inside it: the
node's subnet comes from it as from the real daemon. Real guests (the tiny guest
under QEMU/TCG) configure themselves from their cloud-init seed and answer ping.
"""

from __future__ import annotations

import contextlib
import ipaddress
import subprocess
from collections.abc import Iterator

import pytest

from sal.hypervisor import VmManager
from sal.hypervisor.cloud_init import CloudInit
from sal.hypervisor.drivers.cloud_hypervisor import CloudHypervisor
from sal.hypervisor.drivers.qemu import Qemu
from sal.network.drivers.mycelium import MyceliumClient
from sal.storage.drivers.btrfs import BtrfsStorage
from sal.tenancy import OPERATOR
from sal.vmnet import VmNetwork, VmNetworkError
from sal.vmnet.addresses import mycelium_ip, private_ip, tap_prefix
from tests.sal.conftest import ALICE, BOB, make_image
from tests.support.netns import interfaces, network_namespace, nft_tables
from tests.support.waiting import wait_until
from zeronode.dev import guest

SUBNET = "5a8:1bc2:33:4d5e::/64"
BOOT_TIMEOUT = 90


def network(subnet: str = SUBNET, private: str | None = "10.208.0.0/24", bridge: str = "znbr-test") -> VmNetwork:
    return VmNetwork(bridge=bridge, node_subnet=lambda: subnet, private_subnet=private)


def ping(address: str) -> bool:
    return subprocess.run(["ping", "-c", "1", "-W", "2", address], capture_output=True).returncode == 0


# -- what a VM gets, without touching the host ----------------------------------------------------------------


def test_a_vms_addresses_derive_from_its_name_in_the_nodes_subnet():
    web1 = network().plan("web1", private_ipv4=True, others=[])
    assert web1 == network().plan("web1", private_ipv4=True, others=[])  # the same after any restart
    address = ipaddress.IPv6Address(web1.mycelium_ip)
    assert address in ipaddress.IPv6Network(SUBNET) and web1.mycelium_ip.split(":")[4] == "ff0f"
    assert web1.gateway6 == "5a8:1bc2:33:4d5e:ff0f::1" and web1.gateway4 == "10.208.0.1"
    assert web1.private_ip == "10.208.0.2" and web1.tap.startswith("znt") and len(web1.tap) == 15
    web2 = network().plan("web2", private_ipv4=True, others=[web1])
    assert web2.mycelium_ip != web1.mycelium_ip and web2.tap != web1.tap and web2.mac != web1.mac
    assert web2.private_ip == "10.208.0.3"  # the lowest free one
    # Another node's bridge (a second node on one host) gives the same VM name another tap, under a prefix of
    # its own: each bridge's nft rules match only its own taps.
    other = network(bridge="znbr-other").plan("web1", private_ipv4=False, others=[]).tap
    assert other.startswith(tap_prefix("znbr-other")) and web1.tap.startswith(tap_prefix("znbr-test"))
    assert tap_prefix("znbr-other") != tap_prefix("znbr-test")
    assert private_ip("10.208.0.0/24", {"10.208.0.2"}) == "10.208.0.3"


def test_the_guests_network_config_says_its_addresses_and_routes():
    web1 = network().plan("web1", private_ipv4=True, others=[])
    config = web1.cloud_init_network()
    nic = config["ethernets"]["eth0"]
    assert config["version"] == 2 and nic["match"] == {"macaddress": web1.mac}
    assert nic["addresses"] == [f"{web1.mycelium_ip}/64", f"{web1.private_ip}/24"]
    assert nic["routes"] == [{"to": "400::/7", "via": web1.gateway6}, {"to": "0.0.0.0/0", "via": "10.208.0.1"}]
    assert "nameservers" not in nic  # none unless the node names some (vm_nameservers)
    named = web1.cloud_init_network(("9.9.9.9",))["ethernets"]["eth0"]
    assert named["nameservers"] == {"addresses": ["9.9.9.9"]}
    overlay_only = network().plan("web2", private_ipv4=False, others=[]).cloud_init_network(("9.9.9.9",))
    assert "nameservers" not in overlay_only["ethernets"]["eth0"]  # a VM that does not go out needs none


def test_plans_that_cannot_be_are_refused():
    web1 = network().plan("web1", private_ipv4=False, others=[])
    with pytest.raises(VmNetworkError, match="same address or tap"):
        network().plan("web1", private_ipv4=False, others=[web1])
    with pytest.raises(VmNetworkError, match="no private IPv4"):
        network(private=None).plan("web1", private_ipv4=True, others=[])
    with pytest.raises(VmNetworkError, match="not a /64 in 400::/7"):
        network(subnet="2001:db8::/64").plan("web1", private_ipv4=False, others=[])
    with pytest.raises(VmNetworkError, match="no free address"):
        private_ip("10.208.0.0/30", {"10.208.0.2"})

    def no_daemon() -> str:
        raise ConnectionError("connection refused")

    with pytest.raises(VmNetworkError, match="subnet is not known now: connection refused"):
        VmNetwork(bridge="znbr-test", node_subnet=no_daemon).plan("web1", private_ipv4=False, others=[])


def test_vm_create_refuses_networks_the_node_cannot_give(vm_manager, storage):
    make_image(storage)
    with pytest.raises(VmNetworkError, match="no VM network"):
        vm_manager.create(ALICE, "web1", image="ubuntu", mycelium=True)
    with pytest.raises(VmNetworkError, match="private_ipv4 needs mycelium"):
        vm_manager.create(ALICE, "web1", image="ubuntu", mycelium=False, private_ipv4=True)
    assert vm_manager.create(ALICE, "web1", image="ubuntu")["mycelium_ip"] is None  # no VM network: no NIC


# -- bridges, taps and rules, in a namespace of their own -----------------------------------------------------


@pytest.fixture
def simulated(pool_dir, short_dir):
    storage = BtrfsStorage(pool_dir)
    make_image(storage)

    def manager(vm_network: VmNetwork | None) -> VmManager:
        return VmManager(short_dir / "vms", storage, CloudHypervisor.simulator(), network=vm_network)

    return manager


def test_each_vm_gets_a_tap_and_the_rules_and_leaves_nothing_behind(simulated, mycelium):
    with network_namespace():
        daemon = MyceliumClient(mycelium().url)
        subnet = daemon.info()["nodeSubnet"]
        vms = simulated(VmNetwork(bridge="znbr-test", node_subnet=lambda: daemon.info()["nodeSubnet"],
                                  private_subnet="10.208.0.0/24"))
        before = interfaces()
        alice = vms.create(ALICE, "alice-vm", image="ubuntu", private_ipv4=True)
        bob = vms.create(BOB, "bob-vm", image="ubuntu")
        assert alice["mycelium_ip"] == mycelium_ip(subnet, "alice-vm") and alice["private_ip"] == "10.208.0.2"
        assert bob["mycelium_ip"] == mycelium_ip(subnet, "bob-vm") and bob["private_ip"] is None
        assert interfaces() == before  # nothing runs yet: made before each boot
        vms.start(ALICE, "alice-vm")
        vms.start(BOB, "bob-vm")
        assert interfaces() == before | {"znbr-test", alice["tap"], bob["tap"]}
        rules = subprocess.run(["nft", "list", "table", "bridge", "zeronode-znbr-test"], capture_output=True,
                               text=True, check=True).stdout
        assert alice["mycelium_ip"] in rules and bob["mac"] in rules and "10.208.0.2" in rules
        assert "masquerade" in subprocess.run(["nft", "list", "table", "inet", "zeronode-znbr-test"],
                                              capture_output=True, text=True, check=True).stdout
        with open("/proc/sys/net/ipv6/conf/all/forwarding") as forwarding:
            assert forwarding.read().strip() == "1"
        # Its seed tells the guest its addresses (cloud-init's network-config), and stays the owner's (0600).
        seed = vms.state_dir / "alice-vm" / "seed.iso"
        assert seed.stat().st_mode & 0o777 == 0o600
        assert f"- {alice['mycelium_ip']}/64".encode() in seed.read_bytes() and b"local-hostname: alice-vm" in seed.read_bytes()

        # A node restart loses every interface and rule: the next boot makes them again.
        vms.stop(ALICE, "alice-vm")
        vms.stop(BOB, "bob-vm")
        subprocess.run(["ip", "link", "delete", "znbr-test"], check=True)
        subprocess.run(["ip", "link", "delete", alice["tap"]], check=True)
        subprocess.run(["nft", "flush", "ruleset"], check=True)
        vms.start(ALICE, "alice-vm")
        assert {"znbr-test", alice["tap"], bob["tap"]} <= interfaces()
        assert "zeronode-znbr-test" in nft_tables()

        vms.delete(ALICE, "alice-vm")
        assert alice["tap"] not in interfaces() and "znbr-test" in interfaces()
        vms.delete(BOB, "bob-vm")
        assert interfaces() == before and "zeronode" not in nft_tables()  # the last VM takes the bridge and rules


def test_a_bridge_name_another_interface_has_fails_the_boot_with_a_clear_error(simulated):
    """The node never takes over an interface it did not make: the boot fails with VmNetworkError, not a
    traceback, and the VM stays as it was."""
    with network_namespace():
        vms = simulated(network())
        vms.create(ALICE, "web1", image="ubuntu")
        subprocess.run(["ip", "tuntap", "add", "znbr-test", "mode", "tap"], check=True)  # someone's, not a bridge
        with pytest.raises(VmNetworkError, match="'znbr-test' is an interface of this host but not a bridge"):
            vms.start(ALICE, "web1")
        assert vms.info(ALICE, "web1")["state"] == "Stopped"


# -- real guests ------------------------------------------------------------------------------------------------


def test_real_guests_answer_on_their_mycelium_addresses_and_reach_each_other(tiny_storage, short_dir, mycelium):
    with network_namespace() as namespace, beyond(namespace) as outside:
        daemon = MyceliumClient(mycelium().url)
        vms = VmManager(short_dir / "vms", tiny_storage, Qemu.installed(acceleration="tcg"),
                        network=VmNetwork(bridge="znbr-test", node_subnet=lambda: daemon.info()["nodeSubnet"],
                                          private_subnet="10.208.0.0/24"))
        before = interfaces()
        try:
            first = vms.create(ALICE, "first", image="tiny", memory_mib=128, private_ipv4=True,
                               cloud_init=CloudInit.from_script({}, "first"))
            vms.start(ALICE, "first")
            seen = wait_until(lambda: "ZN-READY" in console(vms, "first") and console(vms, "first"), BOOT_TIMEOUT,
                              lambda: f"the first guest to boot: {console(vms, 'first')[-600:]!r}")
            assert f"ZN-ADDR eth0 {first['mycelium_ip']}/64" in seen and f"ZN-ADDR eth0 {first['private_ip']}/24" in seen
            assert ping(first["mycelium_ip"]) and ping(first["private_ip"])  # from the host, through the bridge

            # Another tenant's VM pings the first over the overlay address (IPv6 between VMs is open, as it is
            # across nodes) and cannot reach its private IPv4 (private addresses are for going out only); it goes
            # out through the node's NAT to a network beyond, which has no route back to the private subnet.
            second = vms.create(BOB, "second", image="tiny", memory_mib=128, private_ipv4=True,
                                cmdline=f"{guest.CMDLINE} zn.ping={first['mycelium_ip']},{first['private_ip']},{outside}")
            vms.start(BOB, "second")
            seen = wait_until(lambda: "ZN-READY" in console(vms, "second") and console(vms, "second"),
                              BOOT_TIMEOUT + 40, lambda: f"the second guest: {console(vms, 'second')[-600:]!r}")
            assert f"ZN-PING {first['mycelium_ip']} ok" in seen
            assert f"ZN-PING {first['private_ip']} failed" in seen
            assert f"ZN-PING {outside} ok" in seen
            assert ping(second["mycelium_ip"])
        finally:
            for vm in vms.list(OPERATOR):
                vms.delete(OPERATOR, vm["name"])
        assert interfaces() == before and "zeronode" not in nft_tables()
        assert not ping(first["mycelium_ip"])


@contextlib.contextmanager
def beyond(namespace: str) -> Iterator[str]:
    """A network beyond the node: a veth pair to a namespace of its own at 192.0.2.2/24 (the node is .1), which
    knows no route to the VMs' private subnet, so only NAT'd packets get an answer. Yields its address."""
    name = f"{namespace}-up"
    subprocess.run(["ip", "netns", "add", name], check=True)
    try:
        subprocess.run(["ip", "link", "add", "uplink0", "type", "veth", "peer", "name", "uplink1", "netns", name], check=True)
        subprocess.run(["ip", "addr", "add", "192.0.2.1/24", "dev", "uplink0"], check=True)
        subprocess.run(["ip", "link", "set", "uplink0", "up"], check=True)
        for command in (["addr", "add", "192.0.2.2/24", "dev", "uplink1"], ["link", "set", "uplink1", "up"]):
            subprocess.run(["ip", "-n", name, *command], check=True)
        yield "192.0.2.2"
    finally:
        subprocess.run(["ip", "netns", "delete", name], check=False)


def console(vms: VmManager, name: str) -> str:
    return vms.logs(OPERATOR, name, 1000)
