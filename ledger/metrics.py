"""The ledger's Prometheus metrics: counters the routes move, and node counts read at each scrape."""

from __future__ import annotations

import sqlalchemy as sa
from prometheus_client import CollectorRegistry, Counter
from prometheus_client.core import GaugeMetricFamily

from ledger import nodes
from ledger.database import Database
from ledger.settings import LedgerSettings
from zeronode.api.errors import Refused
from zeronode.api.ledger import UptimeAccepted


class Metrics:
    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        self.accepted = Counter("zeronode_ledger_reports_accepted", "Uptime reports accepted", registry=self.registry)
        self.refused = Counter("zeronode_ledger_reports_refused", "Uptime reports refused", ["reason"], registry=self.registry)
        self.restarts = Counter("zeronode_ledger_node_restarts", "Node restarts detected", registry=self.registry)
        self.registrations = Counter("zeronode_ledger_node_registrations", "Node registrations", ["kind"], registry=self.registry)

    def count(self, answer: UptimeAccepted | Refused) -> None:
        """One uptime report's outcome."""
        if isinstance(answer, Refused):
            self.refused.labels(answer.reason).inc()
        else:
            self.accepted.inc()
            if answer.restart:
                self.restarts.inc()


class NodeCounts:
    """Counts nodes by status when Prometheus scrapes, not on every report."""

    def __init__(self, db: Database, settings: LedgerSettings, clock):
        self.db, self.settings, self.clock = db, settings, clock

    def collect(self):
        gauge = GaugeMetricFamily("zeronode_ledger_nodes", "Nodes in the ledger", labels=["status"])
        try:
            counted = nodes.counts(self.db, self.clock(), self.settings.offline_after)
        except sa.exc.SQLAlchemyError:  # database away: report nothing rather than fail the scrape
            return
        for status, count in counted.items():
            gauge.add_metric([status], count)
        yield gauge
