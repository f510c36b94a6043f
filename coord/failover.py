"""Keeping service deployments on live nodes: a share on a node that is gone moves to another that matches.

A deployment whose selector says `kind: "service"` is kept on `count` live
nodes for as long as its envelope is valid. Every `failover_interval` one
replica (the first to take the round's lease in the shared Redis) looks at
each service's placed nodes as the ledger sees them (coord.nodes), and moves
the share of a node that

- has not reported for `failover_after` seconds (the ledger says offline): `offline`;
- is draining (`zeronode node drain`): `drained`, at once;
- is no longer in the ledger: `unknown_node`.

A move (coord.store.Store.move) places the share on one more node by the same
selector, the signer's rights checked again (coord.placement), and dispatches
the same envelope there with a fresh placement ticket. The deployment's
`history` records it. The old node's task ends as `moved` and counts nowhere;
a job still queued or running there is canceled when its node answers again.
Scripts are expected to be idempotent (as deploy_vm.rhai is); what a finished
script left on a node that comes back (a VM, say) is not torn down.

Only a node's loss moves a share: a task that failed for the script's sake
(script_error, not_authorized...) stays failed. A share that cannot move now
(no node fits, the ledger is away) is tried again at the next look; a service
whose envelope expired, or that was canceled, is no longer kept.
"""

from __future__ import annotations

import asyncio
import logging
import os
import time

from coord.metrics import Metrics
from coord.nodes import NodeDirectory, NodeRecord
from coord.placement import Placer
from coord.settings import CoordSettings
from coord.store import Deployment, Store, Task, TaskState
from zeronode.api.errors import Refused, Unavailable
from zeronode.protocol.envelope import verify
from zeronode.protocol.errors import VerificationError

log = logging.getLogger("zeronode.coord")

# Failures that say the node was lost, not that the script failed: such a share may move.
NODE_LOST = frozenset({"node_offline", "node_unresponsive", "node_unreachable", "unknown_node", "lost"})


def movable(task: Task) -> bool:
    if task.moved_to is not None or task.state in (TaskState.MOVED, TaskState.CANCELED):
        return False
    return task.state != TaskState.FAILED or (task.error is not None and task.error.reason in NODE_LOST)


def gone(record: NodeRecord | None, now: float, after: float) -> tuple[str, str] | None:
    """(reason, message) when the node can no longer hold a service's share; None while it can."""
    if record is None:
        return "unknown_node", "the node is no longer in the ledger"
    if record.schedule == "draining":
        return "drained", "the node is draining"
    if not record.online:
        silent = now - record.last_seen if record.last_seen is not None else None
        if silent is None or silent >= after:
            since = "never reported" if silent is None else f"last reported {silent:.0f} s ago"
            return "offline", f"the node is offline ({since}; failover_after {after:g} s)"
    return None


class Failover:
    def __init__(self, store: Store, nodes: NodeDirectory, placer: Placer, settings: CoordSettings, metrics: Metrics,
                 wake: asyncio.Event):
        self.store, self.nodes, self.placer, self.settings, self.metrics = store, nodes, placer, settings, metrics
        self.wake = wake  # the dispatcher's: a moved share is dispatched at once
        self.replica = f"{os.uname().nodename}:{os.getpid()}:{id(self)}"

    async def run(self, stop: asyncio.Event) -> None:
        interval = self.settings.failover_interval
        while not stop.is_set():
            try:
                if await self.store.lead("failover", self.replica, interval * 0.9):
                    await self.look()
            except Exception:  # Redis or the ledger away, or a bug: the next round tries again
                log.exception("failover round failed")
            try:
                await asyncio.wait_for(stop.wait(), timeout=interval)
            except TimeoutError:
                pass

    async def look(self) -> int:
        """One round over every service; the number of shares moved."""
        moved = 0
        for deployment_id in await self.store.services():
            deployment = await self.store.deployment(deployment_id)
            if deployment is None or deployment.canceled_by or time.time() >= deployment.expires_at:
                await self.store.forget_service(deployment_id)
                continue
            try:
                moved += await self.keep(deployment)
            except Unavailable as exc:
                log.warning("cannot look at a service's nodes", extra={"deployment": deployment_id, "error": str(exc)})
        return moved

    async def keep(self, deployment: Deployment) -> int:
        """Move the shares of this service whose nodes are gone; the number moved."""
        tasks = {task.node: task for task in await self.store.tasks(deployment)}
        shares = [tasks[node] for node in deployment.placed if node in tasks and movable(tasks[node])]
        if not shares:
            return 0
        records = await self.nodes.records([task.node for task in shares])
        now, moved = time.time(), 0
        for task in shares:
            why = gone(records[task.node], now, self.settings.failover_after)
            if why is None:
                continue
            try:
                verified = verify(deployment.envelope, options=self.settings.verify)
                [to] = await self.placer.place(verified, count=1, besides=deployment.targets)
            except VerificationError as exc:  # expired since: it cannot run anywhere new
                log.info("service no longer kept", extra={"deployment": deployment.id, "why": str(exc)})
                await self.store.forget_service(deployment.id)
                return moved
            except (Refused, Unavailable) as exc:
                log.warning("cannot move a service's share yet", extra={
                    "deployment": deployment.id, "node": task.node, "why": why[0], "error": str(exc)})
                continue
            if await self.store.move(deployment.id, task.node, to, *why):
                deployment.targets.append(to)  # a second share moved in this round goes elsewhere
                moved += 1
                self.metrics.moved.labels(why[0]).inc()
                self.wake.set()
                log.info("service share moved", extra={"deployment": deployment.id, "node": task.node, "to": to, "why": why[0]})
        return moved
