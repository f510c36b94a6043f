"""The fleet dashboard's API (coord.dashboard): signing in with a read token, the cookie, refusals without it,
what a signed-in browser reads, and the page's security headers. The page itself, in a real browser against
`zeronode up`: tests/test_dashboard_browser.py."""

from __future__ import annotations

import re
import subprocess

import httpx
import pytest

from coord.dashboard.auth import COOKIE, accepted, new_token, token_hash
from tests.coord.conftest import FARM
from tests.support.answers import detail
from tests.support.processes import ZERONODE

API_READS = ["/dashboard/api/nodes", "/dashboard/api/deployments", "/dashboard/api/failures",
             "/dashboard/api/deployments/some-id", "/dashboard/api/deployments/some-id/events",
             "/dashboard/api/nodes/" + "a" * 26]


@pytest.fixture
def token() -> str:
    return new_token()


@pytest.fixture
def dashboard(control_plane, token) -> httpx.Client:
    """An HTTP client of a coord that accepts `token` (and one other), as a browser would use it: it keeps cookies."""
    coord = control_plane.make_coord(dashboard_tokens=[token_hash(new_token()), token_hash(token)])
    return coord.http


def sign_in(http: httpx.Client, token: str) -> httpx.Response:
    return http.post("/dashboard/session", json={"token": token})


def test_every_read_refuses_without_a_session(dashboard, token):
    for path in API_READS:
        assert detail(dashboard.get(path)) == (401, "not_signed_in"), path
    dashboard.cookies.set(COOKIE, "not-a-token", path="/dashboard")
    assert detail(dashboard.get("/dashboard/api/nodes")) == (401, "not_signed_in")
    dashboard.cookies.set(COOKIE, token + "x", path="/dashboard")
    assert detail(dashboard.get("/dashboard/api/nodes")) == (401, "not_signed_in")


def test_a_bad_token_is_refused_and_sets_no_cookie(dashboard, token):
    for wrong in ("", "nope", token[:-1], token + token, "x" * 5000):
        answer = sign_in(dashboard, wrong)
        assert answer.status_code in (401, 413), wrong
        assert "set-cookie" not in answer.headers
    assert detail(sign_in(dashboard, "nope")) == (401, "bad_token")
    # A form post (what a cross-site page can send without asking) is refused before the token is looked at.
    assert detail(dashboard.post("/dashboard/session", data={"token": token})) == (415, "unsupported_media_type")
    assert detail(dashboard.post("/dashboard/session", content=b"[1]", headers={"content-type": "application/json"})) == (
        422, "malformed_body")
    assert detail(dashboard.get("/dashboard/api/nodes")) == (401, "not_signed_in")


def test_a_coord_without_tokens_lets_nobody_in(control_plane, token):
    http = control_plane.coord.http
    assert detail(sign_in(http, token)) == (401, "bad_token")
    assert detail(sign_in(http, "")) == (401, "bad_token")


