"""The identity manager's systemd unit, as scripts/install-identity-service writes it."""

import shutil
import subprocess
from pathlib import Path

from tests.support.processes import ZERONODE

SCRIPT = Path(__file__).resolve().parents[2] / "scripts" / "install-identity-service"


def test_the_install_script_writes_a_unit_that_runs_the_identity_manager(tmp_path):
    zeronode = ZERONODE
    result = subprocess.run(
        [str(SCRIPT), "--zeronode", zeronode, "--config", "/etc/zeronode/node.toml", "--unit-dir", str(tmp_path), "--no-start"],
        capture_output=True, text=True, timeout=30,
    )
    assert result.returncode == 0, result.stderr
    unit = tmp_path / "zeronode-identity.service"
    lines = unit.read_text().splitlines()
    assert f"ExecStart={zeronode} identity --config /etc/zeronode/node.toml" in lines
    assert "Restart=always" in lines and "WantedBy=multi-user.target" in lines
    if shutil.which("systemd-analyze"):
        verified = subprocess.run(["systemd-analyze", "verify", str(unit)], capture_output=True, text=True, timeout=30)
        assert verified.returncode == 0, verified.stderr

    refused = subprocess.run(
        [str(SCRIPT), "--zeronode", zeronode, "--config", "/etc/my node.toml", "--unit-dir", str(tmp_path), "--no-start"],
        capture_output=True, text=True, timeout=30,
    )
    assert refused.returncode == 1 and "not supported" in refused.stderr
