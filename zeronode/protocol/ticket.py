"""Placement tickets: coord's signed word that it chose this node for that envelope.

An envelope with a selector names no node (or not all of them): coord picks the
nodes, and hands each chosen supervisor the envelope with a ticket, in the
`zeronode-placement` header of POST /v1/jobs. The node runs it only when the
client's envelope verifies as always, *and* the ticket

- is signed by a key the node's settings name as a placer (`placers`: coord's),
- names this node, this envelope's id and the sha256 of its signed bytes (so it
  fits no other envelope, even one reusing the id),
- and the envelope's selector admits the node (its farm among `farms`).

So a node checks its membership with one signature and one hash, however many
nodes the deployment spans: the bytes a node receives and verifies do not grow
with the fleet (an envelope naming 10,000 targets is 284 KiB on every node).
The ticket's text, what the header carries and the job payload keeps:

    base64url(JSON {digest, envelope, node, placer, version}) "." base64url(Ed25519 signature)

signed over b"zeronode-placement-v1\\n" + that JSON. It carries no validity of
its own: it is good exactly as long as its envelope.
"""

from __future__ import annotations

import hashlib
from typing import Annotated

import nacl.signing
from pydantic import BaseModel, ConfigDict, Field, StringConstraints, ValidationError

from zeronode.protocol import keys
from zeronode.protocol.envelope import Envelope, Verified
from zeronode.protocol.errors import BadTicket, VerificationError, WrongNode

DOMAIN = b"zeronode-placement-v1\n"
HEADER = "zeronode-placement"
VERSION = 1
MAX_TICKET = 512  # characters: a ticket is about 330

Text43 = Annotated[str, StringConstraints(min_length=43, max_length=43)]


class Ticket(BaseModel):
    """What a ticket says (fields in alphabetical order: its JSON is canonical, as an envelope's)."""

    model_config = ConfigDict(strict=True, extra="forbid", frozen=True)

    digest: Text43  # base64url sha256 of the envelope's signing bytes
    envelope: Annotated[str, StringConstraints(max_length=36)]
    node: Annotated[str, StringConstraints(max_length=64)]
    placer: Text43
    version: Annotated[int, Field(ge=VERSION, le=VERSION)]


def envelope_digest(envelope: Envelope) -> str:
    return keys.b64url(hashlib.sha256(envelope.signing_bytes()).digest())


def issue(envelope: Envelope, node: str, key: nacl.signing.SigningKey) -> str:
    """The ticket placing `envelope` on `node`, signed by the placer `key`."""
    return issue_for(envelope.id, envelope_digest(envelope), node, key)


def issue_for(envelope_id: str, digest: str, node: str, key: nacl.signing.SigningKey) -> str:
    """The same, from the envelope's id and digest (what coord keeps, so it need not parse the envelope again)."""
    ticket = Ticket(digest=digest, envelope=envelope_id, node=node, placer=keys.public_key_text(key), version=VERSION)
    body = ticket.model_dump_json().encode()
    return f"{keys.b64url(body)}.{keys.sign(key, DOMAIN + body)}"


def read(token: str, placers: frozenset[str] | set[str]) -> Ticket:
    """The ticket `token` carries, when a trusted placer signed it; else BadTicket."""
    if len(token) > MAX_TICKET or token.count(".") != 1:
        raise BadTicket("placement ticket is not BODY.SIGNATURE")
    body_text, signature = token.split(".")
    try:
        body = keys.b64url_decode(body_text, len(body_text) * 3 // 4, "placement ticket")
        ticket = Ticket.model_validate_json(body)
    except (VerificationError, ValidationError) as exc:
        raise BadTicket(f"placement ticket unreadable: {str(exc).splitlines()[0][:200]}") from None
    if ticket.placer not in placers:
        raise BadTicket(f"placement ticket signed by {ticket.placer}, which this node does not trust to place (placers)")
    try:
        valid = keys.verify_signature(ticket.placer, DOMAIN + body, signature)
    except VerificationError:
        valid = False
    if not valid:
        raise BadTicket("placement ticket's signature does not match")
    return ticket


def check_membership(
    verified: Verified, node_id: str, farm: str, *, ticket: str | None, placers: frozenset[str] | set[str]
) -> Ticket | None:
    """Return when the envelope is for this node: among its targets, or placed here by a trusted ticket that
    its selector admits. The ticket read (None for a target). WrongNode or BadTicket otherwise."""
    envelope = verified.envelope
    if node_id in envelope.targets:
        return None
    selector = envelope.selector
    if selector is None:
        raise WrongNode(f"envelope targets {_listed(envelope.targets)}, not this node ({node_id})")
    if ticket is None:
        raise WrongNode(f"envelope does not name this node ({node_id}) and came without a placement ticket")
    placed = read(ticket, placers)
    if placed.node != node_id or placed.envelope != envelope.id:
        raise BadTicket(f"placement ticket is for envelope {placed.envelope} on node {placed.node}")
    if placed.digest != envelope_digest(envelope):
        raise BadTicket("placement ticket is for another envelope under the same id")
    if selector.farms and farm not in selector.farms:
        raise WrongNode(f"envelope's selector wants farms {', '.join(selector.farms)}, not this node's ({farm})")
    return placed


def _listed(targets: list[str]) -> str:
    shown = ", ".join(targets[:5])
    return shown if len(targets) <= 5 else f"{shown} and {len(targets) - 5} more"
