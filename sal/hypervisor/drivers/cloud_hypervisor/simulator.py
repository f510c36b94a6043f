"""A cloud-hypervisor stand-in: the VMM REST API of cloud-hypervisor.yaml on a UNIX socket, answered as a real
release answers it.

    python -m sal.hypervisor.drivers.cloud_hypervisor.simulator --api-socket path=/run/vm/web1.sock [--release v53.0]

Like the real VMM, one process holds at most one VM. No guest code runs: a simulated guest boots at once, writes
one line to its serial file ("zeronode simulator: guest booted (boot N)"), and powers off when it hears the ACPI
power button, unless its cmdline holds the token `zn.sim.acpi=ignore` (a guest that ignores ACPI, to test forced
stops). Every request body is checked against the upstream spec shipped beside this file (400 with the problems).

What it answers follows the real VMM point by point, as measured against cloud-hypervisor v53.0 and upstream main
(../shared/specs/README.md, "cloud-hypervisor v53.0 as measured"); `--release` picks which (RELEASES holds where
they differ):

| situation (as measured)                                  | the simulator answers                                  |
|----------------------------------------------------------|--------------------------------------------------------|
| PUT vmm.shutdown                                         | 200 with an empty body, then the process exits         |
| pause / resume / shutdown / power-button / snapshot in a | 500, "VM is not running" or "InvalidStateTransition(   |
|   wrong state; pause twice; resume while running         |   Running, Running)"; never 405                        |
| vm.reboot of a created VM that was never booted          | 404                                                    |
| vm.counters or vm.pause with no VM                       | 500 ("VM is not running")                              |
| vm.counters on a created (or shut-down) VM               | 500 ("VM is not running")                              |
| vm.create with boot_vcpus > max_vcpus, no kernel, or a   | 204; vm.boot fails: v53.0 500; main 400 (a duplicate   |
|   duplicate disk id                                      |   id: 409)                                             |
| vm.add-disk with a duplicate id                          | v53.0 500; main 409                                    |
| vm.add-disk with a path already in use                   | cold (not booted): 204; hot: 500 "Failed to get Write  |
|                                                          |   lock ... already locked"                             |
| vm.remove-device with an unknown id                      | v53.0 500; main 404                                    |
| a serial file in a directory that does not exist         | 500 at vm.create ("Error creating console devices")    |
| after vm.shutdown                                        | the VM is dropped, its config kept: info says Created  |
| vm.power-button on a running guest (ACPI-aware)          | 204; the guest powers off and the process exits        |
|                                                          |   EXIT_DELAY (0.1 s) later; until then every request,  |
|                                                          |   vm.info too, answers 500 "API response receive       |
|                                                          |   error; receiving on a closed channel"                |
| vm.reboot while paused                                   | 204; the VM reboots to Running                         |
| vm.power-button while paused                             | 204; heard on resume: then power off and exit          |
| vm.info before boot                                      | no device_tree key                                     |
| device_tree of a booted VM                               | the user's devices, each under its _virtio-pci-ID, and |
|                                                          |   __ioapic, __rng (_virtio-pci-__rng), __serial        |
| disk counters                                            | read/write bytes and ops, read_latency_avg/min/max,    |
|                                                          |   write_latency_avg/min/max                            |
| vmm.ping                                                 | the release's version and build_version (v53.0:        |
|                                                          |   "53.0.0", "v53.0")                                   |
| VM states                                                | Created, Running, Paused; never Shutdown               |
| the serial file (serial mode File)                       | truncated at every create, boot and reboot             |

Errors are JSON arrays of messages: the error's chain, top to root, as the VMM writes it ("Error from API", "The
VM could not be paused", "VM is not running"). The words are upstream's (vmm/src/api, vmm/src/vm.rs); the
measurement fixed those quoted above ("cannot open kernel PATH" and the like are the simulator's own).

Beyond the table, as upstream's code does: vm.create and cold adds do not open files, vm.boot and hot adds do
(500 when one cannot be opened; two disks on one image, one of them writable, fail at boot on the image's lock
as a hot add does); a GET of a PUT endpoint, or the reverse, answers 400, an unknown endpoint 404; vm.boot of a
paused VM resumes it; snapshots are directories (config.json, state.json, memory-ranges) that vm.restore reads
back, paused unless asked to resume.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import os
import sys
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

import uvicorn
from fastapi import FastAPI, Request, Response
from fastapi.responses import JSONResponse

from sal.hypervisor.drivers.cloud_hypervisor import openapi
from sal.hypervisor.spec import MIB

log = logging.getLogger("zeronode.hypervisor.simulator")

BASE = "/api/v1"
EXIT_DELAY = 0.1  # seconds from an ACPI power-off to the VMM's exit (as measured)
ACPI_IGNORED = "zn.sim.acpi=ignore"  # in the payload's cmdline: the simulated guest ignores the power button
SECTIONS = {"disk": "disks", "net": "net"}  # a device kind -> its list in VmConfig
DEVICE_NAMES = {"disk": "disk", "net": "network device"}  # as the VMM's messages say them
BOOTABLE = ("kernel", "firmware", "igvm")
DISK_COUNTERS = ("read_bytes", "write_bytes", "read_ops", "write_ops", "read_latency_avg", "read_latency_min",
                 "read_latency_max", "write_latency_avg", "write_latency_min", "write_latency_max")
NET_COUNTERS = ("rx_bytes", "tx_bytes", "rx_frames", "tx_frames")

# The VMM's words, where several answers share them.
ERROR_FROM_API = "Error from API"
NOT_RUNNING = "VM is not running"
NOT_CREATED = "VM is not created"
ALREADY_CREATED = "VM is already created"
NOT_VALID = "Failed to validate config"
TEARDOWN = ("API response receive error", "receiving on a closed channel")
LOCKED = "Failed to get Write lock for disk image {path}: the file is already locked"
NO_SUCH_FILE = "No such file or directory (os error 2)"


@dataclass(frozen=True)
class Release:
    """What a release's vmm.ping says, and the statuses of the answers where releases differ (as measured)."""

    version: str
    build_version: str  # also what the binary's --version prints
    invalid_config: int  # vm.boot of a config that fails validation (boot_vcpus > max_vcpus, nothing to boot)
    duplicate_id: int  # a device id used twice: at vm.boot, at vm.add-disk
    unknown_device: int  # vm.remove-device of an id no device has


