"""Key files (0600, never overwritten by accident, refused when others can read them) and key texts."""

import os
import re
import stat

import nacl.signing
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from zeronode.protocol import keys
from zeronode.protocol.errors import KeyFileError, MalformedKey


def test_saved_key_is_private_and_loads_back(tmp_path):
    key = keys.generate()
    path = tmp_path / "nested" / "node.key"
    keys.save_private_key(key, path)
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert bytes(keys.load_private_key(path)) == bytes(key)
    assert list(path.parent.iterdir()) == [path]  # no temporary file left behind


def test_mode_is_0600_whatever_the_umask(tmp_path):
    old = os.umask(0)
    try:
        keys.save_private_key(keys.generate(), tmp_path / "k")
    finally:
        os.umask(old)
    assert stat.S_IMODE((tmp_path / "k").stat().st_mode) == 0o600


def test_existing_key_is_not_overwritten_without_force(tmp_path):
    path = tmp_path / "k"
    first, second = keys.generate(), keys.generate()
    keys.save_private_key(first, path)
    with pytest.raises(KeyFileError, match="refusing to overwrite"):
        keys.save_private_key(second, path)
    assert bytes(keys.load_private_key(path)) == bytes(first)
    keys.save_private_key(second, path, force=True)
    assert bytes(keys.load_private_key(path)) == bytes(second)


@pytest.mark.parametrize("mode", [0o640, 0o604, 0o644, 0o660])
def test_key_readable_by_others_is_refused(tmp_path, mode):
    path = tmp_path / "k"
    keys.save_private_key(keys.generate(), path)
    path.chmod(mode)
    with pytest.raises(KeyFileError, match=f"mode {mode:04o}.*chmod 600"):
        keys.load_private_key(path)


def test_missing_or_foreign_files_are_refused(tmp_path):
    with pytest.raises(KeyFileError, match="cannot open"):
        keys.load_private_key(tmp_path / "absent")
    foreign = tmp_path / "foreign"
    foreign.write_text("-----BEGIN OPENSSH PRIVATE KEY-----\nabc\n")
    foreign.chmod(0o600)
    with pytest.raises(KeyFileError, match="not a zeronode private key"):
        keys.load_private_key(foreign)
    with pytest.raises(KeyFileError, match="not a regular file"):
        (tmp_path / "dir").mkdir(mode=0o700)
        keys.load_private_key(tmp_path / "dir")


@pytest.mark.parametrize("mangle", [lambda t: t + "=", lambda t: t[:-1], lambda t: "+" + t[1:], lambda t: "x" * 44, lambda t: "!" * 43])
def test_public_key_text_is_strict_base64url(mangle):
    key = keys.generate()
    text = keys.public_key_text(key)
    assert len(text) == 43 and "=" not in text
    assert bytes(keys.parse_public_key(text)) == bytes(key.verify_key)
    with pytest.raises(MalformedKey):
        keys.parse_public_key(mangle(text))


def test_non_canonical_spelling_of_the_same_bytes_is_refused():
    raw = bytes(32)
    canonical = keys.b64url(raw)  # 'AAAA...A'
    sloppy = canonical[:-1] + "B"  # same 32 bytes, a spare bit set
    assert keys.b64url_decode(canonical, 32, "k") == raw
    with pytest.raises(MalformedKey):
        keys.b64url_decode(sloppy, 32, "k")


def test_node_id_is_derived_from_the_public_key():
    a, b = keys.public_key_text(keys.generate()), keys.public_key_text(keys.generate())
    assert keys.node_id(a) == keys.node_id(a)
    assert keys.node_id(a) != keys.node_id(b)
    assert len(keys.node_id(a)) == 26 and keys.node_id(a).isalnum() and keys.node_id(a).islower()


def test_sign_and_verify_signature():
    key = nacl.signing.SigningKey.generate()
    public = keys.public_key_text(key)
    signature = keys.sign(key, b"message")
    assert keys.verify_signature(public, b"message", signature)
    assert not keys.verify_signature(public, b"massage", signature)


@pytest.mark.parametrize("character", list("+/= \n\t*.é\x00"))
@pytest.mark.parametrize("position", [0, 21, 42])
def test_a_character_outside_base64url_is_refused_anywhere(character, position):
    text = keys.b64url(bytes(range(32)))
    mangled = text[:position] + character + text[position + 1 :]
    with pytest.raises(MalformedKey):
        keys.b64url_decode(mangled, 32, "k")


@settings(max_examples=500, deadline=None)
@given(
    st.binary(min_size=64, max_size=64),
    st.text(alphabet=st.sampled_from("AQgwBz9_-"), min_size=86, max_size=86),
    st.integers(0, 85),
    st.sampled_from(["", "+", "/", "=", "é", " ", "\n", "*"]),
)
def test_decoding_accepts_exactly_the_canonical_spellings(raw, text, position, character):
    if character:
        text = text[:position] + character + text[position + 1 :]
    assert keys.b64url_decode(keys.b64url(raw), 64, "s") == raw
    canonical = re.fullmatch(r"[A-Za-z0-9_-]{86}", text) is not None and text[-1] in "AQgw"
    try:
        decoded = keys.b64url_decode(text, 64, "s")
    except MalformedKey:
        assert not canonical
    else:
        assert canonical and keys.b64url(decoded) == text
