"""The node's SALs: which driver runs each (one table), and the one table of functions Rhai scripts call.

A runner builds the node's SAL drivers once (NodeSals.from_settings) and
registers every function of `functions(sals)` into its engine. Functions that
need to know which job they serve (its node, its deadline, whether it was
cancelled) read `current_job()`, which the runner sets around each eval.
docs/rhai-api.md lists them. `fingerprint(settings)` says what the node can do,
for its registration in the ledger.
"""

from __future__ import annotations

import logging
import platform
import shutil
import socket
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import rhai
import zeronode
from sal.capacity import Ratios
from sal.context import JobContext, current_job, running
from sal.errors import SalError
from sal.hypervisor.base import HypervisorDriver
from sal.hypervisor.drivers.cloud_hypervisor import CloudHypervisor
from sal.hypervisor.drivers.qemu import Qemu
from sal.hypervisor.functions import functions as hypervisor_functions
from sal.hypervisor.manager import VmManager, node_capacity
from sal.images.base import ImagePolicy
from sal.images.functions import functions as image_functions
from sal.images.store import ImageStore
from sal.network.base import Network
from sal.network.drivers.mycelium import MyceliumClient
from sal.network.functions import functions as network_functions
from sal.storage.base import Storage
from sal.storage.functions import functions as storage_functions
from sal.vmnet import VmNetwork
from zeronode.node.settings import NodeSettings

__all__ = ["DRIVERS", "JobContext", "NodeSals", "build", "current_job", "fingerprint", "functions", "node_info",
           "register_all", "running"]

log = logging.getLogger("zeronode.sal")


def _auto_hypervisor(settings: NodeSettings) -> HypervisorDriver:
    """cloud-hypervisor when its binary is on PATH, else QEMU when its binary is, else cloud-hypervisor's
    simulator (the VM manager says so loudly): the node's fingerprint says which."""
    if shutil.which(settings.hypervisor_binary):
        return DRIVERS["hypervisor", "cloud-hypervisor"](settings)
    if shutil.which(settings.qemu_binary):
        return DRIVERS["hypervisor", "qemu"](settings)
    return DRIVERS["hypervisor", "simulated"](settings)


def _qemu(settings: NodeSettings) -> HypervisorDriver:
    return Qemu.installed(settings.qemu_binary, acceleration=settings.qemu_acceleration,
                          memo_dir=settings.vm_state_dir, kvm_probe_seconds=settings.kvm_probe_seconds)


def _btrfs(settings: NodeSettings) -> Storage:
    # Imported here: btrfsutil is the optional [btrfs] extra, and a node without storage (or its identity
    # manager, which only fingerprints) must not need it.
    try:
        from sal.storage.drivers.btrfs import BtrfsStorage
    except ImportError as exc:
        raise SalError(f"the btrfs storage driver needs btrfsutil: pip install 'zeronode[btrfs]' ({exc})") from None
    return BtrfsStorage(settings.storage_root)


# (SAL, the driver's name in the settings) -> the driver, made from the node's settings. A new driver is one
# line here (and its own module or package under that SAL's drivers/). Building a driver has no side effects.
DRIVERS: dict[tuple[str, str], Callable[[NodeSettings], Any]] = {
    ("storage", "btrfs"): _btrfs,
    ("network", "mycelium"): lambda settings: MyceliumClient(settings.mycelium_url),
    ("hypervisor", "cloud-hypervisor"): lambda settings: CloudHypervisor.installed(settings.hypervisor_binary),
    ("hypervisor", "qemu"): _qemu,
    ("hypervisor", "simulated"): lambda settings: CloudHypervisor.simulator(),
    ("hypervisor", "auto"): _auto_hypervisor,
}

# Which setting names each SAL's driver, and the setting without which the node has no such SAL.
SETTINGS = {
    "storage": ("storage_driver", lambda settings: settings.storage_root is not None),
    "network": ("network_driver", lambda settings: bool(settings.mycelium_url)),
    "hypervisor": ("hypervisor", lambda settings: settings.storage_root is not None),  # VM disks live on storage
}


def build(sal: str, settings: NodeSettings) -> Any:
    """The driver the settings name for `sal`, or None when they do not configure that SAL.

    An unknown name is refused even then, naming the known ones: a typo should not wait for the day it matters."""
    setting, configured = SETTINGS[sal]
    name = getattr(settings, setting)
    factory = DRIVERS.get((sal, name))
    if factory is None:
        known = ", ".join(sorted(driver for kind, driver in DRIVERS if kind == sal))
        raise SalError(f"{setting} = {name!r} is not a {sal} driver; known: {known}")
    return factory(settings) if configured(settings) else None


