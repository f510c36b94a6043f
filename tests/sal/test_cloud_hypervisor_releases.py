"""The simulator against ../shared/specs/README.md, "cloud-hypervisor v53.0 as measured": each point, for each
release it plays (v53.0, upstream main), with the statuses where they differ, and what the client makes of them."""

from __future__ import annotations

import contextlib
import socket
import subprocess
import sys
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest

from sal.hypervisor import DeviceConflict, DiskSpec, InvalidVmConfig, VmmExiting, VmmUnreachable, VmNotCreated
from sal.hypervisor.drivers.cloud_hypervisor import HypervisorClient
from sal.hypervisor.drivers.cloud_hypervisor.simulator import (
    ACPI_IGNORED,
    DISK_COUNTERS,
    RELEASES,
    SimulatedVmm,
    create_simulator,
)
from sal.hypervisor.drivers.cloud_hypervisor.vmm import SIMULATOR
from tests.support.serving import BackgroundServer
from tests.support.waiting import wait_until

WAIT = 20  # seconds a simulator gets to start, or to exit on its own

# Where the releases differ, the status each answers (as measured).
MEASURED = {
    "v53.0": {"bad config at boot": 500, "duplicate id at boot": 500, "duplicate id at add-disk": 500,
              "unknown device at remove": 500},
    "main": {"bad config at boot": 400, "duplicate id at boot": 409, "duplicate id at add-disk": 409,
             "unknown device at remove": 404},
}
TEARDOWN = ["Error from API", "API response receive error", "receiving on a closed channel"]
BOOT_LINE = "zeronode simulator: guest booted (boot {})"


@dataclass
class Simulator:
    """A simulated VMM process playing `release`, and a client of it."""

    release: str
    process: subprocess.Popen
    client: HypervisorClient

    def put(self, endpoint: str, body: dict[str, Any] | None = None) -> httpx.Response:
        """The raw answer: status and body as the VMM sends them."""
        return self.client.http.put(f"/{endpoint}", json=body)

    def get(self, endpoint: str) -> httpx.Response:
        return self.client.http.get(f"/{endpoint}")

    def exit_code(self) -> int:
        """Its exit code, once it has exited on its own."""
        return self.process.wait(WAIT)


@contextlib.contextmanager
def simulator(directory: Path, release: str) -> Iterator[Simulator]:
    """The simulator as a process, started as a driver starts it, playing `release`."""
    socket = directory / "api.sock"
    process = subprocess.Popen(
        [sys.executable, "-m", SIMULATOR, "--api-socket", f"path={socket}", "--release", release],
        stderr=subprocess.DEVNULL,
    )
    client = HypervisorClient(socket)
    try:
        wait_until(client.ping, WAIT, f"the {release} simulator to answer", process=process, ignoring=(VmmUnreachable,),
                   interval=0.02)
        yield Simulator(release, process, client)
    finally:
        client.close()
        process.kill()
        process.wait()


@pytest.fixture(params=sorted(RELEASES))
def simulated(request, short_dir) -> Iterator[Simulator]:
    with simulator(short_dir, request.param) as running:
        yield running


@pytest.fixture
def in_process(short_dir) -> Iterator[Callable[[str], HypervisorClient]]:
    """in_process(release): a client of the simulator's app served by a thread of this process, which nothing
    ends: what a simulator process answers in the tenth of a second before it exits stays there to be asked."""
    servers = []

    def serve(release: str) -> HypervisorClient:
        path = short_dir / f"in-process-{release}.sock"
        listening = socket.socket(socket.AF_UNIX)
        listening.bind(str(path))
        servers.append(BackgroundServer(create_simulator(SimulatedVmm(RELEASES[release])), [listening], lifespan="off"))
        return HypervisorClient(path)

    yield serve
    for server in servers:
        server.stop()


@pytest.fixture
def files(short_dir) -> dict[str, Path]:
    paths = {name: short_dir / name for name in ("vmlinux", "root.raw", "data.raw", "serial.log")}
    for name in ("vmlinux", "root.raw", "data.raw"):
        paths[name].write_bytes(b"\0" * 512)
    return paths


