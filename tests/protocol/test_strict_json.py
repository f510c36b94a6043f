"""Strict JSON on every signed path (zeronode.protocol.strict_json): one parse, no key twice, bounded
nesting, integers that are integers; and batches cut into their items without parsing them."""

import json
import re

import nacl.signing
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from pydantic import BaseModel, ConfigDict

from zeronode.api.bodies import MAX_STEPS, batch_items, parse_body
from zeronode.api.errors import Refused
from zeronode.protocol import strict_json
from zeronode.protocol.envelope import Envelope, Policy, new_envelope, verify
from zeronode.protocol.errors import InvalidJSON, MalformedEnvelope, UnsupportedVersion, VerificationError

NOW = 1_800_000_000
KEY = nacl.signing.SigningKey.generate()
COSIGNER = nacl.signing.SigningKey.generate()


@pytest.fixture(scope="module")
def envelope() -> Envelope:
    return new_envelope('let a = #{ b: 1 };\nprint(`x:${a.b}`); "a:b"', ["edge-1", "edge-2"], KEY,
                        env={"ZONE": "eu:west", "B": ":"}, now=NOW).signed_by(COSIGNER)


def wire(envelope: Envelope) -> str:
    return envelope.to_json()


def refusal(raw) -> VerificationError:
    with pytest.raises(VerificationError) as info:
        verify(raw, now=NOW)
    return info.value


# -- duplicate keys -------------------------------------------------------------------


def test_a_duplicate_script_key_is_refused_whichever_copy_was_signed(envelope):
    text = wire(envelope)
    script = json.dumps(envelope.script)
    for extra in ('"script":"2",', f'"script":{script},'):  # the signed value second, or first
        for raw in (text.replace(f'"script":{script}', extra + f'"script":{script}'),
                    text.replace(f'"script":{script}', f'"script":{script},' + extra.rstrip(","))):
            assert raw != text
            error = refusal(raw)
            assert (type(error), error.reason) == (InvalidJSON, "invalid_json")
            assert "duplicate key 'script'" in str(error)
            with pytest.raises(InvalidJSON):
                Envelope.from_json(raw.encode())


@pytest.mark.parametrize("where", ["top", "env", "signature", "signatures", "escaped name"])
def test_a_duplicate_key_anywhere_is_refused(envelope, where):
    data = json.loads(wire(envelope))
    text = json.dumps(data)
    if where == "top":
        raw = text.replace('"timeout": ', '"timeout": 60, "timeout": ')
    elif where == "env":
        raw = text.replace('"env": {', '"env": {"ZONE": "us", ')
    elif where == "signature":
        raw = text.replace('{"public_key": ', '{"public_key": "x", "public_key": ', 1)
    elif where == "signatures":
        raw = text.replace('"signatures": ', '"signatures": [], "signatures": ')
    else:  # the same name spelled with an escape is the same key
        raw = text.replace('"nonce": ', '"n\\u006fnce": "AAAAAAAAAAAAAAAAAAAAAA", "nonce": ')
    assert raw != text
    error = refusal(raw)
    assert error.reason == "invalid_json" and "duplicate key" in str(error)
    verify(text, now=NOW)  # the same text without the repeated key verifies


@pytest.mark.parametrize("escape", ["\\u003a", "\\u003A"])
def test_escaped_colons_take_the_full_check(escape):
    """The count cannot see an escaped colon: one of them would hide one repeated key from it. Such texts
    go to the full check, which accepts them as they are and refuses them with a key repeated."""
    envelope = new_envelope("a:b <\\u003c>", ["edge-1"], KEY, env={"A": "c:d"}, now=NOW)
    assert verify(wire(envelope).replace("c:d", f"c{escape}d"), now=NOW).envelope == envelope
    raw = wire(envelope).replace("a:b", f"a{escape}b")
    assert verify(raw, now=NOW).envelope == envelope
    with pytest.raises(InvalidJSON, match="duplicate key 'retries'"):
        verify(raw.replace('"retries":', '"retries":0,"retries":'), now=NOW)
    # Other \u003X escapes (< is one some encoders always escape) are not colons: the count sees those.
    text = wire(envelope).replace("<", "\\u003c")
    assert "\\u003c" in text and verify(text, now=NOW).envelope == envelope
    with pytest.raises(InvalidJSON, match="duplicate key 'retries'"):
        verify(text.replace('"retries":', '"retries":0,"retries":'), now=NOW)


def spellings(envelope: Envelope) -> st.SearchStrategy[str]:
    """The envelope in many JSON spellings: key order, white space, escaped or literal non-ASCII."""
    data = json.loads(wire(envelope))
    return st.builds(
        lambda order, ascii_only, indent: json.dumps(
            {key: data[key] for key in order}, ensure_ascii=ascii_only, indent=indent,
        ),
        st.permutations(sorted(data)), st.booleans(), st.sampled_from([None, 0, 2]),
    )


