"""The node's VMs on one hypervisor driver: their records, their disks on the storage pool, their lifecycle.

Everything about a VM lives in VM_DIR/NAME/ (the node's vm_dir setting): its record (vm.json,
sal.hypervisor.record), the guest's serial console (serial.log), and whatever
the driver keeps to find the VM's process again (cloud-hypervisor: its pid
file, API socket and log). So the files, not a process's memory, are the truth:
a runner that restarts builds a new VmManager and finds its running VMs again.
A lock file per VM serialises the runners of a pool acting on it.

Disks: the root disk is a writable btrfs snapshot of an image volume (an
instant clone of its `disk.raw`): a volume the caller may see, or else the
volume of a pulled image of that name (sal.images); data disks are existing volumes, each
holding a `disk.raw` sized to the volume's quota. An image may carry its own
kernel (`vmlinux`, optional `initramfs` and `cmdline`); without one the VM
boots the node's firmware.

Owners (sal.tenancy): every VM records the caller that created it, and each
operation takes the caller: a deployer sees and acts on its own VMs, a node
admin on all, and a VM the caller may not see answers as a missing one. VM
names are node-wide. The image may be any volume the caller may see (its own,
or a shared one); data volumes must be the caller's (any, for an admin); the
root disk is the caller's. A VM boots only from the very volumes it was
created with (their uuids are in its record), so a name that another tenant
takes after its volume was deleted never becomes this VM's disk.

Network (sal.vmnet): where the node has a VM network, each VM gets one NIC on
it, a tap zeronode names and makes, with an address in the node's mycelium /64
(and, when asked, a private IPv4 behind NAT); the guest learns them from its
cloud-init seed, which every VM on the network gets. The addresses are in the
record; the tap and the rules are made again before each boot and removed with
the VM. A script never names a host interface.

Lifecycle (sal.hypervisor.lifecycle): vm_start marks the VM as one that should
run, vm_stop as one that should not, and each VM has a restart policy; the VM
keeper (sal.hypervisor.keeper) starts again what should run and does not.
Every transition is an event in the VM's directory. The console (serial.log) is
rotated before each new boot (sal.hypervisor.console), so earlier boots' output
stays readable.

Bounds: a VM's vCPUs and memory fit in the node (its CPU count, its memory), its
root disk in the storage pool; optional abilities (pause, reboot, hotplug,
snapshot) are refused with Unsupported on a driver whose fingerprint lacks them.
"""

from __future__ import annotations

import contextlib
import dataclasses
import fcntl
import hashlib
import json
import logging
import os
import shutil
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from sal import capacity
from sal.errors import SalError
from sal.hypervisor import console, lifecycle
from sal.hypervisor.base import (
    VM_NAME,
    HypervisorDriver,
    InvalidVmState,
    Unsupported,
    VmExists,
    VmNotFound,
    check_vm_name,
)
from sal.hypervisor.lifecycle import Want, record_event
from sal.hypervisor.readers import check_only_root_writes, make_vm_dir
from sal.hypervisor.record import VmRecord, has_record, held
from sal.hypervisor.cloud_init import SEED_FILE, CloudInit
from sal.hypervisor.spec import MIB, DiskSpec, TapSpec, VmSpec
from sal.hypervisor.viewer import VmViewer
from sal.images.catalog import Catalog
from sal.storage.base import Storage, VolumeNotFound
from sal.storage.owned import OwnedStorage, OwnedVolume
from sal.tenancy import OPERATOR, Caller
from sal.vmnet import VmAddresses, VmNetwork, VmNetworkError
from zeronode.files import write_atomic

log = logging.getLogger("zeronode.hypervisor")

GIB = 1024 * MIB
DEFAULT_CMDLINE = "console=ttyS0 root=/dev/vda rw"
IMAGE_DISK, IMAGE_KERNEL, IMAGE_INITRAMFS, IMAGE_CMDLINE = "disk.raw", "vmlinux", "initramfs", "cmdline"
SNAPSHOTS, SNAPSHOT_DISKS = "snapshots", "disks.json"
MAX_SNAPSHOTS = 3  # each holds the guest's memory, in vm_dir: a bound on what a tenant can store there


