"""The node's VMs on one hypervisor driver: their records, their disks on the storage pool, their lifecycle.

Everything about a VM lives in VM_DIR/NAME/ (the node's vm_dir setting): its record (vm.json,
sal.hypervisor.record), the guest's serial console (serial.log), and whatever
the driver keeps to find the VM's process again (cloud-hypervisor: its pid
file, API socket and log). So the files, not a process's memory, are the truth:
a runner that restarts builds a new VmManager and finds its running VMs again.
A lock file per VM serialises the runners of a pool acting on it.

Disks: the root disk is a writable btrfs snapshot of an image volume (an
instant clone of its `disk.raw`); data disks are existing volumes, each
holding a `disk.raw` sized to the volume's quota. An image may carry its own
kernel (`vmlinux`, optional `initramfs` and `cmdline`); without one the VM
boots the node's firmware.
"""

from __future__ import annotations

import contextlib
import fcntl
import logging
import os
import re
import shutil
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from sal.errors import SalError
from sal.hypervisor.base import VM_NAME, HypervisorDriver, VmExists, check_vm_name
from sal.hypervisor.record import VmRecord, has_record
from sal.hypervisor.spec import MIB, DiskSpec, TapSpec, VmSpec
from sal.storage.base import Storage, VolumeNotFound

log = logging.getLogger("zeronode.hypervisor")

GIB = 1024 * MIB
TAP_NAME = re.compile(r"[A-Za-z0-9_-]{1,15}")  # Linux interface names: at most 15 bytes
DEFAULT_CMDLINE = "console=ttyS0 root=/dev/vda rw"
IMAGE_DISK, IMAGE_KERNEL, IMAGE_INITRAMFS, IMAGE_CMDLINE = "disk.raw", "vmlinux", "initramfs", "cmdline"
SERIAL_LOG = "serial.log"


