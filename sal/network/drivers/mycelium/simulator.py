"""A mycelium daemon stand-in: the HTTP API of ../shared/specs/mycelium-api.yaml, with the
differences the upstream code has (README there): addPeer takes {"endpoint": "tcp://IP:PORT"},
pubkey lookup answers {"publicKey": ...}, and GET /messages answers 204 when nothing waits.

Several simulators make a network: a peer endpoint is another simulator's own
address, and a message for a peer's key or subnet is handed to it over HTTP
(POST /_sim/deliver, the simulator's stand-in for the overlay). One hop only:
enough for nodes that peer with each other. Every answer carries the header
`x-zeronode-simulator: mycelium` (sal.fingerprint), so the mycelium driver's
fingerprint says "simulated".

    python -m sal.network.drivers.mycelium.simulator --port 8989
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import hashlib
import ipaddress
import os
import re
import time
from collections import deque
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import unquote

import httpx
from fastapi import FastAPI, Request, Response
from fastapi.responses import JSONResponse, PlainTextResponse

from sal.fingerprint import SIMULATOR_HEADER

ENDPOINT = re.compile(r"(tcp|quic)://(\d{1,3}(?:\.\d{1,3}){3}|\[[0-9a-fA-F:]+\]):(\d{1,5})")
MESSAGE_ID = re.compile(r"[0-9a-f]{16}")


def overlay_address(public_key: bytes) -> tuple[str, str]:
    """(subnet /64, node IP) in mycelium's 400::/7 range, derived from the key as the daemon does."""
    digest = bytearray(hashlib.sha256(public_key).digest()[:16])
    digest[0] = 0x04 | (digest[0] & 0x01)
    subnet = ipaddress.IPv6Network((bytes(digest[:8]) + bytes(8), 64))
    return str(subnet), str(subnet.network_address + 1)


@dataclass
class Peer:
    endpoint: str  # "tcp://IP:PORT"
    base_url: str  # the peer simulator's HTTP address
    public_key: str | None = None
    subnet: str | None = None
    state: str = "connecting"
    tx: int = 0
    rx: int = 0


@dataclass
class SimulatedNode:
    public_key: bytes = field(default_factory=lambda: os.urandom(32))
    started: int = field(default_factory=lambda: int(time.time()))
    peers: dict[str, Peer] = field(default_factory=dict)
    inbox: deque = field(default_factory=deque)
    replies: dict[str, asyncio.Future] = field(default_factory=dict)

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


