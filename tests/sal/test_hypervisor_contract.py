"""Every request the hypervisor client can send, and every answer the simulator gives, for each release it plays,
checked against ../shared/specs/cloud-hypervisor.yaml (tests may read ../shared; the project ships its own copy),
where the real VMM does not answer otherwise (../shared/specs/README.md, "cloud-hypervisor v53.0 as measured")."""

import inspect
import json
from pathlib import Path

import httpx
import jsonschema
import pytest
import yaml

from sal.hypervisor import DiskSpec, HypervisorError, TapSpec, VmSpec
from sal.hypervisor.drivers.cloud_hypervisor import HypervisorClient
from sal.hypervisor.drivers.cloud_hypervisor.openapi import SPEC_RESOURCE
from sal.hypervisor.drivers.cloud_hypervisor.simulator import RELEASES
from tests.sal.test_cloud_hypervisor_releases import simulator

SPEC_FILE = Path(__file__).resolve().parents[3] / "shared" / "specs" / "cloud-hypervisor.yaml"
SHIPPED = Path(__file__).resolve().parents[2] / "sal" / "hypervisor" / "drivers" / "cloud_hypervisor" / SPEC_RESOURCE

# The statuses the real VMM answers beyond the spec's, by (method, path) and release (as measured). Any error may
# also be a 500: the VMM's answer to anything but a missing VM, a bad body, or (main) a few refusals.
BEYOND_THE_SPEC = {
    ("put", "/vmm.shutdown"): {"v53.0": {200}, "main": {200}},  # 200 with an empty body, where the spec says 204
    ("put", "/vm.boot"): {"main": {400, 409}},  # a config taken at create, refused at boot
}


@pytest.fixture(params=sorted(RELEASES))
def released(request, short_dir):
    """A simulator process playing each release, and a client of it that records every exchange."""
    with simulator(short_dir, request.param) as running:
        recording = Recording(running.client.socket_path)
        yield request.param, HypervisorClient(running.client.socket_path, transport=recording), recording


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


def test_every_client_request_and_simulator_answer_follows_the_spec(spec, released, short_dir):
    release, client, recording = released
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
    client.shutdown()
    client.boot()
    client.delete()
    client.restore(snapshot, resume=False)
    client.power_button()  # paused: heard on resume, so the VMM stays to be shut down
    client.shutdown_vmm()

    called = {name for name, _ in inspect.getmembers(HypervisorClient, inspect.isfunction) if not name.startswith("_")}
    assert called - {"close"} == {  # a new client method must be exercised here too
        "ping", "create", "boot", "info", "state", "counters", "add_disk", "add_net", "remove_device", "pause",
        "snapshot", "resume", "reboot", "power_button", "shutdown", "delete", "restore", "shutdown_vmm",
    }
    for request, response in recording.exchanges:
        operation = operation_of(spec, request)
        assert response.status_code in (200, 204), (request.url.path, response.status_code, response.text)
        assert answered_as_specified(operation, request, response, release), (request.url.path, response.status_code)
        if response.status_code == 200 and response.content:
            check(spec, response.json(), operation["responses"][200]["content"]["application/json"]["schema"])
        else:
            assert response.content == b""


def test_every_error_answer_is_a_list_of_messages_with_a_status_of_the_spec_or_as_measured(spec, released, short_dir):
    release, client, recording = released
    kernel, disk, extra = (short_dir / n for n in ("vmlinux", "root.raw", "data.raw"))
    for path in (kernel, disk, extra):
        path.write_bytes(b"\0" * 512)
    good = VmSpec(kernel=str(kernel), disks=(DiskSpec(path=str(disk), id="root"),), serial_file=str(short_dir / "serial"))
    raw = {"payload": {"kernel": str(kernel)}, "disks": [{"path": str(disk), "id": "root"}]}
    refusals = 0

    def refused(action, *arguments):
        nonlocal refusals
        with pytest.raises(HypervisorError):
            action(*arguments)
        refusals += 1

    for action in (client.boot, client.pause, client.counters):  # no VM
        refused(action)
    refused(client.create, {**raw, "serial": {"mode": "File", "file": str(short_dir / "gone" / "serial")}})
    client.create(good)
    for action in (client.reboot, client.counters, client.shutdown, client.power_button):  # never booted
        refused(action)
    refused(client.snapshot, short_dir)
    for bad in ({**raw, "cpus": {"boot_vcpus": 2, "max_vcpus": 1}},
                {**raw, "disks": [*raw["disks"], {"path": str(extra), "id": "root"}]}):
        client.delete()
        client.create(bad)
        refused(client.boot)
    client.delete()
    client.create(good)
    client.boot()
    refused(client.resume)
    refused(client.add_disk, DiskSpec(path=str(extra), id="root"))
    refused(client.add_disk, DiskSpec(path=str(disk), id="again"))
    refused(client.remove_device, "nope")
    client.pause()
    refused(client.pause)
    refused(client.restore, short_dir)

    errors = [(request, response) for request, response in recording.exchanges if response.status_code >= 400]
    assert len(errors) == refusals
    for request, response in errors:
        messages = response.json()
        assert isinstance(messages, list) and messages and all(isinstance(m, str) for m in messages), response.text
        assert response.status_code != 405
        assert response.status_code == 500 or answered_as_specified(operation_of(spec, request), request, response,
                                                                    release), (request.url.path, response.status_code)


def operation_of(spec, request):
    """The spec's operation for a request, its body checked against the spec's schema."""
    path = request.url.path.removeprefix("/api/v1")
    method = request.method.lower()
    assert path in spec["paths"] and method in spec["paths"][path], f"{method} {path} is not in the spec"
    operation = spec["paths"][path][method]
    if request.content:
        check(spec, json.loads(request.content), operation["requestBody"]["content"]["application/json"]["schema"])
    else:
        assert "requestBody" not in operation or not operation["requestBody"].get("required"), path
    return operation


def answered_as_specified(operation, request, response, release) -> bool:
    path = request.url.path.removeprefix("/api/v1")
    beyond = BEYOND_THE_SPEC.get((request.method.lower(), path), {}).get(release, set())
    return str(response.status_code) in {str(code) for code in operation["responses"]} or response.status_code in beyond