RELEASES = {
    "v53.0": Release("53.0.0", "v53.0", invalid_config=500, duplicate_id=500, unknown_device=500),
    # Upstream main at ae44c2971; its ping is not measured: its workspace version, as a build outside git says it.
    "main": Release("54.0.0", "v54.0.0", invalid_config=400, duplicate_id=409, unknown_device=404),
}
DEFAULT_RELEASE = "v53.0"


class ApiFailure(Exception):
    """An answer other than success: the status and the messages the VMM would send."""

    def __init__(self, status: int, *messages: str):
        super().__init__(messages[0] if messages else str(status))
        self.status = status
        self.messages = list(messages)


def api_error(status: int, *chain: str) -> ApiFailure:
    """An error of the VMM's API (not of HTTP): its chain under "Error from API", as the VMM answers it."""
    return ApiFailure(status, ERROR_FROM_API, *chain)


def transition(current: str, wanted: str) -> str:
    return f"Invalid transition: InvalidStateTransition({current}, {wanted})"


@dataclass
class Device:
    id: str
    kind: str  # "disk" or "net"
    bdf: str


@dataclass
class SimulatedVmm:
    release: Release = RELEASES[DEFAULT_RELEASE]
    config: dict[str, Any] | None = None  # the VM's config; None: no VM
    state: str = "Created"  # the VM's, when there is one: Created (not booted), Running or Paused
    devices: dict[str, Device] = field(default_factory=dict)  # plugged into the booted VM
    boots: int = 0
    button_pressed: bool = False  # the power button, pressed while paused: the guest hears it on resume
    exiting: bool = False  # the process is on its way out: every request answers 500
    # Called when the process is to exit EXIT_DELAY seconds from now (the server's; nothing outside one).
    on_exit: Callable[[], None] = lambda: None
    _next_slot: int = 1
    _rng_bdf: str = ""

    # -- which VM there is ---------------------------------------------------------------

    def _vm(self, failure: str) -> dict[str, Any]:
        """The VM's config; 404 with no VM."""
        if self.config is None:
            raise api_error(404, failure, NOT_CREATED)
        return self.config

    def _booted(self, failure: str) -> dict[str, Any]:
        """The config of a booted VM; 500 "VM is not running" with no VM, or one never booted (or shut down)."""
        if self.config is None or self.state == "Created":
            raise api_error(500, failure, NOT_RUNNING)
        return self.config

    # -- the VMM -------------------------------------------------------------------------

    def ping(self) -> dict[str, Any]:
        return {"version": self.release.version, "build_version": self.release.build_version, "pid": os.getpid(),
                "features": []}

    def shutdown_vmm(self) -> None:
        self._exit()

    def _exit(self) -> None:
        self.exiting = True
        self.on_exit()

    # -- the VM's life -------------------------------------------------------------------

    def create(self, config: dict[str, Any]) -> None:
        """Taken as it is (as measured: validation waits for vm.boot); only its serial file is opened now."""
        failure = "The VM could not be created"
        if self.config is not None:
            raise api_error(500, failure, ALREADY_CREATED)
        config.setdefault("cpus", {"boot_vcpus": 1, "max_vcpus": 1})
        config.setdefault("memory", {"size": 512 * MIB})
        truncate_serial(config, failure)
        self.config, self.state = config, "Created"

    def delete(self) -> None:
        # Like the VMM, deleting when there is no VM is not an error.
        self.config, self.state, self.devices, self.button_pressed = None, "Created", {}, False

    def boot(self) -> None:
        failure = "The VM could not boot"
        config = self._vm(failure)
        if self.state == "Paused":
            return self.resume()
        if self.state == "Running":
            raise api_error(500, failure, "InvalidStateTransition(Running, Running)")
        self._validate(config, failure)
        check_payload(config, failure)
        for disk in config.get("disks", []):
            check_disk(disk, failure)
        if path := locked_twice(config.get("disks", [])):
            raise api_error(500, failure, "Error locking disk images: Another instance likely holds a lock",
                            LOCKED.format(path=path))
        self._plug_all(config)
        self._guest_boots(failure)

    def pause(self) -> None:
        failure = "The VM could not be paused"
        self._booted(failure)
        if self.state == "Paused":
            raise api_error(500, failure, "Cannot pause VM", transition("Paused", "Paused"))
        self.state = "Paused"

    def resume(self) -> None:
        failure = "The VM could not resume"
        self._booted(failure)
        if self.state == "Running":
            raise api_error(500, failure, "Cannot resume VM", transition("Running", "Running"))
        self.state = "Running"
        if self.button_pressed:
            self._guest_hears_the_button()

    def shutdown(self) -> None:
        """The VM is dropped, its config kept: it is Created again, and boots again (as measured)."""
        self._booted("The VM could not shutdown")
        self.state, self.devices, self.button_pressed = "Created", {}, False

    def reboot(self) -> None:
        """Running or paused: the guest boots again, running (as measured); never booted: 404 (as measured)."""
        failure = "The VM could not reboot"
        if self.config is None or self.state == "Created":
            raise api_error(404, failure, NOT_CREATED)
        self._guest_boots(failure)

    def power_button(self) -> None:
        self._booted("Error triggering power button")
        if self.state == "Paused":
            self.button_pressed = True  # a paused guest hears it when resumed (as measured)
        else:
            self._guest_hears_the_button()

    def _guest_boots(self, failure: str) -> None:
        truncate_serial(self.config, failure)
        self.boots += 1
        write_serial(self.config, f"zeronode simulator: guest booted (boot {self.boots})\n")
        self.state, self.button_pressed = "Running", False

    def _guest_hears_the_button(self) -> None:
        """An ACPI-aware guest powers off, and its VMM exits (as measured); one that ignores ACPI does nothing."""
        if ACPI_IGNORED in (self.config["payload"].get("cmdline") or "").split():
            return
        log.info("the simulated guest powers off: the VMM exits", extra={"delay": EXIT_DELAY})
        self._exit()

    # -- what it says of the VM ----------------------------------------------------------

    def info(self) -> dict[str, Any]:
        config = self._vm("The VM info is not available")
        info = {"config": config, "state": self.state, "memory_actual_size": config["memory"]["size"]}
        if self.state != "Created":  # a VM never booted has no devices yet (as measured)
            info["device_tree"] = self._device_tree()
        return info

    def _device_tree(self) -> dict[str, dict[str, Any]]:
        """The user's devices, each behind its virtio-pci device, and the VMM's own (as measured)."""
        tree = {platform: device_node(platform) for platform in ("__ioapic", "__serial")}
        on_pci = {device.id: device.bdf for device in self.devices.values()} | {"__rng": self._rng_bdf}
        for device_id, bdf in on_pci.items():
            tree[device_id] = device_node(device_id)
            tree[f"_virtio-pci-{device_id}"] = device_node(f"_virtio-pci-{device_id}", children=[device_id], bdf=bdf)
        return tree

    def counters(self) -> dict[str, dict[str, int]]:
        self._booted("The VM info is not available")
        return {
            device.id: dict.fromkeys(DISK_COUNTERS if device.kind == "disk" else NET_COUNTERS, 0)
            for device in self.devices.values()
        }

    # -- devices -------------------------------------------------------------------------

    def add_device(self, kind: str, entry: dict[str, Any]) -> dict[str, str] | None:
        """Hot-plugged into a booted VM: its id and PCI address (200). Cold-added to a created one: None (204),
        its files checked at boot."""
        failure = f"The {DEVICE_NAMES[kind]} could not be added to the VM"
        config = self._vm(failure)
        section = SECTIONS[kind]
        self._validate({**config, section: [*config.get(section, []), entry]}, failure)
        if self.state == "Created":
            config.setdefault(section, []).append(entry)
            return None
        if kind == "disk":
            check_disk(entry, failure)
            if any(locks_conflict(entry, disk) for disk in config.get("disks", [])):
                raise api_error(500, failure, "Error from device manager", LOCKED.format(path=entry["path"]))
        device = self._plug(kind, entry)
        config.setdefault(section, []).append(entry)
        return {"id": device.id, "bdf": device.bdf}

    def remove_device(self, device_id: str) -> None:
        failure = "The device could not be removed from the VM"
        config = self._vm(failure)
        if device_id not in device_ids(config):
            unknown = f"No device with id {json.dumps(device_id)} to remove"  # the id Debug-printed, in quotes
            raise api_error(self.release.unknown_device, failure, unknown)
        for section in SECTIONS.values():
            if section in config:
                config[section] = [entry for entry in config[section] if entry.get("id") != device_id]
        self.devices.pop(device_id, None)

    def _validate(self, config: dict[str, Any], failure: str) -> None:
        """What vm.boot and vm.add-* check of the whole config (upstream's validation, as far as it is simulated)."""
        status, problem = self.release.invalid_config, None
        cpus = config["cpus"]
        if cpus["boot_vcpus"] > cpus["max_vcpus"]:
            problem = "Max CPUs lower than boot CPUs"
        elif not any(config["payload"].get(kind) for kind in BOOTABLE):
            problem = "Payload configuration is not bootable"
        elif duplicates := [i for i, n in Counter(device_ids(config)).items() if n > 1]:
            status, problem = self.release.duplicate_id, f"Identifier {duplicates[0]} is not unique"
        if problem:
            raise api_error(status, failure, NOT_VALID, problem)

    def _plug_all(self, config: dict[str, Any]) -> None:
        """The booted VM's devices, from its config: disks, then NICs, then the VMM's entropy device."""
        self.devices, self._next_slot = {}, 1
        for kind, section in SECTIONS.items():
            for entry in config.get(section, []):
                self._plug(kind, entry)
        self._rng_bdf = self._slot()

    def _plug(self, kind: str, entry: dict[str, Any]) -> Device:
        """Plug a device; one without an id gets the VMM's ("_disk0", "_net1", ...), written into its config."""
        if "id" not in entry:
            taken, number = {*self.devices, *device_ids(self.config)}, 0
            while f"_{kind}{number}" in taken:
                number += 1
            entry["id"] = f"_{kind}{number}"
        device = self.devices[entry["id"]] = Device(entry["id"], kind, self._slot())
        return device

    def _slot(self) -> str:
        slot, self._next_slot = self._next_slot, self._next_slot + 1
        return f"0000:00:{slot:02x}.0"

    # -- snapshots -----------------------------------------------------------------------

    def snapshot(self, destination_url: str | None) -> None:
        """A paused VM only (upstream's check), into an existing directory."""
        failure = "The VM could not be snapshotted"
        self._booted(failure)
        if self.state != "Paused":
            raise api_error(500, failure, "Cannot snapshot VM", "Trying to snapshot while VM is running")
        directory = local_directory(destination_url, failure)
        (directory / "config.json").write_text(json.dumps(self.config))
        (directory / "state.json").write_text(json.dumps({"boots": self.boots}))
        (directory / "memory-ranges").write_bytes(b"")  # no guest memory is simulated

    def restore(self, source_url: str, resume: bool) -> None:
        failure = "The VM could not be restored"
        if self.config is not None:
            raise api_error(500, failure, ALREADY_CREATED)
        directory = local_directory(source_url, failure)
        try:
            config = json.loads((directory / "config.json").read_text())
            saved = json.loads((directory / "state.json").read_text())
        except (OSError, ValueError) as exc:
            raise api_error(500, failure, "Cannot restore VM", f"cannot read the snapshot: {exc}") from None
        self.config, self.boots, self.state = config, saved.get("boots", 0), "Paused"
        self._plug_all(config)
        if resume:
            self.resume()


