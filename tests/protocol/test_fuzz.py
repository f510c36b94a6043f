"""Whatever arrives, parsing and verification end in a typed error, never a crash."""

import json

import nacl.signing
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from zeronode.protocol.envelope import DOMAIN, Envelope, Selector, _signed_pieces, new_envelope, verify
from zeronode.protocol.errors import VerificationError

KEY = nacl.signing.SigningKey.generate()
VALID = json.loads(new_envelope("40 + 2", ["edge-1"], KEY, env={"A": "1"}).to_json())

json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(),
    lambda children: st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=10), children, max_size=4),
    max_leaves=20,
)


def refused_cleanly(raw):
    try:
        verify(raw)
    except VerificationError as error:
        assert error.reason and str(error)
        return
    raise AssertionError(f"accepted: {raw!r}")


@settings(max_examples=500, deadline=None)
@given(st.binary(max_size=2048))
def test_random_bytes(raw):
    refused_cleanly(raw)


@settings(max_examples=500, deadline=None)
@given(json_values)
def test_random_json(value):
    refused_cleanly(json.dumps(value))


@settings(max_examples=500, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.sampled_from(sorted(VALID)), json_values)
def test_valid_envelope_with_one_field_replaced(field, value):
    data = dict(VALID)
    data[field] = value
    if data == VALID:
        return
    refused_cleanly(json.dumps(data))


@settings(max_examples=300, deadline=None)
@given(
    st.text(max_size=300),
    st.dictionaries(st.from_regex(r"[A-Za-z_][A-Za-z0-9_]{0,10}", fullmatch=True), st.text(max_size=30), max_size=5),
)
def test_canonical_bytes_match_the_reference_definition(script, env):
    envelope = new_envelope(script, ["edge-1"], KEY, env=env)
    fields = json.loads(envelope.to_json())
    del fields["signatures"]
    reference = DOMAIN + json.dumps(fields, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode()
    assert envelope.signing_bytes() == reference
    assert verify(envelope.to_json()).envelope == envelope
    assert verify(envelope.to_json()).canonical_json == envelope.canonical_json()
    assert Envelope.from_json(envelope.to_json()) == envelope


COSIGNERS = [nacl.signing.SigningKey.generate() for _ in range(2)]


@settings(max_examples=300, deadline=None)
@given(
    st.text(max_size=100) | st.sampled_from([',"signatures":[', ',"signer":"', '"],"signer":"', "\\", '"']),
    # Names that spell the members the cut looks for, with values that do too.
    st.dictionaries(st.sampled_from(["signer", "signatures", "A", "targets"]), st.text(max_size=20) | st.just(',"signer":"'),
                    max_size=4),
    st.booleans(),
    st.integers(min_value=0, max_value=2),
)
def test_the_signed_bytes_are_cut_exactly_from_the_canonical_json(script, env, placed, cosigners):
    selector = Selector(count=2, farms=["f"], labels=["a=b"]) if placed else None
    envelope = new_envelope(script, [] if placed else ["edge-1"], KEY, env=env, selector=selector)
    for key in COSIGNERS[:cosigners]:
        envelope = envelope.signed_by(key)
    canonical = envelope.canonical_json()
    assert b"".join(_signed_pieces(canonical)) == envelope.signing_bytes()
    verified = verify(canonical)
    assert verified.canonical_json == canonical
    assert len(verified.signers) == 1 + cosigners
