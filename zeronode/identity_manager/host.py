"""What the ledger should know about this node, read from the host and the settings."""

from __future__ import annotations

import logging
import os
import shutil
from pathlib import Path

import zeronode
from sal import registry
from sal.errors import SalError
from zeronode.api.ledger import Capabilities, Capacity, NodeRegistration
from zeronode.node.settings import NodeSettings

log = logging.getLogger("zeronode.identity")


def host_uptime() -> int:
    """Seconds since this machine booted."""
    return int(float(Path("/proc/uptime").read_text().split()[0]))


def host_capacity(storage: Path) -> Capacity:
    """CPUs and memory of this machine, and the size of the file system holding `storage`."""
    return Capacity(
        vcpus=os.cpu_count() or 1,
        memory=os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES"),
        disk=shutil.disk_usage(storage).total,
    )


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
    storage = settings.storage_root if settings.storage_root and settings.storage_root.is_dir() else settings.state_dir
    host = f"[{settings.host}]" if ":" in settings.host else settings.host
    return NodeRegistration(
        farm=settings.farm,
        owner=settings.owner,
        capacity=host_capacity(storage),
        supervisor_url=settings.supervisor_url or f"http://{host}:{settings.port}",
        mycelium_address=overlay_address(settings),
        version=zeronode.__version__,
        # Which drivers run the node's SALs, and whether a simulator stands in for any of them.
        capabilities=Capabilities.model_validate(registry.fingerprint(settings)),
    )
