"""Uptime reports: they move forward, restarts are found, stale and skewed ones refused, status and percentages follow."""

import nacl.signing
import pytest

from zeronode.api.errors import Conflict, NotFound
from zeronode.protocol import keys

from .conftest import REGISTRATION

HOUR = 3600


def reason(response) -> tuple[int, str]:
    return response.status_code, response.json()["reason"]


def test_reports_move_forward_and_a_stale_one_is_refused(ledger, node_key, registered):
    now = ledger.clock.freeze()
    assert ledger.report(node_key, uptime=1000, timestamp=now - 20).json()["restart"] is False
    accepted = ledger.report(node_key, uptime=1010, timestamp=now - 10).json()
    assert (accepted["restart"], accepted["duplicate"], accepted["restarts"]) == (False, False, 0)
    assert reason(ledger.report(node_key, uptime=1005, timestamp=now - 15)) == (409, "stale_report")
    # The same signed report again (a replay inside the signature window) changes nothing.
    again = ledger.report(node_key, uptime=1010, timestamp=now - 10)
    assert again.status_code == 200 and again.json()["duplicate"] is True
    assert reason(ledger.report(node_key, uptime=1011, timestamp=now - 10)) == (409, "stale_report")
    node = ledger.get(f"/v1/nodes/{registered}").json()
    assert (node["last_report_at"], node["last_uptime"], node["restarts"]) == (now - 10, 1010, 0)


def test_uptime_going_backwards_is_a_restart(ledger, node_key, registered):
    now = ledger.clock.freeze()
    ledger.report(node_key, uptime=5000, timestamp=now - 30)
    restarted = ledger.report(node_key, uptime=12, timestamp=now - 20).json()
    assert (restarted["restart"], restarted["restarts"]) == (True, 1)
    assert ledger.report(node_key, uptime=22, timestamp=now - 10).json()["restart"] is False
    assert ledger.get(f"/v1/nodes/{registered}").json()["restarts"] == 1


def test_a_reboot_between_two_reports_is_a_restart_even_when_uptime_grew(ledger, node_key, registered):
    start = ledger.clock.freeze()
    ledger.report(node_key, uptime=100)
    ledger.clock.advance(600)
    # 300 s of uptime, 600 s after the last report: it booted after that report.
    rebooted = ledger.report(node_key, uptime=300).json()
    assert (rebooted["restart"], rebooted["restarts"]) == (True, 1)
    # Whole seconds read at slightly different moments wobble by one: that is no restart.
    ledger.clock.advance(60)
    assert ledger.report(node_key, uptime=361).json()["restart"] is False
    ledger.clock.advance(60)
    assert ledger.report(node_key, uptime=419).json()["restart"] is False
    assert ledger.get(f"/v1/nodes/{registered}").json()["last_report_at"] == start + 720


@pytest.mark.parametrize("offset", [+1000, -1000])
def test_reports_dated_outside_the_skew_window_are_refused(ledger, node_key, registered, offset):
    now = ledger.clock.freeze()
    assert reason(ledger.report(node_key, uptime=100, timestamp=now + offset)) == (422, "clock_skew")
    window = int(ledger.settings.skew)
    assert ledger.report(node_key, uptime=100, timestamp=now - window).status_code == 200
    assert ledger.get(f"/v1/nodes/{registered}").json()["last_report_at"] == now - window


def test_reports_for_other_or_unknown_nodes_are_refused(ledger, node_key, registered):
    stranger = nacl.signing.SigningKey.generate()
    now = int(ledger.clock())
    body = {"uptime": 1, "timestamp": now}
    # Signed by a valid key, but not the node's: nobody reports for a node whose key they do not hold.
    assert reason(ledger.signed("POST", f"/v1/nodes/{registered}/uptime", stranger, body)) == (403, "not_this_node")
    assert reason(ledger.report(stranger, uptime=1)) == (404, "unknown_node")
    path = f"/v1/nodes/{registered}/uptime"
    for bad in ({"uptime": 1.5, "timestamp": now}, {"uptime": -1, "timestamp": now}, {"uptime": "1", "timestamp": now},
                {"uptime": 1}):
        assert reason(ledger.signed("POST", path, node_key, bad)) == (422, "malformed"), bad
    assert ledger.get(f"/v1/nodes/{registered}").json()["last_report_at"] is None