# -- the VM's files ----------------------------------------------------------------------

def serial_file(config: dict[str, Any]) -> Path | None:
    serial = config.get("serial") or {}
    return Path(serial["file"]) if serial.get("mode") == "File" and serial.get("file") else None


def truncate_serial(config: dict[str, Any], failure: str) -> None:
    """Open the serial file anew, as the VMM does at every create, boot and reboot (as measured)."""
    path = serial_file(config)
    if path is None:
        return
    try:
        path.write_bytes(b"")
    except OSError as exc:
        raise api_error(500, failure, "Error creating console devices", os_error(exc)) from None


def write_serial(config: dict[str, Any], line: str) -> None:
    path = serial_file(config)
    if path is not None:
        with open(path, "a") as serial:
            serial.write(line)


def check_payload(config: dict[str, Any], failure: str) -> None:
    for kind in ("kernel", "firmware", "initramfs", "igvm"):
        path = config["payload"].get(kind)
        if path and not Path(path).is_file():
            raise api_error(500, failure, f"cannot open {kind} {path}", NO_SUCH_FILE)


def check_disk(disk: dict[str, Any], failure: str) -> None:
    if disk.get("path") and not Path(disk["path"]).exists():
        raise api_error(500, failure, "Error from device manager", f"cannot open disk image {disk['path']}",
                        NO_SUCH_FILE)


