"""Keeps the node's copy of its rights fresh: fetch them from the ledger every `rights_refresh` seconds, save them.

The supervisor and the runners read the saved copy (zeronode.node.rights), so
a revocation in the ledger counts on this node within `rights_refresh`
seconds plus one request. When the ledger is unreachable the copy stays as
it was, and its age tells the readers when to stop trusting it
(`rights_max_staleness`). A fetch that fails is retried sooner, with backoff.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable

from zeronode.api.errors import ServiceError
from zeronode.client.ledger import LedgerClient
from zeronode.node import rights as snapshots
from zeronode.node.settings import NodeSettings
from zeronode.retry import Backoff

log = logging.getLogger("zeronode.identity")


class RightsKeeper:
    def __init__(
        self, settings: NodeSettings, ledger: LedgerClient, stop: threading.Event, *, clock: Callable[[], float] = time.time
    ):
        self.settings = settings
        self.ledger = ledger
        self.stop = stop
        self.clock = clock
        self.backoff = Backoff(settings.rights_refresh)
        self.fetched: snapshots.RightsSnapshot | None = None

    def run(self) -> None:
        while not self.stop.is_set():
            self.stop.wait(self.cycle())

    def cycle(self) -> float:
        """Fetch and save once; the seconds to wait before the next fetch."""
        try:
            rights = self.ledger.node_rights(self.ledger.node_id)
            snapshot = snapshots.RightsSnapshot(rights, self.clock())
            snapshots.save(self.settings.rights_path, snapshot)
        except (ServiceError, OSError) as exc:  # the ledger away, or not knowing the node yet; a full disk
            delay = self.backoff.next()
            log.warning("rights not refreshed", extra={"error": str(exc), "retry_in": round(delay, 1)})
            return delay
        except Exception:
            delay = self.backoff.next()
            log.exception("rights refresh failed", extra={"retry_in": round(delay, 1)})
            return delay
        self.backoff.reset()
        if self.fetched is None or self.fetched.rights.grants != rights.grants or self.fetched.rights.policies != rights.policies:
            log.info("rights updated", extra={"users": len(rights.grants), "policies": len(rights.policies)})
        self.fetched = snapshot
        return self.settings.rights_refresh
