"""Selectors signed in envelopes, and placement tickets: what a node checks instead of finding itself in `targets`."""

import json

import nacl.signing
import pytest

from zeronode.protocol import keys, ticket
from zeronode.protocol.envelope import DOMAIN, Selector, new_envelope, verify
from zeronode.protocol.errors import BadSignature, BadTicket, InvalidJSON, MalformedEnvelope, WrongNode

NOW = 1_750_000_000
NODE = "a" * 26
OTHER = "b" * 26


@pytest.fixture
def alice():
    return nacl.signing.SigningKey.generate()


@pytest.fixture
def coord():
    return nacl.signing.SigningKey.generate()


@pytest.fixture
def placed(alice):
    selector = Selector(count=3, farms=["edge", "home"], labels=["gpu=yes", "zone=eu"], min_memory_mib=1024)
    return verify(new_envelope("40 + 2", [], alice, selector=selector, now=NOW), now=NOW)


def test_a_selector_is_signed_in_canonical_json(placed):
    fields = json.loads(placed.envelope.to_json())
    del fields["signatures"]
    assert fields["selector"]["labels"] == ["gpu=yes", "zone=eu"]
    expected = DOMAIN + json.dumps(fields, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode()
    assert placed.envelope.signing_bytes() == expected


def test_an_envelope_without_a_selector_has_no_selector_key(alice):
    # Old envelopes sign as before: the field is absent, not null.
    assert "selector" not in json.loads(new_envelope("1", [NODE], alice, now=NOW).to_json())


def test_a_changed_selector_breaks_the_signature(placed):
    data = json.loads(placed.envelope.to_json())
    data["selector"]["count"] = 300
    with pytest.raises(BadSignature):
        verify(json.dumps(data), now=NOW)


def test_no_targets_and_no_selector_is_refused(alice, placed):
    data = json.loads(placed.envelope.to_json())
    del data["selector"]
    with pytest.raises(MalformedEnvelope, match="targets, a selector"):
        verify(json.dumps(data), now=NOW)
    with pytest.raises(MalformedEnvelope, match="targets, a selector"):
        new_envelope("1", [], alice, now=NOW)


@pytest.mark.parametrize("labels", [["zone=eu", "gpu=yes"], ["gpu=yes", "gpu=yes"]])
def test_labels_have_one_spelling(labels):
    with pytest.raises(ValueError, match="sorted and distinct"):
        Selector(count=1, labels=labels)


def test_a_key_twice_inside_the_selector_is_refused(placed):
    text = placed.envelope.to_json().replace('"count":3', '"count":3,"count":3', 1)
    with pytest.raises(InvalidJSON):
        verify(text, now=NOW)


def test_a_ticket_from_a_trusted_placer_admits_the_node(placed, coord):
    token = ticket.issue(placed.envelope, NODE, coord)
    admitted = ticket.check_membership(placed, NODE, "edge", ticket=token, placers={keys.public_key_text(coord)})
    assert (admitted.node, admitted.envelope) == (NODE, placed.envelope.id)
    assert len(token) < 400  # a node gets the envelope and this, however many nodes the deployment has


def test_a_named_target_needs_no_ticket(alice):
    verified = verify(new_envelope("1", [NODE], alice, selector=Selector(count=2), now=NOW), now=NOW)
    assert ticket.check_membership(verified, NODE, "edge", ticket=None, placers=set()) is None


def test_refusals(placed, coord, alice):
    trusted = {keys.public_key_text(coord)}
    token = ticket.issue(placed.envelope, NODE, coord)

    def check(node=NODE, farm="edge", token=token, placers=trusted, verified=placed):
        ticket.check_membership(verified, node, farm, ticket=token, placers=placers)

    with pytest.raises(WrongNode, match="without a placement ticket"):
        check(token=None)
    with pytest.raises(BadTicket, match="does not trust"):
        check(placers=set())
    with pytest.raises(BadTicket, match="on node"):
        check(node=OTHER)  # another node's ticket
    with pytest.raises(WrongNode, match="farms edge, home"):
        check(farm="office")  # the selector does not admit this node's farm
    body, signature = token.split(".")
    forged = json.loads(keys.b64url_decode(body, len(body) * 3 // 4, "t"))
    forged["node"] = OTHER
    forged_body = keys.b64url(json.dumps(forged, separators=(",", ":")).encode())
    with pytest.raises(BadTicket, match="signature does not match"):
        check(node=OTHER, token=f"{forged_body}.{signature}")
    with pytest.raises(BadTicket, match="not BODY.SIGNATURE"):
        check(token="x" * 600)
    with pytest.raises(BadTicket, match="unreadable"):
        check(token="bm90IGpzb24.AAAA")
    with pytest.raises(BadTicket, match="unreadable"):
        check(token=".")  # an empty body: refused, not an IndexError in the decoding
    # The same id, another envelope: the ticket's digest binds it to the one coord placed.
    twin = placed.envelope.model_copy(update={"script": "666", "signatures": []}).signed_by(alice)
    with pytest.raises(BadTicket, match="another envelope under the same id"):
        check(verified=verify(twin, now=NOW))
    # An envelope that names its nodes and has no selector is not placed by anyone.
    targeted = verify(new_envelope("1", [OTHER], alice, now=NOW), now=NOW)
    with pytest.raises(WrongNode, match="not this node"):
        check(verified=targeted, token=ticket.issue(targeted.envelope, NODE, coord))


def test_a_ticket_costs_one_signature_whatever_the_fleet(alice, coord):
    # The bytes a placed node gets do not depend on how many nodes the deployment spans.
    small = new_envelope("1", [], alice, selector=Selector(count=1), now=NOW)
    large = new_envelope("1", [], alice, selector=Selector(count=10_000), now=NOW)
    assert abs(len(large.to_json()) - len(small.to_json())) <= 4
    assert len(ticket.issue(large, NODE, coord)) == len(ticket.issue(small, NODE, coord))