def node_capacity() -> tuple[int, int]:
    """This host's CPUs and memory (MiB): no one VM may ask for more."""
    return os.cpu_count() or 1, os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") // MIB


class VmManager:
    def __init__(self, state_dir: Path, storage: Storage, driver: HypervisorDriver, *, firmware: Path | None = None,
                 network: VmNetwork | None = None, ratios: capacity.Ratios | None = None):
        self.state_dir = Path(state_dir)
        self.storage = storage
        self.volumes = OwnedStorage(storage)  # the disks' owners: the same records the storage functions keep
        self.images = Catalog(storage.root)  # pulled images' names (sal.images), which `image` may give
        self.driver = driver
        self.firmware = firmware
        self.network = network  # None: VMs get no NIC (no mycelium on this node, or vm_network = false)
        self.ratios = ratios  # None: VMs are not held to the node's allocation ratios (sal.capacity)
        self.viewer = VmViewer(self.state_dir)
        # What node_info() and each VM's info say: deployments must be able to tell that no guest runs.
        self.kind = "simulated" if driver.simulated else driver.name
        if os.geteuid() == 0 and (problem := check_only_root_writes(self.state_dir)):
            raise SalError(f"vm_dir {self.state_dir} is not root's alone ({problem}): VM records say what root boots, "
                           "so keep vm_dir where only root writes, e.g. vm_dir = \"/var/lib/zeronode-vms\"")
        self.state_dir.mkdir(mode=0o700, parents=True, exist_ok=True)
        if driver.simulated:
            log.warning(
                f"{driver.name} is not in use: VMs run on its SIMULATOR and no guest code runs",
                extra={"hypervisor": "simulated", "driver": driver.name},
            )

    # -- where things are ----------------------------------------------------------

    def _dir(self, name: str) -> Path:
        return self.viewer.directory(name)

    @contextlib.contextmanager
    def locked(self, name: str, *, wait: bool = True) -> Iterator[None]:
        """Hold the VM's lock (the runners of every pool and the keeper take it); BlockingIOError without `wait`
        when someone holds it."""
        with self._flock(check_vm_name(name), wait):
            yield

    @contextlib.contextmanager
    def _disks_locked(self) -> Iterator[None]:
        """Hold the node's lock on which volume is whose disk and which address whose: taken inside a VM's lock,
        by whatever gives a VM a disk or an address, so two VMs never both get one."""
        with self._flock(".disks", True):  # no VM name starts with a dot
            yield

    @contextlib.contextmanager
    def _flock(self, name: str, wait: bool) -> Iterator[None]:
        locks = self.state_dir / ".locks"
        locks.mkdir(mode=0o700, exist_ok=True)
        with open(locks / name, "a") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX if wait else fcntl.LOCK_EX | fcntl.LOCK_NB)
            yield

    def _record(self, caller: Caller, name: str) -> VmRecord:
        """The VM's record if the caller may act on it, refused when another driver made it: this one could
        not find, stop or run its VM."""
        record = self.viewer.visible(caller, name)
        self._same_driver(record)
        return record

    def _same_driver(self, record: VmRecord) -> None:
        if record.driver != self.driver.name:
            raise SalError(
                f"VM {record.name!r} was created by the {record.driver!r} hypervisor driver, but this node runs "
                f"{self.driver.name!r}: set hypervisor to run it"
            )

    # -- the operations ------------------------------------------------------------

    def create(
        self,
        caller: Caller,
        name: str,
        *,
        image: str,
        vcpus: int = 1,
        memory_mib: int = 512,
        disk_gb: int | None = None,
        volumes: list[str] | tuple[str, ...] = (),
        cmdline: str | None = None,
        mycelium: bool | None = None,
        private_ipv4: bool = False,
        restart: str = lifecycle.DEFAULT_RESTART,
        cloud_init: CloudInit | None = None,
    ) -> dict[str, Any]:
        """Define a VM owned by the caller and clone its root disk from `image`; `start` runs it.

        `mycelium` (default: whether the node has a VM network) gives it a NIC with an address in the node's
        mycelium /64, `private_ipv4` also a private IPv4 address behind NAT. A VM with a NIC or `cloud_init` gets
        a NoCloud seed disk (sal.hypervisor.cloud_init) after its data disks, saying its hostname, keys, addresses."""
        directory = self._dir(name)
        self.driver.check_vm_dir(directory)
        lifecycle.check_restart(restart)
        on_network = self._wants_network(mycelium, private_ipv4)
        self._check_size(vcpus, memory_mib, disk_gb)
        with self.locked(name), self._disks_locked():
            if directory.exists():
                raise VmExists(f"the VM name {name!r} is taken on this node (VM names are node-wide)")
            self._check_room(vcpus, memory_mib, disk_gb)
            in_use = self._disks_in_use()
            source = self._image(caller, image, in_use)
            addresses = self.network.plan(name, private_ipv4=private_ipv4, others=self._addresses()) if on_network else None
            data = [self._data_volume(caller, volume, in_use) for volume in volumes]
            data_disks = [self._data_disk(volume) for volume in data]
            root = self.volumes.clone(caller, source.name, f"{name}-root")
            try:
                spec = self._spec(root.path, vcpus, memory_mib, cmdline, data_disks, addresses, directory)
                if disk_gb is not None:
                    self._grow_root(root.path / IMAGE_DISK, disk_gb)
                    self.volumes.set_quota(caller, root.name, disk_gb * GIB)
                make_vm_dir(directory)
                if addresses is not None:
                    cloud_init = (cloud_init or CloudInit(hostname=name)).with_network(addresses.cloud_init_network(self.network.nameservers))
                if cloud_init is not None:  # a new instance-id each time a VM of this name is created
                    seed = cloud_init.write_seed(directory / SEED_FILE, instance_id=root.uuid)
                    spec = dataclasses.replace(spec, disks=(*spec.disks, DiskSpec(path=str(seed), readonly=True, id="seed")))
                VmRecord(
                    name=name, driver=self.driver.name, owner=caller.owner, image=image, root_volume=root.name,
                    volumes=tuple(volumes), disk_uuids={volume.name: volume.uuid for volume in (root, *data)},
                    created=time.time(), spec=spec, restart=restart, network=addresses,
                ).save(directory)
                record_event(directory, "created", image=image, restart=restart)
            except BaseException:
                self.volumes.delete(caller, root.name)
                shutil.rmtree(directory, ignore_errors=True)
                raise
        log.info("vm created", extra={"vm": name, "image": image, "hypervisor": self.kind})
        return self.info(caller, name)

    def _wants_network(self, mycelium: bool | None, private_ipv4: bool) -> bool:
        if mycelium is None:
            mycelium = self.network is not None
        if private_ipv4 and not mycelium:
            raise VmNetworkError("private_ipv4 needs mycelium: a VM's one NIC is on the mycelium network")
        if mycelium and self.network is None:
            raise VmNetworkError("this node has no VM network (it needs a mycelium daemon, mycelium_url, and "
                                 "vm_network = true): create the VM with mycelium: false")
        return mycelium

    def _addresses(self, *, leaving: str | None = None) -> list[VmAddresses]:
        """Every VM's addresses on this node but `leaving`'s (a record that cannot be read holds none)."""
        found = []
        for name in self.names():
            if name != leaving:
                with contextlib.suppress(SalError):
                    if (network := VmRecord.load(self.state_dir / name).network) is not None:
                        found.append(network)
        return found

    def _check_size(self, vcpus: int, memory_mib: int, disk_gb: int | None) -> None:
        cpus, memory = node_capacity()
        if not isinstance(vcpus, int) or not 1 <= vcpus <= cpus:
            raise SalError(f"vcpus must be 1-{cpus} (this node's CPUs), got {vcpus}")
        if not isinstance(memory_mib, int) or not 64 <= memory_mib <= memory:
            raise SalError(f"memory_mb must be 64-{memory} (this node's memory), got {memory_mib}")
        if disk_gb is not None:
            pool = shutil.disk_usage(self.storage.root)
            if not 1 <= disk_gb * GIB <= pool.total:
                raise SalError(f"disk_gb must be 1-{pool.total // GIB} (this node's storage pool), got {disk_gb}")

    def _check_room(self, vcpus: int, memory_mib: int, disk_gb: int | None) -> None:
        """OverCommitted when the node's VMs, this one too, would hold more than its allocation ratios allow
        (under the disks' lock: two creates at once are counted one after the other)."""
        if self.ratios is None:
            return
        wanted = capacity.Resources(vcpus, memory_mib * MIB, (disk_gb or 0) * GIB)
        capacity.check_room(wanted, capacity.host_total(self.storage.root),
                            held(self.state_dir) + capacity.quotas(self.storage), self.ratios)

    def _disks_in_use(self) -> dict[str, VmRecord]:
        """Each volume that is a VM's disk -> that VM's record, whoever owns it and whichever driver made it.
        A record that cannot be read is left out: its VM cannot run, so it holds no disk."""
        in_use = {}
        for name in self.names():
            with contextlib.suppress(SalError):
                record = VmRecord.load(self.state_dir / name)
                in_use.update(dict.fromkeys(record.disk_volumes, record))
        return in_use

    def _image(self, caller: Caller, image: str, in_use: dict[str, VmRecord]) -> OwnedVolume:
        """The volume `image` names: one the caller may see, or else the (shared) volume of the pulled image of
        that name. A volume the caller may see comes first: no tenant's image name stands in for it."""
        try:
            volume = self.volumes.info(caller, image)
        except VolumeNotFound:
            pulled = self.images.volume_of(image)
            if pulled is None:
                raise
            volume = self.volumes.info(caller, pulled)
        holder = in_use.get(volume.name)
        # A shared volume is an image, but not when it is the disk of a VM the caller may not see (shared by
        # mistake, say): that is someone's data.
        if holder is not None and not caller.may_act_on(holder.owner):
            raise SalError(f"volume {image!r} is another VM's disk, not an image")
        if not (volume.path / IMAGE_DISK).is_file():
            raise SalError(f"volume {image!r} is not an image: it has no {IMAGE_DISK}")
        return volume

    def _data_volume(self, caller: Caller, name: str, in_use: dict[str, VmRecord]) -> OwnedVolume:
        volume = self.volumes.changeable(caller, name)
        holder = in_use.get(name)
        if holder is not None:
            vm = f"VM {holder.name!r}" if caller.may_act_on(holder.owner) else "another VM"  # never another's VM name
            raise SalError(f"volume {name!r} is attached to {vm} already")
        return volume

    def _data_disk(self, volume: OwnedVolume) -> DiskSpec:
        disk = volume.path / IMAGE_DISK
        if not disk.exists():
            if volume.read_only:
                raise SalError(f"volume {volume.name!r} is read-only and has no {IMAGE_DISK}")
            limit = self.storage.usage(volume.name).limit
            if not limit:
                raise SalError(
                    f"volume {volume.name!r} has no quota, so its disk has no size: create it with quota_mb"
                )
            with open(disk, "wb") as file:
                file.truncate(limit)  # sparse: takes no space until the guest writes
        return DiskSpec(path=str(disk), readonly=volume.read_only, id=_disk_id(volume.name))

    def _spec(self, root: Path, vcpus: int, memory_mib: int, cmdline: str | None,
              data_disks: list[DiskSpec], addresses: VmAddresses | None, directory: Path) -> VmSpec:
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
                taps=(TapSpec(tap=addresses.tap, mac=addresses.mac, id="net0"),) if addresses else (),
                serial_file=str(console.path(directory)),
            )
        except ValueError as exc:
            raise SalError(str(exc)) from None

    @staticmethod
    def _grow_root(disk: Path, disk_gb: int) -> None:
        size = disk_gb * GIB
        if size < disk.stat().st_size:
            raise SalError(f"disk_gb {disk_gb} is smaller than the image's disk ({disk.stat().st_size / GIB:.1f} GiB)")
        os.truncate(disk, size)

    def start(self, caller: Caller, name: str) -> dict[str, Any]:
        """Run the VM: boot it, or resume it when paused; a running VM is left as it is. From now on it should run:
        the VM keeper starts it again, by its restart policy, should its VMM go."""
        with self.locked(name):
            record = self._record(caller, name)
            self.boot(record, "started")
            # Once it runs, it should (a failed start leaves it as it was); a fresh start forgets earlier restarts.
            Want(run=True).save(self._dir(name))
        return self.info(caller, name)

    def boot(self, record: VmRecord, event: str, **detail: Any) -> None:
        """Run the VM of `record` (the VM's lock held): a new boot gets a fresh console, the old one is kept."""
        directory = self._dir(record.name)
        self._same_driver(record)  # the keeper too: another driver would not find this VM's VMM, and start a second
        self._check_disks(record)
        state = self.driver.state(directory)
        if state in ("Stopped", "Failed", "Unreachable"):
            self._check_memory(record)
            self._network_up(record)  # after a node restart too: the tap and rules went with the host's state
        if state in ("Stopped", "Failed", "Unreachable") or (state == "Created" and self.driver.console_reset_at_boot):
            console.rotate(directory)  # a new VMM, or one that truncates the console as it boots
        self.driver.start(directory, record.spec)
        record_event(directory, event, was=state, **detail, **self._accel(directory))
        log.info(f"vm {event}", extra={"vm": record.name, "was": state})

    def _network_up(self, record: VmRecord) -> None:
        if record.network is None:
            return
        if self.network is None:
            raise VmNetworkError(f"VM {record.name!r} is on the VM network, which this node no longer has "
                                 "(mycelium_url, vm_network)")
        with self._disks_locked():
            self.network.up(record.network, self._addresses())

    def _check_memory(self, record: VmRecord) -> None:
        """The VMs that run, this one too, must fit in the node's memory: the kernel's OOM killer would otherwise
        choose among tenants' VMs."""
        running = 0
        for name in self.names():
            if name != record.name and self.driver.pid(self.state_dir / name) is not None:
                with contextlib.suppress(SalError):
                    running += VmRecord.load(self.state_dir / name).spec.memory_mib
        memory = node_capacity()[1]
        if running + record.spec.memory_mib > memory:
            raise SalError(f"VM {record.name!r} needs {record.spec.memory_mib} MiB, and the VMs running here use "
                           f"{running} of this node's {memory} MiB")

    def _accel(self, directory: Path) -> dict[str, Any]:
        accel = self.driver.details(directory).get("accel")
        return {"accel": accel} if accel else {}

    def _check_disks(self, record: VmRecord) -> None:
        """Refuse to boot from a volume that is not the one the VM was created with: deleted, then made again
        under the same name by anyone, it holds someone else's disk, or one planted for this VM."""
        for volume, uuid in record.disk_uuids.items():
            try:
                found = self.storage.info(volume).uuid  # which volume is there, whoever owns it
            except VolumeNotFound:
                raise SalError(f"volume {volume!r}, a disk of VM {record.name!r}, is gone") from None
            if found != uuid:
                raise SalError(
                    f"volume {volume!r} is not the one VM {record.name!r} was created with (it was deleted and made "
                    "again): the VM does not boot from it"
                )

    def stop(self, caller: Caller, name: str, *, timeout: float = 30.0) -> dict[str, Any]:
        """Power the guest off (ACPI, then forced after `timeout` seconds) and end its process; it should not run."""
        with self.locked(name):
            self._record(caller, name)
            directory = self._dir(name)
            want = Want.load(directory)
            Want(run=False, restarts=want.restarts).save(directory)  # first: the keeper must not start it again
            was = self.driver.state(directory)
            self.driver.stop(directory, timeout)
            if was != "Stopped":
                record_event(directory, "stopped", was=was)
        log.info("vm stopped", extra={"vm": name})
        return self.info(caller, name)

    # -- what a running VM can do, where its driver can ------------------------------

    def pause(self, caller: Caller, name: str) -> dict[str, Any]:
        return self._act(caller, name, "pause", "paused", lambda directory: self.driver.pause(directory))

    def resume(self, caller: Caller, name: str) -> dict[str, Any]:
        return self._act(caller, name, "pause", "resumed", lambda directory: self.driver.resume(directory))

    def reboot(self, caller: Caller, name: str) -> dict[str, Any]:
        """Reset the guest. Where the VMM truncates the console at a reboot (cloud-hypervisor), the boot before is
        kept first; elsewhere (QEMU) the console goes on in the same file."""

        def reboot(directory: Path) -> None:
            state = self.driver.state(directory)
            if state not in ("Running", "Paused"):
                raise InvalidVmState(f"only a running or paused VM can be rebooted; {name!r} is {state}")
            if self.driver.console_reset_at_boot:
                console.rotate(directory)
            self.driver.reboot(directory)

        return self._act(caller, name, "reboot", "rebooted", reboot)

    def _act(self, caller: Caller, name: str, feature: str, event: str, action) -> dict[str, Any]:
        self._require(feature)
        with self.locked(name):
            self._record(caller, name)
            directory = self._dir(name)
            action(directory)
            record_event(directory, event)
        log.info(f"vm {event}", extra={"vm": name})
        return self.info(caller, name)

    def _require(self, feature: str) -> None:
        if feature not in self.driver.features:
            raise Unsupported(f"the {self.driver.name} driver cannot {feature} VMs on this node")

    def attach(self, caller: Caller, name: str, volume: str) -> dict[str, Any]:
        """Give the VM the data volume `volume` (the caller's) as a disk: at once if it runs, at its next boot if not."""
        with self.locked(name), self._disks_locked():
            record = self._record(caller, name)
            data = self._data_volume(caller, volume, self._disks_in_use())
            disk = self._data_disk(data)
            directory = self._dir(name)
            if self.driver.state(directory) != "Stopped":
                self._require("hotplug")
                self.driver.add_disk(directory, disk)
            self._save(record, volumes=(*record.volumes, volume), disk_uuids={**record.disk_uuids, volume: data.uuid},
                       disks=(*record.spec.disks, disk))
            record_event(directory, "disk_attached", volume=volume)
        return self.info(caller, name)

    def detach(self, caller: Caller, name: str, volume: str) -> dict[str, Any]:
        """Take the data volume `volume` from the VM: at once if it runs (the guest must let it go), else from its
        next boot. The volume and its data stay."""
        with self.locked(name):
            record = self._record(caller, name)
            if volume not in record.volumes:
                raise SalError(f"volume {volume!r} is not a disk of VM {name!r}")
            disk_path = str(self.storage.info(volume).path / IMAGE_DISK)
            disk = next((disk for disk in record.spec.disks[1:] if disk.path == disk_path), None)
            if disk is None:
                raise SalError(f"VM {name!r} has no disk for volume {volume!r} in its record")
            directory = self._dir(name)
            if self.driver.state(directory) != "Stopped":
                self._require("hotplug")
                self.driver.remove_disk(directory, disk.id)
            self._save(record, volumes=tuple(v for v in record.volumes if v != volume),
                       disk_uuids={v: uuid for v, uuid in record.disk_uuids.items() if v != volume},
                       disks=tuple(d for d in record.spec.disks if d.id != disk.id))
            record_event(directory, "disk_detached", volume=volume)
        return self.info(caller, name)

    def _save(self, record: VmRecord, *, volumes, disk_uuids, disks) -> None:
        spec = VmSpec.from_dict({**record.spec.as_dict(), "disks": [vars(disk) for disk in disks]})
        VmRecord(**{**vars(record), "volumes": tuple(volumes), "disk_uuids": dict(disk_uuids), "spec": spec}).save(
            self._dir(record.name))

    def snapshot(self, caller: Caller, name: str, snapshot: str) -> dict[str, Any]:
        """Save the VM's memory and devices as `snapshot` (the VM pauses meanwhile, and runs again if it ran).
        Its disks are not in it: they go on changing. At most MAX_SNAPSHOTS a VM: each holds its memory."""
        self._require("snapshot")
        _check_snapshot_name(snapshot)
        with self.locked(name):
            record = self._record(caller, name)
            directory = self._dir(name)
            target = directory / SNAPSHOTS / snapshot
            if target.exists():
                raise SalError(f"VM {name!r} has a snapshot {snapshot!r} already")
            if len(self._snapshots(directory)) >= MAX_SNAPSHOTS:
                raise SalError(f"VM {name!r} has {MAX_SNAPSHOTS} snapshots, the most a VM keeps: delete one first")
            state = self.driver.state(directory)
            if state not in ("Running", "Paused"):
                raise InvalidVmState(f"only a running or paused VM can be snapshotted; {name!r} is {state}")
            target.mkdir(mode=0o700, parents=True)
            paused = False
            try:
                if state == "Running":
                    self.driver.pause(directory)
                    paused = True
                self.driver.snapshot(directory, target)
                # The disks it was taken with: a restore boots from these volumes or not at all.
                write_atomic(target / SNAPSHOT_DISKS, json.dumps(record.disk_uuids))
            except BaseException:
                shutil.rmtree(target, ignore_errors=True)
                if paused:
                    with contextlib.suppress(SalError):  # the snapshot's error is the one to report
                        self.driver.resume(directory)
                raise
            if paused:
                self.driver.resume(directory)
            record_event(directory, "snapshotted", snapshot=snapshot)
        return {"vm": name, "snapshot": snapshot, "path": str(target)}

    def delete_snapshot(self, caller: Caller, name: str, snapshot: str) -> None:
        _check_snapshot_name(snapshot)
        with self.locked(name):
            self._record(caller, name)
            target = self._dir(name) / SNAPSHOTS / snapshot
            if not target.is_dir():
                raise SalError(f"VM {name!r} has no snapshot {snapshot!r}")
            shutil.rmtree(target)
            record_event(self._dir(name), "snapshot_deleted", snapshot=snapshot)

    @staticmethod
    def _snapshots(directory: Path) -> list[str]:
        folder = directory / SNAPSHOTS
        return sorted(entry.name for entry in folder.iterdir() if entry.is_dir()) if folder.is_dir() else []

    def restore(self, caller: Caller, name: str, snapshot: str) -> dict[str, Any]:
        """Run a stopped VM again from its snapshot `snapshot`; it comes back paused (vm_resume runs it). Only
        with the disks it had then: a volume detached since, or deleted and made again, is not given back."""
        self._require("snapshot")
        _check_snapshot_name(snapshot)
        with self.locked(name):
            record = self._record(caller, name)
            directory = self._dir(name)
            source = directory / SNAPSHOTS / snapshot
            if not source.is_dir():
                raise SalError(f"VM {name!r} has no snapshot {snapshot!r}")
            if self.driver.state(directory) != "Stopped":
                raise InvalidVmState(f"VM {name!r} runs: stop it before restoring a snapshot")
            try:
                taken_with = json.loads((source / SNAPSHOT_DISKS).read_text())
            except (OSError, ValueError):
                taken_with = None
            if taken_with != record.disk_uuids:
                raise SalError(f"VM {name!r}'s disks changed since snapshot {snapshot!r} was taken: it cannot be restored")
            self._check_disks(record)
            self._network_up(record)
            self.driver.restore(directory, record.spec, source)
            Want(run=True).save(directory)  # once it is back: a failed restore leaves it stopped
            record_event(directory, "restored", snapshot=snapshot)
        return self.info(caller, name)

    # -- what happened to it ---------------------------------------------------------

    def logs(self, caller: Caller, name: str, lines: int = 100, boot: int = 0) -> str:
        return self.viewer.logs(caller, name, lines, boot)

    def events(self, caller: Caller, name: str, limit: int = lifecycle.EVENTS_KEPT) -> list[dict[str, Any]]:
        return self.viewer.events(caller, name, limit)

    def delete(self, caller: Caller, name: str) -> None:
        """Stop the VM and remove it, its record (and so its owner), its tap and rules and its root disk. Its data
        volumes stay: they are the user's."""
        self.stop(caller, name, timeout=5.0)
        with self.locked(name):
            record = self._record(caller, name)
            if record.network is not None and self.network is not None:
                with self._disks_locked():
                    self.network.down(record.network, self._addresses(leaving=name))
            try:
                self._delete_root(caller, record)
            except VolumeNotFound:
                pass  # a script deleted it already: the VM goes all the same
            except (SalError, OSError) as exc:
                # The record goes anyway, or the name could never be used again; the volume is left to delete by hand.
                log.warning("vm root volume not deleted", extra={"vm": name, "volume": record.root_volume, "error": str(exc)})
            shutil.rmtree(self._dir(name))
        # Its data volumes are detached, their disk files kept with their data.
        log.info("vm deleted", extra={"vm": name, "volumes_kept": list(record.volumes)})

    def _delete_root(self, caller: Caller, record: VmRecord) -> None:
        uuid = record.disk_uuids.get(record.root_volume)
        if uuid is not None and self.storage.info(record.root_volume).uuid != uuid:
            return  # the VM's root disk was deleted and the name taken again: that volume is not the VM's to delete
        self.volumes.delete(caller, record.root_volume)

    def info(self, caller: Caller, name: str) -> dict[str, Any]:
        record = self._record(caller, name)
        directory, spec = self._dir(name), record.spec
        want = Want.load(directory)
        return {
            "name": name,
            "owner": record.owner,
            "state": self.driver.state(directory),
            "should_run": want.run,
            "restart": record.restart,
            "restarts": len(want.restarts),
            "gave_up": want.gave_up,
            "hypervisor": self.kind,
            "pid": self.driver.pid(directory),
            "image": record.image,
            "vcpus": spec.vcpus,
            "memory_mb": spec.memory_mib,
            "root_volume": record.root_volume,
            "volumes": list(record.volumes),
            "disks": [disk.path for disk in spec.disks],
            "mycelium_ip": record.network.mycelium_ip if record.network else None,
            "private_ip": record.network.private_ip if record.network else None,
            "mac": record.network.mac if record.network else None,
            "tap": record.network.tap if record.network else None,
            **self.driver.details(directory),
            "serial_log": spec.serial_file,
            "boot_logs": [str(console.path(directory, boot)) for boot in range(1, console.BOOTS_KEPT + 1)
                          if console.path(directory, boot).exists()],
            "snapshots": self._snapshots(directory),
            "created": record.created,
        }

    def names(self) -> list[str]:
        entries = self.state_dir.iterdir()
        return sorted(e.name for e in entries if VM_NAME.fullmatch(e.name) and has_record(e))

    def list(self, caller: Caller) -> list[dict[str, Any]]:
        """The VMs the caller may see, by name."""
        visible = []
        for name in self.names():
            with contextlib.suppress(VmNotFound):  # another's VM, or one deleted since the directory was read
                visible.append(self.info(caller, name))
        return visible

    def stop_all(self, *, timeout: float = 5.0) -> None:
        """Stop every VM, whoever owns it (a node shutting down, a test cleaning up)."""
        for vm in self.list(OPERATOR):
            if vm["state"] != "Stopped":
                self.stop(OPERATOR, vm["name"], timeout=timeout)


def _check_snapshot_name(snapshot: object) -> str:
    if not isinstance(snapshot, str) or not VM_NAME.fullmatch(snapshot):
        raise SalError(f"invalid snapshot name {snapshot!r}: use 1-48 lowercase letters, digits and '-', not at either end")
    return snapshot


def _disk_id(volume: str) -> str:
    """A data disk's device id: "data-NAME", or, past QEMU's 31-character node names, "data-" and a digest of the
    volume's name (unique per volume, unlike a cut)."""
    readable = f"data-{volume}"
    return readable if len(readable) <= 31 else f"data-{hashlib.sha256(volume.encode()).hexdigest()[:24]}"


def _read(path: Path) -> str | None:
    try:
        return path.read_text().strip() or None
    except FileNotFoundError:
        return None
