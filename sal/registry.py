"""The one table of functions that Rhai scripts can call on a node.

A runner builds the node's SAL drivers once (NodeSals.from_settings) and
registers every function of `functions(sals)` into its engine. Functions that
need to know which job they serve (its node, its deadline, whether it was
cancelled) read `current_job()`, which the runner sets around each eval.
docs/rhai-api.md lists them.
"""

from __future__ import annotations

import contextlib
import os
import platform
import socket
from collections.abc import Callable, Iterator
from contextvars import ContextVar
from dataclasses import dataclass
from typing import Any

import rhai
import zeronode
from sal.errors import SalError
from sal.hypervisor.functions import functions as hypervisor_functions
from sal.hypervisor.manager import VmManager
from sal.network.client import MyceliumClient
from sal.network.functions import functions as network_functions
from sal.storage import BtrfsStorage, Storage
from sal.storage.functions import functions as storage_functions
from zeronode.node.settings import NodeSettings


@dataclass
class JobContext:
    job_id: str
    signer: str
    node_id: str
    deadline: float  # time.monotonic() after which the script is out of time


_current: ContextVar[JobContext | None] = ContextVar("zeronode_job", default=None)


def current_job() -> JobContext:
    context = _current.get()
    if context is None:
        raise SalError("this function can only be called from a job")
    return context


@contextlib.contextmanager
def running(context: JobContext) -> Iterator[JobContext]:
    token = _current.set(context)
    try:
        yield context
    finally:
        _current.reset(token)


def node_info(sals: NodeSals) -> dict[str, Any]:
    """What the script's node is: its id, host facts, software version and which SALs it has."""
    job = current_job()
    return {
        "id": job.node_id,
        "hostname": socket.gethostname(),
        "cpus": os.cpu_count() or 1,
        "memory_mb": os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") // (1024 * 1024),
        "kernel": platform.release(),
        "zeronode": zeronode.__version__,
        "storage": str(sals.storage.root) if sals.storage else None,
        "network": sals.network is not None,
        # "simulated" means no guest code runs: deployments must be able to tell.
        "hypervisor": sals.vms.kind if sals.vms else None,
    }


@dataclass(frozen=True)
class NodeSals:
    """The node's SAL drivers; a missing one makes its functions fail with a clear message."""

    storage: Storage | None = None
    network: MyceliumClient | None = None
    vms: VmManager | None = None  # VM disks live on the storage pool: no storage, no VMs

    @classmethod
    def from_settings(cls, settings: NodeSettings) -> NodeSals:
        storage = BtrfsStorage(settings.storage_root) if settings.storage_root else None
        vms = VmManager(
            settings.vm_state_dir, storage, hypervisor=settings.hypervisor, binary=settings.hypervisor_binary,
            firmware=settings.vm_firmware,
        ) if storage else None
        return cls(
            storage=storage,
            network=MyceliumClient(settings.mycelium_url) if settings.mycelium_url else None,
            vms=vms,
        )


def functions(sals: NodeSals) -> dict[str, Callable[..., Any]]:
    # No `sleep` here: Rhai's own `sleep(seconds)` is there, and rhai-py makes it
    # honour the job's timeout and cancellation.
    return {
        "node_info": lambda: node_info(sals),
        **storage_functions(sals.storage),
        **network_functions(sals.network),
        **hypervisor_functions(sals.vms),
    }


def register_all(engine: rhai.Engine, sals: NodeSals) -> None:
    for name, function in functions(sals).items():
        engine.register(name, function)
