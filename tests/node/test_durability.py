"""A node's queue survives a crash of its Redis: every Redis zeronode starts or documents is append-only,
and a supervisor refuses to start on one that is not (zeronode.node.queue.durability), unless allowed."""

from __future__ import annotations

import contextlib
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
import redis

from tests.support.health import status, wait_healthy
from tests.support.ports import free_port
from tests.support.processes import stop
from tests.support.redis_server import PERSISTENCE, start_redis_server, wait_for_aof_written
from tests.support.waiting import wait_until
from zeronode.dev.cluster import REDIS_DURABILITY
from zeronode.node.queue.durability import DurabilityCheck, VolatileQueue, queue_persistence

ROOT = Path(__file__).resolve().parents[2]
SHIPPED = ROOT / "scripts" / "redis" / "zeronode-redis.conf"


@pytest.fixture
def redis_of(short_dir):
    """redis_of(persistence, *options) -> the socket of a fresh redis-server of that persistence, stopped at the end."""
    started: list[subprocess.Popen] = []

    def start(persistence: str = "aof", *options: str) -> Path:
        directory = short_dir / f"r{len(started)}"
        directory.mkdir()
        process, socket = start_redis_server(directory, persistence=persistence, options=options)
        started.append(process)
        return socket

    yield start
    for process in started:
        stop(process, 10)


def client_of(socket: Path) -> redis.Redis:
    return redis.Redis(unix_socket_path=str(socket))


def conf_settings(path: Path) -> dict[str, str]:
    """A redis.conf's settings: `name value` lines, comments left out, the last value of each."""
    settings = {}
    for line in path.read_text().splitlines():
        if line.strip() and not line.lstrip().startswith("#"):
            name, _, value = line.strip().partition(" ")
            settings[name.lower()] = value.strip()
    return settings


# -- reading the persistence ---------------------------------------------------------------------


@pytest.mark.parametrize("persistence", ["aof", "rdb", "none"])
def test_the_persistence_read_is_the_one_redis_runs_with(redis_of, persistence):
    assert queue_persistence(client_of(redis_of(persistence))) == persistence


@pytest.mark.parametrize(("persistence", "read"), [("aof", "aof"), ("rdb", "none")])
def test_with_config_disabled_info_persistence_decides(redis_of, persistence, read):
    client = client_of(redis_of(persistence, "--rename-command", "CONFIG", ""))
    with pytest.raises(redis.ResponseError):
        client.config_get("appendonly")
    assert queue_persistence(client) == read


def test_the_check_refuses_a_volatile_queue_unless_allowed(redis_of):
    client = client_of(redis_of("rdb"))
    with pytest.raises(VolatileQueue) as refused:
        DurabilityCheck(client, allow_volatile=False).ensure()
    message = str(refused.value)
    assert "persistence: rdb" in message and "appendonly yes" in message and "allow_volatile_queue" in message
    assert "\n" not in message
    assert DurabilityCheck(client, allow_volatile=True).ensure() == "rdb"


def test_the_check_asks_redis_until_it_passes_then_answers_from_memory(short_dir):
    socket = short_dir / "redis.sock"
    check = DurabilityCheck(client_of(socket), allow_volatile=False)
    with pytest.raises(redis.ConnectionError):  # nothing there yet: nothing cached either
        check.ensure()
    assert check.mode is None and not check.acceptable
    process, _ = start_redis_server(short_dir)
    try:
        assert check.ensure() == "aof"
        # read() asks again whatever was cached: a Redis switched off append-only is caught there.
        check.connection.config_set("appendonly", "no")
        assert check.read() == "none"
        with pytest.raises(VolatileQueue):
            check.ensure()
        check.connection.config_set("appendonly", "yes")
        assert check.ensure() == "aof"
        wait_for_aof_written(check.connection)
    finally:
        stop(process, 10)
    assert check.ensure() == "aof"  # passed: from memory, without Redis


# -- the supervisor as an operator starts it -------------------------------------------------------


def supervisor_config(directory: Path, socket: Path, extra: str = "") -> tuple[Path, str]:
    """A node's settings on the Redis at `socket`: (the file, the supervisor's URL)."""
    directory.mkdir(parents=True, exist_ok=True)
    port = free_port()
    config = directory / "node.toml"
    config.write_text(
        f'state_dir = "{directory / "state"}"\nredis_url = "unix://{socket}"\nqueue = "durability"\nport = {port}\n{extra}'
    )
    return config, f"http://127.0.0.1:{port}"


@pytest.mark.parametrize("persistence", ["rdb", "none"])
def test_a_supervisor_refuses_to_start_on_a_volatile_redis(tmp_path, redis_of, zn, persistence):
    config, _ = supervisor_config(tmp_path, redis_of(persistence))
    result = zn("supervisor", "--config", config)  # one that starts runs until the timeout, and fails the test
    assert result.returncode != 0
    errors = [line for line in result.stderr.splitlines() if line.startswith("error:")]
    assert len(errors) == 1, result.stderr
    assert f"persistence: {persistence}" in errors[0]
    assert "appendonly yes" in errors[0] and "allow_volatile_queue = true" in errors[0]
    assert "Traceback" not in result.stderr


