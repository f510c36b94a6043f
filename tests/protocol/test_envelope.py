"""Signed envelopes: round trip, every tamper refused, time windows, sizes, multi-signature."""

import json

import nacl.signing
import pytest

from zeronode.protocol import keys
from zeronode.protocol.envelope import DOMAIN, Envelope, Policy, VerifyOptions, new_envelope, verify
from zeronode.protocol.errors import (
    BadSignature,
    Expired,
    MalformedEnvelope,
    MalformedKey,
    NotYetValid,
    PolicyNotMet,
    ScriptTooLarge,
    UnknownAlgorithm,
    UnsupportedVersion,
    VerificationError,
)

NOW = 1_800_000_000


@pytest.fixture(scope="module")
def alice():
    return nacl.signing.SigningKey.generate()


@pytest.fixture(scope="module")
def bob():
    return nacl.signing.SigningKey.generate()


@pytest.fixture
def envelope(alice):
    return new_envelope(
        "let vm = 1;\nvm + 41", ["edge-1", "edge-2"], alice, timeout=30, ttl=600, retries=2, env={"ZONE": "eu"}, now=NOW
    )


def as_dict(envelope):
    return json.loads(envelope.to_json())


def test_round_trip(envelope, alice):
    verified = verify(envelope.to_json(), now=NOW + 1)
    assert verified.envelope == envelope
    assert verified.signers == {keys.public_key_text(alice)}
    assert verified.envelope.script == "let vm = 1;\nvm + 41"
    assert (verified.envelope.timeout, verified.envelope.retries, verified.envelope.env) == (30, 2, {"ZONE": "eu"})
    assert verified.envelope.expires_at - verified.envelope.created_at == 600


def test_bytes_and_models_verify_alike(envelope):
    assert verify(envelope.to_json().encode(), now=NOW).envelope == envelope
    assert verify(envelope, now=NOW).envelope == envelope