def test_a_node_goes_offline_after_missed_reports(make_ledger, node_key):
    ledger = make_ledger(report_interval=10, offline_after_reports=3)
    node_id = ledger.signed("POST", "/v1/nodes", node_key, REGISTRATION).json()["node_id"]
    ledger.clock.freeze()
    assert ledger.report(node_key, uptime=100).status_code == 200

    def status() -> str:
        assert [n["node_id"] for n in ledger.get("/v1/nodes", params={"status": "online"}).json()] in ([node_id], [])
        return ledger.get(f"/v1/nodes/{node_id}").json()["status"]

    assert status() == "online"
    ledger.clock.advance(29)  # two reports missed
    assert status() == "online"
    ledger.clock.advance(1)  # the third: 3 intervals of silence
    assert status() == "offline"
    assert ledger.get("/v1/nodes", params={"status": "offline"}).json()[0]["node_id"] == node_id
    assert ledger.report(node_key, uptime=130).status_code == 200
    assert status() == "online"


def test_uptime_percentages_add_up_the_proven_up_time_of_each_boot(ledger, node_key):
    start = ledger.clock.freeze()
    node_id = ledger.signed("POST", "/v1/nodes", node_key, REGISTRATION).json()["node_id"]

    def report_at(hours: float, uptime: int) -> bool:
        ledger.clock.frozen = start + int(hours * HOUR)
        response = ledger.report(node_key, uptime=uptime)
        assert response.status_code == 200, response.text
        return response.json()["restart"]

    assert report_at(0, 0) is False  # booted as it registered
    assert report_at(1, HOUR) is False  # up [0 h, 1 h]
    assert report_at(2, 600) is True  # rebooted: down from 1 h to 1 h 50
    # The ledger heard nothing for 3 hours (it was down, say), but the boot held: up [1 h 50, 5 h].
    assert report_at(5, 600 + 3 * HOUR) is False
    assert report_at(6, 1800) is True  # rebooted: up [5 h 30, 6 h]
    assert report_at(8, 3000) is True  # rebooted after its last report, though uptime grew: up [7 h 10, 8 h]
    up = HOUR + (3 * HOUR + 600) + 1800 + 3000
    node = ledger.get(f"/v1/nodes/{node_id}").json()
    assert node["restarts"] == 3
    assert node["uptime_24h"] == node["uptime_30d"] == pytest.approx(100 * up / (8 * HOUR), abs=0.001)

    # Two silent days later: nothing in the last 24 hours; the 30 days still count those 8 hours.
    ledger.clock.frozen = start + 56 * HOUR
    node = ledger.get(f"/v1/nodes/{node_id}").json()
    assert node["status"] == "offline"
    assert node["uptime_24h"] == 0
    assert node["uptime_30d"] == pytest.approx(100 * up / (56 * HOUR), abs=0.001)


def test_a_node_claims_no_uptime_from_before_its_registration(ledger, node_key):
    start = ledger.clock.freeze()
    node_id = ledger.signed("POST", "/v1/nodes", node_key, REGISTRATION).json()["node_id"]
    ledger.report(node_key, uptime=30 * 86400)  # up for a month, it says
    ledger.clock.advance(HOUR)
    ledger.report(node_key, uptime=30 * 86400 + HOUR)
    ledger.clock.advance(HOUR)  # and silent since
    node = ledger.get(f"/v1/nodes/{node_id}").json()
    assert node["uptime_30d"] == pytest.approx(50.0)
    assert node["last_report_at"] == start + HOUR


def test_the_client_raises_typed_errors(ledger, node_key, registered):
    client = ledger.client(node_key)
    accepted = client.report_uptime(100)
    assert accepted.node_id == registered and not accepted.restart
    with pytest.raises(Conflict) as stale:
        client.report_uptime(90, timestamp=accepted.timestamp - 1)
    assert (stale.value.status, stale.value.reason) == (409, "stale_report")
    with pytest.raises(NotFound) as unknown:
        ledger.client(nacl.signing.SigningKey.generate()).report_uptime(1)
    assert unknown.value.reason == "unknown_node"
    assert keys.node_id(keys.public_key_text(node_key)) == client.node_id
