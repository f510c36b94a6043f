"""HTTP clients for the nodes' supervisors: one small connection pool per node.

A node has one supervisor, and a deployment asks it a few things in turn, so
a handful of connections per origin is plenty. One shared pool of hundreds of
connections would be worse: httpcore scans its whole pool for every request it
queues or finishes, which made that scan the coordinator's main cost in
bench/coord.py at a thousand nodes.
"""

from __future__ import annotations

import ssl

import httpx

CONNECTIONS_PER_NODE = 8
MAX_CLIENTS = 4096  # clients kept open at once; the least recently used is closed beyond that


class SupervisorClients:
    def __init__(self, *, timeout: float):
        self.timeout = timeout
        self._clients: dict[str, httpx.AsyncClient] = {}
        # Shared: building a context loads the CA bundle, tens of milliseconds per client otherwise.
        self._tls = ssl.create_default_context()

    def for_url(self, url: str) -> httpx.AsyncClient:
        origin = str(httpx.URL(url).copy_with(path="/", query=None, fragment=None))
        client = self._clients.pop(origin, None)
        if client is None:
            if len(self._clients) >= MAX_CLIENTS:
                oldest = next(iter(self._clients))
                self._clients.pop(oldest)  # closed when its last requests end, by the garbage collector
            limits = httpx.Limits(max_connections=CONNECTIONS_PER_NODE, max_keepalive_connections=CONNECTIONS_PER_NODE)
            client = httpx.AsyncClient(timeout=self.timeout, limits=limits, verify=self._tls)
        self._clients[origin] = client  # most recently used last
        return client

    async def aclose(self) -> None:
        for client in self._clients.values():
            await client.aclose()
        self._clients.clear()