def test_signing_bytes_are_domain_plus_sorted_compact_json(envelope):
    fields = as_dict(envelope)
    del fields["signatures"]
    expected = DOMAIN + json.dumps(fields, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode()
    assert envelope.signing_bytes() == expected


def test_env_order_does_not_change_the_signature(alice):
    a = new_envelope("1", ["n"], alice, env={"B": "2", "A": "1"}, now=NOW)
    b = a.model_copy(update={"env": {"A": "1", "B": "2"}})
    assert a.signing_bytes() == b.signing_bytes()


# Every signed field, changed after signing, must break the signature.
TAMPERS = {
    "algorithm": None,  # any other value is an unknown algorithm, tested below
    "created_at": NOW - 5,
    "env": {"ZONE": "us"},
    "expires_at": NOW + 601,
    "id": "00000000-0000-4000-8000-000000000000",
    "nonce": "AAAAAAAAAAAAAAAAAAAAAA",
    "retries": 3,
    "script": "let vm = 1;\nvm + 42",
    "selector": {"count": 2},
    "targets": ["edge-1"],
    "timeout": 31,
    "version": None,  # any other value is an unsupported version, tested below
}


@pytest.mark.parametrize("field", sorted(f for f, v in TAMPERS.items() if v is not None))
def test_each_field_changed_after_signing_is_refused(envelope, field):
    data = as_dict(envelope)
    assert data.get(field) != TAMPERS[field]  # a selector is absent: adding one is a change too
    data[field] = TAMPERS[field]
    with pytest.raises(BadSignature, match="does not match"):
        verify(json.dumps(data), now=NOW)


def test_every_signed_field_has_a_tamper_case():
    signed = set(Envelope.model_fields) - {"signatures", "signer"}
    assert signed == set(TAMPERS)


def test_flipped_signature_byte_is_refused(envelope):
    data = as_dict(envelope)
    raw = bytearray(keys.b64url_decode(data["signatures"][0]["signature"], 64, "signature"))
    for position in (0, 31, 63):
        flipped = bytearray(raw)
        flipped[position] ^= 0x01
        data["signatures"][0]["signature"] = keys.b64url(bytes(flipped))
        with pytest.raises(BadSignature):
            verify(json.dumps(data), now=NOW)


def test_signer_swapped_is_refused(envelope, bob):
    data = as_dict(envelope)
    data["signer"] = keys.public_key_text(bob)
    with pytest.raises(BadSignature):
        verify(json.dumps(data), now=NOW)


def test_signature_from_another_key_is_refused(envelope, bob):
    # Bob signs the same bytes, and claims to be the signer of record.
    data = as_dict(envelope)
    data["signatures"] = [{"public_key": data["signer"], "signature": keys.sign(bob, envelope.signing_bytes())}]
    with pytest.raises(BadSignature, match="does not match"):
        verify(json.dumps(data), now=NOW)


def test_signed_only_by_someone_else_is_refused(envelope, bob):
    data = as_dict(envelope)
    data["signatures"] = [{"public_key": keys.public_key_text(bob), "signature": keys.sign(bob, envelope.signing_bytes())}]
    with pytest.raises(BadSignature, match="has not signed"):
        verify(json.dumps(data), now=NOW)


def test_unsigned_envelope_is_refused(envelope):
    data = as_dict(envelope)
    data["signatures"] = []
    with pytest.raises(BadSignature, match="not signed"):
        verify(json.dumps(data), now=NOW)


def test_wrong_version_and_unknown_algorithm(envelope):
    for field, value, error in [
        ("version", 2, UnsupportedVersion),
        ("version", "1", UnsupportedVersion),
        ("algorithm", "rsa-sha256", UnknownAlgorithm),
    ]:
        data = as_dict(envelope)
        data[field] = value
        with pytest.raises(error) as info:
            verify(json.dumps(data), now=NOW)
        assert info.value.reason in {"unsupported_version", "unknown_algorithm"}


def test_malformed_keys(envelope):
    for mangle in [
        lambda d: d.update(signer="not-a-key"),
        lambda d: d["signatures"][0].update(public_key="short"),
        lambda d: d.update(signer=d["signer"][:-1] + ("B" if d["signer"][-1] != "B" else "C")),
    ]:
        data = as_dict(envelope)
        mangle(data)
        with pytest.raises((MalformedKey, BadSignature)) as info:
            verify(json.dumps(data), now=NOW)
        assert isinstance(info.value, VerificationError)
    data = as_dict(envelope)
    data["signer"] = "A" * 42 + "B"  # right shape, not canonical base64url
    with pytest.raises(MalformedKey):
        verify(json.dumps(data), now=NOW)


@pytest.mark.parametrize(
    ("moment", "error"),
    [
        (NOW - 301, NotYetValid),  # beyond the 5-minute skew tolerance
        (NOW + 600 + 300, Expired),
        (NOW + 10**6, Expired),
    ],
)
def test_outside_the_validity_window(envelope, moment, error):
    with pytest.raises(error):
        verify(envelope, now=moment)


@pytest.mark.parametrize("moment", [NOW - 299, NOW, NOW + 599, NOW + 600 + 299])
def test_inside_the_window_with_skew(envelope, moment):
    verify(envelope, now=moment)


def test_skew_is_configurable(envelope):
    strict = VerifyOptions(skew=0)
    with pytest.raises(NotYetValid):
        verify(envelope, now=NOW - 1, options=strict)
    with pytest.raises(Expired):
        verify(envelope, now=NOW + 600, options=strict)


def test_oversize_script(alice):
    options = VerifyOptions(max_script_bytes=1024)
    fits = new_envelope("x" * 1024, ["n"], alice, now=NOW)
    verify(fits, now=NOW, options=options)
    too_big = new_envelope("é" * 600, ["n"], alice, now=NOW)  # 600 characters, 1200 bytes
    with pytest.raises(ScriptTooLarge):
        verify(too_big, now=NOW, options=options)
    with pytest.raises(ScriptTooLarge):
        verify(json.dumps(as_dict(too_big)) + " " * 200_000, now=NOW, options=options)
    default = new_envelope("x" * (256 * 1024 + 1), ["n"], alice, now=NOW)
    with pytest.raises(ScriptTooLarge):
        verify(default, now=NOW)


def test_validity_window_must_be_sane(alice):
    backwards = new_envelope("1", ["n"], alice, ttl=-10, now=NOW)
    with pytest.raises(MalformedEnvelope, match="later than created_at"):
        verify(backwards, now=NOW)
    too_long = new_envelope("1", ["n"], alice, ttl=30 * 86400, now=NOW)
    with pytest.raises(MalformedEnvelope, match="validity window"):
        verify(too_long, now=NOW)


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("id", "00000000-0000-4000-8000-00000000000A"),  # upper case: not the canonical spelling
        ("targets", []),
        ("targets", ["a", "a"]),
        ("targets", ["../etc"]),
        ("timeout", 0),
        ("timeout", 30.0),
        ("retries", -1),
        ("env", {"not a name": "x"}),
        ("env", {"A": 1}),
        ("nonce", "short"),
        ("created_at", True),
    ],
)
def test_malformed_fields(envelope, field, value):
    data = as_dict(envelope)
    data[field] = value
    with pytest.raises(MalformedEnvelope, match=field):
        verify(json.dumps(data), now=NOW)


