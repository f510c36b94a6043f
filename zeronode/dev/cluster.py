"""A whole zeronode system on one machine, for development and demos: `zeronode up`.

    redis-server          one, on a UNIX socket, append-only as a node's must be (its files in the state
                          dir: a crash of it loses no accepted job); coord uses database 0, node i database i
    zeronode ledger       SQLite in the state dir; the generated admin key is its first admin, and
                          an operator of the farm "local" (so it deploys); coord's key is an observer
                          there (it reads and cancels jobs on the nodes, and runs nothing)
    zeronode coord
    per node:             a mycelium simulator (peered with the other nodes'), `zeronode identity`
                          (registers the node, reports uptime, fetches its rights), `zeronode supervisor`,
                          `zeronode runner --pool 2`, and with storage `zeronode vm-keeper`; authorized_keys
                          bootstraps the admin and coord

Storage: the nodes' volumes and VMs live on a btrfs, `--storage-root`, or else a
sparse image loop-mounted in the state dir (when run as root), or none. Each
node's storage gets one shared image, "tiny": zeronode's tiny Linux guest
(zeronode.dev.guest) where a real hypervisor runs (cloud-hypervisor, else QEMU:
`hypervisor = auto`), a placeholder on the simulator.

VM network: as root, each node's VMs are on its mycelium /64 (sal.vmnet), on a
bridge of its own (`zn<tag>n<i>`, with the private subnet 10.208.<i>.0/24), made
in this host's network namespace, with IPv6 forwarding turned on; a temporary
cluster deletes its VMs, and with them the bridges and nft rules, when it stops.
Images: with a real hypervisor, the tiny guest is also served as an image bundle
on loopback (`python -m http.server`), for the examples that pull an image by
URL and digest (IMAGE_URL, IMAGE_SHA256 in their env).

Every process is a real one, started with the same commands an operator uses,
configured by generated TOML files, and logging to STATE_DIR/logs/. Each is
started in its own session (Ctrl-C reaches only `up`, which then stops them
in order) and is told to exit if `up` itself dies, so none is left behind.
"""

from __future__ import annotations

import base64
import hashlib
import json
import os
import re
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

import httpx
import nacl.signing
from pydantic import ValidationError

from coord.dashboard.auth import new_token, token_hash
from sal import registry
from sal.errors import SalError
from sal.storage.owned import OwnedStorage
from sal.tenancy import OPERATOR
from zeronode.api.ledger import NewUser
from zeronode.client.ledger import LedgerClient
from zeronode.dev import guest
from zeronode.dev.loop_storage import LoopBtrfs, LoopStorageError
from zeronode.dev.loop_storage import unavailable as loop_storage_unavailable
from zeronode.errors import ZeronodeError
from zeronode.files import write_atomic
from zeronode.node.process import die_with_parent
from zeronode.node.settings import NodeSettings
from zeronode.protocol import keys

READY_TIMEOUT = 60.0
RELEASE_KEYS, RELEASE_THRESHOLD = 3, 2
FARM = "local"
LOOPBACK = ["127.0.0.0/8", "::1/128"]  # where a local cluster's supervisors are: allowed as supervisor URLs
# The durability every node Redis runs with (scripts/redis/zeronode-redis.conf; the supervisors refuse less).
REDIS_DURABILITY = ["--appendonly", "yes", "--appendfsync", "everysec"]
DEFAULT_LEDGER_PORT, DEFAULT_COORD_PORT = 8400, 8200  # where the client commands look by default


class ClusterError(ZeronodeError):
    """The local cluster could not start; the message says what to do."""


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


