"""Ed25519 keys: their textual form, their files, and node ids.

Public keys, signatures and seeds travel as unpadded base64url (RFC 4648 §5):
43 characters for a key, 86 for a signature. This form is safe in URLs, paths,
headers and JSON without quoting. Decoding is strict: a text that does not
re-encode to itself is refused, so every key has exactly one spelling.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import os
import stat
from collections.abc import Sequence
from functools import lru_cache
from pathlib import Path

import nacl.exceptions
import nacl.signing
from nacl.bindings import crypto_sign_open

from zeronode.files import owned_like_parent
from zeronode.protocol.errors import KeyFileError, MalformedKey

PUBLIC_KEY_CHARS = 43
SIGNATURE_CHARS = 86
KEY_FILE_HEADER = "# zeronode ed25519 private key (seed, base64url). Keep it private: mode 0600.\n"


def b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


_ALPHABET = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_"
# To the standard alphabet, which binascii decodes in strict mode; '+' and '/' are not base64url,
# so they become '*', which strict mode refuses like any other character outside the alphabet.
_TO_STANDARD_ALPHABET = bytes.maketrans(b"-_+/", b"+/**")
# In the canonical spelling the last character's spare low bits are zero:
# 2 spare bits when size % 3 == 2 (keys: 32 bytes), 4 when size % 3 == 1 (signatures: 64 bytes).
_CANONICAL_LAST = {2: frozenset(_ALPHABET[::4]), 1: frozenset(_ALPHABET[::16]), 0: frozenset(_ALPHABET)}


@lru_cache(maxsize=256)
def _spelling(size: int) -> tuple[int, frozenset[str], bytes]:
    """For `size` bytes: how many characters spell them, which may come last, and the padding to add.
    (Worked out once a size: for a signature, a fifth of the time it takes to decode one.)"""
    chars = (4 * size + 2) // 3
    return chars, _CANONICAL_LAST[size % 3], b"=" * (-chars % 4)


def b64url_decode(text: str, size: int, what: str) -> bytes:
    """Decode exactly `size` bytes, refusing any other spelling of them."""
    chars, last, padding = _spelling(size)
    if len(text) == chars and text.isascii() and text[-1:] in last:
        # Strict mode refuses what is not in the alphabet (a regex would cost half the decoding again);
        # given the length, the padding and the last character, what it decodes is `size` bytes.
        try:
            return binascii.a2b_base64(text.encode("ascii").translate(_TO_STANDARD_ALPHABET) + padding, strict_mode=True)
        except binascii.Error:
            pass
    raise MalformedKey(f"{what} must be {size} bytes in unpadded base64url, got {text!r}")


def public_key_text(key: nacl.signing.SigningKey | nacl.signing.VerifyKey) -> str:
    verify_key = key.verify_key if isinstance(key, nacl.signing.SigningKey) else key
    return b64url(bytes(verify_key))


@lru_cache(maxsize=4096)
def parse_public_key(text: str) -> nacl.signing.VerifyKey:
    """The verify key for a textual public key (cached: signers repeat)."""
    return nacl.signing.VerifyKey(b64url_decode(text, 32, "public key"))


def canonical_public_key(text: str) -> str:
    """`text` when it is a public key in its one spelling; ValueError otherwise (a pydantic validator's error)."""
    try:
        parse_public_key(text)
    except MalformedKey as exc:
        raise ValueError(str(exc)) from None
    return text


@lru_cache(maxsize=4096)
def public_key_bytes(text: str) -> bytes:
    """The 32 bytes of a textual public key, strictly decoded (cached: signers repeat)."""
    return bytes(parse_public_key(text))


def verify_signature(public_key: str, message: bytes | Sequence[bytes], signature: str) -> bool:
    """Whether `signature` by `public_key` is valid over `message`; MalformedKey when either text is not
    in its one spelling. libsodium is called as VerifyKey.verify calls it, without its argument checks
    (the decoding has made them), which are a tenth of what verifying an envelope adds to the crypto.
    `message` may come in pieces, joined once with the signature into the one buffer libsodium takes
    (an envelope's signed bytes are cut from its canonical JSON: zeronode.protocol.envelope)."""
    key = public_key_bytes(public_key)
    raw = b64url_decode(signature, 64, "signature")
    try:
        crypto_sign_open(raw + message if isinstance(message, bytes) else b"".join((raw, *message)), key)
    except nacl.exceptions.BadSignatureError:
        return False
    return True


def sign(key: nacl.signing.SigningKey, message: bytes) -> str:
    return b64url(key.sign(message).signature)


def node_id(public_key: str) -> str:
    """A node's id: derived from its public key, so it never changes while the key does not.

    26 lowercase base32 characters of SHA-256 over the raw key: short enough
    to type, long (128 bits) enough never to collide.
    """
    raw = b64url_decode(public_key, 32, "public key")
    return base64.b32encode(hashlib.sha256(raw).digest()[:16]).decode("ascii").rstrip("=").lower()


def generate() -> nacl.signing.SigningKey:
    return nacl.signing.SigningKey.generate()


def save_private_key(key: nacl.signing.SigningKey, path: Path, *, force: bool = False) -> None:
    """Write `key` to `path` with mode 0600, atomically; refuse to overwrite unless `force`."""
    path = Path(path)
    if path.exists() and not force:
        raise KeyFileError(f"{path} exists; refusing to overwrite it (use --force)")
    path.parent.mkdir(parents=True, exist_ok=True)
    temporary = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    # Created 0600 from the start: there is no moment when others may read it.
    fd = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    try:
        with os.fdopen(fd, "w", encoding="ascii") as file:
            file.write(KEY_FILE_HEADER + b64url(bytes(key)) + "\n")
            file.flush()
            os.fsync(file.fileno())
        owned_like_parent(temporary)  # root making a node's key in the supervisor's state directory: still theirs
        if not force and path.exists():  # someone created it meanwhile
            raise KeyFileError(f"{path} exists; refusing to overwrite it (use --force)")
        os.replace(temporary, path)
    finally:
        temporary.unlink(missing_ok=True)


def load_private_key(path: Path) -> nacl.signing.SigningKey:
    """Read a key written by `save_private_key`; refuse one that others can read."""
    path = Path(path)
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError as exc:
        raise KeyFileError(f"cannot open key file {path}: {exc.strerror}") from exc
    # Checked on the open descriptor: the file cannot be swapped between check and read.
    mode = os.fstat(fd).st_mode
    if not stat.S_ISREG(mode):
        os.close(fd)
        raise KeyFileError(f"{path} is not a regular file")
    if mode & 0o077:
        os.close(fd)
        raise KeyFileError(f"{path} is readable by group or others (mode {stat.S_IMODE(mode):04o}); run: chmod 600 {path}")
    with os.fdopen(fd, encoding="ascii", errors="replace") as file:
        lines = [line.strip() for line in file.read(4096).splitlines()]
    seeds = [line for line in lines if line and not line.startswith("#")]
    if len(seeds) != 1:
        raise KeyFileError(f"{path} is not a zeronode private key file")
    try:
        return nacl.signing.SigningKey(b64url_decode(seeds[0], 32, "private key"))
    except MalformedKey as exc:
        raise KeyFileError(f"{path} is not a zeronode private key file: {exc}") from exc
