"""docker-compose.yml is a valid Compose file (no engine here: `config` only)."""

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
                     "node1-runner", "node2-redis", "node2-supervisor", "node2-runner"):
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