def test_allowed_a_supervisor_runs_on_a_volatile_redis_and_health_says_which(tmp_path, redis_of, services):
    config, url = supervisor_config(tmp_path, redis_of("rdb"), "allow_volatile_queue = true\n")
    supervisor = services("supervisor", "--config", config)
    wait_healthy(url, 30, supervisor.process)
    assert httpx.get(f"{url}/health", timeout=5).json()["queue_persistence"] == "rdb"
    warning = supervisor.wait_for_log(lambda entry: "volatile" in entry.get("msg", ""))
    assert warning["level"] == "warning" and warning["persistence"] == "rdb"


def test_on_an_append_only_redis_a_supervisor_starts_and_health_shows_aof(tmp_path, redis_of, services):
    config, url = supervisor_config(tmp_path, redis_of("aof"))
    supervisor = services("supervisor", "--config", config)
    wait_healthy(url, 30, supervisor.process)
    health = httpx.get(f"{url}/health", timeout=5).json()
    assert (health["status"], health["queue_persistence"]) == ("ok", "aof")
    assert supervisor.wait_for_log(lambda entry: entry.get("msg") == "queue persistence")["persistence"] == "aof"


def test_started_with_redis_away_a_supervisor_checks_once_redis_answers(tmp_path, short_dir, services):
    socket = short_dir / "redis.sock"
    config, url = supervisor_config(tmp_path, socket)
    supervisor = services("supervisor", "--config", config)
    supervisor.wait_for_log(lambda entry: "cannot be reached at start" in entry.get("msg", ""))
    wait_until(lambda: status(f"{url}/health") == 503, 30, "the supervisor to answer, unhealthy", process=supervisor.process)

    def health() -> tuple[int, str]:
        answer = httpx.get(f"{url}/health", timeout=10)
        return answer.status_code, answer.json().get("queue_persistence")

    process, _ = start_redis_server(short_dir, persistence="none")  # a volatile one comes up: still unhealthy
    try:
        wait_until(lambda: health() == (503, "none"), 30, "/health to name the volatile queue", process=supervisor.process)
        client_of(socket).config_set("appendonly", "yes")  # made durable: healthy
        wait_until(lambda: health() == (200, "aof"), 30, "/health to show aof", process=supervisor.process)
        wait_for_aof_written(client_of(socket))
    finally:
        stop(process, 10)


def test_the_tests_node_runs_on_append_only_as_production_does(node):
    health = node.http.get("/health")
    assert (health.status_code, health.json()["queue_persistence"]) == (200, "aof")
    assert {"status", "node", "rights"} <= set(health.json())  # and what supervisor.routes.operations answers


# -- every Redis zeronode starts or documents ------------------------------------------------------


@contextlib.contextmanager
def redis_on_config(config: Path, directory: Path) -> Iterator[redis.Redis]:
    """redis-server on `config` as it is (a typo would keep the node's Redis from starting), on a socket in `directory`."""
    socket = directory / "redis.sock"
    process = subprocess.Popen(
        [shutil.which("redis-server"), str(config), "--port", "0", "--unixsocket", str(socket), "--dir", str(directory)],
        stdout=subprocess.DEVNULL,
    )
    try:
        client = client_of(socket)
        wait_until(client.ping, 10, f"redis-server on {config.name}", interval=0.02, process=process,
                   ignoring=(redis.ConnectionError, FileNotFoundError))
        yield client
    finally:
        stop(process, 10)


def test_the_shipped_redis_config_is_append_only_and_redis_runs_it(short_dir):
    settings = conf_settings(SHIPPED)
    assert settings["appendonly"] == "yes"
    assert settings["appendfsync"] in ("everysec", "always")
    assert settings["maxmemory-policy"] == "noeviction"
    # redis-server takes the file as it is (a typo would keep the node's Redis from starting).
    with redis_on_config(SHIPPED, short_dir) as client:
        assert queue_persistence(client) == "aof"
        assert client.config_get("maxmemory-policy") == {"maxmemory-policy": "noeviction"}


def test_zeronode_up_and_the_tests_redis_run_the_shipped_durability():
    shipped = conf_settings(SHIPPED)
    for name, argv in (("zeronode up", REDIS_DURABILITY), ("tests/support/redis_server.py", PERSISTENCE["aof"])):
        options = dict(zip(argv[::2], argv[1::2], strict=True))
        assert options["--appendonly"] == shipped["appendonly"], name
        assert options["--appendfsync"] == shipped["appendfsync"], name


def test_the_install_helper_makes_debians_redis_conf_append_only(tmp_path, short_dir):
    main = tmp_path / "redis.conf"
    main.write_text("# Debian's, as packaged\nappendonly no\nsave 3600 1 300 100 60 10000\n")
    for _ in range(2):  # idempotent
        result = subprocess.run([ROOT / "scripts" / "install-node-redis", "--conf-dir", tmp_path, "--no-restart"],
                                check=False, capture_output=True, text=True, timeout=30)
        assert result.returncode == 0, result.stderr
    assert (tmp_path / "zeronode.conf").read_text() == SHIPPED.read_text()
    lines = [line for line in main.read_text().splitlines() if line.strip()]
    assert lines[-1] == f"include {tmp_path / 'zeronode.conf'}"  # last: its values win
    assert main.read_text().count("include ") == 1
    # Redis on that file is append-only.
    with redis_on_config(main, short_dir) as client:
        assert queue_persistence(client) == "aof"

