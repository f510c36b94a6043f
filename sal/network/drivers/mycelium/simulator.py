"""A mycelium daemon stand-in that answers as the real v0.7.10 daemon does (../shared/specs/README.md,
"mycelium v0.7.10 as measured"), where that and mycelium-api.yaml disagree.

One process is one node with two listeners, as the daemon has: its HTTP API
(`--port`, the daemon's 8989) and its peer listen port (`--peer-port`, the
daemon's 9651). Peers dial the listen port: a peer endpoint "tcp://IP:PORT"
names another simulator's listen port, and the overlay between simulators is
HTTP on those ports (routes under /_overlay/, refused on the API port; API
routes are refused on the listen port).

What it does as the daemon does:
- a peer it dials is `static`; the side that is dialed lists the dialer as
  `inbound`, with an ephemeral source port; endpoints are
  {"proto", "addr": {"socket": "IP:PORT"}} (the yaml's `socketAddr` is stale);
  `tls://` and `quic://` endpoints are taken like `tcp://`;
- a message is delivered about 0.1 s after `POST /messages` returns; to an
  address nobody has, to an IPv4 address or to the node itself it is queued
  (201) for 5 minutes and never delivered (itself), or delivered once a route
  appears; through a peer to the peer's peers (multi-hop), after which the
  sender knows the destination's route and key;
- `GET /messages?timeout=N` holds the node's lock while it waits: every other
  API call waits until it ends;
- topics over 255 bytes answer 400, bodies over 2 MB 413, an empty topic is no
  topic, a reply's topic is dropped, a reply to an unknown message answers 204,
  `reply_timeout=0` answers 408 at once;
- `GET /pubkey/{own ip}` answers 404, and for an IPv4 address the daemon drops
  the connection: here the answer is cut off after its status line (the nearest
  an ASGI app comes to a worker's panic; the client sees a transport error either way);
- errors are plain text: 422 for a bad JSON field, 415 without a JSON content
  type, 400 for a bad query string or unreadable JSON, 404 with an empty body
  for an unknown path;
- routes carry `seqno`, a neighbour's metric is 0, next hops read
  "TCP LOCAL <-> REMOTE"; other paths to a subnet are fallback routes;
  `/admin/routes/queried`, `/admin/stats/packets`, `/messages/status/{id}`.

Every answer carries `x-zeronode-simulator: mycelium` (sal.fingerprint), so the
mycelium driver's fingerprint says "simulated". Not simulated: topic and proxy
configuration, link-local discovery, QUIC as a transport.

    python -m sal.network.drivers.mycelium.simulator --port 8989 --peer-port 9651
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import binascii
import hashlib
import ipaddress
import json
import os
import random
import re
import time
from collections import deque
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import unquote

import httpx
from fastapi import FastAPI, Request, Response
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, PlainTextResponse
from starlette.exceptions import HTTPException

from sal.fingerprint import SIMULATOR_HEADER

ENDPOINT = re.compile(r"(tcp|quic|tls)://(\d{1,3}(?:\.\d{1,3}){3}|\[[0-9a-fA-F:]+\]):(\d{1,5})")
MESSAGE_ID = re.compile(r"[0-9a-f]{16}")
PUBLIC_KEY = re.compile(r"[0-9a-f]{64}")
MAX_TOPIC = 255  # bytes
MAX_BODY = 2 * 1024 * 1024  # bytes of a request body
DELIVERY_DELAY = 0.1  # seconds from a send's answer to the message in the receiver's inbox
QUEUED_FOR = 300.0  # seconds a message without a route waits for one
MAX_HOPS = 8
OVERLAY = "/_overlay/"


def overlay_address(public_key: bytes) -> tuple[str, str]:
    """(subnet /64, node IP) in mycelium's 400::/7 range, derived from the key as the daemon does."""
    digest = bytearray(hashlib.sha256(public_key).digest()[:16])
    digest[0] = 0x04 | (digest[0] & 0x01)
    subnet = ipaddress.IPv6Network((bytes(digest[:8]) + bytes(8), 64))
    return str(subnet), str(subnet.network_address + 1)


