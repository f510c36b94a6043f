"""A VM's record, vm.json in its directory: what the VM is, written once at create, read by every runner.

Format 1:

    {"format": 1, "driver": "cloud-hypervisor", "name": "web1", "image": "ubuntu", "root_volume": "web1-root",
     "volumes": ["web1-data"], "created": 1700000000.0, "spec": {VmSpec.as_dict()}}

A record without "format" was written before records had one, when
cloud-hypervisor was the only driver: it reads as format 1 of that driver, so
a node upgraded with VMs running keeps them. A newer format is refused: this
code cannot know what it added.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from sal.errors import SalError
from sal.hypervisor.base import VmNotFound
from sal.hypervisor.spec import VmSpec

FORMAT = 1
RECORD = "vm.json"
UNVERSIONED_DRIVER = "cloud-hypervisor"  # the driver of every record written before "format" existed


@dataclass(frozen=True)
class VmRecord:
    name: str
    driver: str  # the driver that created the VM, and the only one that may run it
    image: str
    root_volume: str
    volumes: tuple[str, ...]  # data volumes, attached in this order
    created: float  # Unix time
    spec: VmSpec

    def as_json(self) -> dict[str, Any]:
        return {
            "format": FORMAT, "driver": self.driver, "name": self.name, "image": self.image,
            "root_volume": self.root_volume, "volumes": list(self.volumes), "created": self.created,
            "spec": self.spec.as_dict(),
        }

    def save(self, vm_dir: Path) -> None:
        """Write it whole or not at all: a reader never sees half a record."""
        path = vm_dir / RECORD
        temporary = path.with_suffix(".tmp")
        temporary.write_text(json.dumps(self.as_json(), indent=2))
        temporary.replace(path)

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
        if version != FORMAT:
            raise SalError(f"the record of VM {name!r} is format {version!r}; this zeronode reads format {FORMAT}")
        try:
            return cls(
                name=data["name"], driver=data.get("driver", UNVERSIONED_DRIVER), image=data["image"],
                root_volume=data["root_volume"], volumes=tuple(data["volumes"]), created=data["created"],
                spec=VmSpec.from_dict(data["spec"]),
            )
        except (KeyError, TypeError, ValueError) as exc:
            raise SalError(f"the record of VM {name!r} is malformed: {exc!r}") from None


def has_record(vm_dir: Path) -> bool:
    return (vm_dir / RECORD).is_file()