OBJECTS = re.compile(r'(?<=[{,])\s*"(algorithm|created_at|env|expires_at|id|nonce|retries|script|signatures|signer|'
                     r'targets|timeout|version|public_key|signature|[A-Z_]+)"\s*:')


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    st.text(alphabet=st.sampled_from('ab:"\\{}[],\n é'), max_size=40),
    st.dictionaries(st.sampled_from(["A", "B", "C"]), st.text(alphabet=st.sampled_from(':x"{'), max_size=5), max_size=3),
    st.data(),
)
def test_the_count_agrees_with_the_full_check(script, env, data):
    """Any spelling of a valid envelope verifies; the same with one member repeated never does."""
    envelope = new_envelope(script, ["edge-1"], KEY, env=env, now=NOW)
    text = data.draw(spellings(envelope))
    assert verify(text, now=NOW).envelope == envelope
    members = list(OBJECTS.finditer(text))
    chosen = members[data.draw(st.integers(0, len(members) - 1))]
    # Repeat the member before it, with a value that fits (the same one, for the envelope's own fields):
    # the model sees nothing wrong, only the repeated key can refuse it.
    name = chosen[1]
    value = json.loads(text)[name] if name in Envelope.model_fields else "x"
    repeated = text[: chosen.start()] + f' "{name}": {json.dumps(value)},' + text[chosen.start():]
    with pytest.raises(VerificationError) as info:
        verify(repeated, now=NOW)
    assert info.value.reason == "invalid_json", (repeated, info.value)


# -- integers are integers --------------------------------------------------------------


@pytest.mark.parametrize("spelling", ["1.0", "1e0", "1E0", "10e-1", "true", '"1"', "2", "0", "-1"])
def test_version_is_the_integer_1_only(envelope, spelling):
    raw = wire(envelope).replace('"version":1', f'"version":{spelling}')
    error = refusal(raw)
    assert isinstance(error, UnsupportedVersion) and error.reason == "unsupported_version"


@pytest.mark.parametrize("field", ["created_at", "expires_at", "timeout", "retries"])
@pytest.mark.parametrize("spelling", ["{}.0", "{}e0", "true", '"{}"'])
def test_integer_fields_given_otherwise_are_refused(envelope, field, spelling):
    value = getattr(envelope, field)
    raw = wire(envelope).replace(f'"{field}":{getattr(envelope, field)}', f'"{field}":{spelling.format(value)}')
    assert raw != wire(envelope)
    error = refusal(raw)
    assert isinstance(error, MalformedEnvelope) and error.reason == "malformed" and field in str(error)


def test_a_policy_threshold_is_an_integer():
    key = "A6EHv_POEL4dcN0Y50vAmWfk1jCbpQ1fHdyGZBJVMbg"
    assert Policy.model_validate_json(json.dumps({"threshold": 1, "keys": [key]})).threshold == 1
    for threshold in (1.0, True, "1"):
        with pytest.raises(ValueError):
            Policy.model_validate_json(json.dumps({"threshold": threshold, "keys": [key]}))


# -- nesting ------------------------------------------------------------------------------


@pytest.mark.parametrize("raw", ["[" * 100_000 + "]" * 100_000, '{"a":' * 300 + "1" + "}" * 300])
def test_deep_nesting_is_refused_with_a_clear_error(raw):
    error = refusal(raw)
    assert error.reason == "invalid_json" and f"nested deeper than {strict_json.MAX_DEPTH} levels" in str(error)


# -- one spelling -----------------------------------------------------------------------------


