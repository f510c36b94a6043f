"""The node identity manager (`zeronode identity`): the node's key, its record in the ledger, its uptime reports.

It runs at boot (scripts/systemd/zeronode-identity.service) and for as long
as the node does:

1. Take the reporter lock (STATE_DIR/identity.lock, flock): one reporter per
   node, so its reports stay monotonic. A second one exits with a message.
2. Load the node key, creating it (0600) on the first run: the node id derives
   from it, so it never changes across restarts.
3. Register the node in the ledger: capacity read from the host, supervisor
   URL, mycelium address. Registered again whenever any of that changes.
4. Report the host's uptime every `uptime_interval` seconds.

It never dies of the ledger: unreachable, DNS failure, timeouts, 5xx and
unexpected errors are logged and retried with capped exponential backoff,
and reporting resumes by itself when the ledger is back. A ledger that lost
the node (404) gets it registered again.
"""

from __future__ import annotations

import contextlib
import fcntl
import logging
import os
import random
import shutil
import signal
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import zeronode
from ledger.models import Capacity, NodeRegistration
from sal.network.client import MyceliumClient, NetworkError
from zeronode import keys
from zeronode.errors import ZeronodeError
from zeronode.ledger_client import Conflict, LedgerClient, LedgerRefused, LedgerUnavailable, NotFound
from zeronode.node import node_identity
from zeronode.settings import NodeSettings

log = logging.getLogger("zeronode.identity")

LOCK_NAME = "identity.lock"
MAX_BACKOFF = 60.0


class AlreadyRunning(ZeronodeError):
    """Another identity manager holds this node's reporter lock."""


@contextlib.contextmanager
def reporter_lock(state_dir: Path) -> Iterator[Path]:
    """Hold STATE_DIR/identity.lock while the block runs; AlreadyRunning if another process holds it.

    flock, not a PID file: the kernel drops the lock when its holder dies, however it dies.
    """
    state_dir.mkdir(parents=True, exist_ok=True)
    path = state_dir / LOCK_NAME
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = os.pread(fd, 32, 0).decode("ascii", errors="replace").strip() or "?"
            raise AlreadyRunning(
                f"another `zeronode identity` (pid {holder}) already reports for this node: {path} is locked"
            ) from None
        os.ftruncate(fd, 0)
        os.pwrite(fd, f"{os.getpid()}\n".encode(), 0)  # for the message above, in the next one started
        yield path
    finally:
        os.close(fd)


def host_uptime() -> int:
    """Seconds since this machine booted."""
    return int(float(Path("/proc/uptime").read_text().split()[0]))


def host_capacity(storage: Path) -> Capacity:
    """CPUs and memory of this machine, and the size of the file system holding `storage`."""
    return Capacity(
        vcpus=os.cpu_count() or 1,
        memory=os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES"),
        disk=shutil.disk_usage(storage).total,
    )


def mycelium_address(url: str | None) -> str | None:
    """The node's overlay address from its mycelium daemon, or None when there is none or it does not answer."""
    if not url:
        return None
    client = MyceliumClient(url, timeout=5)
    try:
        return client.info()["nodeIp"]
    except (NetworkError, KeyError, TypeError, ValueError) as exc:
        log.debug("no mycelium address", extra={"mycelium": url, "error": str(exc)})
        return None
    finally:
        client.close()


def registration(settings: NodeSettings) -> NodeRegistration:
    """What the ledger should know about this node, read now from the host and the settings."""
    storage = settings.storage_root if settings.storage_root and settings.storage_root.is_dir() else settings.state_dir
    host = f"[{settings.host}]" if ":" in settings.host else settings.host
    return NodeRegistration(
        farm=settings.farm,
        owner=settings.owner,
        capacity=host_capacity(storage),
        supervisor_url=settings.supervisor_url or f"http://{host}:{settings.port}",
        mycelium_address=mycelium_address(settings.mycelium_url),
        version=zeronode.__version__,
    )