def config(files: dict[str, Path], **changes: Any) -> dict[str, Any]:
    """A VmConfig body as the driver sends one, with `changes`."""
    return {
        "cpus": {"boot_vcpus": 1, "max_vcpus": 1},
        "memory": {"size": 256 << 20},
        "payload": {"kernel": str(files["vmlinux"]), "cmdline": "console=ttyS0"},
        "disks": [{"path": str(files["root.raw"]), "id": "root"}],
        "serial": {"mode": "File", "file": str(files["serial.log"])},
        "console": {"mode": "Off"},
        **changes,
    }


def booted(simulated: Simulator, files: dict[str, Path], **changes: Any) -> None:
    assert simulated.put("vm.create", config(files, **changes)).status_code == 204
    assert simulated.put("vm.boot").status_code == 204


def answered(response: httpx.Response) -> tuple[int, str]:
    """An error's status and its root cause (the last message)."""
    return response.status_code, response.json()[-1]


# -- the VMM -------------------------------------------------------------------------------


def test_vmm_shutdown_answers_200_with_an_empty_body_then_the_process_exits(simulated):
    answer = simulated.put("vmm.shutdown")
    assert (answer.status_code, answer.content, answer.headers["content-length"]) == (200, b"", "0")
    assert simulated.exit_code() == 0


def test_ping_says_the_release(simulated):
    ping = simulated.client.ping()
    if simulated.release == "v53.0":
        assert (ping["version"], ping["build_version"]) == ("53.0.0", "v53.0")
    assert (ping["version"], ping["build_version"]) == (RELEASES[simulated.release].version,
                                                        RELEASES[simulated.release].build_version)


# -- wrong states ----------------------------------------------------------------------------


def test_wrong_state_actions_answer_500_with_messages_never_405(simulated, files):
    not_running = (500, "VM is not running")
    snapshot = {"destination_url": f"file://{files['vmlinux'].parent}"}
    actions = [("vm.pause", None), ("vm.resume", None), ("vm.shutdown", None), ("vm.power-button", None),
               ("vm.snapshot", snapshot)]
    assert [answered(simulated.put(*action)) for action in actions] == [not_running] * 5  # no VM
    assert simulated.put("vm.create", config(files)).status_code == 204
    assert [answered(simulated.put(*action)) for action in actions] == [not_running] * 5  # not booted

    assert simulated.put("vm.boot").status_code == 204
    assert answered(simulated.put("vm.resume")) == (500, "Invalid transition: InvalidStateTransition(Running, Running)")
    assert answered(simulated.put("vm.snapshot", snapshot)) == (500, "Trying to snapshot while VM is running")
    assert simulated.put("vm.pause").status_code == 204
    assert answered(simulated.put("vm.pause")) == (500, "Invalid transition: InvalidStateTransition(Paused, Paused)")


def test_reboot_of_a_vm_never_booted_answers_404(simulated, files):
    assert simulated.put("vm.reboot").status_code == 404  # no VM
    assert simulated.put("vm.create", config(files)).status_code == 204
    assert answered(simulated.put("vm.reboot")) == (404, "VM is not created")


def test_counters_or_pause_with_no_vm_answer_500(simulated):
    assert answered(simulated.get("vm.counters")) == (500, "VM is not running")
    assert answered(simulated.put("vm.pause")) == (500, "VM is not running")


def test_counters_of_a_created_or_shut_down_vm_answer_500(simulated, files):
    assert simulated.put("vm.create", config(files)).status_code == 204
    assert answered(simulated.get("vm.counters")) == (500, "VM is not running")
    assert simulated.put("vm.boot").status_code == 204
    assert simulated.get("vm.counters").status_code == 200
    assert simulated.put("vm.shutdown").status_code == 204
    assert answered(simulated.get("vm.counters")) == (500, "VM is not running")


