"""The node as an operator runs it: `zeronode supervisor` and `zeronode runner` processes, a client using the CLI."""

import httpx

from zeronode.protocol import keys
from zeronode.protocol.signed_requests import SignedRequestAuth

from tests.support.health import wait_healthy
from tests.support.ports import free_port
from tests.support.waiting import wait_until


def test_operator_runs_a_node_and_a_client_deploys_to_it(tmp_path, redis_server, services, zn):
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

    supervisor = services("supervisor", "--config", config)
    services("runner", "--pool", "2", "--config", config)
    base = f"http://127.0.0.1:{port}"
    wait_healthy(base, 30, supervisor.process)
    node_id = httpx.get(f"{base}/health", timeout=1).json()["node"]

    script = tmp_path / "deploy.rhai"
    script.write_text('print(`deploying to ${node_info().id}`);\n#{ node: node_info().id, region: env.REGION }')
    envelope = tmp_path / "deploy.json"
    signed = zn("sign", script, "--key", client_key, "--target", node_id, "--env", "REGION=eu", "--out", envelope)
    assert signed.returncode == 0, signed.stderr
    response = httpx.post(f"{base}/v1/jobs", content=envelope.read_bytes(), timeout=10)
    assert response.status_code == 202, response.text
    job_id = response.json()["job_id"]

    # The job is the client's to read: signed by its key, for this node.
    assert httpx.get(f"{base}/v1/jobs/{job_id}", timeout=5).status_code == 401
    reader = SignedRequestAuth(keys.load_private_key(client_key), node_id)

    def ended() -> dict | None:
        view = httpx.get(f"{base}/v1/jobs/{job_id}", timeout=5, auth=reader).json()
        return view if view["status"] not in ("queued", "started") else None

    job = wait_until(ended, 30, f"job {job_id} to end")
    assert job["status"] == "finished"
    assert job["result"] == {"node": node_id, "region": "eu"}
    assert job["output"] == [f"deploying to {node_id}"]

    # The node's key was created on first start, private, and the logs are JSON lines.
    assert ((tmp_path / "state" / "node.key").stat().st_mode & 0o777) == 0o600
    supervisor.stop(30)
    lines = supervisor.logs
    assert any(line["msg"] == "jobs accepted" and line["jobs"] == [job_id] for line in lines)


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