def locks_conflict(disk: dict[str, Any], other: dict[str, Any]) -> bool:
    """Whether two disks cannot both lock their image: the same image, and one of them writes to it."""
    return disk.get("path") is not None and disk.get("path") == other.get("path") and not (
        disk.get("readonly") and other.get("readonly"))


def locked_twice(disks: list[dict[str, Any]]) -> str | None:
    """An image two of the VM's disks would lock against each other, if any."""
    return next((disk["path"] for index, disk in enumerate(disks) for other in disks[:index]
                 if locks_conflict(disk, other)), None)


def os_error(exc: OSError) -> str:
    return f"{exc.strerror} (os error {exc.errno})"


def device_ids(config: dict[str, Any]) -> list[str]:
    """The ids the config gives its devices (one without an id gets the VMM's at boot)."""
    return [entry["id"] for section in SECTIONS.values() for entry in config.get(section) or [] if "id" in entry]


def device_node(device_id: str, *, children: list[str] | None = None, bdf: str | None = None) -> dict[str, Any]:
    node = {"id": device_id, "resources": [], "children": children or []}
    return {**node, "pci_bdf": bdf} if bdf else node


def local_directory(url: str | None, failure: str) -> Path:
    parsed = urlparse(url or "")
    if parsed.scheme != "file" or not parsed.path:
        raise api_error(500, failure, f"Unsupported snapshot URL {url!r}: only file:///directory")
    directory = Path(parsed.path)
    if not directory.is_dir():
        raise api_error(500, failure, f"The snapshot directory {directory} does not exist")
    return directory


