"""scripts/install-services into a throwaway root: the users, directories and units it makes, the units
checked by systemd's own tools (`systemd-analyze verify`, and `security --offline=true` for their exposure).

The units' ExecStart must name a zeronode that exists, or `verify` fails. It names INSTALL_ROOT/current/bin/zeronode,
and the install root here is laid out as on a node (docs/operators.md): versions/dev, the venv that runs these
tests, and `current` a link to it. The units are verified by path, not with `--root` (which would also want a
whole OS under the root: sysinit.target and the rest), so the paths in them are the real ones.
"""

import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from tests.support.processes import ZERONODE

ROOT = Path(__file__).resolve().parent.parent
SCRIPT = ROOT / "scripts" / "install-services"
UNITS = ("zeronode-identity", "zeronode-supervisor", "zeronode-runner", "zeronode-vm-keeper", "zeronode-ledger",
         "zeronode-coord")
HARDENED = ("zeronode-identity", "zeronode-supervisor", "zeronode-ledger", "zeronode-coord")
MAX_EXPOSURE = 4.0

pytestmark = pytest.mark.skipif(os.geteuid() != 0, reason="the script makes users and chowns directories: root only")


def seed_os_tree(root: Path) -> None:
    """What Debian has in /etc before zeronode: root, and redis-server's group."""
    etc = root / "etc"
    etc.mkdir(parents=True)
    (etc / "passwd").write_text("root:x:0:0:root:/root:/bin/bash\nredis:x:101:102::/var/lib/redis:/usr/sbin/nologin\n")
    (etc / "group").write_text("root:x:0:\nredis:x:102:\n")
    (etc / "shadow").write_text("root:*:19000:0:99999:7:::\nredis:!:19000::::::\n")
    (etc / "gshadow").write_text("root:*::\nredis:!::\n")
    for name in ("shadow", "gshadow"):
        (etc / name).chmod(0o640)


def installed_layout(install_root: Path) -> None:
    """versions/dev is this test run's venv (the real zeronode command), current -> versions/dev."""
    (install_root / "versions").mkdir(parents=True)
    (install_root / "versions" / "dev").symlink_to(Path(ZERONODE).resolve().parent.parent)
    (install_root / "current").symlink_to("versions/dev")


def install(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, str(SCRIPT), *map(str, args)], capture_output=True, text=True, timeout=120)


@pytest.fixture(scope="module")
def installed(tmp_path_factory):
    base = tmp_path_factory.mktemp("install")
    root, install_root = base / "root", base / "opt-zeronode"
    seed_os_tree(root)
    installed_layout(install_root)
    (root / "etc" / "zeronode").mkdir()
    (root / "etc" / "zeronode" / "node.toml").write_text(
        'state_dir = "/var/lib/zeronode"\nstorage_root = "/srv/pool"\nvm_dir = "/var/lib/zeronode-vms"\n')
    (root / "etc" / "zeronode" / "node.toml").chmod(0o644)
    result = install("--node", "--ledger", "--coord", "--root", root, "--install-root", install_root)
    assert result.returncode == 0, result.stderr
    return root, install_root, result


def passwd(root: Path) -> dict[str, list[str]]:
    return {line.split(":")[0]: line.split(":") for line in (root / "etc" / "passwd").read_text().splitlines()}


def group_id(root: Path, name: str) -> int:
    return next(int(line.split(":")[2]) for line in (root / "etc" / "group").read_text().splitlines()
                if line.split(":")[0] == name)


def test_it_makes_system_users_without_a_login(installed):
    root, _, _ = installed
    users = passwd(root)
    for name in ("zeronode", "zeronode-ledger", "zeronode-coord"):
        assert name in users, name
        assert users[name][6] == "/usr/sbin/nologin"
        assert int(users[name][2]) < 1000, f"{name} is not a system user"
    assert users["zeronode"][5] == "/var/lib/zeronode"


def test_each_directory_has_the_owner_and_mode_its_services_need(installed):
    root, _, _ = installed
    users = passwd(root)
    node_uid, node_gid = int(users["zeronode"][2]), group_id(root, "zeronode")
    expected = {
        "var/lib/zeronode": (node_uid, node_gid, 0o700),
        "var/lib/zeronode-vms": (0, node_gid, 0o2750),  # root's records, readable by the supervisor's group
        "var/lib/zeronode-ledger": (int(users["zeronode-ledger"][2]), group_id(root, "zeronode-ledger"), 0o700),
        "var/lib/zeronode-coord": (int(users["zeronode-coord"][2]), group_id(root, "zeronode-coord"), 0o700),
        "etc/zeronode": (0, 0, 0o755),
    }
    for path, (uid, gid, mode) in expected.items():
        found = (root / path).stat()
        assert (found.st_uid, found.st_gid, found.st_mode & 0o7777) == (uid, gid, mode), path
    settings = (root / "etc" / "zeronode" / "node.toml").stat()  # it may hold secrets: root's, the service's group
    assert (settings.st_uid, settings.st_gid, settings.st_mode & 0o777) == (0, node_gid, 0o640)


