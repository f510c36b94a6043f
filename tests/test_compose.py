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