# -- the HTTP API ------------------------------------------------------------------------

def create_simulator(vmm: SimulatedVmm | None = None) -> FastAPI:
    vmm = vmm or SimulatedVmm()
    app = FastAPI(title="cloud-hypervisor simulator", openapi_url=None, docs_url=None, redoc_url=None)
    app.state.vmm = vmm
    app.state.stop = lambda: None  # what ends the process: serve() sets it
    vmm.on_exit = lambda: asyncio.get_running_loop().call_later(EXIT_DELAY, lambda: app.state.stop())

    reads: dict[str, Callable[[], Any]] = {"vmm.ping": vmm.ping, "vm.info": vmm.info, "vm.counters": vmm.counters}
    actions: dict[str, Callable[[Any], Any]] = {
        "vmm.shutdown": lambda body: vmm.shutdown_vmm(),
        "vm.create": lambda body: vmm.create(body),
        "vm.delete": lambda body: vmm.delete(),
        "vm.boot": lambda body: vmm.boot(),
        "vm.pause": lambda body: vmm.pause(),
        "vm.resume": lambda body: vmm.resume(),
        "vm.shutdown": lambda body: vmm.shutdown(),
        "vm.reboot": lambda body: vmm.reboot(),
        "vm.power-button": lambda body: vmm.power_button(),
        "vm.add-disk": lambda body: vmm.add_device("disk", body),
        "vm.add-net": lambda body: vmm.add_device("net", body),
        "vm.remove-device": lambda body: vmm.remove_device(body.get("id")),
        "vm.snapshot": lambda body: vmm.snapshot(body.get("destination_url")),
        "vm.restore": lambda body: vmm.restore(body["source_url"], bool(body.get("resume"))),
    }

    @app.exception_handler(ApiFailure)
    async def failure(request: Request, exc: ApiFailure) -> JSONResponse:
        log.info("request refused", extra={"path": request.url.path, "status": exc.status, "messages": exc.messages})
        return JSONResponse(exc.messages, status_code=exc.status)

    @app.api_route(BASE + "/{endpoint}", methods=["GET", "PUT", "POST", "PATCH", "DELETE"])
    async def endpoint(endpoint: str, request: Request) -> Response:
        if vmm.exiting:  # the VMM thread is gone; the API thread answers until the process ends (as measured)
            raise api_error(500, *TEARDOWN)
        if request.method == "GET" and endpoint in reads:
            return answer(reads[endpoint]())
        if request.method == "PUT" and endpoint in openapi.put_endpoints():
            body = await body_of(request, endpoint)
            if endpoint not in actions:
                raise ApiFailure(500, f"{endpoint} is not implemented by the zeronode simulator")
            log.info("vm action", extra={"endpoint": endpoint})
            result = actions[endpoint](body)
            # vmm.shutdown answers 200 with no body (as measured), where the spec says 204.
            return Response(status_code=200) if endpoint == "vmm.shutdown" else answer(result)
        if endpoint in reads or endpoint in openapi.put_endpoints():
            raise ApiFailure(400, "Bad Request")
        raise ApiFailure(404, "Not Found")

    return app


