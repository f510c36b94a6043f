"""The identity manager's loops: register the node when needed, report its uptime, keep its rights fresh
(zeronode.identity_manager.rights), back off on failures.

It never dies of the ledger: unreachable, DNS failure, timeouts, 5xx and
unexpected errors are logged and retried with capped exponential backoff,
and reporting resumes by itself when the ledger is back. A ledger that lost
the node (404) gets it registered again.
"""

from __future__ import annotations

import logging
import os
import signal
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import NamedTuple

import httpx

import zeronode
from zeronode.api.errors import Conflict, NotFound, Refused, Unavailable
from zeronode.api.ledger import NodeRegistration, Usage
from zeronode.client.ledger import LedgerClient
from zeronode.identity_manager.health import node_health
from zeronode.identity_manager.host import host_uptime, node_usage, registration, supervisor_url
from zeronode.identity_manager.lock import reporter_lock
from zeronode.identity_manager.rights import RightsKeeper
from zeronode.identity_manager.updates import CHILD_ENV, Updater
from zeronode.node.identity import node_identity
from zeronode.node.settings import NodeSettings
from zeronode.protocol import keys
from zeronode.retry import Backoff

log = logging.getLogger("zeronode.identity")

MAX_BACKOFF = 60.0


class NodeState(NamedTuple):
    """What each uptime report says besides the uptime (docs/operators.md, "Placement and capacity")."""

    reserved: Usage | None
    free: Usage | None
    health: dict[str, bool] | None


def node_state(settings: NodeSettings) -> NodeState:
    """The node's capacity held and free, and its parts' health, read now. A capacity that cannot be read
    (the storage pool away, say) is left out of the report; the health says which part fails."""
    try:
        reserved, free = node_usage(settings)
    except Exception as exc:  # reported without capacity rather than not at all
        log.warning("cannot read the node's capacity", extra={"error": str(exc)})
        reserved = free = None
    with httpx.Client() as http:
        health = node_health(settings, supervisor_url(settings), http)
    return NodeState(reserved, free, health)


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
        read_state: Callable[[NodeSettings], NodeState] | None = None,
        updater: Updater | None = None,
        reporting: threading.Lock | None = None,
    ):
        self.settings = settings
        self.ledger = ledger
        self.stop = stop
        self.read_registration = read_registration
        self.uptime = uptime
        self.clock = clock
        self.read_state = read_state or node_state
        self.registered: NodeRegistration | None = None
        self.backoff = Backoff(min(settings.uptime_interval, MAX_BACKOFF))
        self.updater = updater
        self.reported = False  # the last cycle's report was taken
        self.reporting = reporting or threading.Lock()  # an update's check reports from the new version meanwhile

    def run(self) -> None:
        while not self.stop.is_set():
            self.stop.wait(self.cycle())

    def cycle(self) -> float:
        """Register if needed, report once; the seconds to wait before the next cycle."""
        with self.reporting:
            return self._cycle()

    def _cycle(self) -> float:
        interval = self.settings.uptime_interval
        self.reported = False
        try:
            wanted = self.read_registration(self.settings)
            if wanted != self.registered:
                node = self.ledger.register(wanted)
                self.registered = wanted
                log.info("registered in the ledger", extra={"node": node.node_id, **wanted.model_dump(mode="json")})
            state = self.read_state(self.settings)
            health, update = state.health, None
            if self.updater is not None:
                # While an update runs the node is not to get new work: a part of its health says so.
                health = {**(health or {}), "update": not self.updater.updating}
                update = self.updater.last_result()
            answer = self.ledger.report_uptime(
                self.uptime(), timestamp=int(self.clock()), reserved=state.reserved, free=state.free, health=health,
                version=zeronode.__version__, update=update,
            )
            if self.updater is not None:
                self.updater.offer(answer.release)
        except NotFound as exc:  # the ledger lost this node (a new database): register again
            log.warning("the ledger does not know this node; registering again", extra={"error": str(exc)})
            self.registered = None
            return self.backoff.next()
        except Conflict as exc:  # this clock went back: retrying sooner would not help
            log.warning("uptime report refused as stale", extra={"error": str(exc)})
            return interval
        except Refused as exc:  # our fault (settings, clock): keep trying, loudly
            log.error("the ledger refused", extra={"error": str(exc), "status": exc.status, "reason": exc.reason})
            return self.backoff.next()
        except Unavailable as exc:
            delay = self.backoff.next()
            log.warning("ledger unavailable, retrying", extra={"error": str(exc), "retry_in": round(delay, 1)})
            return delay
        except Exception:
            delay = self.backoff.next()
            log.exception("identity cycle failed, retrying", extra={"retry_in": round(delay, 1)})
            return delay
        self.backoff.reset()
        self.reported = True
        log.info("uptime reported", extra={"uptime": answer.uptime, "timestamp": answer.timestamp, "restart": answer.restart})
        return interval


def run(settings: NodeSettings, *, config: Path | None = None, once: bool = False) -> bool:
    """`zeronode identity`: until SIGTERM or SIGINT. AlreadyRunning, KeyFileError or OSError before it starts.
    `once`: register and report once, then return whether the ledger took both (an update's check runs this)."""
    if not settings.ledger_url:
        raise ValueError("no ledger_url in the settings")
    with reporter_lock(settings.state_dir, lent_by=os.environ.get(CHILD_ENV) if once else None):
        identity = node_identity(settings)
        if once:
            with LedgerClient(settings.ledger_url, identity.key, timeout=10.0) as ledger:
                manager = IdentityManager(settings, ledger, threading.Event())
                manager.cycle()
                return manager.reported
        node_id = keys.node_id(identity.public_key)
        log.info("identity loaded", extra={"node": node_id, "public_key": identity.public_key, "ledger": settings.ledger_url})
        if settings.node_id and settings.node_id != node_id:
            log.warning("node_id is overridden in the settings; the ledger knows this node by its key's id", extra={"node": node_id})
        stop = threading.Event()
        for signum in (signal.SIGTERM, signal.SIGINT):
            signal.signal(signum, lambda *_: stop.set())
        timeout = min(10.0, settings.uptime_interval)
        # Two loops, two clients (an httpx.Client is not shared across threads): uptime here, rights beside it.
        with (
            LedgerClient(settings.ledger_url, identity.key, timeout=timeout) as ledger,
            LedgerClient(settings.ledger_url, identity.key, timeout=min(10.0, settings.rights_refresh)) as rights_ledger,
        ):
            keeper = threading.Thread(target=RightsKeeper(settings, rights_ledger, stop).run, name="rights", daemon=True)
            keeper.start()
            reporting = threading.Lock()
            updater = None
            if settings.release_keys:  # no release keys: no release could ever be trusted here
                updater = Updater(settings, identity.key, stop, reporting=reporting, config=config)
                updater.resume()
                threading.Thread(target=updater.run, name="updates", daemon=True).start()
            IdentityManager(settings, ledger, stop, updater=updater, reporting=reporting).run()
            keeper.join(timeout=timeout)
        log.info("identity manager stopped", extra={"node": node_id})
    return True

