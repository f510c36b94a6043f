"""The network SAL on mycelium: a client of the daemon's HTTP API (default http://127.0.0.1:8989).

The same code talks to the real daemon and to sal.network.drivers.mycelium.simulator; the
simulator marks its answers (sal.fingerprint.SIMULATOR_HEADER), which is how
`fingerprint()` tells them apart.
"""

from __future__ import annotations

import base64
import ipaddress
import time
from urllib.parse import quote

import httpx

from sal.fingerprint import SIMULATOR_HEADER, Fingerprint
from sal.network.base import (
    MalformedAddress, MalformedEndpoint, Message, NetworkError, PeerExists, PeerNotFound, ReplyTimeout,
)

DEFAULT_URL = "http://127.0.0.1:8989"
DRIVER = "mycelium"
FEATURES = ("peers", "routes", "messages", "topics", "replies", "pubkey_lookup")
# A fingerprint or an address is asked for at boot: a daemon that is slow to answer must not hold the node up.
QUICK_TIMEOUT = 5.0
# A receive that waits asks again this often, each time with timeout=0: the daemon holds its node's lock
# through a waiting GET /messages, and every other call to it (the identity manager's address lookup among
# them) would wait that long too (../shared/specs/README.md, as measured).
POLL_INTERVAL = 0.1


def message_of(data: dict) -> Message:
    """A message as the daemon's API carries it (base64 payload and topic)."""
    topic = data.get("topic")
    return Message(
        id=data["id"], src_ip=data["srcIp"], src_pk=data["srcPk"], dst_ip=data.get("dstIp"), dst_pk=data.get("dstPk"),
        topic=base64.b64decode(topic) if topic is not None else None, payload=base64.b64decode(data["payload"]),
    )


def destination(to: str) -> dict[str, str]:
    """A 64-hex-digit public key, or an overlay IPv6 address. Anything else is refused here: the daemon
    takes an IPv4 address (201) and never delivers to it."""
    if len(to) == 64 and all(c in "0123456789abcdef" for c in to.lower()):
        return {"pk": to.lower()}
    return {"ip": overlay_ip(to)}


def overlay_ip(text: str) -> str:
    """`text` as an IPv6 address, or MalformedAddress. Checked before the daemon is asked: a lookup of an
    IPv4 address makes a daemon worker panic and drop the connection."""
    try:
        address = ipaddress.ip_address(text)
    except ValueError:
        address = None
    if address is None or address.version != 6:
        raise MalformedAddress(f"{text!r} is neither an overlay IPv6 address nor a 64-hex-digit public key")
    return str(address)