def test_unknown_and_missing_fields(envelope):
    data = as_dict(envelope)
    data["priority"] = 1
    with pytest.raises(MalformedEnvelope, match="priority"):
        verify(json.dumps(data), now=NOW)
    data = as_dict(envelope)
    del data["script"]
    with pytest.raises(MalformedEnvelope, match="script"):
        verify(json.dumps(data), now=NOW)


def test_new_envelope_refuses_bad_arguments(alice):
    with pytest.raises(MalformedEnvelope, match="UTF-8"):
        new_envelope("\ud800", ["n"], alice)  # a lone surrogate: no UTF-8 form, nothing to sign
    with pytest.raises(MalformedEnvelope, match="targets"):
        new_envelope("1", [], alice)
    with pytest.raises(MalformedEnvelope, match="env"):
        new_envelope("1", ["n"], alice, env={"1BAD": "x"})


# -- several signatures --------------------------------------------------------


def test_cosigned_envelope_has_every_signer(envelope, alice, bob):
    cosigned = envelope.signed_by(bob)
    verified = verify(cosigned.to_json(), now=NOW)
    assert verified.signers == {keys.public_key_text(alice), keys.public_key_text(bob)}
    with pytest.raises(ValueError, match="already signed"):
        cosigned.signed_by(bob)


def test_one_bad_cosignature_spoils_the_envelope(envelope, bob):
    data = as_dict(envelope.signed_by(bob))
    data["signatures"][1]["signature"] = data["signatures"][0]["signature"]
    with pytest.raises(BadSignature):
        verify(json.dumps(data), now=NOW)


def test_duplicate_signatures_are_malformed(envelope):
    data = as_dict(envelope)
    data["signatures"] = data["signatures"] * 2
    with pytest.raises(MalformedEnvelope, match="two signatures"):
        verify(json.dumps(data), now=NOW)


def test_policies(envelope, alice, bob):
    carol = keys.public_key_text(nacl.signing.SigningKey.generate())
    a, b = keys.public_key_text(alice), keys.public_key_text(bob)
    two_of_three = Policy(threshold=2, keys={a, b, carol})
    with pytest.raises(PolicyNotMet, match="1 of the 2"):
        two_of_three.check(verify(envelope, now=NOW).signers)
    two_of_three.check(verify(envelope.signed_by(bob), now=NOW).signers)
    # Signatures by keys outside the policy do not count.
    outsider = nacl.signing.SigningKey.generate()
    with pytest.raises(PolicyNotMet):
        Policy(threshold=2, keys={b, carol}).check(verify(envelope.signed_by(outsider), now=NOW).signers)
    Policy(threshold=1, keys={a}).check(verify(envelope, now=NOW).signers)


def test_policy_must_be_satisfiable():
    key = keys.public_key_text(nacl.signing.SigningKey.generate())
    with pytest.raises(ValueError, match="exceeds"):
        Policy(threshold=2, keys={key})
    with pytest.raises(ValueError):
        Policy(threshold=0, keys={key})
    with pytest.raises(ValueError):
        Policy(threshold=1, keys={"not-a-key"})
