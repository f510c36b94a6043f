"""A VM's record, vm.json in its directory: what the VM is, written once at create, read by every runner.

Format 2:

    {"format": 2, "driver": "cloud-hypervisor", "name": "web1", "owner": "<the signer's key>", "image": "ubuntu",
     "root_volume": "web1-root", "volumes": ["web1-data"],
     "disk_uuids": {"web1-root": "5c1e...", "web1-data": "90ab..."},
     "created": 1700000000.0, "spec": {VmSpec.as_dict()}, "restart": "on-failure"}

`owner` is the signer of the script that created the VM (null: the node's
operator made it, outside scripts). `disk_uuids` is each disk volume's uuid
when the VM was created: a volume deleted and made again under the same name,
by anyone, is another volume, and the VM does not boot from it.

`network` is the VM's addresses on the node's VM network (sal.vmnet: tap, MAC,
mycelium and private IPs); it is absent for a VM without a NIC, and an older
zeronode ignores it. What the VM's cloud-init seed says is not here: the record
may be readable by the supervisor's group (console readers), and user data is
its owner's alone, so it lives only in the seed (seed.iso, 0600).

`restart` is the VM's restart policy (sal.hypervisor.lifecycle); a record
without one (written before policies) reads as "on-failure", and an older
zeronode ignores it.

Format 1 is format 2 without `owner` and `disk_uuids`: its VMs are owned by
nobody (node admins only) and their disks are taken as they are. A record
without "format" was written before records had one, when cloud-hypervisor
was the only driver: it reads as format 1 of that driver, so a node upgraded
with VMs running keeps them. A newer format is refused: this code cannot know
what it added. Format 2 is a new number, not optional fields in format 1, so
that an older zeronode refuses these records rather than showing every tenant
every VM.
"""

from __future__ import annotations

import contextlib
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from sal import capacity
from sal.errors import SalError
from sal.hypervisor.base import VmNotFound
from sal.hypervisor.lifecycle import DEFAULT_RESTART, check_restart
from sal.hypervisor.readers import file_mode
from sal.hypervisor.spec import VmSpec
from sal.vmnet import VmAddresses
from zeronode.files import write_atomic

FORMAT = 2
READS = (1, 2)
RECORD = "vm.json"
UNVERSIONED_DRIVER = "cloud-hypervisor"  # the driver of every record written before "format" existed


@dataclass(frozen=True)
class VmRecord:
    name: str
    driver: str  # the driver that created the VM, and the only one that may run it
    owner: str | None  # who may see and act on it besides node admins; None: node admins only
    image: str
    root_volume: str
    volumes: tuple[str, ...]  # data volumes, attached in this order
    disk_uuids: dict[str, str]  # volume name -> its uuid at create; empty in format 1 records
    created: float  # Unix time
    spec: VmSpec
    restart: str = DEFAULT_RESTART
    network: VmAddresses | None = None

    @property
    def disk_volumes(self) -> tuple[str, ...]:
        return (self.root_volume, *self.volumes)

    def as_json(self) -> dict[str, Any]:
        return {
            "format": FORMAT, "driver": self.driver, "name": self.name, "owner": self.owner, "image": self.image,
            "root_volume": self.root_volume, "volumes": list(self.volumes), "disk_uuids": dict(self.disk_uuids),
            "created": self.created, "spec": self.spec.as_dict(), "restart": self.restart,
        } | ({"network": self.network.as_record()} if self.network else {})

    def save(self, vm_dir: Path) -> None:
        """Write it whole or not at all: a reader never sees half a record."""
        write_atomic(vm_dir / RECORD, json.dumps(self.as_json(), indent=2), mode=file_mode(vm_dir))

    @classmethod
    def load(cls, vm_dir: Path) -> VmRecord:
        name = vm_dir.name
        try:
            data = json.loads((vm_dir / RECORD).read_text())
        except FileNotFoundError:
            raise VmNotFound(f"no VM named {name!r}") from None
        except (OSError, ValueError) as exc:
            raise SalError(f"the record of VM {name!r} cannot be read: {exc}") from None
        if not isinstance(data, dict):
            raise SalError(f"the record of VM {name!r} is not a JSON object")
        version = data.get("format", 1)
        if version not in READS:
            raise SalError(f"the record of VM {name!r} is format {version!r}; this zeronode reads formats 1 and 2")
        try:
            owner, disk_uuids = (data["owner"], dict(data["disk_uuids"])) if version == 2 else (None, {})
            if owner is not None and not isinstance(owner, str):
                raise TypeError(f"owner {owner!r} is not a key")
            return cls(
                name=data["name"], driver=data.get("driver", UNVERSIONED_DRIVER), owner=owner, image=data["image"],
                root_volume=data["root_volume"], volumes=tuple(data["volumes"]), disk_uuids=disk_uuids,
                created=data["created"], spec=VmSpec.from_dict(data["spec"]),
                restart=check_restart(data.get("restart", DEFAULT_RESTART)),
                network=VmAddresses.from_record(data["network"]) if data.get("network") else None,
            )
        except (KeyError, TypeError, ValueError, SalError) as exc:
            raise SalError(f"the record of VM {name!r} is malformed: {exc!r}") from None


def held(vm_dir: Path) -> capacity.Resources:
    """The vCPUs and memory the VMs recorded under `vm_dir` hold, running or stopped. A record that cannot be
    read counts for nothing here: its VM cannot start either."""
    vcpus = memory = 0
    for directory in vm_dir.iterdir() if vm_dir.is_dir() else ():
        with contextlib.suppress(SalError, OSError):
            spec = VmRecord.load(directory).spec
            vcpus, memory = vcpus + spec.vcpus, memory + spec.memory_mib * capacity.MIB
    return capacity.Resources(vcpus, memory, 0)


def has_record(vm_dir: Path) -> bool:
    return (vm_dir / RECORD).is_file()
