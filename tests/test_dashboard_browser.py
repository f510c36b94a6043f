"""The fleet dashboard in a real headless browser (Debian's chromium, driven through chromium-driver by
selenium) against a real `zeronode up --nodes 2`: signing in, the nodes, a deployment made with the CLI
followed live to its end on each node, a failed one with its error, a node's runner pool and jobs.

The page's screenshots are kept in tests/artifacts/ (ignored by git); the test prints their paths. The
browser's console must stay free of errors: a script or style the Content-Security-Policy blocked
would be one."""

from __future__ import annotations

import re
import shutil
import time
from pathlib import Path

import pytest
from selenium import webdriver
from selenium.common.exceptions import StaleElementReferenceException
from selenium.webdriver.chrome.options import Options
from selenium.webdriver.chrome.service import Service
from selenium.webdriver.common.by import By
from selenium.webdriver.remote.webdriver import WebDriver
from selenium.webdriver.support.ui import WebDriverWait

from tests.support.up import running_up

ARTIFACTS = Path(__file__).parent / "artifacts"
FINAL = {"succeeded", "failed", "canceled", "moved"}
RUNNERS_PER_NODE = 2  # `zeronode up` starts `zeronode runner --pool 2` on each node


@pytest.fixture(scope="module")
def cluster(tmp_path_factory):
    examples = tmp_path_factory.mktemp("examples")
    (examples / "hello.rhai").write_text("// needs: nothing\n40 + 2\n")  # one example: `up` is ready sooner
    with running_up(tmp_path_factory.mktemp("up"), "--nodes", "2", "--no-loop-storage", "--hypervisor", "simulated",
                    "--examples", str(examples)) as info:
        yield info


@pytest.fixture(scope="module")
def browser():
    chromium, driver = shutil.which("chromium"), shutil.which("chromedriver")
    if not (chromium and driver):
        pytest.fail("chromium and chromium-driver are not installed: run scripts/install-system-packages")
    options = Options()
    options.binary_location = chromium
    for argument in ("--headless=new", "--no-sandbox", "--disable-dev-shm-usage", "--window-size=1500,2200",
                     "--disable-gpu", "--no-first-run"):
        options.add_argument(argument)
    options.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    browser = webdriver.Chrome(service=Service(driver), options=options)
    browser.set_page_load_timeout(30)
    try:
        yield browser
    finally:
        browser.quit()


def wait(browser: WebDriver, condition, timeout: float = 30, message: str = ""):
    """What `condition(browser)` gives once it is truthy (a page being redrawn is asked again)."""
    def asked(driver):
        try:
            return condition(driver)
        except StaleElementReferenceException:
            return False
    return WebDriverWait(browser, timeout, poll_frequency=0.05).until(asked, message)


def rows(browser: WebDriver, table: str) -> list[dict]:
    """The rows of a table as the page shows them: their data attributes and their cells' text."""
    return browser.execute_script(
        "return [...document.querySelectorAll(arguments[0] + ' tbody tr')].filter(r => Object.keys(r.dataset).length)"
        ".map(r => ({...r.dataset, cells: [...r.cells].map(c => c.textContent)}))", table)


def screenshot(browser: WebDriver, name: str) -> Path:
    ARTIFACTS.mkdir(exist_ok=True)
    path = ARTIFACTS / name
    browser.save_screenshot(str(path))
    print(f"dashboard screenshot: {path}")
    return path


def console_errors(browser: WebDriver) -> list[str]:
    """The console's errors but the 401s the test caused: the page asking before signing in, the wrong token."""
    return [entry["message"] for entry in browser.get_log("browser") if entry["level"] == "SEVERE"
            and "the server responded with a status of 401" not in entry["message"]]


def deploy(cluster, tmp_path: Path, script: str, targets: list[str]) -> str:
    path = tmp_path / "script.rhai"
    path.write_text(script)
    argv = ["deploy", path, "--key", cluster["admin_key"]] + [arg for node in targets for arg in ("--target", node)]
    made = cluster["cli"](*argv)
    assert made.returncode == 0, made.stderr
    return made.stdout.split()[1]  # "deployment ID submitted to N node(s)"