class VmManager:
    def __init__(self, state_dir: Path, storage: Storage, driver: HypervisorDriver, *, firmware: Path | None = None):
        self.state_dir = Path(state_dir)
        self.storage = storage
        self.driver = driver
        self.firmware = firmware
        # What node_info() and each VM's info say: deployments must be able to tell that no guest runs.
        self.kind = "simulated" if driver.simulated else driver.name
        self.state_dir.mkdir(mode=0o700, parents=True, exist_ok=True)
        if driver.simulated:
            log.warning(
                f"{driver.name} is not in use: VMs run on its SIMULATOR and no guest code runs",
                extra={"hypervisor": "simulated", "driver": driver.name},
            )

    # -- where things are ----------------------------------------------------------

    def _dir(self, name: str) -> Path:
        return self.state_dir / check_vm_name(name)

    @contextlib.contextmanager
    def _locked(self, name: str) -> Iterator[None]:
        locks = self.state_dir / ".locks"
        locks.mkdir(mode=0o700, exist_ok=True)
        with open(locks / check_vm_name(name), "a") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)
            yield

    def _record(self, name: str) -> VmRecord:
        """The VM's record, refused when another driver made it: this one could not find, stop or run its VM."""
        record = VmRecord.load(self._dir(name))
        if record.driver != self.driver.name:
            raise SalError(
                f"VM {name!r} was created by the {record.driver!r} hypervisor driver, but this node runs "
                f"{self.driver.name!r}: set hypervisor to run it"
            )
        return record

    # -- the operations ------------------------------------------------------------

    def create(
        self,
        name: str,
        *,
        image: str,
        vcpus: int = 1,
        memory_mib: int = 512,
        disk_gb: int | None = None,
        volumes: list[str] | tuple[str, ...] = (),
        cmdline: str | None = None,
        taps: list[str] | tuple[str, ...] = (),
    ) -> dict[str, Any]:
        """Define a VM and clone its root disk from `image`; `start` runs it."""
        directory = self._dir(name)
        self.driver.check_vm_dir(directory)
        for tap in taps:
            if not isinstance(tap, str) or not TAP_NAME.fullmatch(tap):
                raise SalError(f"invalid tap name {tap!r}: 1-15 letters, digits, '_' or '-'")
        with self._locked(name):
            if directory.exists():
                raise VmExists(f"a VM named {name!r} exists already")
            image_volume = self.storage.info(image)
            if not (image_volume.path / IMAGE_DISK).is_file():
                raise SalError(f"volume {image!r} is not an image: it has no {IMAGE_DISK}")
            data_disks = [self._data_disk(volume) for volume in volumes]
            root = self.storage.snapshot(image, f"{name}-root", read_only=False)
            try:
                spec = self._spec(root.path, vcpus, memory_mib, cmdline, data_disks, taps, directory)
                if disk_gb is not None:
                    self._grow_root(root.path / IMAGE_DISK, disk_gb)
                    self.storage.set_quota(root.name, disk_gb * GIB)
                directory.mkdir(mode=0o700, parents=True)
                VmRecord(
                    name=name, driver=self.driver.name, image=image, root_volume=root.name, volumes=tuple(volumes),
                    created=time.time(), spec=spec,
                ).save(directory)
            except BaseException:
                self.storage.delete(root.name)
                shutil.rmtree(directory, ignore_errors=True)
                raise
        log.info("vm created", extra={"vm": name, "image": image, "hypervisor": self.kind})
        return self.info(name)

    def _data_disk(self, volume_name: str) -> DiskSpec:
        volume = self.storage.info(volume_name)
        for other in self._names():  # the records say what is attached, whichever driver made them
            if volume_name in VmRecord.load(self.state_dir / other).volumes:
                raise SalError(f"volume {volume_name!r} is attached to VM {other!r} already")
        disk = volume.path / IMAGE_DISK
        if not disk.exists():
            if volume.read_only:
                raise SalError(f"volume {volume_name!r} is read-only and has no {IMAGE_DISK}")
            limit = self.storage.usage(volume_name).limit
            if not limit:
                raise SalError(
                    f"volume {volume_name!r} has no quota, so its disk has no size: create it with quota_mb"
                )
            with open(disk, "wb") as file:
                file.truncate(limit)  # sparse: takes no space until the guest writes
        return DiskSpec(path=str(disk), readonly=volume.read_only, id=f"data-{volume_name}"[:64])

    def _spec(self, root: Path, vcpus: int, memory_mib: int, cmdline: str | None,
              data_disks: list[DiskSpec], taps: list[str] | tuple[str, ...], directory: Path) -> VmSpec:
        kernel = root / IMAGE_KERNEL
        if kernel.is_file():
            initramfs = root / IMAGE_INITRAMFS
            boot = {
                "kernel": str(kernel),
                "initramfs": str(initramfs) if initramfs.is_file() else None,
                "cmdline": cmdline or _read(root / IMAGE_CMDLINE) or DEFAULT_CMDLINE,
            }
        elif self.firmware:
            boot = {"firmware": str(self.firmware)}
        else:
            raise SalError(f"the image has no {IMAGE_KERNEL} and the node has no vm_firmware to boot it with")
        try:
            return VmSpec(
                vcpus=vcpus, memory_mib=memory_mib, **boot,
                disks=(DiskSpec(path=str(root / IMAGE_DISK), id="root"), *data_disks),
                taps=tuple(TapSpec(tap=tap) for tap in taps),
                serial_file=str(directory / SERIAL_LOG),
            )
        except ValueError as exc:
            raise SalError(str(exc)) from None

    @staticmethod
    def _grow_root(disk: Path, disk_gb: int) -> None:
        size = disk_gb * GIB
        if size < disk.stat().st_size:
            raise SalError(f"disk_gb {disk_gb} is smaller than the image's disk ({disk.stat().st_size / GIB:.1f} GiB)")
        os.truncate(disk, size)

    def start(self, name: str) -> dict[str, Any]:
        """Run the VM: boot it, or resume it when paused; a running VM is left as it is."""
        with self._locked(name):
            record = self._record(name)
            self.driver.start(self._dir(name), record.spec)
        log.info("vm started", extra={"vm": name})
        return self.info(name)

    def stop(self, name: str, *, timeout: float = 30.0) -> dict[str, Any]:
        """Power the guest off (ACPI, then forced after `timeout` seconds) and end its process."""
        with self._locked(name):
            self._record(name)
            self.driver.stop(self._dir(name), timeout)
        log.info("vm stopped", extra={"vm": name})
        return self.info(name)

    def delete(self, name: str) -> None:
        """Stop the VM and remove it with its root disk. Its data volumes stay: they are the user's."""
        self.stop(name, timeout=5.0)
        with self._locked(name):
            record = self._record(name)
            try:
                self.storage.delete(record.root_volume)
            except VolumeNotFound:
                pass  # a script deleted it already: the VM goes all the same
            except (SalError, OSError) as exc:
                # The record goes anyway, or the name could never be used again; the volume is left to delete by hand.
                log.warning("vm root volume not deleted", extra={"vm": name, "volume": record.root_volume, "error": str(exc)})
            shutil.rmtree(self._dir(name))
        # Its data volumes are detached, their disk files kept with their data.
        log.info("vm deleted", extra={"vm": name, "volumes_kept": list(record.volumes)})

    def info(self, name: str) -> dict[str, Any]:
        record = self._record(name)
        directory, spec = self._dir(name), record.spec
        return {
            "name": name,
            "state": self.driver.state(directory),
            "hypervisor": self.kind,
            "pid": self.driver.pid(directory),
            "image": record.image,
            "vcpus": spec.vcpus,
            "memory_mb": spec.memory_mib,
            "root_volume": record.root_volume,
            "volumes": list(record.volumes),
            "disks": [disk.path for disk in spec.disks],
            "taps": [tap.tap for tap in spec.taps],
            **self.driver.details(directory),
            "serial_log": spec.serial_file,
            "created": record.created,
        }

    def _names(self) -> list[str]:
        entries = self.state_dir.iterdir()
        return sorted(e.name for e in entries if VM_NAME.fullmatch(e.name) and has_record(e))

    def list(self) -> list[dict[str, Any]]:
        return [self.info(name) for name in self._names()]

    def stop_all(self, *, timeout: float = 5.0) -> None:
        """Stop every VM (a node shutting down, a test cleaning up)."""
        for vm in self.list():
            if vm["state"] != "Stopped":
                self.stop(vm["name"], timeout=timeout)


def _read(path: Path) -> str | None:
    try:
        return path.read_text().strip() or None
    except FileNotFoundError:
        return None