def test_the_units_have_every_path_and_user_filled_in(installed):
    root, install_root, _ = installed
    for unit in UNITS:
        text = (root / "etc" / "systemd" / "system" / f"{unit}.service").read_text()
        assert not re.search(r"@[A-Z_]+@", text), f"{unit} has a placeholder left"
        assert f"ExecStart={install_root}/current/bin/zeronode " in text, unit
    supervisor = (root / "etc" / "systemd" / "system" / "zeronode-supervisor.service").read_text().splitlines()
    assert "User=zeronode" in supervisor and "SupplementaryGroups=redis" in supervisor
    runner = (root / "etc" / "systemd" / "system" / "zeronode-runner.service").read_text().splitlines()
    assert "KillMode=control-group" in runner
    # The identity manager's health says whether it can write the pool: its sandbox leaves node.toml's pool writable.
    identity = (root / "etc" / "systemd" / "system" / "zeronode-identity.service").read_text().splitlines()
    assert "ReadWritePaths=-/srv/pool" in identity
    # Its seccomp filter denies @privileged but for chown: it hands rights.json and the key to the supervisor's user.
    filters = [line for line in identity if line.startswith("SystemCallFilter=")]
    assert filters.index("SystemCallFilter=@chown") > filters.index("SystemCallFilter=~@privileged")


@pytest.mark.skipif(not shutil.which("systemd-analyze"), reason="systemd-analyze is systemd's: apt-get install systemd")
def test_systemd_finds_nothing_wrong_with_the_units(installed):
    root, _, _ = installed
    paths = [str(root / "etc" / "systemd" / "system" / f"{unit}.service") for unit in UNITS]
    verified = subprocess.run(["systemd-analyze", "verify", *paths], capture_output=True, text=True, timeout=60)
    assert verified.returncode == 0 and not verified.stderr.strip(), verified.stderr


def exposure(unit: Path) -> float:
    report = subprocess.run(["systemd-analyze", "security", "--offline=true", "--no-pager", str(unit)],
                            capture_output=True, text=True, timeout=60)
    found = re.search(r"Overall exposure level for \S+: (\d+\.\d+)", report.stdout)
    assert found, report.stdout + report.stderr
    return float(found.group(1))


@pytest.mark.skipif(not shutil.which("systemd-analyze"), reason="systemd-analyze is systemd's: apt-get install systemd")
def test_the_services_that_need_no_vmm_are_hardened(installed):
    root, _, _ = installed
    scores = {unit: exposure(root / "etc" / "systemd" / "system" / f"{unit}.service") for unit in UNITS}
    print(scores)  # every unit's, the runner's and the VM keeper's too (pytest -s shows them)
    for unit in HARDENED:
        assert scores[unit] <= MAX_EXPOSURE, f"{unit}: exposure {scores[unit]} > {MAX_EXPOSURE}"
    # The runners and the VM keeper start VMMs, which inherit their sandbox: thinner, but not none.
    for unit in ("zeronode-runner", "zeronode-vm-keeper"):
        assert scores[unit] < 9.6, f"{unit}: exposure {scores[unit]}, as with no sandbox at all"


def test_running_it_again_mends_what_was_changed(installed):
    root, install_root, _ = installed
    (root / "var" / "lib" / "zeronode").chmod(0o755)
    key = root / "var" / "lib" / "zeronode" / "node.key"
    key.write_text("# a key an older install left readable\n")
    key.chmod(0o644)
    again = install("--node", "--root", root, "--install-root", install_root)
    assert again.returncode == 0, again.stderr
    assert (root / "var" / "lib" / "zeronode").stat().st_mode & 0o7777 == 0o700
    assert key.stat().st_mode & 0o777 == 0o600 and key.stat().st_uid == int(passwd(root)["zeronode"][2])
    assert "made the system user" not in again.stdout  # the users are there already


def test_bad_options_are_one_line_errors(tmp_path):
    seed_os_tree(tmp_path)
    for args, says in (
        (["--install-root", "/opt/my zeronode"], "--install-root"),
        (["--config-dir", "etc/zeronode"], "--config-dir"),
        (["--node-user", "Zero Node"], "not a user name"),
        (["--node-user", "root"], "not a user name"),
        (["--root", tmp_path / "missing"], "no such directory"),
    ):
        result = install("--root", tmp_path, *args)
        assert result.returncode == 1, args
        assert says in result.stderr and len(result.stderr.strip().splitlines()) == 1, result.stderr
        assert "Traceback" not in result.stderr


def test_a_node_toml_with_a_bad_path_is_refused_plainly(tmp_path):
    seed_os_tree(tmp_path)
    (tmp_path / "etc" / "zeronode").mkdir()
    (tmp_path / "etc" / "zeronode" / "node.toml").write_text('storage_root = "srv/my pool"\n')
    result = install("--root", tmp_path)
    assert result.returncode == 1 and "storage_root" in result.stderr and "Traceback" not in result.stderr
    assert not (tmp_path / "etc" / "systemd").exists()  # nothing half-installed


def test_a_root_without_an_os_tree_is_refused_plainly(tmp_path):
    result = install("--root", tmp_path)
    assert result.returncode == 1 and "etc/passwd" in result.stderr and "Traceback" not in result.stderr


def test_a_node_without_a_pool_gets_no_vm_keeper_started(tmp_path):
    """Without storage_root there are no VMs: the keeper would exit and be restarted for ever."""
    seed_os_tree(tmp_path)
    (tmp_path / "etc" / "zeronode").mkdir()
    (tmp_path / "etc" / "zeronode" / "node.toml").write_text('vm_dir = "/var/lib/zeronode-vms"\n')
    result = install("--root", tmp_path)
    assert result.returncode == 0, result.stderr
    assert "zeronode-vm-keeper.service is not started" in result.stderr
    assert (tmp_path / "etc" / "systemd" / "system" / "zeronode-vm-keeper.service").is_file()  # there for later
    identity = (tmp_path / "etc" / "systemd" / "system" / "zeronode-identity.service").read_text()
    assert "ReadWritePaths=-" not in identity