# -- configs taken at create, refused at boot ------------------------------------------------


BAD_CONFIGS = {  # what is wrong -> (its changes to a good config, given the files; as measured; the client's error)
    "boot_vcpus over max_vcpus": (lambda files: {"cpus": {"boot_vcpus": 2, "max_vcpus": 1}},
                                  "bad config at boot", InvalidVmConfig),
    "no kernel": (lambda files: {"payload": {"cmdline": "console=ttyS0"}}, "bad config at boot", InvalidVmConfig),
    "a disk id twice": (lambda files: {"disks": [{"path": str(files["root.raw"]), "id": "root"},
                                                 {"path": str(files["data.raw"]), "id": "root"}]},
                        "duplicate id at boot", DeviceConflict),
}


@pytest.mark.parametrize("wrong", sorted(BAD_CONFIGS))
def test_a_bad_config_is_taken_at_create_and_refused_at_boot(simulated, files, wrong):
    changes, measured, error = BAD_CONFIGS[wrong]
    assert simulated.put("vm.create", config(files, **changes(files))).status_code == 204
    assert simulated.put("vm.boot").status_code == MEASURED[simulated.release][measured]
    with pytest.raises(error):  # the same type from either release
        simulated.client.boot()
    assert simulated.client.state() == "Created"


# -- devices ---------------------------------------------------------------------------------


def test_add_disk_with_a_duplicate_id(simulated, files):
    duplicate = {"path": str(files["data.raw"]), "id": "root"}
    assert simulated.put("vm.create", config(files)).status_code == 204
    assert simulated.put("vm.add-disk", duplicate).status_code == MEASURED[simulated.release]["duplicate id at add-disk"]
    assert simulated.put("vm.boot").status_code == 204
    assert simulated.put("vm.add-disk", duplicate).status_code == MEASURED[simulated.release]["duplicate id at add-disk"]
    with pytest.raises(DeviceConflict, match="Identifier root is not unique"):
        simulated.client.add_disk(DiskSpec(**duplicate))


def test_add_disk_with_a_path_in_use_is_taken_cold_and_refused_hot(simulated, files):
    again = {"path": str(files["root.raw"]), "id": "again"}
    assert simulated.put("vm.create", config(files)).status_code == 204
    assert simulated.put("vm.add-disk", again).status_code == 204  # cold: nothing is opened yet
    assert simulated.put("vm.delete").status_code == 204
    booted(simulated, files)
    status, cause = answered(simulated.put("vm.add-disk", again))
    assert status == 500 and cause.startswith("Failed to get Write lock") and "already locked" in cause


def test_remove_device_with_an_unknown_id(simulated, files):
    booted(simulated, files)
    refused = simulated.put("vm.remove-device", {"id": "nope"})
    assert refused.status_code == MEASURED[simulated.release]["unknown device at remove"]
    with pytest.raises(VmNotCreated, match='No device with id "nope"'):
        simulated.client.remove_device("nope")
    assert simulated.put("vm.remove-device", {"id": "root"}).status_code == 204


def test_a_serial_file_in_a_missing_directory_fails_create(simulated, files, short_dir):
    missing = {"mode": "File", "file": str(short_dir / "gone" / "serial.log")}
    refused = simulated.put("vm.create", config(files, serial=missing))
    assert refused.status_code == 500 and "Error creating console devices" in refused.json()
    assert simulated.get("vm.info").status_code == 404  # no VM was created


def test_info_has_a_device_tree_once_booted(simulated, files):
    assert simulated.put("vm.create", config(files)).status_code == 204
    assert "device_tree" not in simulated.client.info()
    assert simulated.put("vm.boot").status_code == 204
    tree = simulated.client.info()["device_tree"]
    assert {"root", "__ioapic", "__rng", "__serial", "_virtio-pci-root", "_virtio-pci-__rng"} <= set(tree)
    assert tree["_virtio-pci-root"]["children"] == ["root"] and tree["_virtio-pci-root"]["pci_bdf"].startswith("0000:")