@dataclass(frozen=True)
class NodeSals:
    """The node's SAL drivers; a missing one makes its functions fail with a clear message."""

    storage: Storage | None = None
    network: Network | None = None
    vms: VmManager | None = None  # VM disks live on the storage pool: no storage, no VMs
    images: ImageStore | None = None  # images are volumes of the storage pool: no storage, no images
    ratios: Ratios | None = None  # the allocation ratios vm_create and quotas are held to (None: not checked)

    @classmethod
    def from_settings(cls, settings: NodeSettings) -> NodeSals:
        storage, network, hypervisor = (build(sal, settings) for sal in ("storage", "network", "hypervisor"))
        ratios = allocation_ratios(settings)
        vms = VmManager(settings.vm_state_dir, storage, hypervisor, firmware=settings.vm_firmware,
                        network=vm_network(settings, network), ratios=ratios) if hypervisor else None
        images = ImageStore(storage, image_policy(settings)) if storage else None
        return cls(storage=storage, network=network, vms=vms, images=images, ratios=ratios)


def allocation_ratios(settings: NodeSettings) -> Ratios:
    return Ratios(vcpus=settings.cpu_allocation_ratio, memory=settings.memory_allocation_ratio,
                  disk=settings.disk_allocation_ratio)


def vm_network(settings: NodeSettings, network: Network | None) -> VmNetwork | None:
    """The VMs' network on the node's mycelium /64, when the node has mycelium and wants it (vm_network)."""
    if network is None or not settings.vm_network:
        return None
    return VmNetwork(bridge=settings.vm_bridge, node_subnet=lambda: network.info()["nodeSubnet"],
                     private_subnet=str(settings.vm_private_subnet) if settings.vm_private_subnet else None,
                     nameservers=tuple(str(address) for address in settings.vm_nameservers))


def image_policy(settings: NodeSettings) -> ImagePolicy:
    return ImagePolicy(max_bytes=settings.max_image_bytes, trusted_keys=tuple(settings.trusted_image_keys),
                       require_signed=settings.require_signed_images)


def fingerprint(settings: NodeSettings) -> dict[str, dict | None]:
    """The node's capabilities: each SAL's driver fingerprint, None for a SAL the node does not have.

    Cheap and without side effects (no directory is made, no VMM started), and never raises: a SAL
    whose driver cannot be built (a storage_root that is not a directory, cloud-hypervisor named but not
    installed, an unknown driver name) is reported as None, and the reason logged at debug level.
    """
    storage, network = _built_or_none("storage", settings), _built_or_none("network", settings)
    hypervisor = _built_or_none("hypervisor", settings) if storage else None
    try:
        return {
            "hypervisor": hypervisor.fingerprint().as_dict() if hypervisor else None,
            "storage": storage.fingerprint().as_dict() if storage else None,
            "network": network.fingerprint().as_dict() if network else None,
        }
    finally:
        if network:
            network.close()


def _built_or_none(sal: str, settings: NodeSettings) -> Any:
    try:
        return build(sal, settings)
    except SalError as exc:
        log.debug("no driver to fingerprint", extra={"sal": sal, "error": str(exc)})
        return None


def node_info(sals: NodeSals) -> dict[str, Any]:
    """What the script's node is: its id, host facts, software version and which SALs it has."""
    job = current_job()
    cpus, memory_mb = node_capacity()
    return {
        "id": job.node_id,
        "hostname": socket.gethostname(),
        "cpus": cpus,
        "memory_mb": memory_mb,
        "kernel": platform.release(),
        "zeronode": zeronode.__version__,
        "storage": str(sals.storage.root) if sals.storage else None,
        "network": sals.network is not None,
        # "simulated" means no guest code runs: deployments must be able to tell.
        "hypervisor": sals.vms.kind if sals.vms else None,
        "vm_network": sals.vms is not None and sals.vms.network is not None,  # VMs on the mycelium /64 (sal.vmnet)
    }


def functions(sals: NodeSals) -> dict[str, Callable[..., Any]]:
    # No `sleep` here: Rhai's own `sleep(seconds)` is there, and rhai-py makes it
    # honour the job's timeout and cancellation.
    return {
        "node_info": lambda: node_info(sals),
        **storage_functions(sals.storage, sals.ratios),
        **network_functions(sals.network),
        **hypervisor_functions(sals.vms),
        **image_functions(sals.images),
    }


def register_all(engine: rhai.Engine, sals: NodeSals) -> None:
    for name, function in functions(sals).items():
        engine.register(name, function)
