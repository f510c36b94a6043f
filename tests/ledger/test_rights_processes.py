"""Rights from the ledger, end to end with real processes on SQLite and PostgreSQL: `zeronode ledger`,
`identity`, `supervisor` and `runner` as an operator runs them, users granted and revoked with the CLI.

A deployer granted in the ledger deploys without touching authorized_keys; revoked, it is refused within
the refresh bound; with the ledger down, the node's saved rights serve (across a supervisor restart) until
they are older than `rights_max_staleness`, after which only authorized_keys counts.
"""

import httpx

from tests.support.health import wait_healthy
from tests.support.ports import free_port
from tests.support.waiting import wait_until
from zeronode.protocol import keys
from zeronode.protocol.envelope import new_envelope
from zeronode.protocol.signed_requests import SignedRequestAuth

REFRESH = 1.0
STALENESS = 8.0  # the ledger's stop and a supervisor's restart take 1.2 s here: room for a machine 6 times slower


def test_rights_granted_in_the_ledger_count_on_the_node_and_outlive_it_for_a_while(
    tmp_path, database_url, redis_server, services, zn
):
    admin_key, deployer_key, local_key = tmp_path / "admin.key", tmp_path / "deployer.key", tmp_path / "local.key"
    admin, deployer, local = (zn("keygen", "--out", path).stdout.strip() for path in (admin_key, deployer_key, local_key))
    ledger_port, supervisor_port = free_port(), free_port()
    ledger_url, supervisor_url = f"http://127.0.0.1:{ledger_port}", f"http://127.0.0.1:{supervisor_port}"
    ledger_config = tmp_path / "ledger.toml"
    ledger_config.write_text(
        f'database_url = "{database_url}"\nport = {ledger_port}\nadmins = ["{admin}"]\n'
        'supervisor_networks = ["127.0.0.0/8"]\n'
    )
    state = tmp_path / "state"
    state.mkdir(mode=0o700)
    local_deployer_key = tmp_path / "local-deployer.key"
    local_deployer = zn("keygen", "--out", local_deployer_key).stdout.strip()
    (state / "authorized_keys").write_text(f"{local} admin  # bootstrap: the node's own admin\n{local_deployer}\n")
    node_config = tmp_path / "node.toml"
    node_config.write_text(
        f'state_dir = "{state}"\nredis_url = "unix://{redis_server}"\nqueue = "rights"\nport = {supervisor_port}\n'
        f'ledger_url = "{ledger_url}"\nuptime_interval = 1\nfarm = "farm-r"\n'
        f"rights_refresh = {REFRESH}\nrights_max_staleness = {STALENESS}\n"
    )
    ledger = services("ledger", "--config", ledger_config)
    wait_healthy(ledger_url, 30, ledger.process)
    identity = services("identity", "--config", node_config)
    node_id = identity.wait_for_log(lambda entry: entry["msg"] == "identity loaded")["node"]
    supervisor = services("supervisor", "--config", node_config)
    wait_healthy(supervisor_url, 30, supervisor.process)
    services("runner", "--pool", "1", "--config", node_config)
    signing_keys = {name: keys.load_private_key(path) for name, path in
                    [("deployer", deployer_key), ("local", local_key), ("local deployer", local_deployer_key)]}

    def submit(who: str) -> httpx.Response:
        envelope = new_envelope("node_info().id", [node_id], signing_keys[who])
        return httpx.post(f"{supervisor_url}/v1/jobs", content=envelope.to_json(), timeout=10)

    def refused(response: httpx.Response) -> bool:
        return response.status_code == 403 and response.json()["reason"] == "not_authorized"

    assert refused(submit("deployer"))
    granted = zn("users", "add", "--public-key", deployer, "--name", "dana", "--role", "deployer", "--farm", "farm-r",
                 "--key", admin_key, "--ledger", ledger_url)
    assert granted.returncode == 0, granted.stderr
    accepted = wait_until(lambda: (r := submit("deployer")).status_code == 202 and r, 30, "the grant to reach the node")
    assert deployer not in (state / "authorized_keys").read_text()  # the ledger's grant alone let it in
    reader = SignedRequestAuth(signing_keys["deployer"], node_id)
    job_id = accepted.json()["job_id"]
    job = wait_until(
        lambda: (v := httpx.get(f"{supervisor_url}/v1/jobs/{job_id}", auth=reader, timeout=5).json())["status"] == "finished" and v,
        30, "the deployer's job to run",
    )
    assert job["result"] == node_id

    revoked = zn("users", "revoke", "--public-key", deployer, "--key", admin_key, "--ledger", ledger_url)
    assert revoked.returncode == 0, revoked.stderr
    wait_until(lambda: refused(submit("deployer")), 30, "the revocation to reach the node")  # bound: refresh + a request

    zn("users", "add", "--public-key", deployer, "--name", "dana", "--role", "deployer", "--farm", "farm-r",
       "--key", admin_key, "--ledger", ledger_url)
    wait_until(lambda: submit("deployer").status_code == 202, 30, "the new grant")
    if database_url.startswith("postgresql"):
        return  # what follows happens on the node with the ledger away, whatever its database: run once, on SQLite
    ledger.stop()
    # The ledger is away: the saved rights serve, even to a supervisor started again.
    assert submit("deployer").status_code == 202
    supervisor.stop()
    supervisor = services("supervisor", "--config", node_config)
    wait_healthy(supervisor_url, 30, supervisor.process)
    assert submit("deployer").status_code == 202
    # Past rights_max_staleness, only the local admins pass.
    wait_until(lambda: refused(submit("deployer")), STALENESS + 30, "the saved rights to go stale")
    assert refused(submit("local deployer"))
    assert submit("local").status_code == 202
    assert (state / "rights.json").stat().st_mode & 0o777 == 0o600

