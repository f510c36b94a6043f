"""`zeronode ledger` and `zeronode identity` as an operator runs them: real processes, one-second intervals."""

import httpx

from tests.support.health import wait_healthy
from tests.support.ports import free_port
from tests.support.waiting import wait_until


def configs(tmp_path, database_url: str) -> tuple:
    """(ledger.toml, node.toml, the ledger's URL): nodes report every second, offline after 3 s of silence;
    supervisors on loopback, as on one machine."""
    port = free_port()
    ledger = tmp_path / "ledger.toml"
    ledger.write_text(
        f'database_url = "{database_url}"\nport = {port}\nreport_interval = 1\noffline_after_reports = 3\n'
        'supervisor_networks = ["127.0.0.0/8"]\n'
    )
    url = f"http://127.0.0.1:{port}"
    node = tmp_path / "node.toml"
    node.write_text(f'state_dir = "{tmp_path / "state"}"\nledger_url = "{url}"\nuptime_interval = 1\nfarm = "farm-p"\n')
    return ledger, node, url


def start_ledger(services, config, url):
    ledger = services("ledger", "--config", config)
    ledger.wait_for_log(lambda entry: entry["msg"] == "ledger starting")
    wait_healthy(url, 30, ledger.process)
    return ledger


def node(url: str, node_id: str) -> dict:
    response = httpx.get(f"{url}/v1/nodes/{node_id}", timeout=5)
    return response.json() if response.status_code == 200 else {}


def test_the_reporter_outlives_a_ledger_restart(tmp_path, database_url, services):
    ledger_config, node_config, url = configs(tmp_path, database_url)
    ledger = start_ledger(services, ledger_config, url)
    identity = services("identity", "--config", node_config)
    node_id = identity.wait_for_log(lambda entry: entry["msg"] == "identity loaded")["node"]
    heard = wait_until(lambda: node(url, node_id).get("last_uptime") and node(url, node_id), 30, "a first report")
    # Only the identity manager runs here: no Redis, supervisor or runners, so the ledger calls the node degraded.
    assert (heard["status"], heard["farm"], heard["health"]["supervisor"]) == ("degraded", "farm-p", False)

    ledger.stop()  # SIGTERM: uvicorn shuts down, then re-raises the signal
    retries = lambda: sum(entry["msg"] == "ledger unavailable, retrying" for entry in identity.logs)  # noqa: E731
    wait_until(lambda: retries() >= 2, 30, "the reporter to retry")
    last_before = max(e["timestamp"] for e in identity.logs if e["msg"] == "uptime reported")

    start_ledger(services, ledger_config, url)
    wait_until(lambda: (node(url, node_id).get("last_report_at") or 0) > last_before, 30, "reports to resume")
    assert identity.process.poll() is None
    listed = httpx.get(f"{url}/v1/nodes", timeout=5).json()
    assert [n["node_id"] for n in listed] == [node_id]
    assert listed[0]["restarts"] == 0  # the host did not reboot: the boot holds across the gap


def test_the_identity_keeps_its_id_runs_once_per_node_and_its_node_goes_offline(tmp_path, database_url, services, zn):
    ledger_config, node_config, url = configs(tmp_path, database_url)
    start_ledger(services, ledger_config, url)
    first = services("identity", "--config", node_config)
    node_id = first.wait_for_log(lambda entry: entry["msg"] == "identity loaded")["node"]
    first.wait_for_log(lambda entry: entry["msg"] == "uptime reported")
    assert ((tmp_path / "state" / "node.key").stat().st_mode & 0o777) == 0o600

    second = zn("identity", "--config", node_config)
    assert second.returncode == 1
    assert f"(pid {first.process.pid}) already reports for this node" in second.stderr

    assert first.stop() == 0
    assert first.logs[-1]["msg"] == "identity manager stopped"
    again = services("identity", "--config", node_config)
    assert again.wait_for_log(lambda entry: entry["msg"] == "identity loaded")["node"] == node_id
    reported = again.wait_for_log(lambda entry: entry["msg"] == "uptime reported")["timestamp"]
    wait_until(lambda: (node(url, node_id).get("last_report_at") or 0) >= reported, 30, "the restarted reporter's report")
    assert len(httpx.get(f"{url}/v1/nodes", timeout=5).json()) == 1
    assert node(url, node_id)["status"] == "degraded"  # heard from; no supervisor runs beside it here

    again.stop()
    wait_until(lambda: node(url, node_id)["status"] == "offline", 30, "the silent node to go offline")


def test_identity_without_a_ledger_is_a_one_line_error(tmp_path, zn):
    config = tmp_path / "node.toml"
    config.write_text(f'state_dir = "{tmp_path}"\n')
    result = zn("identity", "--config", config)
    assert result.returncode == 1 and result.stderr.startswith("error: no ledger to report to")
