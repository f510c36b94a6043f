"""The network SAL as Rhai scripts see it.

    net_info();                                   // #{ subnet, ip, public_key }
    net_peers();                                  // [#{ endpoint, state, tx_bytes, rx_bytes }]
    net_send(#{ to: key_or_ip, payload: "text", topic: "t" });          // the message id
    net_send(#{ to: key_or_ip, payload: "ping", reply_timeout: 5 });    // the reply
    net_receive(#{ topic: "t", timeout: 5 });     // a message, or () when none came
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from sal.errors import configured, spec
from sal.network.base import Message, Network


def functions(network: Network | None) -> dict[str, Callable[..., Any]]:
    overlay = configured(network, "the network is not configured on this node (set mycelium_url)")

    def net_info() -> dict:
        info = overlay().info()
        return {"subnet": info["nodeSubnet"], "ip": info["nodeIp"], "public_key": info["nodePubkey"]}

    def net_peers() -> list[dict]:
        return [
            {
                "endpoint": f"{p['endpoint']['proto']}://{p['endpoint']['socketAddr']}",
                "state": p["connectionState"],
                "tx_bytes": p["txBytes"],
                "rx_bytes": p["rxBytes"],
            }
            for p in overlay().peers()
        ]

    def net_send(arguments: dict) -> str | dict:
        args = spec("net_send", arguments, required={"to": str, "payload": str}, optional={"topic": str, "reply_timeout": int})
        topic = args["topic"].encode() if "topic" in args else None
        sent = overlay().send(args["to"], args["payload"].encode(), topic=topic, reply_timeout=args.get("reply_timeout"))
        return sent.as_dict() if isinstance(sent, Message) else sent

    def net_receive(arguments: dict | None = None) -> dict | None:
        args = spec("net_receive", arguments or {}, required={}, optional={"topic": str, "timeout": int})
        topic = args["topic"].encode() if "topic" in args else None
        message = overlay().receive(topic=topic, timeout=args.get("timeout", 0))
        return message.as_dict() if message else None

    return {"net_info": net_info, "net_peers": net_peers, "net_send": net_send, "net_receive": net_receive}