def in_subnet(ip: str, subnet: str | None) -> bool:
    try:
        return subnet is not None and ipaddress.IPv6Address(ip) in ipaddress.IPv6Network(subnet)
    except ValueError:
        return False


@dataclass
class Peer:
    endpoint: str  # "tcp://IP:PORT": the peer's listen port (static) or the dialer's source port (inbound)
    base_url: str  # where its overlay answers (its listen port)
    kind: str = "static"
    public_key: str | None = None
    subnet: str | None = None
    state: str = "connecting"
    tx: int = 0
    rx: int = 0
    discovered: int = field(default_factory=lambda: int(time.time()))
    last_connected: int | None = None
    local_port: int = field(default_factory=lambda: random.randint(32768, 60999))  # our side of the link

    def as_dict(self) -> dict[str, Any]:
        proto, socket = self.endpoint.split("://", 1)
        return {
            "endpoint": {"proto": proto, "addr": {"socket": socket}}, "type": self.kind, "connectionState": self.state,
            "txBytes": self.tx, "rxBytes": self.rx, "discovered": self.discovered, "lastConnected": self.last_connected,
        }

    def next_hop(self) -> str:
        host = self.endpoint.split("://", 1)[1].rsplit(":", 1)[0]
        return f"TCP 127.0.0.1:{self.local_port} <-> {host}:{self.endpoint.rsplit(':', 1)[1]}"


@dataclass
class Route:
    subnet: str
    public_key: str
    via: Peer
    metric: int
    seqno: int = 0


@dataclass
class Outbound:
    """A message this node sent, for /messages/status and for delivery once a route appears."""

    message: dict[str, Any]
    destination: dict[str, str]
    created: int = field(default_factory=lambda: int(time.time()))
    state: str = "pending"


@dataclass
class SimulatedNode:
    public_key: bytes = field(default_factory=lambda: os.urandom(32))
    started: int = field(default_factory=lambda: int(time.time()))
    listen_port: int = 9651
    peers: dict[str, Peer] = field(default_factory=dict)
    routes: dict[str, list[Route]] = field(default_factory=dict)  # learned beyond the neighbours, by subnet
    inbox: deque = field(default_factory=deque)
    replies: dict[str, asyncio.Future] = field(default_factory=dict)
    sent: dict[str, Outbound] = field(default_factory=dict)
    packets: dict[str, dict[str, list[int]]] = field(default_factory=lambda: {"bySource": {}, "byDestination": {}})
    lock: asyncio.Lock = field(default_factory=asyncio.Lock)  # the daemon's node lock (a waiting receive holds it)

    @property
    def pk(self) -> str:
        return self.public_key.hex()

    @property
    def subnet(self) -> str:
        return overlay_address(self.public_key)[0]

    @property
    def ip(self) -> str:
        return overlay_address(self.public_key)[1]

    def info(self) -> dict[str, Any]:
        return {"nodeSubnet": self.subnet, "nodeIp": self.ip, "nodePubkey": self.pk, "nodeStartTime": self.started}

    def is_me(self, destination: dict[str, str]) -> bool:
        return destination.get("pk") == self.pk or in_subnet(destination.get("ip", ""), self.subnet)

    def neighbours(self) -> list[Peer]:
        return [peer for peer in self.peers.values() if peer.state == "alive" and peer.public_key]

    def neighbour_for(self, destination: dict[str, str]) -> Peer | None:
        for peer in self.neighbours():
            if destination.get("pk") == peer.public_key or in_subnet(destination.get("ip", ""), peer.subnet):
                return peer
        return None

    def learned_for(self, destination: dict[str, str]) -> list[Route]:
        for routes in self.routes.values():
            if routes and (destination.get("pk") == routes[0].public_key or in_subnet(destination.get("ip", ""), routes[0].subnet)):
                return routes
        return []

    def count(self, kind: str, ip: str, size: int) -> None:
        entry = self.packets[kind].setdefault(ip, [0, 0])
        entry[0] += 1
        entry[1] += size


