"""The node's health as the ledger is told with each uptime report: one yes or no per part.

    redis       the node's Redis answers PING
    supervisor  the supervisor's /health answers 200
    runners     at least one runner is registered on the node's queue (rq's worker registry)
    storage     the storage pool (storage_root) is a directory this process can write, when one is set

A part that is not configured is left out, not reported failing. The ledger
calls a node whose report has any part failing `degraded`, and coord places
nothing new on it.
"""

from __future__ import annotations

import os

import httpx
import redis
from rq import Queue, Worker

from zeronode.node.settings import NodeSettings


def node_health(settings: NodeSettings, supervisor_url: str, http: httpx.Client) -> dict[str, bool]:
    health = {"redis": False, "supervisor": False, "runners": False}
    try:
        connection = redis.Redis.from_url(settings.redis_url, socket_timeout=2, socket_connect_timeout=2)
        with connection:
            health["redis"] = bool(connection.ping())
            health["runners"] = Worker.count(connection=connection, queue=Queue(settings.queue, connection=connection)) > 0
    except redis.RedisError:
        pass
    try:
        health["supervisor"] = http.get(f"{supervisor_url.rstrip('/')}/health", timeout=2).status_code == 200
    except httpx.HTTPError:
        pass
    if settings.storage_root is not None:
        health["storage"] = settings.storage_root.is_dir() and os.access(settings.storage_root, os.W_OK)
    return health
