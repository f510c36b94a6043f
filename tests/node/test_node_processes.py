"""The node as an operator runs it: `zeronode supervisor` and `zeronode runner` processes, a client using the CLI."""

import json
import shutil
import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest

ZERONODE = shutil.which("zeronode", path=str(Path(sys.executable).parent))


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


@pytest.fixture
def processes():
    started = []

    def start(*args):
        process = subprocess.Popen([ZERONODE, *map(str, args)], stderr=subprocess.PIPE, text=True)
        started.append(process)
        return process

    yield start
    for process in started:
        process.terminate()
        try:
            process.wait(30)
        except subprocess.TimeoutExpired:
            process.kill()


def test_operator_runs_a_node_and_a_client_deploys_to_it(tmp_path, redis_server, processes, zn):
    port = free_port()
    config = tmp_path / "node.toml"
    config.write_text(
        f'state_dir = "{tmp_path / "state"}"\nredis_url = "unix://{redis_server}"\nqueue = "operator"\nport = {port}\n'
    )
    # The client makes a key, and the operator authorises it on the node.
    client_key = tmp_path / "client.key"
    public = zn("keygen", "--out", client_key).stdout.strip()
    (tmp_path / "state").mkdir()
    (tmp_path / "state" / "authorized_keys").write_text(f"{public}\n")

    supervisor = processes("supervisor", "--config", config)
    processes("runner", "--pool", "2", "--config", config)
    base = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 30
    while True:
        try:
            health = httpx.get(f"{base}/health", timeout=1)
            break
        except httpx.TransportError:
            assert supervisor.poll() is None, supervisor.stderr.read()
            assert time.monotonic() < deadline, "supervisor did not come up"
            time.sleep(0.1)
    node_id = health.json()["node"]

    script = tmp_path / "deploy.rhai"
    script.write_text('print(`deploying to ${node_info().id}`);\n#{ node: node_info().id, region: env.REGION }')
    envelope = tmp_path / "deploy.json"
    signed = zn("sign", script, "--key", client_key, "--target", node_id, "--env", "REGION=eu", "--out", envelope)
    assert signed.returncode == 0, signed.stderr
    response = httpx.post(f"{base}/v1/jobs", content=envelope.read_bytes(), timeout=10)
    assert response.status_code == 202, response.text
    job_id = response.json()["job_id"]

    deadline = time.monotonic() + 30
    while (job := httpx.get(f"{base}/v1/jobs/{job_id}", timeout=5).json())["status"] in ("queued", "started"):
        assert time.monotonic() < deadline, job
        time.sleep(0.1)
    assert job["status"] == "finished"
    assert job["result"] == {"node": node_id, "region": "eu"}
    assert job["output"] == [f"deploying to {node_id}"]

    # The node's key was created on first start, private, and the logs are JSON lines.
    assert ((tmp_path / "state" / "node.key").stat().st_mode & 0o777) == 0o600
    supervisor.terminate()
    supervisor.wait(30)
    lines = [json.loads(line) for line in supervisor.stderr.read().splitlines() if line.startswith("{")]
    assert any(line["msg"] == "job accepted" and line["job"] == job_id for line in lines)


def test_bad_settings_are_one_line(tmp_path, zn):
    config = tmp_path / "node.toml"
    config.write_text("port = 'eighty'\n")
    for command in ("supervisor", "runner"):
        result = zn(command, "--config", config)
        assert result.returncode == 1
        assert result.stderr.startswith(f"error: invalid settings in {config}: port:")
        assert "Traceback" not in result.stderr
    missing = zn("runner", "--config", tmp_path / "absent.toml")
    assert missing.returncode == 1 and "does not exist" in missing.stderr
