"""Network SAL: the mycelium overlay (client, and a simulator for machines without the daemon)."""

from sal.network.client import (
    MalformedEndpoint,
    Message,
    MyceliumClient,
    NetworkError,
    PeerExists,
    PeerNotFound,
    ReplyTimeout,
)

__all__ = ["MalformedEndpoint", "Message", "MyceliumClient", "NetworkError", "PeerExists", "PeerNotFound", "ReplyTimeout"]
