"""A cloud-hypervisor stand-in: the VMM REST API of cloud-hypervisor.yaml on a UNIX socket.

Like the real VMM, one process holds at most one VM, and it is started the same way:

    python -m sal.hypervisor.drivers.cloud_hypervisor.simulator --api-socket path=/run/vm/web1.sock

No guest code runs. What is real is the API: every request body is checked
against the upstream spec (shipped beside this file), the VM moves through
cloud-hypervisor's state machine (Created → Running ↔ Paused → Shutdown, boot
again from Shutdown), and the answers are the daemon's, as
../shared/specs/README.md describes them: 204 with no body on success, errors as
a JSON array of messages with 404 (no VM, unknown device), 405 (the VM is not in
a state for that action, as the spec lists), 400 (invalid config), 409
(duplicate device id or path) and 500 for anything else. Booting checks that the
kernel or firmware and every disk image exist, as the real VMM's boot fails
without them. Snapshots are directories (config.json, state.json) that restore
reads back.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

import uvicorn
from fastapi import FastAPI, Request, Response
from fastapi.responses import JSONResponse

from sal.hypervisor.drivers.cloud_hypervisor import openapi
from sal.hypervisor.drivers.cloud_hypervisor.client import API_VERSION

log = logging.getLogger("zeronode.hypervisor.simulator")


class ApiFailure(Exception):
    """An answer other than success: the status and the messages the VMM would send."""

    def __init__(self, status: int, *messages: str):
        super().__init__(messages[0] if messages else str(status))
        self.status = status
        self.messages = list(messages)


@dataclass
class Device:
    id: str
    kind: str  # "disk" or "net"
    path: str | None
    bdf: str


@dataclass
class SimulatedVmm:
    config: dict[str, Any] | None = None
    state: str | None = None  # Created, Running, Paused, Shutdown (None: no VM)
    devices: dict[str, Device] = field(default_factory=dict)
    boots: int = 0
    reboots: int = 0
    _next_device: int = 0
    _next_slot: int = 1

    # -- helpers ---------------------------------------------------------------------

    def _vm(self) -> dict[str, Any]:
        if self.config is None:
            raise ApiFailure(404, "VM is not created")
        return self.config

    def _require(self, action: str, *states: str) -> None:
        self._vm()
        if self.state not in states:
            raise ApiFailure(405, f"cannot {action} the VM: it is {self.state}, not {' or '.join(states)}")

    def _attach(self, kind: str, entry: dict[str, Any]) -> Device:
        """Give a device its id (cloud-hypervisor names unnamed ones "_disk0", "_net1", ...) and a PCI slot."""
        if "id" not in entry:
            entry["id"] = f"_{kind}{self._next_device}"
            self._next_device += 1
        if entry["id"] in self.devices:
            raise ApiFailure(409, f"a device with id {entry['id']!r} already exists")
        path = entry.get("path")
        if path is not None and any(d.path == path for d in self.devices.values()):
            raise ApiFailure(409, f"the disk image {path} is already attached")
        device = Device(entry["id"], kind, path, f"0000:00:{self._next_slot:02x}.0")
        self._next_slot += 1
        self.devices[device.id] = device
        return device

    # -- the API ---------------------------------------------------------------------

    def ping(self) -> dict[str, Any]:
        return {"version": API_VERSION, "build_version": f"{API_VERSION}-zeronode-simulator", "pid": os.getpid(), "features": []}

    def create(self, config: dict[str, Any]) -> None:
        if self.config is not None:
            raise ApiFailure(500, "VM is already created")
        payload = config["payload"]
        if not any(payload.get(kind) for kind in ("kernel", "firmware", "igvm")):
            raise ApiFailure(400, "Invalid VM config", "no kernel, firmware or igvm in the payload")
        cpus = config.setdefault("cpus", {"boot_vcpus": 1, "max_vcpus": 1})
        if cpus["boot_vcpus"] > cpus["max_vcpus"]:
            raise ApiFailure(400, "Invalid VM config", "boot_vcpus is greater than max_vcpus")
        config.setdefault("memory", {"size": 512 * 1024 * 1024})
        self.devices.clear()
        try:
            for entry in config.get("disks", []):
                self._attach("disk", entry)
            for entry in config.get("net", []):
                self._attach("net", entry)
        except ApiFailure as failure:
            self.devices.clear()
            raise ApiFailure(400, "Invalid VM config", *failure.messages) from None
        self.config, self.state = config, "Created"

    def delete(self) -> None:
        # Like the VMM, deleting when there is no VM is not an error.
        self.config, self.state = None, None
        self.devices.clear()

    def boot(self) -> None:
        config = self._vm()
        if self.state in ("Running", "Paused"):
            raise ApiFailure(500, "Error booting VM", "VM is already booted")
        payload = config["payload"]
        missing = [
            f"cannot open {kind} {payload[kind]}" for kind in ("kernel", "firmware", "initramfs", "igvm")
            if payload.get(kind) and not Path(payload[kind]).is_file()
        ] + [
            f"cannot open disk image {disk['path']}" for disk in config.get("disks", [])
            if disk.get("path") and not Path(disk["path"]).exists()
        ]
        if missing:
            raise ApiFailure(500, "Error booting VM", *missing)
        self.state = "Running"
        self.boots += 1

    def pause(self) -> None:
        self._require("pause", "Running")
        self.state = "Paused"

    def resume(self) -> None:
        self._require("resume", "Paused")
        self.state = "Running"

    def shutdown(self) -> None:
        self._require("shut down", "Running", "Paused")
        self.state = "Shutdown"

    def reboot(self) -> None:
        self._require("reboot", "Running")
        self.reboots += 1

    def power_button(self) -> None:
        # The guest hears the button and powers off: what an ACPI-aware guest does.
        self._require("press the power button of", "Running")
        self.state = "Shutdown"

    def info(self) -> dict[str, Any]:
        config = self._vm()
        return {
            "config": config,
            "state": self.state,
            "memory_actual_size": config["memory"]["size"],
            "device_tree": {
                device.id: {"id": device.id, "resources": [], "children": [], "pci_bdf": device.bdf}
                for device in self.devices.values()
            },
        }

    def counters(self) -> dict[str, dict[str, int]]:
        self._vm()
        return {
            device.id: ({"read_bytes": 0, "write_bytes": 0, "read_ops": 0, "write_ops": 0} if device.kind == "disk"
                        else {"rx_bytes": 0, "tx_bytes": 0, "rx_frames": 0, "tx_frames": 0})
            for device in self.devices.values()
        }

    def add_device(self, kind: str, entry: dict[str, Any]) -> dict[str, str] | None:
        """Hot-plugged into a booted VM: its PCI info (200). Cold-added to a created one: None (204)."""
        config = self._vm()
        device = self._attach(kind, entry)
        config.setdefault("disks" if kind == "disk" else "net", []).append(entry)
        if self.state in ("Running", "Paused"):
            return {"id": device.id, "bdf": device.bdf}
        return None

    def remove_device(self, device_id: str | None) -> None:
        config = self._vm()
        if device_id not in self.devices:
            raise ApiFailure(404, f"no device with id {device_id!r}")
        kind = self.devices.pop(device_id).kind
        section = "disks" if kind == "disk" else "net"
        config[section] = [entry for entry in config.get(section, []) if entry.get("id") != device_id]

    def snapshot(self, destination_url: str | None) -> None:
        # cloud-hypervisor snapshots a paused VM only.
        self._require("snapshot", "Paused")
        directory = local_directory(destination_url)
        (directory / "config.json").write_text(json.dumps(self.config))
        (directory / "state.json").write_text(json.dumps({"state": self.state, "boots": self.boots}))

    def restore(self, source_url: str, resume: bool) -> None:
        if self.config is not None:
            raise ApiFailure(404, "cannot restore: a VM is already created")
        directory = local_directory(source_url)
        try:
            config = json.loads((directory / "config.json").read_text())
        except (OSError, ValueError) as exc:
            raise ApiFailure(400, "Invalid restore config", f"cannot read the snapshot: {exc}") from None
        self.create(config)
        self.state = "Running" if resume else "Paused"


def local_directory(url: str | None) -> Path:
    parsed = urlparse(url or "")
    if parsed.scheme != "file" or not parsed.path:
        raise ApiFailure(500, f"unsupported snapshot URL {url!r}: only file:///directory")
    directory = Path(parsed.path)
    if not directory.is_dir():
        raise ApiFailure(500, f"snapshot directory {directory} does not exist")
    return directory


def create_simulator(vmm: SimulatedVmm | None = None) -> FastAPI:
    vmm = vmm or SimulatedVmm()
    app = FastAPI(title="cloud-hypervisor simulator", openapi_url=None, docs_url=None, redoc_url=None)
    app.state.vmm = vmm
    base = "/api/v1"

    @app.exception_handler(ApiFailure)
    async def failure(request: Request, exc: ApiFailure) -> JSONResponse:
        log.info("request refused", extra={"path": request.url.path, "status": exc.status, "messages": exc.messages})
        return JSONResponse(exc.messages, status_code=exc.status)

    async def body_of(request: Request, endpoint: str) -> Any:
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

    def done(result: Any = None) -> Response:
        return Response(status_code=204) if result is None else JSONResponse(result)

    @app.get(f"{base}/vmm.ping")
    async def ping() -> Response:
        return done(vmm.ping())

    @app.put(f"{base}/vmm.shutdown")
    async def shutdown_vmm(request: Request) -> Response:
        request.app.state.stop()
        return done()

    @app.get(f"{base}/vm.info")
    async def info() -> Response:
        return done(vmm.info())

    @app.get(f"{base}/vm.counters")
    async def counters() -> Response:
        return done(vmm.counters())

    actions = {
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

    @app.put(base + "/{endpoint}")
    async def action(endpoint: str, request: Request) -> Response:
        if endpoint not in openapi.put_endpoints():
            return Response(status_code=404)
        body = await body_of(request, endpoint)
        if endpoint not in actions:
            raise ApiFailure(500, f"{endpoint} is not implemented by the zeronode simulator")
        log.info("vm action", extra={"endpoint": endpoint})
        return done(actions[endpoint](body))

    app.state.stop = lambda: None  # replaced by serve() with the server's own stop
    return app


def socket_path(argument: str) -> str:
    """--api-socket as cloud-hypervisor takes it: "path=/x.sock" or just "/x.sock"."""
    for part in argument.split(","):
        key, sep, value = part.partition("=")
        if sep and key == "path":
            return value
        if not sep:
            return part
    raise SystemExit(f"--api-socket needs path=...: got {argument!r}")


def serve(path: str) -> None:
    app = create_simulator()
    server = uvicorn.Server(uvicorn.Config(app, uds=path, log_config=None, access_log=False, lifespan="off"))

    def stop() -> None:
        server.should_exit = True

    app.state.stop = stop
    server.run()


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--api-socket", required=True, help="path=/path/to/api.sock")
    args = parser.parse_args(argv)
    from zeronode import logs

    logs.setup()
    log.warning("this is the cloud-hypervisor SIMULATOR: no guest runs", extra={"socket": socket_path(args.api_socket)})
    serve(socket_path(args.api_socket))


if __name__ == "__main__":
    sys.exit(main())
