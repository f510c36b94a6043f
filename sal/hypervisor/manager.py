"""The node's VMs: one cloud-hypervisor process per VM, its disks on btrfs.

Everything about a VM lives in STATE_DIR/vms/NAME/:

    vm.json     what it is: image, CPUs, memory, disks (written at create)
    vmm.pid     the VMM process, while one runs
    api.sock    the VMM's API socket
    vmm.log     the VMM's stdout and stderr
    serial.log  the guest's serial console

So the files, not a process's memory, are the truth: a runner that restarts
builds a new VmManager and finds its running VMs again by pid and socket. VMM
processes run in their own session, so stopping or killing runners never
stops a VM. A lock file per VM serialises the runners of a pool acting on it.

Disks: the root disk is a writable btrfs snapshot of an image volume (an
instant clone of its `disk.raw`); data disks are existing volumes, each
holding a `disk.raw` sized to the volume's quota. An image may carry its own
kernel (`vmlinux`, optional `initramfs` and `cmdline`); without one the VM
boots the node's firmware.

When `cloud-hypervisor` is not installed (or settings say hypervisor =
"simulated") VMMs are sal.hypervisor.simulator processes: same socket, same API,
same code path here, but no guest runs; the manager logs that as a warning and
node_info() reports it.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import logging
import os
import re
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from sal.errors import SalError
from sal.hypervisor.client import HypervisorClient, HypervisorError, VmmFailure, VmmUnreachable, VmNotCreated
from sal.hypervisor.config import MIB, DiskSpec, TapSpec, VmSpec
from sal.storage.base import Storage

log = logging.getLogger("zeronode.hypervisor")

GIB = 1024 * MIB
# A VM name is also a hostname label and the prefix of its root volume ("NAME-root").
VM_NAME = re.compile(r"[a-z0-9]([a-z0-9-]{0,46}[a-z0-9])?")
TAP_NAME = re.compile(r"[A-Za-z0-9_-]{1,15}")  # Linux interface names: at most 15 bytes
MAX_SOCKET_PATH = 107  # sun_path holds 108 bytes with the terminating NUL
DEFAULT_CMDLINE = "console=ttyS0 root=/dev/vda rw"
IMAGE_DISK, IMAGE_KERNEL, IMAGE_INITRAMFS, IMAGE_CMDLINE = "disk.raw", "vmlinux", "initramfs", "cmdline"


class VmNotFound(SalError):
    pass


class VmExists(SalError):
    pass


class InvalidVmName(SalError, ValueError):
    pass


def check_vm_name(name: str) -> str:
    if not isinstance(name, str) or not VM_NAME.fullmatch(name):
        raise InvalidVmName(f"invalid VM name {name!r}: use 1-48 lowercase letters, digits and '-', not at either end")
    return name


def resolve_hypervisor(choice: str, binary: str) -> str | None:
    """The cloud-hypervisor executable to run, or None for the simulator."""
    if choice == "simulated":
        return None
    found = shutil.which(binary)
    if found is None and choice == "cloud-hypervisor":
        raise SalError(f"hypervisor = \"cloud-hypervisor\" but {binary!r} is not installed")
    return found


class VmManager:
    def __init__(
        self,
        state_dir: Path,
        storage: Storage,
        *,
        hypervisor: str = "auto",
        binary: str = "cloud-hypervisor",
        firmware: Path | None = None,
        start_timeout: float = 20.0,
    ):
        self.state_dir = Path(state_dir)
        self.storage = storage
        self.firmware = firmware
        self.start_timeout = start_timeout
        self.binary = resolve_hypervisor(hypervisor, binary)
        self.kind = "cloud-hypervisor" if self.binary else "simulated"
        self._children: dict[str, subprocess.Popen] = {}  # VMMs this process started, reaped on sight
        self.state_dir.mkdir(mode=0o700, parents=True, exist_ok=True)
        if self.binary is None:
            log.warning(
                "cloud-hypervisor is not in use: VMs run on the SIMULATOR and no guest code runs",
                extra={"hypervisor": "simulated", "setting": hypervisor},
            )

    # -- where things are ----------------------------------------------------------

    def _dir(self, name: str) -> Path:
        return self.state_dir / check_vm_name(name)

    def _socket(self, name: str) -> Path:
        return self._dir(name) / "api.sock"

    def _client(self, name: str) -> HypervisorClient:
        return HypervisorClient(self._socket(name))

    @contextlib.contextmanager
    def _locked(self, name: str) -> Iterator[None]:
        locks = self.state_dir / ".locks"
        locks.mkdir(mode=0o700, exist_ok=True)
        with open(locks / check_vm_name(name), "a") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)
            yield

    def _record(self, name: str) -> dict[str, Any]:
        try:
            return json.loads((self._dir(name) / "vm.json").read_text())
        except FileNotFoundError:
            raise VmNotFound(f"no VM named {name!r}") from None

    def _write_record(self, name: str, record: dict[str, Any]) -> None:
        path = self._dir(name) / "vm.json"
        temporary = path.with_suffix(".tmp")
        temporary.write_text(json.dumps(record, indent=2))
        temporary.replace(path)

    # -- the VMM process -----------------------------------------------------------

    def _vmm_pid(self, name: str) -> int | None:
        """The pid of this VM's VMM if it runs (checked by its command line, so a reused pid is not taken for it)."""
        child = self._children.get(name)
        if child is not None and child.poll() is not None:  # ours and exited: reap it
            del self._children[name]
        try:
            pid = int((self._dir(name) / "vmm.pid").read_text())
            command = Path(f"/proc/{pid}/cmdline").read_bytes()
            status = Path(f"/proc/{pid}/stat").read_text()
        except (OSError, ValueError):  # no pid file, or no such process
            return None
        zombie = _state(status) == "Z"
        return None if zombie or f"path={self._socket(name)}".encode() not in command else pid

    def _command(self, socket: Path) -> list[str]:
        api = ["--api-socket", f"path={socket}"]
        if self.binary:
            return [self.binary, *api]
        return [sys.executable, "-m", "sal.hypervisor.simulator", *api]

    def _spawn(self, name: str) -> HypervisorClient:
        directory, socket = self._dir(name), self._socket(name)
        socket.unlink(missing_ok=True)
        with open(directory / "vmm.log", "ab") as output:
            process = subprocess.Popen(
                self._command(socket), stdin=subprocess.DEVNULL, stdout=output, stderr=output,
                cwd=directory, start_new_session=True,  # its own session: runners come and go, VMs stay
            )
        self._children[name] = process
        (directory / "vmm.pid").write_text(str(process.pid))
        client = self._client(name)
        deadline = time.monotonic() + self.start_timeout
        while True:
            if process.poll() is not None:
                raise VmmFailure(f"the VMM of {name} exited with {process.returncode} at start: {self._log_tail(name)}")
            try:
                client.ping()
                log.info("vmm started", extra={"vm": name, "pid": process.pid, "hypervisor": self.kind})
                return client
            except VmmUnreachable:
                if time.monotonic() > deadline:
                    self._kill(name)
                    raise VmmFailure(f"the VMM of {name} did not answer within {self.start_timeout:.0f} s") from None
                time.sleep(0.02)

    def _kill(self, name: str, grace: float = 5.0) -> None:
        """Make sure the VMM is gone: it was asked to exit; after `grace` seconds it is killed."""
        deadline = time.monotonic() + grace
        pid = self._vmm_pid(name)
        # Wait on the pid itself: an exiting process loses its command line before it is gone.
        while pid is not None and _running(pid):
            child = self._children.get(name)
            if child is not None and child.poll() is not None:  # ours: reaped, so it is gone
                break
            if time.monotonic() > deadline:
                os.kill(pid, signal.SIGKILL)
            time.sleep(0.02)
        self._children.pop(name, None)
        (self._dir(name) / "vmm.pid").unlink(missing_ok=True)
        self._socket(name).unlink(missing_ok=True)

    def _log_tail(self, name: str, lines: int = 5) -> str:
        try:
            return " | ".join((self._dir(name) / "vmm.log").read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return "(no log)"

    def _live_state(self, name: str) -> str:
        """The VM's state as its VMM reports it, or "Stopped" when no VMM runs for it."""
        if self._vmm_pid(name) is None:
            return "Stopped"
        try:
            return self._client(name).state()
        except VmNotCreated:
            return "Stopped"
        except VmmUnreachable:
            return "Unreachable"

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
        if len(str(directory / "api.sock")) > MAX_SOCKET_PATH:
            raise SalError(f"the state dir {self.state_dir} is too long for the VM's API socket path")
        for tap in taps:
            if not isinstance(tap, str) or not TAP_NAME.fullmatch(tap):
                raise SalError(f"invalid tap name {tap!r}: 1-15 letters, digits, '_' or '-'")
        with self._locked(name):
            if directory.exists():
                raise VmExists(f"a VM named {name!r} exists already")
            image_volume = self.storage.info(image)
            if not (image_volume.path / IMAGE_DISK).is_file():
                raise SalError(f"volume {image!r} is not an image: it has no {IMAGE_DISK}")
            data_disks = [self._data_disk(volume, name) for volume in volumes]
            root = self.storage.snapshot(image, f"{name}-root", read_only=False)
            try:
                spec = self._spec(root.path, vcpus, memory_mib, cmdline, data_disks, taps, directory)
                if disk_gb is not None:
                    self._grow_root(root.path / IMAGE_DISK, disk_gb)
                    self.storage.set_quota(root.name, disk_gb * GIB)
                directory.mkdir(mode=0o700, parents=True)
                record = {
                    "name": name, "image": image, "root_volume": root.name, "volumes": list(volumes),
                    "created": time.time(), "spec": spec.as_dict(),
                }
                self._write_record(name, record)
            except BaseException:
                self.storage.delete(root.name)
                shutil.rmtree(directory, ignore_errors=True)
                raise
        log.info("vm created", extra={"vm": name, "image": image, "hypervisor": self.kind})
        return self.info(name)

    def _data_disk(self, volume_name: str, vm_name: str) -> DiskSpec:
        volume = self.storage.info(volume_name)
        for other in self._names():  # the records say what is attached; no need to ask each VMM
            if volume_name in self._record(other)["volumes"]:
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
                serial_file=str(directory / "serial.log"),
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
        """Run the VM: start its VMM if needed, create and boot it, or resume it when paused."""
        with self._locked(name):
            record = self._record(name)
            if self._vmm_pid(name) is None:
                client = self._spawn(name)
                state = "Stopped"
            else:
                client, state = self._client(name), self._live_state(name)
            try:
                if state == "Stopped":
                    client.create(VmSpec.from_dict(record["spec"]))
                    client.boot()
                elif state in ("Created", "Shutdown"):
                    client.boot()
                elif state == "Paused":
                    client.resume()
            except HypervisorError:
                if state == "Stopped":  # nothing half-started stays behind
                    self._stop_vmm(name, client)
                raise
        log.info("vm started", extra={"vm": name})
        return self.info(name)

    def stop(self, name: str, *, timeout: float = 30.0) -> dict[str, Any]:
        """Power the guest off (ACPI, then forced after `timeout` seconds) and stop its VMM."""
        with self._locked(name):
            self._record(name)
            if self._vmm_pid(name) is not None:
                client = self._client(name)
                with contextlib.suppress(HypervisorError):
                    if client.state() == "Running":
                        client.power_button()
                        deadline = time.monotonic() + timeout
                        while client.state() == "Running" and time.monotonic() < deadline:
                            time.sleep(0.1)
                    if client.state() in ("Running", "Paused"):
                        client.shutdown()
                self._stop_vmm(name, client)
        log.info("vm stopped", extra={"vm": name})
        return self.info(name)

    def _stop_vmm(self, name: str, client: HypervisorClient) -> None:
        with contextlib.suppress(HypervisorError):
            client.shutdown_vmm()
        self._kill(name)

    def delete(self, name: str) -> None:
        """Stop the VM and remove it with its root disk. Its data volumes stay: they are the user's."""
        self.stop(name, timeout=5.0)
        with self._locked(name):
            record = self._record(name)
            with contextlib.suppress(SalError, OSError):
                self.storage.delete(record["root_volume"])
            shutil.rmtree(self._dir(name))
        # Its data volumes are detached, their disk files kept with their data.
        log.info("vm deleted", extra={"vm": name, "volumes_kept": record["volumes"]})

    def info(self, name: str) -> dict[str, Any]:
        record = self._record(name)
        spec = record["spec"]
        return {
            "name": name,
            "state": self._live_state(name),
            "hypervisor": self.kind,
            "pid": self._vmm_pid(name),
            "image": record["image"],
            "vcpus": spec["vcpus"],
            "memory_mb": spec["memory_mib"],
            "root_volume": record["root_volume"],
            "volumes": record["volumes"],
            "disks": [disk["path"] for disk in spec["disks"]],
            "taps": [tap["tap"] for tap in spec["taps"]],
            "api_socket": str(self._socket(name)),
            "serial_log": spec["serial_file"],
            "created": record["created"],
        }

    def _names(self) -> list[str]:
        entries = self.state_dir.iterdir()
        return sorted(e.name for e in entries if VM_NAME.fullmatch(e.name) and (e / "vm.json").is_file())

    def list(self) -> list[dict[str, Any]]:
        return [self.info(name) for name in self._names()]

    def stop_all(self, *, timeout: float = 5.0) -> None:
        """Stop every VM's VMM (a node shutting down, a test cleaning up)."""
        for vm in self.list():
            if vm["state"] != "Stopped":
                self.stop(vm["name"], timeout=timeout)


def _state(stat: str) -> str:
    """A process's state letter from /proc/PID/stat (after the parenthesised name, which may hold spaces)."""
    return stat.rpartition(")")[2].split()[0]


def _running(pid: int) -> bool:
    """Whether `pid` exists and has not exited (a zombie has)."""
    try:
        return _state(Path(f"/proc/{pid}/stat").read_text()) != "Z"
    except OSError:
        return False


def _read(path: Path) -> str | None:
    try:
        return path.read_text().strip() or None
    except FileNotFoundError:
        return None
