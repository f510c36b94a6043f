"""docker-compose.yml is a valid Compose file (no engine here: `config` only)."""

import os
import shutil
import subprocess
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def compose_command():
    docker = shutil.which("docker")
    if docker and subprocess.run([docker, "compose", "version"], capture_output=True).returncode == 0:
        return [docker, "compose"]
    legacy = shutil.which("docker-compose")  # Debian's package, installed by scripts/install-system-packages
    assert legacy, "neither `docker compose` nor `docker-compose` is installed; run scripts/install-system-packages"
    return [legacy]


def test_compose_file_is_valid():
    result = subprocess.run(
        [*compose_command(), "-f", str(ROOT / "docker-compose.yml"), "config", "--quiet"],
        capture_output=True,
        text=True,
        timeout=60,
        cwd=ROOT,
    )
    assert result.returncode == 0, result.stderr


def compose_services():
    import yaml

    return yaml.safe_load((ROOT / "docker-compose.yml").read_text())["services"]


def test_every_service_command_is_one_the_cli_has(zn):
    """A renamed command or option breaks the stack only at deploy time: catch it here."""
    for name, service in compose_services().items():
        command = service.get("command", [])
        if command[:1] != ["zeronode"]:
            continue
        options = [arg for arg in command[2:] if arg.startswith("--")]
        help_text = zn(command[1], "--help").stdout
        for option in options:
            assert option in help_text, f"{name}: `zeronode {command[1]}` has no {option}"


def test_the_stack_has_what_the_design_names():
    services = compose_services()
    for required in ("postgres", "ledger", "coord", "coord-redis", "node1-redis", "node1-identity", "node1-supervisor",
                     "node1-runner", "node1-vm-keeper", "node2-redis", "node2-supervisor", "node2-runner",
                     "node2-vm-keeper"):
        assert required in services, required
    for name in ("postgres", "ledger", "coord", "coord-redis", "node1-supervisor", "node2-supervisor"):
        assert "healthcheck" in services[name], f"{name} has no healthcheck"


def test_the_dockerfile_copies_only_what_exists():
    for line in (ROOT / "Dockerfile").read_text().splitlines():
        if line.startswith("COPY ") and "--from=" not in line:
            *sources, _destination = line.split()[1:]
            for source in sources:
                assert (ROOT / source).exists(), f"Dockerfile copies {source}, which is not in the repo"


def test_every_redis_of_the_stack_is_append_only():
    """A node's Redis without append-only loses accepted jobs in a crash, and its supervisor refuses it."""
    redises = {name: service for name, service in compose_services().items() if service.get("image", "").startswith("redis")}
    assert {"coord-redis", "node1-redis", "node2-redis"} <= set(redises)
    for name, service in redises.items():
        command = service["command"]
        settings = dict(zip(command[1::2], command[2::2], strict=False))
        assert command[0] == "redis-server", name
        assert settings.get("--appendonly") == "yes", f"{name} is not append-only"
        assert settings.get("--appendfsync") in ("everysec", "always"), f"{name} fsyncs less than every second"
        assert any(volume.endswith(":/data") for volume in service.get("volumes", [])), f"{name} keeps its files in no volume"


def resolved_stack() -> dict:
    """The stack as Compose reads it: anchors merged, variables filled in (ZERONODE_NODE1_POOL and the rest unset)."""
    import yaml

    environment = {name: value for name, value in os.environ.items() if not name.startswith("ZERONODE_")}
    result = subprocess.run([*compose_command(), "-f", str(ROOT / "docker-compose.yml"), "config"],
                            capture_output=True, text=True, timeout=60, cwd=ROOT, env=environment)
    assert result.returncode == 0, result.stderr
    return yaml.safe_load(result.stdout)


def mounts(service: dict) -> dict[str, tuple[str, bool]]:
    """Where each named volume is mounted in a service, and whether it may be written there."""
    found = {}
    for volume in service.get("volumes", []):
        if isinstance(volume, str):
            source, target, *mode = volume.split(":")
            found[target] = (source, "ro" not in mode)
        else:
            found[volume["target"]] = (volume["source"], not volume.get("read_only", False))
    return found


def test_nodes_have_a_storage_pool_kvm_and_what_btrfs_needs():
    """A node's runners and VM keeper make volumes and VMs: the pool its settings name, mounted where they point,
    a btrfs directory of the host (Docker's own volumes are not btrfs), /dev/kvm, and CAP_SYS_ADMIN (btrfs)."""
    stack = resolved_stack()
    services, volumes = stack["services"], stack["volumes"]
    for node in ("node1", "node2"):
        settings = services[f"{node}-runner"]["environment"]
        pool, vm_dir = settings["ZERONODE_STORAGE_ROOT"], settings["ZERONODE_VM_DIR"]
        assert not vm_dir.startswith(settings["ZERONODE_STATE_DIR"] + "/"), "runners refuse a vm_dir in the supervisor's state"
        for role in ("runner", "vm-keeper", "identity"):
            service = services[f"{node}-{role}"]
            assert service["environment"] == settings, f"{node}-{role} reads other settings than its runners"
            assert service.get("user") == "root", f"{node}-{role}"
            assert any(device.split(":")[0] == "/dev/kvm" for device in service.get("devices", [])), f"{node}-{role}: no /dev/kvm"
            assert service.get("privileged") or "SYS_ADMIN" in service.get("cap_add", []), f"{node}-{role}: btrfs needs CAP_SYS_ADMIN"
            source, writable = mounts(service)[pool]
            assert writable, f"{node}-{role} cannot write the pool"
            assert volumes[source]["driver_opts"]["o"] == "bind", f"{source} is a Docker volume, not the host's btrfs"
            assert volumes[source]["driver_opts"]["device"].startswith("/"), source
            assert mounts(service)[vm_dir][0] == f"{node}-vms", f"{node}-{role} does not see the node's VM records"
        assert mounts(services[f"{node}-runner"])[vm_dir][1] and mounts(services[f"{node}-vm-keeper"])[vm_dir][1]
        # Consoles: the supervisor reads the VM records (through its group), and writes none.
        supervisor = services[f"{node}-supervisor"]
        assert supervisor["environment"] == settings and "user" not in supervisor, "the supervisor runs as zeronode"
        assert mounts(supervisor)[vm_dir] == (f"{node}-vms", False)
        # The keeper restarts the VMMs its runners started: it must see their processes.
        assert services[f"{node}-vm-keeper"]["pid"] == f"service:{node}-runner"
    assert volumes["node1-pool"]["driver_opts"]["device"] != volumes["node2-pool"]["driver_opts"]["device"]


def test_the_image_makes_the_directories_the_nodes_volumes_take_their_modes_from():
    dockerfile = (ROOT / "Dockerfile").read_text()
    assert "install -d -o zeronode -g zeronode -m 0700 /var/lib/zeronode " in dockerfile
    assert "install -d -o root -g zeronode -m 2750 /var/lib/zeronode-vms" in dockerfile
    assert "qemu-system-x86" in dockerfile  # the hypervisor the nodes' settings name
