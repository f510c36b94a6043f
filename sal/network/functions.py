"""The network SAL as Rhai scripts see it.

    net_info();                                   // #{ subnet, ip, public_key }
    net_peers();                                  // [#{ endpoint, state, tx_bytes, rx_bytes }]
    net_send(#{ to: key_or_ip, payload: "text", topic: "t" });          // the message id
    net_send(#{ to: key_or_ip, payload: "ping", reply_timeout: 5 });    // the reply
    net_receive(#{ topic: "t", timeout: 5 });     // a message, or () when none came

Messages travel under their signer's name: the topic on the wire is
"SIGNER/TOPIC" (the signer's public key, then the script's topic, which may
be empty), and a script receives only from its own signer's topics. Tenants
of one node share its mycelium daemon and its inbox; this keeps them from
reading (or taking) each other's messages. It keeps inboxes apart, it does not
authenticate: any mycelium peer may send under any topic.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from sal.context import time_left, wait_slices
from sal.errors import SalError, configured, spec
from sal.network.base import Message, Network, endpoint_text
from sal.tenancy import current_caller

MAX_TOPIC = 200  # bytes of a script's topic: with the signer's 43-character key and "/", under mycelium's 255


def wire_topic(function: str, topic: str | None) -> bytes:
    """The topic a message of the current job's signer travels under."""
    text = (topic or "").encode()
    if len(text) > MAX_TOPIC:
        raise SalError(f"{function}: a topic is at most {MAX_TOPIC} bytes")
    return f"{current_caller().owner}/".encode() + text


def script_message(message: Message) -> dict:
    """The message as the script sees it: its topic without the signer's name."""
    shown = message.as_dict()
    shown["topic"] = (shown["topic"] or "").split("/", 1)[-1] or None
    return shown


def functions(network: Network | None) -> dict[str, Callable[..., Any]]:
    overlay = configured(network, "the network is not configured on this node (set mycelium_url)")

    def net_info() -> dict:
        info = overlay().info()
        return {"subnet": info["nodeSubnet"], "ip": info["nodeIp"], "public_key": info["nodePubkey"]}

    def net_peers() -> list[dict]:
        return [
            {
                "endpoint": endpoint_text(p),
                "state": p["connectionState"],
                "tx_bytes": p["txBytes"],
                "rx_bytes": p["rxBytes"],
            }
            for p in overlay().peers()
        ]

    def net_send(arguments: dict) -> str | dict:
        args = spec("net_send", arguments, required={"to": str, "payload": str}, optional={"topic": str, "reply_timeout": int})
        topic = wire_topic("net_send", args.get("topic"))
        wait = time_left(args["reply_timeout"]) if "reply_timeout" in args else None
        sent = overlay().send(args["to"], args["payload"].encode(), topic=topic, reply_timeout=wait)
        return script_message(sent) if isinstance(sent, Message) else sent

    def net_receive(arguments: dict | None = None) -> dict | None:
        args = spec("net_receive", arguments or {}, required={}, optional={"topic": str, "timeout": int})
        topic = wire_topic("net_receive", args.get("topic"))
        message = None
        if args.get("timeout", 0) <= 0:
            message = overlay().receive(topic=topic, timeout=0)
        for wait in wait_slices(args.get("timeout", 0)):  # short polls, so a cancel is heard within a second
            message = overlay().receive(topic=topic, timeout=wait)
            if message:
                break
        return script_message(message) if message else None

    return {"net_info": net_info, "net_peers": net_peers, "net_send": net_send, "net_receive": net_receive}