def test_disk_counters(simulated, files):
    booted(simulated, files)
    assert set(simulated.client.counters()["root"]) == {
        "read_bytes", "write_bytes", "read_ops", "write_ops",
        "read_latency_avg", "read_latency_min", "read_latency_max",
        "write_latency_avg", "write_latency_min", "write_latency_max",
    } == set(DISK_COUNTERS)


# -- states and power ------------------------------------------------------------------------


def test_shutdown_drops_the_vm_and_keeps_its_config(simulated, files):
    booted(simulated, files)
    assert simulated.put("vm.shutdown").status_code == 204
    info = simulated.client.info()
    assert info["state"] == "Created" and "device_tree" not in info and info["config"]["disks"][0]["id"] == "root"
    assert simulated.put("vm.boot").status_code == 204  # and it boots again


def test_states_are_created_running_paused_never_shutdown(simulated, files):
    seen = []
    assert simulated.put("vm.create", config(files)).status_code == 204
    for step in ("vm.boot", "vm.pause", "vm.resume", "vm.reboot", "vm.shutdown", "vm.boot", "vm.pause", "vm.shutdown"):
        seen.append(simulated.client.state())
        assert simulated.put(step).status_code == 204, step
    seen.append(simulated.client.state())
    assert seen == ["Created", "Running", "Paused", "Running", "Running", "Created", "Running", "Paused", "Created"]


def test_the_power_button_powers_a_running_guest_off_and_the_process_exits(simulated, files):
    booted(simulated, files)
    assert simulated.put("vm.power-button").status_code == 204
    with pytest.raises(VmmUnreachable):  # VmmExiting while the process ends, then nothing answers
        simulated.client.info()
    assert simulated.exit_code() == 0


@pytest.mark.parametrize("release", sorted(RELEASES))
def test_until_the_process_ends_every_request_answers_the_teardown_500(in_process, release, files):
    client = in_process(release)
    client.create(config(files))
    client.boot()
    client.power_button()
    answer = client.http.get("/vm.info")
    assert (answer.status_code, answer.json()) == (500, TEARDOWN)
    for request in (client.info, client.ping, client.pause):
        with pytest.raises(VmmExiting, match="receiving on a closed channel"):
            request()


def test_reboot_while_paused_runs_the_vm(simulated, files):
    booted(simulated, files)
    assert simulated.put("vm.pause").status_code == 204
    assert simulated.put("vm.reboot").status_code == 204
    assert simulated.client.state() == "Running"


def test_the_power_button_while_paused_is_heard_on_resume(simulated, files):
    booted(simulated, files)
    assert simulated.put("vm.pause").status_code == 204
    assert simulated.put("vm.power-button").status_code == 204
    assert simulated.client.state() == "Paused"  # a paused guest does not hear it yet
    assert simulated.put("vm.resume").status_code == 204
    assert simulated.exit_code() == 0


def test_a_guest_that_ignores_acpi_keeps_running(simulated, files):
    booted(simulated, files, payload={"kernel": str(files["vmlinux"]), "cmdline": f"console=ttyS0 {ACPI_IGNORED}"})
    assert simulated.put("vm.power-button").status_code == 204
    assert simulated.client.state() == "Running" and simulated.process.poll() is None
    assert simulated.put("vm.shutdown").status_code == 204  # forced off


def test_the_serial_file_is_truncated_at_create_boot_and_reboot(simulated, files):
    serial = files["serial.log"]
    serial.write_text("an earlier VM's output\n")
    assert simulated.put("vm.create", config(files)).status_code == 204
    assert serial.read_text() == ""
    lines = []
    for step in ("vm.boot", "vm.reboot", "vm.shutdown", "vm.boot"):
        assert simulated.put(step).status_code == 204
        lines.append(serial.read_text().splitlines())
    boot = [[BOOT_LINE.format(n)] for n in (1, 2)]
    assert lines == [*boot, boot[1], [BOOT_LINE.format(3)]]