class MarkAnswers:
    """ASGI middleware adding the simulator header to every answer (plain ASGI: long-polled answers pass untouched)."""

    def __init__(self, app: Any):
        self.app = app

    async def __call__(self, scope: dict, receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            return await self.app(scope, receive, send)

        async def marked(message: dict) -> None:
            if message["type"] == "http.response.start":
                message = {**message, "headers": [*message.get("headers", []), (SIMULATOR_HEADER.encode(), b"mycelium")]}
            await send(message)

        await self.app(scope, receive, marked)


def create_simulator(node: SimulatedNode | None = None) -> FastAPI:
    node = node or SimulatedNode()
    app = FastAPI(title="mycelium simulator")
    app.add_middleware(MarkAnswers)
    app.state.node = node
    arrived = asyncio.Condition()
    client = httpx.AsyncClient(timeout=5)

    async def connect(peer: Peer) -> None:
        try:
            info = (await client.get(f"{peer.base_url}/api/v1/admin")).json()
            peer.public_key, peer.subnet, peer.state = info["nodePubkey"], info["nodeSubnet"], "alive"
        except (httpx.HTTPError, ValueError, KeyError):
            peer.state = "dead"

    def peer_for(destination: dict[str, str]) -> Peer | None:
        for peer in node.peers.values():
            if peer.state != "alive":
                continue
            if destination.get("pk") == peer.public_key:
                return peer
            if "ip" in destination and ipaddress.IPv6Address(destination["ip"]) in ipaddress.IPv6Network(peer.subnet):
                return peer
        return None

    def parse_endpoint(text: str) -> tuple[str, str] | None:
        match = ENDPOINT.fullmatch(text)
        if not match or not 0 < int(match.group(3)) < 65536:
            return None
        return text, f"http://{match.group(2)}:{match.group(3)}"

    @app.get("/api/v1/admin")
    async def get_info():
        return node.info()

    @app.get("/api/v1/admin/peers")
    async def get_peers():
        return [
            {
                "endpoint": {"proto": p.endpoint.split(":")[0], "socketAddr": p.endpoint.split("://", 1)[1]},
                "type": "static",
                "connectionState": p.state,
                "txBytes": p.tx,
                "rxBytes": p.rx,
            }
            for p in node.peers.values()
        ]

    @app.post("/api/v1/admin/peers")
    async def add_peer(request: Request):
        try:
            endpoint = (await request.json())["endpoint"]
        except (ValueError, KeyError, TypeError):
            return PlainTextResponse("body must be {\"endpoint\": \"tcp://IP:PORT\"}", status_code=400)
        parsed = parse_endpoint(endpoint) if isinstance(endpoint, str) else None
        if parsed is None:
            return PlainTextResponse(f"malformed endpoint {endpoint!r}", status_code=400)
        if endpoint in node.peers:
            return PlainTextResponse(f"peer {endpoint} already exists", status_code=409)
        peer = node.peers[endpoint] = Peer(*parsed)
        await connect(peer)
        return Response(status_code=204)

    @app.delete("/api/v1/admin/peers/{endpoint:path}")
    async def delete_peer(endpoint: str):
        endpoint = unquote(endpoint)
        if parse_endpoint(endpoint) is None:
            return PlainTextResponse(f"malformed endpoint {endpoint!r}", status_code=400)
        if node.peers.pop(endpoint, None) is None:
            return PlainTextResponse(f"peer {endpoint} does not exist", status_code=404)
        return Response(status_code=204)

    @app.get("/api/v1/admin/routes/selected")
    async def selected_routes():
        return [
            {"subnet": p.subnet, "nextHop": f"TCP {p.endpoint.split('://', 1)[1]}", "metric": 10}
            for p in node.peers.values() if p.state == "alive"
        ]

    @app.get("/api/v1/admin/routes/fallback")
    async def fallback_routes():
        return []

    @app.get("/api/v1/pubkey/{ip}")
    async def public_key_of(ip: str):
        try:
            address = ipaddress.IPv6Address(ip)
        except ValueError:
            return PlainTextResponse("not an IPv6 address", status_code=400)
        if address in ipaddress.IPv6Network(node.subnet):
            return {"publicKey": node.pk}
        for peer in node.peers.values():
            if peer.subnet and address in ipaddress.IPv6Network(peer.subnet):
                return {"publicKey": peer.public_key}
        return Response(status_code=404)

    async def send(destination: dict[str, str], topic: str | None, payload: str, message_id: str,
                   reply_to: str | None = None) -> None:
        if destination.get("pk") == node.pk or ("ip" in destination and ipaddress.IPv6Address(destination["ip"]) in ipaddress.IPv6Network(node.subnet)):
            raise LookupError("sending to ourselves")
        peer = peer_for(destination)
        if peer is None:
            raise LookupError("no route to the destination")
        message = {
            "id": message_id, "srcIp": node.ip, "srcPk": node.pk, "dstIp": None, "dstPk": peer.public_key,
            "payload": payload, "replyTo": reply_to,
        }
        if topic is not None:
            message["topic"] = topic
        peer.tx += len(payload)
        response = await client.post(f"{peer.base_url}/_sim/deliver", json=message)
        response.raise_for_status()

    def valid_base64(text: Any) -> bool:
        try:
            base64.b64decode(text, validate=True)
        except (ValueError, TypeError):
            return False
        return isinstance(text, str)

    @app.post("/api/v1/messages")
    async def push_message(request: Request, reply_timeout: int | None = None):
        try:
            body = await request.json()
            destination = body["dst"]
            payload = body["payload"]
        except (ValueError, KeyError, TypeError):
            return PlainTextResponse("body must be {dst: {pk|ip}, payload, topic?}", status_code=400)
        topic = body.get("topic")
        if not isinstance(destination, dict) or not ({"pk", "ip"} & set(destination)) or not valid_base64(payload) or (topic is not None and not valid_base64(topic)):
            return PlainTextResponse("malformed message", status_code=400)
        message_id = os.urandom(8).hex()
        if reply_timeout:  # listen before sending: the reply may come back before send() returns
            waiting = node.replies[message_id] = asyncio.get_running_loop().create_future()
        try:
            try:
                await send(destination, topic, payload, message_id)
            except LookupError as exc:
                return PlainTextResponse(str(exc), status_code=404)
            if not reply_timeout:
                return JSONResponse({"id": message_id}, status_code=201)
            reply = await asyncio.wait_for(waiting, reply_timeout)
        except asyncio.TimeoutError:
            return JSONResponse({"id": message_id}, status_code=408)
        finally:
            node.replies.pop(message_id, None)
        return reply

    @app.post("/api/v1/messages/reply/{message_id}")
    async def push_reply(message_id: str, request: Request):
        if not MESSAGE_ID.fullmatch(message_id):
            return PlainTextResponse("malformed message id", status_code=400)
        body = await request.json()
        try:
            await send(body["dst"], body.get("topic"), body["payload"], message_id, reply_to=message_id)
        except (LookupError, KeyError, TypeError) as exc:
            return PlainTextResponse(str(exc), status_code=400)
        return Response(status_code=204)

    @app.get("/api/v1/messages")
    async def pop_message(peek: bool = False, timeout: int = 0, topic: str | None = None):
        def take() -> dict | None:
            for message in node.inbox:
                if topic is None or message.get("topic") == topic:
                    if not peek:
                        node.inbox.remove(message)
                    return message
            return None

        async with arrived:
            message = take()
            deadline = time.monotonic() + timeout
            while message is None and (left := deadline - time.monotonic()) > 0:
                try:
                    await asyncio.wait_for(arrived.wait(), left)
                except asyncio.TimeoutError:
                    break
                message = take()
        if message is None:
            return Response(status_code=204)
        return {k: v for k, v in message.items() if k != "replyTo"}

    @app.post("/_sim/deliver")
    async def deliver(message: dict):
        message["dstIp"] = node.ip
        for peer in node.peers.values():
            if peer.public_key == message["srcPk"]:
                peer.rx += len(message["payload"])
        waiting = node.replies.get(message.get("replyTo") or "")
        if waiting is not None and not waiting.done():
            waiting.set_result({k: v for k, v in message.items() if k != "replyTo"})
            return Response(status_code=204)
        async with arrived:
            node.inbox.append(message)
            arrived.notify_all()
        return Response(status_code=204)

    return app


def main() -> None:
    import uvicorn

    parser = argparse.ArgumentParser(description="mycelium API simulator")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8989)
    args = parser.parse_args()
    print("mycelium SIMULATOR (not the real daemon) on", f"{args.host}:{args.port}", flush=True)
    uvicorn.run(create_simulator(), host=args.host, port=args.port, log_level="warning")


if __name__ == "__main__":
    main()
