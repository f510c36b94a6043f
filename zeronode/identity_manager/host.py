"""What the ledger should know about this node, read from the host and the settings."""

from __future__ import annotations

import logging
import os
import shutil
from pathlib import Path

import zeronode
from sal.network.client import MyceliumClient, NetworkError
from zeronode.api.ledger import Capacity, NodeRegistration
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


def mycelium_address(url: str | None) -> str | None:
    """The node's overlay address from its mycelium daemon, or None when there is none or it does not answer."""
    if not url:
        return None
    client = MyceliumClient(url, timeout=5)
    try:
        return client.info()["nodeIp"]
    except (NetworkError, KeyError, TypeError, ValueError) as exc:
        log.debug("no mycelium address", extra={"mycelium": url, "error": str(exc)})
        return None
    finally:
        client.close()


def registration(settings: NodeSettings) -> NodeRegistration:
    """What the ledger should know about this node, read now from the host and the settings."""
    storage = settings.storage_root if settings.storage_root and settings.storage_root.is_dir() else settings.state_dir
    host = f"[{settings.host}]" if ":" in settings.host else settings.host
    return NodeRegistration(
        farm=settings.farm,
        owner=settings.owner,
        capacity=host_capacity(storage),
        supervisor_url=settings.supervisor_url or f"http://{host}:{settings.port}",
        mycelium_address=mycelium_address(settings.mycelium_url),
        version=zeronode.__version__,
    )
