"""What the ledger should know about this node, read from the host and the settings."""

from __future__ import annotations

import logging
from pathlib import Path

import zeronode
from sal import capacity, registry
from sal.errors import SalError
from sal.hypervisor import record as vm_record
from zeronode.api.ledger import Capabilities, Capacity, NodeRegistration, Usage
from zeronode.node.settings import NodeSettings

log = logging.getLogger("zeronode.identity")


def host_uptime() -> int:
    """Seconds since this machine booted."""
    return int(float(Path("/proc/uptime").read_text().split()[0]))


def storage_path(settings: NodeSettings) -> Path:
    """Where the node's disk capacity is measured: its storage pool, or its state directory without one."""
    return settings.storage_root if settings.storage_root and settings.storage_root.is_dir() else settings.state_dir


def host_capacity(storage: Path) -> Capacity:
    """CPUs and memory of this machine, and the size of the file system holding `storage`."""
    total = capacity.host_total(storage)
    return Capacity(vcpus=total.vcpus, memory=total.memory, disk=total.disk)


def node_usage(settings: NodeSettings) -> tuple[Usage, Usage]:
    """What the node's VMs and volume quotas hold, and what is free for more (sal.capacity)."""
    try:
        storage = registry.build("storage", settings)
    except SalError:
        storage = None
    total = capacity.host_total(storage_path(settings))
    holding = vm_record.held(settings.vm_state_dir) + capacity.quotas(storage)
    left = capacity.free(total, holding, registry.allocation_ratios(settings))
    return Usage(**vars(holding)), Usage(**vars(left))


def overlay_address(settings: NodeSettings) -> str | None:
    """The node's overlay address from its network SAL, or None when it has none or its daemon does not answer."""
    try:
        network = registry.build("network", settings)
    except SalError as exc:  # a driver name the registry does not know: the runners will say so too
        log.error("no network driver", extra={"error": str(exc)})
        return None
    if network is None:
        return None
    try:
        return network.address()
    finally:
        network.close()


def registration(settings: NodeSettings) -> NodeRegistration:
    """What the ledger should know about this node, read now from the host and the settings."""
    return NodeRegistration(
        farm=settings.farm,
        owner=settings.owner,
        capacity=host_capacity(storage_path(settings)),
        supervisor_url=supervisor_url(settings),
        mycelium_address=overlay_address(settings),
        version=zeronode.__version__,
        # Which drivers run the node's SALs, and whether a simulator stands in for any of them.
        capabilities=Capabilities.model_validate(registry.fingerprint(settings)),
        labels=settings.labels,
    )


def supervisor_url(settings: NodeSettings) -> str:
    host = f"[{settings.host}]" if ":" in settings.host else settings.host
    return settings.supervisor_url or f"http://{host}:{settings.port}"
