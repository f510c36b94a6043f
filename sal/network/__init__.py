"""Network SAL: the node on an overlay. The interface is here; drivers are in drivers/: mycelium, whose
simulator.py stands in for the mycelium daemon where it cannot be installed."""

from sal.network.base import (
    MalformedAddress, MalformedEndpoint, Message, Network, NetworkError, PeerExists, PeerNotFound, ReplyTimeout, endpoint_text,
)

__all__ = [
    "MalformedAddress", "MalformedEndpoint", "Message", "Network", "NetworkError", "PeerExists", "PeerNotFound", "ReplyTimeout",
    "endpoint_text",
]