def test_canonical_json_is_the_one_spelling(envelope):
    data = json.loads(wire(envelope))
    reference = json.dumps(data, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode()
    assert envelope.canonical_json() == reference
    respelled = json.dumps(dict(reversed(data.items())), indent=2, ensure_ascii=True)
    verified = verify(respelled, now=NOW)
    assert verified.envelope.canonical_json() == reference
    assert verify(reference, now=NOW).envelope == envelope
    assert envelope.signing_bytes() == b"zeronode-envelope-v1\n" + json.dumps(
        {k: v for k, v in data.items() if k != "signatures"}, sort_keys=True, separators=(",", ":"), ensure_ascii=False
    ).encode()


# -- API bodies ------------------------------------------------------------------------------


class Report(BaseModel):
    model_config = ConfigDict(strict=True, extra="forbid")

    uptime: int
    timestamp: int


@pytest.mark.parametrize(
    ("raw", "status", "reason", "says"),
    [
        (b'{"uptime": 1, "uptime": 2, "timestamp": 3}', 400, "invalid_json", "duplicate key 'uptime'"),
        (b'{"uptime": 1.0, "timestamp": 3}', 422, "malformed", "uptime"),
        (b'{"uptime": 1, "timestamp": 3e0}', 422, "malformed", "timestamp"),
        (b'{"uptime": true, "timestamp": 3}', 422, "malformed", "uptime"),
        (b'{"uptime": 1, "timestamp": ' + b"[" * 100_000, 400, "invalid_json", "nested deeper"),
        (b'{"uptime": 1,}', 400, "invalid_json", "not JSON"),
    ],
)
def test_bodies_are_strict(raw, status, reason, says):
    with pytest.raises(Refused) as info:
        parse_body(Report, raw)
    assert (info.value.status, info.value.reason) == (status, reason)
    assert says in str(info.value)
    assert parse_body(Report, b'{"uptime": 1, "timestamp": 3}') == Report(uptime=1, timestamp=3)


def test_the_gate_builds_nothing_and_refuses_only_duplicates():
    strict_json.unique_keys(b'{"a": [1e999, 12345678901234567890123456789012345678901234567890, {"a": 1}], "b": {}}')
    strict_json.unique_keys("[" + "1" * 5000 + "]")  # beyond int()'s digit limit: not an int this pass makes
    with pytest.raises(InvalidJSON, match="duplicate key 'k'"):
        strict_json.unique_keys(b'[{"x": {"k": 1, "j": 2, "k": 3}}]')


# -- cutting batches -----------------------------------------------------------------------------

json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(alphabet=st.sampled_from('ab"\\[]{},: \n\té')),
    lambda children: st.lists(children, max_size=3) | st.dictionaries(st.text(max_size=5), children, max_size=3),
    max_leaves=30,
)


@settings(max_examples=300, deadline=None)
@given(st.lists(json_values, max_size=8), st.sampled_from([None, 1, 2]), st.booleans())
def test_a_batch_is_cut_into_exactly_its_items(values, indent, ascii_only):
    raw = json.dumps(values, indent=indent, ensure_ascii=ascii_only).encode()
    items = batch_items(raw, limit=8)
    assert [json.loads(item) for item in items] == values
    wrapped = json.dumps({"reports": values}, indent=indent).encode()
    assert [json.loads(item) for item in batch_items(wrapped, limit=8, member="reports")] == values


@settings(max_examples=500, deadline=None)
@given(st.binary(max_size=200) | st.text(alphabet=st.sampled_from('[]{},"\\ 1a:'), max_size=60).map(str.encode))
def test_any_body_is_cut_or_refused_never_crashes(raw):
    for member in (None, "reports"):
        try:
            batch_items(raw, limit=5, member=member)
        except Refused as refused:
            assert refused.status in (400, 413, 422) and refused.reason


def test_an_item_of_any_depth_is_one_item():
    deep = b"[" * 100_000 + b"]" * 100_000
    objects = b'{"a":' * 50_000 + b'"]}"' + b"}" * 50_000
    items = batch_items(b"[1, " + deep + b", " + objects + b', {"b": "[" }]', limit=4)
    assert items == [b"1", b" " + deep, b" " + objects, b' {"b": "[" }']


@pytest.mark.parametrize(
    ("raw", "status", "reason"),
    [
        (b"", 400, "invalid_json"),
        (b"nope", 400, "invalid_json"),
        (b"[1, 2", 400, "invalid_json"),  # never closed
        (b'[1, "2]', 400, "invalid_json"),  # a string never closed
        (b"[1,, 2]", 400, "invalid_json"),
        (b"[1, 2,]", 400, "invalid_json"),
        (b"[1, 2] 3", 400, "invalid_json"),
        (b"[1, 2}", 400, "invalid_json"),
        (b'{"a": 1}', 422, "malformed"),
        (b"[1, 2, 3, 4]", 422, "too_many"),
        (b"[" + b'["",' * (MAX_STEPS + 1) + b"]" * (MAX_STEPS + 1) + b"]", 413, "too_large"),
    ],
)
def test_a_batch_that_is_not_an_array_of_items_is_refused_whole(raw, status, reason):
    with pytest.raises(Refused) as info:
        batch_items(raw, limit=3)
    assert (info.value.status, info.value.reason) == (status, reason)


def test_a_batch_under_a_member_must_be_that_member_alone():
    assert batch_items(b' { "reports" : [1, {"a": [2]}] } ', limit=3, member="reports") == [b"1", b' {"a": [2]}']
    assert batch_items(b'{"rep\\u006frts": [1, 2]}', limit=3, member="reports") == [b"1", b"2"]  # spelled otherwise
    for raw, reason in [
        (b'{"reports": [1], "reports": [2]}', "invalid_json"),
        (b'{"reports": [1], "other": 2}', "malformed"),
        (b'{"reports": {}}', "malformed"),
        (b"[1]", "malformed"),
        (b'{"reports": [1, 2, 3, 4]}', "too_many"),
    ]:
        with pytest.raises(Refused) as info:
            batch_items(raw, limit=3, member="reports")
        assert info.value.reason == reason, raw