class NodeLock:
    """ASGI middleware: API calls wait for the node's lock (a waiting `GET /messages` holds it), every answer
    is marked as the simulator's, overlay routes answer only on the listen port and API routes only off it."""

    def __init__(self, app: Any, node: SimulatedNode):
        self.app, self.node = app, node

    async def __call__(self, scope: dict, receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            return await self.app(scope, receive, send)

        async def marked(message: dict) -> None:
            if message["type"] == "http.response.start":
                message = {**message, "headers": [*message.get("headers", []), (SIMULATOR_HEADER.encode(), b"mycelium")]}
            await send(message)

        on_listen_port = (scope.get("server") or ("", 0))[1] == self.node.listen_port
        if scope["path"].startswith(OVERLAY) != on_listen_port:
            return await Response(status_code=404)(scope, receive, marked)
        if not on_listen_port:
            async with self.node.lock:  # wait while a receive holds it, as every call to the daemon does
                pass
        await self.app(scope, receive, marked)


def plain(text: str, status: int) -> PlainTextResponse:
    return PlainTextResponse(text, status_code=status)


def decoded(text: Any) -> bytes | None:
    """Standard base64 as the daemon reads it, or None."""
    if not isinstance(text, str):
        return None
    try:
        return base64.b64decode(text, validate=True)
    except (ValueError, binascii.Error):
        return None


def create_simulator(node: SimulatedNode | None = None) -> FastAPI:
    node = node or SimulatedNode()
    app = FastAPI(title="mycelium simulator")
    app.add_middleware(NodeLock, node=node)
    app.state.node = node
    arrived = asyncio.Condition()
    client = httpx.AsyncClient(timeout=5)
    background: set[asyncio.Task] = set()

    def later(coroutine) -> None:
        task = asyncio.get_running_loop().create_task(coroutine)
        background.add(task)
        task.add_done_callback(background.discard)

    @app.exception_handler(HTTPException)
    async def http_error(_request: Request, exc: HTTPException):
        return Response(status_code=exc.status_code)  # the daemon's unknown paths: an empty body

    @app.exception_handler(RequestValidationError)
    async def bad_query(_request: Request, exc: RequestValidationError):
        return plain(f"Failed to deserialize query string: {exc.errors()[0].get('msg', '')}", 400)

    async def json_body(request: Request) -> dict | Response:
        """The body as the daemon's JSON extractor takes it: a JSON content type, at most 2 MB, an object."""
        if request.headers.get("content-type", "").split(";")[0].strip() != "application/json":
            return plain("Expected request with `Content-Type: application/json`", 415)
        raw = await request.body()
        if len(raw) > MAX_BODY:
            return plain("Failed to buffer the request body: length limit exceeded", 413)
        try:
            body = json.loads(raw)
        except ValueError as exc:
            return plain(f"Failed to parse the request body as JSON: {exc}", 400)
        if not isinstance(body, dict):
            return plain("Failed to deserialize the JSON body into the target type: expected a map", 422)
        return body

    # -- the overlay between simulators (listen port) ---------------------------------------------

    async def dial(peer: Peer) -> None:
        try:
            answer = await client.post(f"{peer.base_url}{OVERLAY}hello", json={
                "pk": node.pk, "subnet": node.subnet, "listen": f"http://127.0.0.1:{node.listen_port}",
                "port": peer.local_port,
            })
            info = answer.raise_for_status().json()
            peer.public_key, peer.subnet, peer.state = info["pk"], info["subnet"], "alive"
            peer.last_connected = int(time.time())
        except (httpx.HTTPError, ValueError, KeyError, TypeError):
            peer.state = "connecting"  # the daemon keeps trying a static peer
        await flush_queued()

    @app.post(f"{OVERLAY}hello")
    async def hello(request: Request):
        dialer = await request.json()
        endpoint = f"tcp://127.0.0.1:{dialer['port']}"
        node.peers[endpoint] = Peer(endpoint, dialer["listen"], kind="inbound", public_key=dialer["pk"],
                                    subnet=dialer["subnet"], state="alive", last_connected=int(time.time()))
        later(flush_queued())
        return {"pk": node.pk, "subnet": node.subnet}

    async def find_route(destination: dict[str, str], visited: list[str], hops: int) -> dict | None:
        """(the destination's key and subnet, metric) if this node or a node behind it has the destination."""
        if node.is_me(destination):
            return {"pk": node.pk, "subnet": node.subnet, "metric": 0}
        if (peer := node.neighbour_for(destination)) is not None:
            return {"pk": peer.public_key, "subnet": peer.subnet, "metric": 0}
        if routes := node.learned_for(destination):
            return {"pk": routes[0].public_key, "subnet": routes[0].subnet, "metric": routes[0].metric}
        if hops <= 0:
            return None
        found = None
        for peer in node.neighbours():
            if peer.public_key in visited:
                continue
            try:
                answer = await client.post(f"{peer.base_url}{OVERLAY}route", json={
                    "dst": destination, "visited": [*visited, node.pk], "hops": hops - 1,
                })
            except httpx.HTTPError:
                continue
            if answer.status_code != 200:
                continue
            reached = answer.json()
            known = node.routes.setdefault(reached["subnet"], [])
            if all(route.via is not peer for route in known):
                known.append(Route(reached["subnet"], reached["pk"], peer, reached["metric"] + 1, seqno=random.randint(0, 65535)))
            found = found or reached
        return found

    @app.post(f"{OVERLAY}route")
    async def route(request: Request):
        asked = await request.json()
        found = await find_route(asked["dst"], asked["visited"], asked["hops"])
        return found if found is not None else Response(status_code=404)

    async def next_hop(destination: dict[str, str]) -> Peer | None:
        if (peer := node.neighbour_for(destination)) is not None:
            return peer
        if not node.learned_for(destination):
            await find_route(destination, [], MAX_HOPS)
        routes = node.learned_for(destination)
        return routes[0].via if routes else None

    async def forward(message: dict[str, Any], destination: dict[str, str], hops: int = MAX_HOPS) -> bool:
        """Hand the message on towards its destination; whether it went."""
        peer = await next_hop(destination)
        if peer is None:
            return False
        peer.tx += len(message["payload"])
        try:
            answer = await client.post(f"{peer.base_url}{OVERLAY}forward", json={"message": message, "dst": destination, "hops": hops})
        except httpx.HTTPError:
            return False
        return answer.status_code == 204

    @app.post(f"{OVERLAY}forward")
    async def forwarded(request: Request):
        carried = await request.json()
        message, destination = carried["message"], carried["dst"]
        for peer in node.peers.values():
            if peer.public_key == message["srcPk"]:
                peer.rx += len(message["payload"])
        if not node.is_me(destination):
            node.count("byDestination", destination.get("ip") or "", len(message["payload"]))
            went = carried["hops"] > 0 and await forward(message, destination, carried["hops"] - 1)
            return Response(status_code=204 if went else 404)
        await deliver({**message, "dstIp": node.ip, "dstPk": node.pk})
        return Response(status_code=204)

    async def deliver(message: dict[str, Any]) -> None:
        node.count("bySource", message["srcIp"], len(message["payload"]))
        waiting = node.replies.get(message.get("replyTo") or "")
        if waiting is not None and not waiting.done():
            waiting.set_result({k: v for k, v in message.items() if k != "replyTo"})
            return
        async with arrived:
            node.inbox.append({k: v for k, v in message.items() if k != "replyTo"})
            arrived.notify_all()

    async def transmit(message_id: str) -> None:
        """One try at sending a queued message, DELIVERY_DELAY after its send was answered."""
        await asyncio.sleep(DELIVERY_DELAY)
        outbound = node.sent.get(message_id)
        if outbound is None or outbound.state != "pending":
            return
        if time.time() - outbound.created > QUEUED_FOR:
            outbound.state = "aborted"
        elif not node.is_me(outbound.destination) and await forward(outbound.message, outbound.destination):
            outbound.state = "received"

    async def flush_queued() -> None:
        for message_id, outbound in list(node.sent.items()):
            if outbound.state == "pending":
                await transmit(message_id)

    # -- the API (the daemon's port) ---------------------------------------------------------------

    @app.get("/api/v1/admin")
    async def get_info():
        return node.info()

    @app.get("/api/v1/admin/peers")
    async def get_peers():
        return [peer.as_dict() for peer in node.peers.values()]

    def parse_endpoint(text: str) -> tuple[str, str] | None:
        match = ENDPOINT.fullmatch(text)
        if not match or not 0 < int(match.group(3)) < 65536:
            return None
        return text, f"http://{match.group(2)}:{match.group(3)}"

    @app.post("/api/v1/admin/peers")
    async def add_peer(request: Request):
        body = await json_body(request)
        if isinstance(body, Response):
            return body
        endpoint = body.get("endpoint")
        if not isinstance(endpoint, str):
            return plain("Failed to deserialize the JSON body into the target type: missing field `endpoint`", 422)
        parsed = parse_endpoint(endpoint)
        if parsed is None:
            return plain(f"Failed to deserialize the JSON body into the target type: invalid endpoint {endpoint!r}", 422)
        if endpoint in node.peers:
            return plain(f"A peer identified by {endpoint} already exists", 409)
        peer = node.peers[endpoint] = Peer(*parsed)
        await dial(peer)
        return Response(status_code=204)

    @app.delete("/api/v1/admin/peers/{endpoint:path}")
    async def delete_peer(endpoint: str):
        endpoint = unquote(endpoint)
        if parse_endpoint(endpoint) is None:
            return plain(f"invalid endpoint {endpoint!r}", 400)
        peer = node.peers.pop(endpoint, None)
        if peer is None:
            return plain(f"A peer identified by {endpoint} does not exist", 404)
        for subnet, routes in list(node.routes.items()):
            node.routes[subnet] = [route for route in routes if route.via is not peer]
        return Response(status_code=204)

    def all_routes() -> list[list[dict[str, Any]]]:
        """Every subnet's paths, the selected one first."""
        paths: dict[str, list[dict[str, Any]]] = {}
        for peer in node.neighbours():
            paths.setdefault(peer.subnet, []).append({"subnet": peer.subnet, "nextHop": peer.next_hop(), "metric": 0, "seqno": 0})
        for subnet, routes in node.routes.items():
            for route in sorted(routes, key=lambda r: r.metric):
                if route.via.state == "alive":
                    paths.setdefault(subnet, []).append(
                        {"subnet": subnet, "nextHop": route.via.next_hop(), "metric": route.metric, "seqno": route.seqno})
        return list(paths.values())

    @app.get("/api/v1/admin/routes/selected")
    async def selected_routes():
        return [paths[0] for paths in all_routes()]

    @app.get("/api/v1/admin/routes/fallback")
    async def fallback_routes():
        return [path for paths in all_routes() for path in paths[1:]]

    @app.get("/api/v1/admin/routes/queried")
    async def queried_routes():
        return []  # a query here is answered at once, or not at all

    @app.get("/api/v1/admin/stats/packets")
    async def packet_stats():
        return {kind: [{"ip": ip, "packetCount": n, "byteCount": size} for ip, (n, size) in entries.items()]
                for kind, entries in node.packets.items()}

    @app.get("/api/v1/pubkey/{ip}")
    async def public_key_of(ip: str):
        try:
            address = ipaddress.ip_address(ip)
        except ValueError:
            return plain(f"Invalid URL: Cannot parse `{ip}` to a `IpAddr`", 400)
        if address.version == 4:
            return DroppedConnection()
        if in_subnet(ip, node.subnet):
            return Response(status_code=404)
        if (peer := node.neighbour_for({"ip": ip})) is not None:
            return {"publicKey": peer.public_key}
        if routes := node.learned_for({"ip": ip}):
            return {"publicKey": routes[0].public_key}
        return Response(status_code=404)

    def message_fields(body: dict) -> tuple[dict, str | None, str] | Response:
        """(destination, topic or None, payload) of a message body, or the daemon's 422."""
        destination, payload, topic = body.get("dst"), body.get("payload"), body.get("topic")
        if not isinstance(destination, dict) or not ({"pk", "ip"} & set(destination)):
            return plain("Failed to deserialize the JSON body into the target type: dst: missing field `ip` or `pk`", 422)
        if "pk" in destination and not (isinstance(destination["pk"], str) and PUBLIC_KEY.fullmatch(destination["pk"])):
            return plain("Failed to deserialize the JSON body into the target type: dst.pk: invalid public key", 422)
        if "ip" in destination:
            try:
                ipaddress.ip_address(destination["ip"])
            except (ValueError, TypeError):
                return plain("Failed to deserialize the JSON body into the target type: dst.ip: invalid IP address", 422)
        if decoded(payload) is None:
            return plain("Failed to deserialize the JSON body into the target type: payload: invalid base64", 422)
        if topic is not None:
            raw = decoded(topic)
            if raw is None:
                return plain("Failed to deserialize the JSON body into the target type: topic: invalid base64", 422)
            if len(raw) > MAX_TOPIC:
                return plain("Topic too large", 400)
            topic = topic if raw else None  # an empty topic is no topic
        return destination, topic, payload

    async def read_message(request: Request) -> tuple[dict, str | None, str] | Response:
        body = await json_body(request)
        return body if isinstance(body, Response) else message_fields(body)

    def outgoing(message_id: str, destination: dict[str, str], payload: str) -> dict[str, Any]:
        return {"id": message_id, "srcIp": node.ip, "srcPk": node.pk, "dstIp": destination.get("ip"),
                "dstPk": destination.get("pk"), "payload": payload}

    @app.post("/api/v1/messages")
    async def push_message(request: Request, reply_timeout: int | None = None):
        fields = await read_message(request)
        if isinstance(fields, Response):
            return fields
        destination, topic, payload = fields
        message_id = os.urandom(8).hex()
        message = outgoing(message_id, destination, payload)
        if topic is not None:
            message["topic"] = topic
        if reply_timeout == 0:
            return JSONResponse({"id": message_id}, status_code=408)
        waiting = None
        if reply_timeout:  # listen before sending: the reply may come back before the send is answered
            waiting = node.replies[message_id] = asyncio.get_running_loop().create_future()
        node.sent[message_id] = Outbound(message, destination)
        later(transmit(message_id))
        if waiting is None:
            return JSONResponse({"id": message_id}, status_code=201)
        try:
            return await asyncio.wait_for(waiting, reply_timeout)
        except asyncio.TimeoutError:
            return JSONResponse({"id": message_id}, status_code=408)
        finally:
            node.replies.pop(message_id, None)

    @app.post("/api/v1/messages/reply/{message_id}")
    async def push_reply(message_id: str, request: Request):
        if not MESSAGE_ID.fullmatch(message_id):
            return plain("Invalid URL: invalid message id", 400)
        fields = await read_message(request)
        if isinstance(fields, Response):
            return fields
        destination, _topic, payload = fields  # a reply's topic is dropped
        later(forward({**outgoing(message_id, destination, payload), "replyTo": message_id}, destination))
        return Response(status_code=204)  # known message or not

    @app.get("/api/v1/messages/status/{message_id}")
    async def message_status(message_id: str):
        outbound = node.sent.get(message_id)
        if outbound is None:
            return Response(status_code=404)
        return {"dst": outbound.destination.get("ip") or outbound.message.get("dstIp"), "state": outbound.state,
                "created": outbound.created, "deadline": outbound.created + int(QUEUED_FOR),
                "msgLen": len(base64.b64decode(outbound.message["payload"]))}

    @app.get("/api/v1/messages")
    async def pop_message(peek: bool = False, timeout: int = 0, topic: str | None = None):
        if timeout < 0:
            return plain("Failed to deserialize query string: timeout: invalid digit found in string", 400)

        def take() -> dict | None:
            for message in node.inbox:
                if topic is None or message.get("topic") == topic:
                    if not peek:
                        node.inbox.remove(message)
                    return message
            return None

        message = take()
        if message is None and timeout > 0:
            async with node.lock, arrived:  # the daemon holds its node's lock for the whole wait
                deadline = time.monotonic() + timeout
                while (message := take()) is None and (left := deadline - time.monotonic()) > 0:
                    try:
                        await asyncio.wait_for(arrived.wait(), left)
                    except asyncio.TimeoutError:
                        break
        if message is None:
            return Response(status_code=204)
        return message

    return app


class DroppedConnection(Response):
    """An answer that stops after its status line: the connection ends without a whole answer."""

    def __init__(self) -> None:
        super().__init__(status_code=200, headers={"content-length": "1000"})

    async def __call__(self, scope: dict, receive: Any, send: Any) -> None:
        await send({"type": "http.response.start", "status": 200, "headers": self.raw_headers})
        raise ConnectionAbortedError("the daemon drops the connection on an IPv4 pubkey lookup")


def serve(port: int, peer_port: int, host: str = "127.0.0.1", key_file: Path | None = None) -> None:
    """One simulated node in the foreground: its API on `port`, its peer listen port on `peer_port`; its identity
    from `key_file` (made there the first time) as the daemon's `--key-file`, so its address outlives a restart."""
    import socket

    import uvicorn

    sockets = []
    for bound in (port, peer_port):
        sock = socket.socket()
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind((host, bound))
        sockets.append(sock)
    node = SimulatedNode(listen_port=sockets[1].getsockname()[1])
    if key_file is not None:
        node.public_key = node_key(key_file)
    app = create_simulator(node)
    uvicorn.Server(uvicorn.Config(app, log_level="warning")).run(sockets=sockets)


def main() -> None:
    parser = argparse.ArgumentParser(description="mycelium API simulator")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8989, help="the API's port")
    parser.add_argument("--peer-port", type=int, default=9651, help="the port peers dial (the daemon's listen port)")
    parser.add_argument("--key-file", type=Path, help="the node's identity, made there the first time (as the daemon's)")
    args = parser.parse_args()
    print("mycelium SIMULATOR (not the real daemon): API on", f"{args.host}:{args.port},",
          f"peers on {args.host}:{args.peer_port}", flush=True)
    serve(args.port, args.peer_port, args.host, args.key_file)


def node_key(path: Path) -> bytes:
    """The simulated node's 32 key bytes, kept in `path` (0600). The daemon keeps its x25519 secret there; the
    simulator, which encrypts nothing, keeps the bytes its address derives from."""
    try:
        key = path.read_bytes()
    except FileNotFoundError:
        key = os.urandom(32)
        with open(os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600), "wb") as file:
            file.write(key)
    if len(key) != 32:
        raise SystemExit(f"{path}: not a key file (32 bytes)")
    return key


if __name__ == "__main__":
    main()