class Backoff:
    """1, 2, 4, ... seconds up to `cap`, each with up to 20% jitter (nodes that failed together retry apart)."""

    def __init__(self, cap: float):
        self.cap = cap
        self.failures = 0

    def next(self) -> float:
        delay = min(self.cap, 2.0**self.failures)
        self.failures += 1
        return delay * random.uniform(0.8, 1.0)

    def reset(self) -> None:
        self.failures = 0


class IdentityManager:
    """Registers the node and reports its uptime until `stop` is set; never raises out of `run`."""

    def __init__(
        self,
        settings: NodeSettings,
        ledger: LedgerClient,
        stop: threading.Event,
        *,
        read_registration: Callable[[NodeSettings], NodeRegistration] = registration,
        uptime: Callable[[], int] = host_uptime,
        clock: Callable[[], float] = time.time,
    ):
        self.settings = settings
        self.ledger = ledger
        self.stop = stop
        self.read_registration = read_registration
        self.uptime = uptime
        self.clock = clock
        self.registered: NodeRegistration | None = None
        self.backoff = Backoff(min(settings.uptime_interval, MAX_BACKOFF))

    def run(self) -> None:
        while not self.stop.is_set():
            self.stop.wait(self.cycle())

    def cycle(self) -> float:
        """Register if needed, report once; the seconds to wait before the next cycle."""
        interval = self.settings.uptime_interval
        try:
            wanted = self.read_registration(self.settings)
            if wanted != self.registered:
                node = self.ledger.register(wanted)
                self.registered = wanted
                log.info("registered in the ledger", extra={"node": node.node_id, **wanted.model_dump(mode="json")})
            answer = self.ledger.report_uptime(self.uptime(), timestamp=int(self.clock()))
        except NotFound as exc:  # the ledger lost this node (a new database): register again
            log.warning("the ledger does not know this node; registering again", extra={"error": str(exc)})
            self.registered = None
            return self.backoff.next()
        except Conflict as exc:  # this clock went back: retrying sooner would not help
            log.warning("uptime report refused as stale", extra={"error": str(exc)})
            return interval
        except LedgerRefused as exc:  # our fault (settings, clock): keep trying, loudly
            log.error("the ledger refused", extra={"error": str(exc), "status": exc.status, "reason": exc.reason})
            return self.backoff.next()
        except LedgerUnavailable as exc:
            delay = self.backoff.next()
            log.warning("ledger unavailable, retrying", extra={"error": str(exc), "retry_in": round(delay, 1)})
            return delay
        except Exception:
            delay = self.backoff.next()
            log.exception("identity cycle failed, retrying", extra={"retry_in": round(delay, 1)})
            return delay
        self.backoff.reset()
        log.info("uptime reported", extra={"uptime": answer.uptime, "timestamp": answer.timestamp, "restart": answer.restart})
        return interval


def run(settings: NodeSettings) -> None:
    """`zeronode identity`: until SIGTERM or SIGINT. AlreadyRunning, KeyFileError or OSError before it starts."""
    if not settings.ledger_url:
        raise ValueError("no ledger_url in the settings")
    with reporter_lock(settings.state_dir):
        identity = node_identity(settings)
        node_id = keys.node_id(identity.public_key)
        log.info("identity loaded", extra={"node": node_id, "public_key": identity.public_key, "ledger": settings.ledger_url})
        if settings.node_id and settings.node_id != node_id:
            log.warning("node_id is overridden in the settings; the ledger knows this node by its key's id", extra={"node": node_id})
        stop = threading.Event()
        for signum in (signal.SIGTERM, signal.SIGINT):
            signal.signal(signum, lambda *_: stop.set())
        timeout = min(10.0, settings.uptime_interval)
        with LedgerClient(settings.ledger_url, identity.key, timeout=timeout) as ledger:
            IdentityManager(settings, ledger, stop).run()
        log.info("identity manager stopped", extra={"node": node_id})

