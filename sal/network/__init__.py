"""Network SAL: the node on an overlay. The interface is here; drivers are in drivers/: mycelium, whose
simulator.py stands in for the mycelium daemon where it cannot be installed."""

from sal.network.base import MalformedEndpoint, Message, Network, NetworkError, PeerExists, PeerNotFound, ReplyTimeout

__all__ = ["MalformedEndpoint", "Message", "Network", "NetworkError", "PeerExists", "PeerNotFound", "ReplyTimeout"]
