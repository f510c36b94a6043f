"""The network SAL's interface: the node on an overlay network (peers, routes, messages), and its errors.

A driver implements `Network` (sal/network/drivers/: mycelium). The values are
in mycelium's shapes (its API: ../shared/specs/mycelium-api.yaml), the overlay
zeronode was built on; another driver maps its own answers into them.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol

from sal.errors import SalError
from sal.fingerprint import Fingerprint


class NetworkError(SalError):
    """The overlay's daemon refused a request or could not be reached."""


class PeerExists(NetworkError):
    pass


class PeerNotFound(NetworkError):
    pass


class MalformedEndpoint(NetworkError):
    pass


class MalformedAddress(NetworkError):
    """Not an overlay address: mycelium addresses are IPv6 (in 400::/7), and keys 64 hex digits."""


class ReplyTimeout(NetworkError):
    """No reply arrived within the timeout; `message_id` is the message that was sent."""

    def __init__(self, message: str, message_id: str):
        super().__init__(message)
        self.message_id = message_id


@dataclass(frozen=True)
class Message:
    id: str
    src_ip: str
    src_pk: str
    dst_ip: str | None
    dst_pk: str | None
    topic: bytes | None
    payload: bytes

    def as_dict(self) -> dict:
        return {
            "id": self.id, "src_ip": self.src_ip, "src_pk": self.src_pk,
            "topic": self.topic.decode(errors="replace") if self.topic is not None else None,
            "payload": self.payload.decode(errors="replace"),
        }


def endpoint_text(peer: dict) -> str:
    """A peer entry's endpoint as "proto://IP:PORT". The daemon gives {"proto", "addr": {"socket"}} (since
    v0.7.6); the API file still says {"proto", "socketAddr"}, which older daemons gave."""
    endpoint = peer["endpoint"]
    socket = endpoint["addr"]["socket"] if "addr" in endpoint else endpoint["socketAddr"]
    return f"{endpoint['proto']}://{socket}"


class Network(Protocol):
    def fingerprint(self) -> Fingerprint: ...
    def address(self) -> str | None:
        """The node's overlay IPv6 address, or None when the daemon does not answer (never raises)."""
    def info(self) -> dict:
        """{nodeSubnet, nodeIp, nodePubkey, ...}"""
    def peers(self) -> list[dict]:
        """[{endpoint: {proto, addr: {socket}}, type, connectionState, txBytes, rxBytes, ...}]: see endpoint_text"""
    def add_peer(self, endpoint: str) -> None: ...
    def remove_peer(self, endpoint: str) -> None: ...
    def selected_routes(self) -> list[dict]: ...
    def fallback_routes(self) -> list[dict]: ...
    def send(self, to: str, payload: bytes, *, topic: bytes | None = None, reply_timeout: int | None = None) -> str | Message:
        """Send to a public key or overlay IP: the message id, or the reply when `reply_timeout` is given."""
    def receive(self, *, topic: bytes | None = None, timeout: float = 0, peek: bool = False) -> Message | None:
        """The next message, waiting up to `timeout` seconds for one, or None."""
    def reply(self, message: Message, payload: bytes) -> None: ...
    def public_key(self, ip: str) -> str | None:
        """The key of the node that has the overlay IPv6 address `ip`, None when unknown (MalformedAddress
        when `ip` is not IPv6)."""
    def close(self) -> None: ...