def answer(result: Any) -> Response:
    return Response(status_code=204) if result is None else JSONResponse(result)


async def body_of(request: Request, endpoint: str) -> Any:
    """The request's JSON body, checked against the spec; None for an endpoint that takes none."""
    raw = await request.body()
    if openapi.request_schema(endpoint) is None:
        return None
    try:
        body = json.loads(raw)
    except ValueError:
        raise ApiFailure(400, "the request body is not JSON") from None
    if problems := openapi.body_problems(endpoint, body):
        raise ApiFailure(400, "invalid request body", *problems)
    return body


def socket_path(argument: str) -> str:
    """--api-socket as cloud-hypervisor takes it: "path=/x.sock" or just "/x.sock"."""
    for part in argument.split(","):
        key, sep, value = part.partition("=")
        if sep and key == "path":
            return value
        if not sep:
            return part
    raise SystemExit(f"--api-socket needs path=...: got {argument!r}")


def serve(path: str, release: Release) -> None:
    app = create_simulator(SimulatedVmm(release))
    app.state.stop = end_process
    uvicorn.Server(uvicorn.Config(app, uds=path, log_config=None, access_log=False, lifespan="off")).run()


def end_process() -> None:
    """End at once, as the VMM's process does: a graceful shutdown of the HTTP server would take tenths of a second
    more, with the API still answering."""
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(0)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--api-socket", required=True, help="path=/path/to/api.sock")
    parser.add_argument("--release", choices=sorted(RELEASES), default=DEFAULT_RELEASE,
                        help="the cloud-hypervisor release whose answers it gives")
    args = parser.parse_args(argv)
    from zeronode import logs

    logs.setup()
    log.warning("this is the cloud-hypervisor SIMULATOR: no guest runs",
                extra={"socket": socket_path(args.api_socket), "release": args.release})
    serve(socket_path(args.api_socket), RELEASES[args.release])


if __name__ == "__main__":
    sys.exit(main())