@dataclass
class Service:
    name: str
    argv: list[str]
    process: subprocess.Popen
    log: Path
    restarts: int = 0

    def tail(self, lines: int = 8) -> str:
        try:
            return "\n".join(self.log.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return ""


@dataclass
class LocalNode:
    index: int
    config: Path
    supervisor_url: str
    node_id: str = ""


@dataclass
class LocalCluster:
    """Start with `start()`, stop with `stop()` (or use it as a context manager)."""

    nodes: int = 1
    state_dir: Path | None = None
    runners: int = 2
    storage_root: Path | None = None
    # No storage_root: loop-mount a btrfs image in the state dir, where this process may (root).
    loop_storage: bool = True
    # The nodes' hypervisor driver (a name in sal.registry's table): auto runs cloud-hypervisor, else QEMU,
    # else the simulator, and prepare_images gives the real ones a guest that boots.
    hypervisor: str = "auto"
    guest_cache: Path | None = None  # where the tiny guest is built once (default: ~/.cache/zeronode/guest)
    report_interval: float = 2.0
    # Serve the ledger and coord where every client command looks by default (8400, 8200) when those ports
    # are free; else (or when false) on free ports, which `zeronode up` prints as lines to export.
    default_ports: bool = False
    services: list[Service] = field(default_factory=list)
    local_nodes: list[LocalNode] = field(default_factory=list)
    on_progress: object = print

    def __post_init__(self) -> None:
        self.temporary = self.state_dir is None
        self.state_dir = Path(self.state_dir or tempfile.mkdtemp(prefix="zeronode-up-"))
        self.state_dir.mkdir(parents=True, exist_ok=True)
        self.logs = self.state_dir / "logs"
        self.logs.mkdir(exist_ok=True)
        self.zeronode = shutil.which("zeronode", path=str(Path(sys.executable).parent)) or "zeronode"
        self.admin_key_path = self.state_dir / "admin.key"
        self.dashboard_token = self.state_dir / "dashboard.token"  # 0600: signs in to coord's fleet dashboard
        self.loop: LoopBtrfs | None = None
        self.ledger_url = f"http://127.0.0.1:{self._port(DEFAULT_LEDGER_PORT)}"
        self.coord_url = f"http://127.0.0.1:{self._port(DEFAULT_COORD_PORT)}"
        self.redis_socket = self.state_dir / "redis.sock"
        self.vm_network = os.geteuid() == 0  # a bridge and taps: root's (CAP_NET_ADMIN)
        self.tag = self._tag()
        self.image_url: str | None = None  # the tiny guest as a bundle, once prepare_images made it
        self.image_sha256: str | None = None

    # -- processes -----------------------------------------------------------------

    def _popen(self, argv: list[str], log: Path) -> subprocess.Popen:
        with open(log, "ab") as output:
            return subprocess.Popen(
                argv, stdin=subprocess.DEVNULL, stdout=output, stderr=output, cwd=self.state_dir,
                start_new_session=True, preexec_fn=die_with_parent,  # SIGTERM when `up` exits, however it exits
            )

    def _spawn(self, name: str, argv: list[str]) -> Service:
        log = self.logs / f"{name}.log"
        service = Service(name, argv, self._popen(argv, log), log)
        self.services.append(service)
        return service

    def restart_exited(self) -> list[Service]:
        """Start again every service that exited (a crash, a kill): what a service manager would do."""
        restarted = []
        for service in self.services:
            if service.process.poll() is None:
                continue
            try:
                service.process = self._popen(service.argv, service.log)
            except OSError as exc:  # its program gone for now (a node switching versions): tried again next time
                self.on_progress(f"{service.name} cannot start: {exc}")
                continue
            service.restarts += 1
            restarted.append(service)
        if restarted:
            self._write_description()
        return restarted

    def _wait(self, what: str, ready, services: list[Service]) -> None:
        deadline = time.monotonic() + READY_TIMEOUT
        while not ready():
            for service in services:
                if service.process.poll() is not None:
                    raise ClusterError(f"{service.name} exited with {service.process.returncode}:\n{service.tail()}")
            if time.monotonic() > deadline:
                raise ClusterError(f"{what} not ready within {READY_TIMEOUT:.0f} s; logs in {self.logs}")
            time.sleep(0.05)

    @staticmethod
    def _answers(url: str) -> bool:
        """Whether GET `url` answers 200 now (a service's /health, the mycelium API)."""
        try:
            return httpx.get(url, timeout=1).status_code == 200
        except httpx.HTTPError:
            return False

    # -- start ---------------------------------------------------------------------

    def start(self) -> None:
        redis_server = shutil.which("redis-server")
        if redis_server is None:
            raise ClusterError("redis-server is not installed: sudo apt-get install redis-server (Debian/Ubuntu)")
        try:  # the driver table knows the name (checked now, not by runners failing over and over)
            registry.build("hypervisor", NodeSettings(state_dir=self.state_dir, hypervisor=self.hypervisor))
        except (SalError, ValidationError) as exc:
            raise ClusterError(f"--hypervisor: {exc}") from None
        self._storage()
        self._release_keys()
        admin = self.admin_key = self._key(self.admin_key_path)
        admin_public = keys.public_key_text(admin)
        coord_public = keys.public_key_text(self._key(self.state_dir / "coord.key"))

        self.on_progress(f"state and logs in {self.state_dir}")
        self.redis_socket.unlink(missing_ok=True)  # left by a Redis that was killed: ready means made anew
        redis = self._spawn("redis", [
            redis_server, "--port", "0", "--unixsocket", str(self.redis_socket), "--unixsocketperm", "700",
            *REDIS_DURABILITY, "--save", "", "--dir", str(self.state_dir), "--databases", str(max(16, self.nodes + 1)),
        ])
        self._wait("redis", self.redis_socket.exists, [redis])

        ledger_config = self._write("ledger.toml", {
            "data_dir": self.state_dir / "ledger", "port": int(self.ledger_url.rsplit(":", 1)[1]),
            "admins": [admin_public], "report_interval": self.report_interval, "supervisor_networks": LOOPBACK,
            "release_keys": self.release_keys, "release_threshold": RELEASE_THRESHOLD,
        })
        (self.state_dir / "ledger").mkdir(exist_ok=True)
        ledger = self._spawn("ledger", [self.zeronode, "ledger", "--config", str(ledger_config)])
        dashboard_token = self._dashboard_token()
        coord_config = self._write("coord.toml", {
            "state_dir": self.state_dir / "coord", "key": self.state_dir / "coord.key",
            "redis_url": f"unix://{self.redis_socket}?db=0", "ledger_url": self.ledger_url,
            "port": int(self.coord_url.rsplit(":", 1)[1]), "admins": [admin_public], "offline_wait": 5.0,
            "supervisor_networks": LOOPBACK, "failover_after": 2.0, "failover_interval": 1.0,  # quick to see in development
            "dashboard_tokens": [token_hash(dashboard_token)],
        })
        coord = self._spawn("coord", [self.zeronode, "coord", "--config", str(coord_config)])
        self._wait("ledger and coord", lambda: self._answers(f"{self.ledger_url}/health") and self._answers(f"{self.coord_url}/health"), [ledger, coord])
        self.on_progress(f"ledger {self.ledger_url}, coord {self.coord_url}")
        self._grant_rights(admin, admin_public, coord_public)

        mycelium_ports = [(free_port(), free_port()) for _ in range(self.nodes)]  # (API, peer listen port) each
        started: list[Service] = []
        for index in range(1, self.nodes + 1):
            started += self._start_node(index, mycelium_ports, admin_public, coord_public)
        self._wait("supervisors", lambda: all(self._answers(f"{n.supervisor_url}/health") for n in self.local_nodes), started)
        self._wait("node registration", self._all_online, started)
        self._wait("node rights", lambda: all((self.state_dir / f"node{n.index}" / "rights.json").exists() for n in self.local_nodes), started)
        for node in self.local_nodes:
            self.on_progress(f"node {node.index}: {node.node_id} at {node.supervisor_url}")
        self._write_description()

    def _storage(self) -> None:
        """The nodes' btrfs: the one given, or a loop-mounted image of our own where we may make one."""
        if self.storage_root or not self.loop_storage:
            return
        if reason := loop_storage_unavailable():
            self.on_progress(f"no storage for VMs and volumes ({reason}): give --storage-root on a btrfs")
            return
        self.loop = LoopBtrfs(self.state_dir / "storage", keep=not self.temporary)
        try:
            self.storage_root = self.loop.mount()
        except LoopStorageError as exc:
            self.loop = None
            self.on_progress(f"no storage for VMs and volumes ({exc}): give --storage-root on a btrfs")
            return
        self.on_progress(f"storage: a btrfs image loop-mounted at {self.storage_root}")

    def _release_keys(self) -> None:
        """The cluster's release keys (2 of 3 sign a release, as a fleet's would be set): in STATE_DIR/release-keys."""
        directory = self.state_dir / "release-keys"
        directory.mkdir(mode=0o700, exist_ok=True)
        self.release_keys = [keys.public_key_text(self._key(directory / f"release{index}.key"))
                             for index in range(1, RELEASE_KEYS + 1)]

    @staticmethod
    def _key(path: Path) -> nacl.signing.SigningKey:
        """The key in `path`, made there the first time: a state dir used again keeps its admin, coord and
        release keys (and so the ledger's users and releases, the nodes' authorized_keys, stay true)."""
        if path.exists():
            return keys.load_private_key(path)
        key = keys.generate()
        keys.save_private_key(key, path)
        return key

    def _dashboard_token(self) -> str:
        """The read token of coord's fleet dashboard, in STATE_DIR/dashboard.token (0600): kept, like the keys."""
        if self.dashboard_token.exists():
            return self.dashboard_token.read_text().strip()
        token = new_token()
        write_atomic(self.dashboard_token, token + "\n")
        return token

    def _tag(self) -> str:
        """Two hex digits in the nodes' bridge names, so two clusters on one host never share one; kept in the
        state dir, so a cluster started again finds its VMs' bridges under the names they were given."""
        path = self.state_dir / "tag"
        try:
            tag = path.read_text().strip()
        except FileNotFoundError:
            tag = ""
        if not re.fullmatch(r"[0-9a-f]{4}", tag):
            tag = secrets.token_hex(2)
            path.write_text(tag + "\n")
        return tag

    def _port(self, preferred: int) -> int:
        if self.default_ports:
            with socket.socket() as probe:
                # As the services bind: a port whose last connections linger in TIME_WAIT is free to them.
                probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
                try:
                    probe.bind(("127.0.0.1", preferred))
                    return preferred
                except OSError:  # taken: another cluster, or the real thing
                    pass
        return free_port()

    def exports(self) -> list[str]:
        """What a shell exports so every client command finds this cluster (and its admin key, where --key is asked)."""
        return [f"export ZERONODE_LEDGER_URL={self.ledger_url}", f"export ZERONODE_COORD_URL={self.coord_url}"]

    def _grant_rights(self, admin: nacl.signing.SigningKey, admin_public: str, coord_public: str) -> None:
        """The ledger's rights of a local cluster: its admin runs scripts on every node of the farm (operator),
        coord reads and cancels jobs there and runs nothing (observer). Nodes fetch them through their identity managers."""
        sequence = time.time_ns() // 1_000_000
        with LedgerClient(self.ledger_url, admin) as ledger:
            for public_key, name in ((admin_public, "zeronode up's admin"), (coord_public, "zeronode up's coord")):
                ledger.create_user(NewUser(public_key=public_key, name=name, roles=["admin", "operator"] if public_key == admin_public
                                           else ["observer"], farms=[FARM], sequence=sequence))

    def _write_description(self) -> None:
        # Atomic: tests and scripts read it while `up` rewrites it after a restart.
        write_atomic(self.state_dir / "cluster.json", json.dumps(self.describe(), indent=2))
        for node in self.local_nodes:
            self._write_services(node)

    def _write_services(self, node: LocalNode) -> None:
        """node<i>/services.json: the pids of the node's zeronode services, which its identity manager
        restarts on an update by SIGTERM, `up` starting them again (zeronode.identity_manager.services)."""
        prefix = f"node{node.index}-"
        pids = {service.name.removeprefix(prefix): service.process.pid for service in self.services
                if service.name.startswith(prefix) and not service.name.endswith("-mycelium")}
        write_atomic(self.state_dir / f"node{node.index}" / "services.json", json.dumps(pids))

    def describe(self) -> dict:
        """Where everything is: what cluster.json in the state dir holds, for scripts and tests."""
        return {
            "ledger_url": self.ledger_url, "coord_url": self.coord_url, "admin_key": str(self.admin_key_path),
            "coord_config": str(self.state_dir / "coord.toml"), "release_keys": str(self.state_dir / "release-keys"),
            "dashboard_url": f"{self.coord_url}/dashboard/", "dashboard_token": str(self.dashboard_token),
            "nodes": [{"index": n.index, "node_id": n.node_id, "supervisor_url": n.supervisor_url, "config": str(n.config)}
                      for n in self.local_nodes],
            "processes": {service.name: service.process.pid for service in self.services},
        }

    def _start_node(self, index: int, mycelium_ports: list[tuple[int, int]], admin: str, coord: str) -> list[Service]:
        node_dir = self.state_dir / f"node{index}"
        node_dir.mkdir(exist_ok=True)
        (node_dir / "authorized_keys").write_text(f"{admin} deployer admin  # zeronode up's admin\n{coord} observer  # coord\n")
        port = free_port()
        mycelium_port, peer_port = mycelium_ports[index - 1]
        settings = {
            "state_dir": node_dir, "redis_url": f"unix://{self.redis_socket}?db={index}", "port": port,
            "ledger_url": self.ledger_url, "uptime_interval": self.report_interval, "farm": FARM,
            "placers": [coord],  # runs what coord places here by a selector (zeronode.protocol.ticket)
            "rights_refresh": 5.0,  # a revocation counts on the nodes within 5 s: quick to see in development
            "mycelium_url": f"http://127.0.0.1:{mycelium_port}", "heartbeat_interval": 1.0, "dead_after": 5.0,
            "runner_metrics_port": free_port(),  # each node's runner pool serves /metrics and /health on its own
            "vm_network": self.vm_network, "vm_bridge": f"zn{self.tag}n{index}", "vm_private_subnet": f"10.208.{index}.0/24",
            # Updates: the node's versions live in its directory, its services run from node<i>/current, and `up`
            # restarts them (docs/operators.md, "Updating a fleet").
            "release_keys": self.release_keys, "release_threshold": RELEASE_THRESHOLD, "install_root": node_dir,
            "service_manager": "local", "update_window": 20.0,
        }
        if self.storage_root:
            settings["storage_root"] = self.storage_root / f"node{index}"
            settings["storage_root"].mkdir(parents=True, exist_ok=True)
            settings["hypervisor"] = self.hypervisor
        config = self._write(f"node{index}.toml", settings)
        node = LocalNode(index, config, f"http://127.0.0.1:{port}")
        self.local_nodes.append(node)
        name = f"node{index}"
        current = node_dir / "current"
        if not current.is_symlink():  # this checkout's venv is each node's first version
            current.symlink_to(Path(sys.prefix))
        zeronode = str(current / "bin" / "zeronode")
        mycelium = self._spawn(f"{name}-mycelium", [sys.executable, "-m", "sal.network.drivers.mycelium.simulator",
                                                    "--port", str(mycelium_port), "--peer-port", str(peer_port),
                                                    "--key-file", str(node_dir / "mycelium.key")])
        self._wait(f"{name}'s mycelium", lambda: self._answers(f"http://127.0.0.1:{mycelium_port}/api/v1/admin"), [mycelium])
        for _, listening in mycelium_ports[: index - 1]:  # dial the nodes started before, at their listen ports, as
            # daemons peer: each link is static on this side and inbound on the other, so the overlay is connected
            httpx.post(f"http://127.0.0.1:{mycelium_port}/api/v1/admin/peers", json={"endpoint": f"tcp://127.0.0.1:{listening}"})
        services = [
            mycelium,
            self._spawn(f"{name}-identity", [zeronode, "identity", "--config", str(config)]),
            self._spawn(f"{name}-supervisor", [zeronode, "supervisor", "--config", str(config)]),
            self._spawn(f"{name}-runner", [zeronode, "runner", "--pool", str(self.runners), "--config", str(config)]),
        ]
        if self.storage_root:
            services.append(self._spawn(f"{name}-vm-keeper", [zeronode, "vm-keeper", "--config", str(config)]))
        self._write_services(node)
        return services

    def hypervisors(self) -> dict[int, str]:
        """Each node's hypervisor as its VMs report it ("qemu", "cloud-hypervisor", "simulated"); none without storage."""
        kinds = {}
        for node in self.local_nodes:
            vms = registry.NodeSals.from_settings(self._node_settings(node)).vms
            if vms is not None:
                kinds[node.index] = vms.kind
        return kinds

    def prepare_images(self, name: str = "tiny") -> None:
        """One shared image volume on each node's storage, every deployer's to boot from (the examples'
        deploy_vm.rhai): zeronode's tiny Linux guest for a real hypervisor (built once, with apt-get download),
        a placeholder kernel for the simulator."""
        for node in self.local_nodes:
            settings = self._node_settings(node)
            storage = registry.build("storage", settings)
            if not storage.exists(name):
                real = registry.NodeSals.from_settings(settings).vms.kind != "simulated"
                if real:
                    self.on_progress(f"node {node.index}: building the tiny guest image (once; apt-get download)")
                tiny = guest.build(self.guest_cache or guest.default_cache()) if real else None
                volume = storage.create(name)
                if tiny:
                    guest.install_image(volume.path, tiny)
                else:
                    with open(volume.path / "disk.raw", "wb") as disk:
                        disk.truncate(64 * 1024 * 1024)
                    (volume.path / "vmlinux").write_bytes(b"placeholder kernel for the simulated hypervisor")
            images = OwnedStorage(storage)
            if images.info(OPERATOR, name).owner is None:  # made here, now or by an earlier `up`: not a tenant's
                images.share(OPERATOR, name)  # once whole: no deployer boots from a half-made image
        if self.image_url is None and any(kind != "simulated" for kind in self.hypervisors().values()):
            self._serve_image(guest.build(self.guest_cache or guest.default_cache()))

    def _serve_image(self, tiny: guest.Guest) -> None:
        """The tiny guest as an image bundle over HTTP on loopback, as an image server would offer it."""
        directory = self.state_dir / "images"
        directory.mkdir(exist_ok=True)
        self.image_sha256 = guest.write_bundle(directory / "tiny-guest.tar.gz", tiny, label="pulled-image")
        port = free_port()
        server = self._spawn("image-server", [sys.executable, "-m", "http.server", "--bind", "127.0.0.1",
                                              "--directory", str(directory), str(port)])
        self.image_url = f"http://127.0.0.1:{port}/tiny-guest.tar.gz"
        self._wait("the image server", lambda: self._answers(self.image_url), [server])
        self.on_progress(f"images: the tiny guest as a bundle at {self.image_url}")

    def example_env(self) -> dict[str, str]:
        """What the example scripts read from `env`: names, and where the image is with its digest."""
        env = {"APP": "demo", "NAME": "demo-vm", "SSH_KEY": ssh_public_key(self.admin_key.verify_key)}
        if self.image_url:
            env |= {"IMAGE_URL": self.image_url, "IMAGE_SHA256": self.image_sha256}
        return env

    def _all_online(self) -> bool:
        try:
            nodes = httpx.get(f"{self.ledger_url}/v1/nodes", params={"status": "online", "limit": 1000}, timeout=2).json()
        except (httpx.HTTPError, ValueError):
            return False
        by_url = {node["supervisor_url"]: node["node_id"] for node in nodes}
        for node in self.local_nodes:
            node.node_id = by_url.get(node.supervisor_url, "")
        return all(node.node_id for node in self.local_nodes)

    def _write(self, name: str, settings: dict) -> Path:
        path = self.state_dir / name
        path.write_text("".join(f"{key} = {toml_value(value)}\n" for key, value in settings.items()))
        return path

    # -- stop ----------------------------------------------------------------------

    def stop(self, grace: float = 15.0) -> None:
        """Stop every process: SIGTERM, then SIGKILL after `grace` seconds. Redis goes last, once the rest
        have stopped: a runner stopping with a job in hand waits for Redis to record the job's end."""
        redis = [service for service in self.services if service.name == "redis"]
        self._terminate([service for service in reversed(self.services) if service not in redis], grace)
        self._terminate(redis, grace)
        self.services.clear()
        self._stop_vms()
        if self.loop is not None:
            self.loop.unmount()
        if self.temporary:
            shutil.rmtree(self.state_dir, ignore_errors=True)

    def _terminate(self, services: list[Service], grace: float) -> None:
        for service in services:
            if service.process.poll() is None:
                service.process.send_signal(signal.SIGTERM)
        deadline = time.monotonic() + grace
        for service in services:
            try:
                service.process.wait(max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                self.on_progress(f"{service.name} did not stop within {grace:g} s of SIGTERM: killed (its log: {service.log})")
                os.killpg(service.process.pid, signal.SIGKILL)
                service.process.wait()

    def _stop_vms(self) -> None:
        """VMs outlive runners by design (their VMMs run in their own sessions); a local cluster's do not. A
        temporary cluster's go altogether, and their taps, bridges and nft rules with them."""
        if not self.storage_root:
            return
        for node in self.local_nodes:
            if (self.state_dir / f"node{node.index}" / "vms").is_dir():
                vms = registry.NodeSals.from_settings(self._node_settings(node)).vms
                vms.stop_all(timeout=1)
                for vm in vms.list(OPERATOR) if self.temporary else ():
                    try:
                        vms.delete(OPERATOR, vm["name"])
                    except SalError as exc:
                        self.on_progress(f"node {node.index}: VM {vm['name']} not deleted: {exc}")

    @staticmethod
    def _node_settings(node: LocalNode) -> NodeSettings:
        """The node's settings, from the file its services read: its drivers are built from them, as theirs are."""
        return NodeSettings.load(node.config)

    def __enter__(self) -> LocalCluster:
        try:
            self.start()
        except BaseException:
            self.stop()
            raise
        return self

    def __exit__(self, *_exc) -> None:
        self.stop()


def ssh_public_key(key: nacl.signing.VerifyKey) -> str:
    """An Ed25519 public key as an OpenSSH authorized_keys line (RFC 8709: the key type, then the 32 bytes)."""
    blob = b"".join(len(part).to_bytes(4, "big") + part for part in (b"ssh-ed25519", bytes(key)))
    return f"ssh-ed25519 {base64.b64encode(blob).decode()} zeronode-up-{hashlib.sha256(blob).hexdigest()[:8]}"


def toml_value(value: object) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (int, float)):
        return repr(value)
    if isinstance(value, list):
        return "[" + ", ".join(toml_value(item) for item in value) + "]"
    escaped = str(value).replace("\\", "\\\\").replace('"', '\\"')
    return f'"{escaped}"'