def test_signed_in_a_browser_reads_the_fleet_as_an_admin_does(control_plane, dashboard, token):
    node = control_plane.add_node()
    answer = sign_in(dashboard, token)
    assert answer.status_code == 204
    cookie = answer.headers["set-cookie"].lower()
    assert "httponly" in cookie and "samesite=strict" in cookie and "path=/dashboard" in cookie
    assert "secure" not in cookie  # plain HTTP here: a Secure cookie would never come back

    nodes = dashboard.get("/dashboard/api/nodes").json()
    assert [(n["node_id"], n["status"]) for n in nodes] == [(node, "online")]

    # The client's deployment (the client is no admin): the dashboard sees everyone's.
    succeeded = control_plane.sign([node], "40 + 2")
    assert control_plane.run(succeeded)["status"] == "succeeded"
    control_plane.fleet.faults[node].append(403)  # the node refuses the next envelope
    failed = control_plane.sign([node], "1")
    assert control_plane.run(failed)["status"] == "failed"

    listed = {d["id"]: d["status"] for d in dashboard.get("/dashboard/api/deployments").json()}
    assert listed == {succeeded.id: "succeeded", failed.id: "failed"}
    view = dashboard.get(f"/dashboard/api/deployments/{failed.id}").json()
    assert [(t["node"], t["state"], t["error"]["reason"]) for t in view["tasks"]] == [(node, "failed", "simulated")]
    events = dashboard.get(f"/dashboard/api/deployments/{succeeded.id}/events")
    assert events.headers["content-type"].startswith("text/event-stream") and '"status":"succeeded"' in events.text

    failures = dashboard.get("/dashboard/api/failures").json()
    assert [(f["deployment"], f["node"], f["reason"]) for f in failures] == [(failed.id, node, "simulated")]
    assert failures[0]["message"] == f"node {node} refused the envelope: simulated 403"

    panel = dashboard.get(f"/dashboard/api/nodes/{node}").json()
    assert panel["node"]["node_id"] == node and panel["node"]["farm"] == FARM
    assert {t["deployment"]: t["task"]["state"] for t in panel["tasks"]} == {succeeded.id: "succeeded", failed.id: "failed"}
    # The simulated supervisor has no /health: the panel says so, and the rest stands.
    assert panel["supervisor"] == {**panel["supervisor"], "reachable": False, "error": "its /health answered HTTP 404"}

    assert detail(dashboard.get("/dashboard/api/nodes/" + "b" * 26)) == (404, "not_found")
    assert detail(dashboard.get("/dashboard/api/deployments/nothing")) == (404, "not_found")
    assert detail(dashboard.get("/dashboard/api/nodes/NOT-A-NODE")) == (422, "malformed")

    signed_out = dashboard.delete("/dashboard/session")
    assert signed_out.status_code == 204 and 'max-age=0' in signed_out.headers["set-cookie"].lower()
    assert detail(dashboard.get("/dashboard/api/nodes")) == (401, "not_signed_in")


def test_the_page_and_its_files_ship_in_the_package_with_a_strict_policy(dashboard):
    page = dashboard.get("/dashboard/")
    assert page.status_code == 200 and page.headers["content-type"].startswith("text/html")
    policy = page.headers["content-security-policy"]
    assert "default-src 'self'" in policy and "script-src 'self'" in policy and "frame-ancestors 'none'" in policy
    assert page.headers["x-content-type-options"] == "nosniff" and page.headers["x-frame-options"] == "DENY"
    # No inline script and nothing from elsewhere: every script and style sheet is one of coord's own files.
    assert page.text.count("<script") == page.text.count('<script src="/dashboard/static/') == 1
    assert "http://" not in page.text and "https://" not in page.text
    script = dashboard.get("/dashboard/static/dashboard.js")
    assert script.status_code == 200 and script.headers["content-type"].startswith("text/javascript")
    assert "innerHTML" not in script.text and not re.search(r"https?://", script.text)
    assert dashboard.get("/dashboard/static/dashboard.css").status_code == 200
    for missing in ("index.html", "..%2Fauth.py", "nothing.js"):
        assert detail(dashboard.get(f"/dashboard/static/{missing}")) == (404, "not_found"), missing
    assert dashboard.get("/dashboard", follow_redirects=True).url.path == "/dashboard/"


def test_tokens_are_compared_by_their_hashes():
    token = new_token()
    assert accepted(token, [token_hash(token)]) and not accepted(token, [])
    assert not accepted(token_hash(token), [token_hash(token)])  # the hash itself is no token
    assert not accepted("", [token_hash("")])


def test_the_cli_makes_a_token_and_the_line_for_coords_settings(tmp_path):
    path = tmp_path / "dashboard.token"
    made = subprocess.run([ZERONODE, "dashboard", "token", "--token-file", str(path)], capture_output=True, text=True, timeout=60)
    assert made.returncode == 0, made.stderr
    token = path.read_text().strip()
    assert path.stat().st_mode & 0o777 == 0o600
    assert f'dashboard_tokens = ["{token_hash(token)}"]' in made.stdout and token not in made.stdout
    again = subprocess.run([ZERONODE, "dashboard", "token", "--token-file", str(path)], capture_output=True, text=True, timeout=60)
    assert again.returncode == 1 and again.stderr.startswith("error: ") and "exists" in again.stderr
