"""Every request the hypervisor client can send, and every answer the simulator gives, checked against
../shared/specs/cloud-hypervisor.yaml (tests may read ../shared; the project ships its own copy)."""

import inspect
import json
from pathlib import Path

import httpx
import jsonschema
import pytest
import yaml

from sal.hypervisor import DiskSpec, TapSpec, VmSpec
from sal.hypervisor.drivers.cloud_hypervisor import HypervisorClient
from sal.hypervisor.drivers.cloud_hypervisor.openapi import SPEC_RESOURCE

SPEC_FILE = Path(__file__).resolve().parents[3] / "shared" / "specs" / "cloud-hypervisor.yaml"
SHIPPED = Path(__file__).resolve().parents[2] / "sal" / "hypervisor" / "drivers" / "cloud_hypervisor" / SPEC_RESOURCE


@pytest.fixture(scope="module")
def spec():
    assert SPEC_FILE.is_file(), f"the upstream spec is expected at {SPEC_FILE}"
    return yaml.safe_load(SPEC_FILE.read_text())


def strict(schema):
    """The spec with unknown properties refused: a misspelt field is ignored by the VMM, so we catch it here."""
    if isinstance(schema, dict):
        strict_schema = {key: strict(value) for key, value in schema.items()}
        if "properties" in schema and "additionalProperties" not in schema:
            strict_schema["additionalProperties"] = False
        return strict_schema
    if isinstance(schema, list):
        return [strict(item) for item in schema]
    return schema


def check(spec, instance, schema):
    jsonschema.Draft4Validator(strict({**schema, "components": spec["components"]})).validate(instance)


class Recording(httpx.BaseTransport):
    """The real UNIX-socket transport, keeping each request and its answer."""

    def __init__(self, socket_path):
        self.inner = httpx.HTTPTransport(uds=str(socket_path))
        self.exchanges: list[tuple[httpx.Request, httpx.Response]] = []

    def handle_request(self, request):
        response = self.inner.handle_request(request)
        response.read()
        self.exchanges.append((request, response))
        return response


def test_the_shipped_spec_is_upstreams_unchanged():
    assert SHIPPED.read_bytes() == SPEC_FILE.read_bytes()


def test_every_client_request_and_simulator_answer_follows_the_spec(spec, vmm, short_dir):
    recording = Recording(vmm.socket_path)
    client = HypervisorClient(vmm.socket_path, transport=recording)
    kernel, disk, extra, snapshot = (short_dir / n for n in ("vmlinux", "root.raw", "data.raw", "snap"))
    for path in (kernel, disk, extra):
        path.write_bytes(b"\0" * 512)
    snapshot.mkdir()

    client.ping()
    client.create(VmSpec(
        vcpus=2, memory_mib=256, kernel=str(kernel), cmdline="console=ttyS0", initramfs=None,
        disks=(DiskSpec(path=str(disk), id="root", readonly=True),),
        taps=(TapSpec(tap="tap0", mac="52:54:00:00:00:01", ip="10.0.0.1", mask="255.255.255.0", id="nic0"),),
        serial_file=str(short_dir / "serial.log"),
    ))
    client.boot()
    client.info()
    client.state()
    client.counters()
    client.add_disk(DiskSpec(path=str(extra), id="data"))
    client.add_net(TapSpec(tap="tap1"))
    client.remove_device("data")
    client.pause()
    client.snapshot(snapshot)
    client.resume()
    client.reboot()
    client.power_button()
    client.boot()
    client.shutdown()
    client.delete()
    client.restore(snapshot, resume=False)
    client.shutdown_vmm()

    called = {name for name, _ in inspect.getmembers(HypervisorClient, inspect.isfunction) if not name.startswith("_")}
    assert called - {"close"} == {  # a new client method must be exercised here too
        "ping", "create", "boot", "info", "state", "counters", "add_disk", "add_net", "remove_device", "pause",
        "snapshot", "resume", "reboot", "power_button", "shutdown", "delete", "restore", "shutdown_vmm",
    }

    for request, response in recording.exchanges:
        path = request.url.path.removeprefix("/api/v1")
        method = request.method.lower()
        assert path in spec["paths"] and method in spec["paths"][path], f"{method} {path} is not in the spec"
        operation = spec["paths"][path][method]
        if request.content:
            schema = operation["requestBody"]["content"]["application/json"]["schema"]
            check(spec, json.loads(request.content), schema)
        else:
            assert "requestBody" not in operation or not operation["requestBody"].get("required"), path
        assert response.status_code in (200, 204), (path, response.status_code, response.text)
        assert str(response.status_code) in {str(code) for code in operation["responses"]}, (path, response.status_code)
        if response.status_code == 200:
            body_schema = operation["responses"][200]["content"]["application/json"]["schema"]
            check(spec, response.json(), body_schema)
        else:
            assert response.content == b""
