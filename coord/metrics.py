"""The coordinator's Prometheus metrics."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter


class Metrics:
    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        self.accepted = Counter("zeronode_coord_deployments_accepted", "Deployments accepted", registry=self.registry)
        self.refused = Counter("zeronode_coord_deployments_refused", "Deployments refused", ["reason"], registry=self.registry)
        self.tasks_ended = Counter("zeronode_coord_tasks_ended", "Tasks that reached a final state", ["state"], registry=self.registry)
        self.moved = Counter(
            "zeronode_coord_service_shares_moved", "Shares of service deployments moved to another node", ["reason"], registry=self.registry
        )