def test_the_dashboard_follows_a_deployment_on_every_node(cluster, browser, tmp_path):
    nodes = [node["node_id"] for node in cluster["nodes"]]
    assert any("fleet dashboard" in line and cluster["dashboard_url"] in line for line in cluster["output"])
    token = Path(cluster["dashboard_token"]).read_text().strip()
    assert Path(cluster["dashboard_token"]).stat().st_mode & 0o777 == 0o600

    browser.get(cluster["dashboard_url"])
    form = wait(browser, lambda b: b.find_element(By.ID, "sign-in").is_displayed() and b.find_element(By.ID, "token"))
    form.send_keys("not the token")
    browser.find_element(By.ID, "sign-in-button").click()
    wait(browser, lambda b: "not one of this coord's dashboard tokens" in b.find_element(By.ID, "sign-in-error").text)
    assert not browser.find_element(By.ID, "board").is_displayed()

    form.clear()
    form.send_keys(token)
    browser.find_element(By.ID, "sign-in-button").click()
    shown = wait(browser, lambda b: len(found := rows(b, "#nodes")) == 2 and found, message="the nodes never showed")
    assert sorted(row["node"] for row in shown) == sorted(nodes)
    assert {row["status"] for row in shown} == {"online"}
    assert all(row["cells"][2] == "ok" for row in shown)  # every part of each node healthy, as its reports say
    assert browser.get_cookies() and all(cookie["httpOnly"] for cookie in browser.get_cookies())
    assert browser.execute_script("return document.cookie") == ""  # scripts cannot read the session

    # A deployment long enough to be seen in flight (the page lists it within a refresh, 2 s, on a busy
    # machine later), made with the CLI; the page lists it by itself.
    deployment = deploy(cluster, tmp_path, "sleep(6);\nnode_info().id", nodes)
    listed = wait(browser, lambda b: b.find_element(By.CSS_SELECTOR, f'#deployments tr[data-deployment="{deployment}"]'))
    listed.click()
    (ARTIFACTS / "dashboard-running.png").unlink(missing_ok=True)
    seen: dict[str, list[str]] = {node: [] for node in nodes}
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        tasks = rows(browser, "#deployment-tasks")
        for task in tasks:
            if not seen[task["node"]] or seen[task["node"]][-1] != task["state"]:
                seen[task["node"]].append(task["state"])
        if len(tasks) == 2 and all(task["state"] == "succeeded" for task in tasks):
            break
        if not (ARTIFACTS / "dashboard-running.png").exists() and any(task["state"] == "running" for task in tasks):
            screenshot(browser, "dashboard-running.png")  # the deployment in flight
        time.sleep(0.05)
    for node, states in seen.items():
        assert states[-1] == "succeeded", seen
        assert set(states[:-1]) & {"pending", "dispatched", "running"}, seen  # the row changed while the page was open
    assert browser.find_element(By.ID, "deployment-summary").get_attribute("data-status") == "succeeded"
    wait(browser, lambda b: b.find_element(By.CSS_SELECTOR, f'#deployments tr[data-deployment="{deployment}"]')
         .get_attribute("data-status") == "succeeded")
    screenshot(browser, "dashboard-deployment.png")

    # A failing one: its row says failed, and why, there and among the recent failures.
    failing = deploy(cluster, tmp_path, 'throw "the <b>dashboard</b> test fails";', nodes[:1])
    browser.get(f"{cluster['dashboard_url']}#deployment/{failing}")
    failed = wait(browser, lambda b: [t for t in rows(b, "#deployment-tasks") if t["state"] == "failed"])
    assert [task["node"] for task in failed] == nodes[:1]
    assert "the <b>dashboard</b> test fails" in failed[0]["cells"][4]  # shown as text: the markup is not applied
    assert not browser.find_elements(By.CSS_SELECTOR, "#deployment-tasks b")
    wait(browser, lambda b: any(row["deployment"] == failing and "dashboard</b> test fails" in row["cells"][4]
                                for row in rows(b, "#failures")))

    # The node's panel: its runner pool and the jobs its supervisor holds, with both deployments' jobs.
    browser.find_element(By.CSS_SELECTOR, f'#nodes tr[data-node="{nodes[0]}"]').click()
    wait(browser, lambda b: b.find_element(By.ID, "node-runners").get_attribute("data-registered") == str(RUNNERS_PER_NODE),
         message="the runner pool never showed")
    supervisor = browser.find_element(By.ID, "node-supervisor").text
    assert supervisor.startswith("Supervisor ok, version ") and "rights ledger" in supervisor
    assert 0 < float(re.search(r"proven uptime ([0-9.]+)% \(24 h\)", supervisor).group(1)) <= 100
    jobs = wait(browser, lambda b: {job["job"]: job["status"] for job in rows(b, "#node-jobs")})
    assert jobs.get(deployment) == "finished" and jobs.get(failing) == "failed"
    tasks = {task["deployment"]: task["state"] for task in rows(browser, "#node-tasks")}
    assert tasks[deployment] == "succeeded" and tasks[failing] == "failed"
    browser.execute_script("document.getElementById('node-panel').scrollIntoView()")
    screenshot(browser, "dashboard-node.png")
    assert console_errors(browser) == []

    browser.find_element(By.ID, "sign-out").click()
    wait(browser, lambda b: b.find_element(By.ID, "sign-in").is_displayed())
    browser.refresh()
    wait(browser, lambda b: b.find_element(By.ID, "sign-in").is_displayed())  # the cookie is gone: signed out for good