class MyceliumClient:
    """The `Network` driver for mycelium."""

    def __init__(self, base_url: str = DEFAULT_URL, *, timeout: float = 10.0, transport: httpx.BaseTransport | None = None):
        self.http = httpx.Client(base_url=base_url, timeout=timeout, transport=transport)

    def _request(self, method: str, path: str, **kwargs) -> httpx.Response:
        try:
            return self.http.request(method, f"/api/v1{path}", **kwargs)
        except (httpx.TransportError, httpx.InvalidURL) as exc:
            raise NetworkError(f"mycelium is unreachable at {self.http.base_url}: {exc}") from exc

    def _ok(self, response: httpx.Response, *codes: int) -> httpx.Response:
        if response.status_code not in codes:
            raise NetworkError(f"mycelium answered {response.status_code}: {response.text.strip()[:200]}")
        return response

    def fingerprint(self) -> Fingerprint:
        """One GET /api/v1/admin. A daemon that does not answer: not simulated, no features (and mycelium's API
        does not say its version, so that is None)."""
        try:
            response = self.http.get("/api/v1/admin", timeout=QUICK_TIMEOUT)
        except (httpx.HTTPError, httpx.InvalidURL):
            return Fingerprint(DRIVER)
        simulated = response.headers.get(SIMULATOR_HEADER) == DRIVER
        return Fingerprint(DRIVER, simulated=simulated, features=FEATURES if response.status_code == 200 else ())

    def address(self) -> str | None:
        try:
            return self._ok(self._request("GET", "/admin", timeout=QUICK_TIMEOUT), 200).json()["nodeIp"]
        except (NetworkError, KeyError, TypeError, ValueError):
            return None

    def info(self) -> dict:
        """{nodeSubnet, nodeIp, nodePubkey, ...}"""
        return self._ok(self._request("GET", "/admin"), 200).json()

    def peers(self) -> list[dict]:
        return self._ok(self._request("GET", "/admin/peers"), 200).json()

    def add_peer(self, endpoint: str) -> None:
        """`endpoint` as "tcp://IP:PORT" (or quic://)."""
        response = self._request("POST", "/admin/peers", json={"endpoint": endpoint})
        if response.status_code == 409:
            raise PeerExists(f"peer {endpoint} is already known")
        if response.status_code in (400, 422):  # the daemon: 422, as for any field it cannot read
            raise MalformedEndpoint(f"malformed peer endpoint {endpoint!r}: {response.text.strip()}")
        self._ok(response, 204)

    def remove_peer(self, endpoint: str) -> None:
        response = self._request("DELETE", f"/admin/peers/{quote(endpoint, safe='')}")
        if response.status_code == 404:
            raise PeerNotFound(f"no peer {endpoint}")
        if response.status_code == 400:
            raise MalformedEndpoint(f"malformed peer endpoint {endpoint!r}")
        self._ok(response, 204)

    def selected_routes(self) -> list[dict]:
        return self._ok(self._request("GET", "/admin/routes/selected"), 200).json()

    def fallback_routes(self) -> list[dict]:
        return self._ok(self._request("GET", "/admin/routes/fallback"), 200).json()

    def send(self, to: str, payload: bytes, *, topic: bytes | None = None, reply_timeout: int | None = None) -> str | Message:
        """Send to a public key or overlay IP. Returns the message id, or the reply when `reply_timeout` is given."""
        body: dict = {"dst": destination(to), "payload": base64.b64encode(payload).decode()}
        if topic is not None:
            body["topic"] = base64.b64encode(topic).decode()
        params = {"reply_timeout": reply_timeout} if reply_timeout else None
        response = self._request("POST", "/messages", json=body, params=params,
                                 timeout=(reply_timeout or 0) + self.http.timeout.read)
        if response.status_code == 408:
            message_id = response.json()["id"]
            raise ReplyTimeout(f"no reply to message {message_id} within {reply_timeout} s", message_id)
        if response.status_code == 200:
            return message_of(response.json())
        return self._ok(response, 201).json()["id"]

    def receive(self, *, topic: bytes | None = None, timeout: float = 0, peek: bool = False) -> Message | None:
        """The next message, waiting up to `timeout` seconds for one (asking every POLL_INTERVAL), or None."""
        params: dict = {"timeout": 0, "peek": str(peek).lower()}
        if topic is not None:
            params["topic"] = base64.b64encode(topic).decode()
        deadline = time.monotonic() + timeout
        while True:
            response = self._request("GET", "/messages", params=params)
            if response.status_code != 204:
                return message_of(self._ok(response, 200).json())
            left = deadline - time.monotonic()
            if left <= 0:
                return None
            time.sleep(min(POLL_INTERVAL, left))

    def reply(self, message: Message, payload: bytes) -> None:
        body = {"dst": {"pk": message.src_pk}, "payload": base64.b64encode(payload).decode()}
        self._ok(self._request("POST", f"/messages/reply/{message.id}", json=body), 204)

    def public_key(self, ip: str) -> str | None:
        response = self._request("GET", f"/pubkey/{overlay_ip(ip)}")
        if response.status_code == 404:
            return None
        data = self._ok(response, 200).json()
        return data.get("publicKey") or data.get("NodePubKey")  # the daemon's name, and the spec's

    def close(self) -> None:
        self.http.close()
